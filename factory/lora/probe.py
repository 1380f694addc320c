"""Which layer groups are worth adapting: measured, per concept, on held-out (validation) pairs.

For every concept and every layer group (``LAYER_GROUPS``), a LoRA on that group alone is trained
for a short, equal number of steps on the fit pairs, and its validation PSNR is compared with the
frozen base's zero-shot PSNR (same text, same pairs): the group's *gain*. Groups are ranked by
their mean gain over the concepts. Then the reference, all groups adapted together, is measured,
and the selection rule ``AUTO_RULE`` picks the smallest set:

    add groups in ranked order and measure each prefix set adapted together (its *combined* gain,
    not the sum of single gains, since gains overlap) until the mean combined gain reaches
    ``fraction`` (default 90%) of the all-groups gain.

E2GAN's choice (the down/up-sampling layers and the transformer block, ResBlocks frozen) is also
measured as a set, for the comparison in the report. Rank, steps, batch, learning rate and seed
are the same for every run; the validation pairs are whole train photos held out
(``pair_selection.validation_split``), never the test split.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from base_gan.generator import LAYER_GROUPS
from base_gan.models import BaseGAN
from base_gan.train import TrainSettings
from factory.core.atomic import atomic_write_json, atomic_write_text
from factory.core.errors import FactoryError
from factory.data.dataset import concept_instruction
from factory.evaluation.heldout import HeldOutPairs
from factory.lora.adapters import LoraLayout, parse_groups
from factory.lora.pair_selection import validation_split
from factory.lora.trials import short_run, zero_shot

AUTO_FRACTION = 0.9
AUTO_RULE = ("smallest prefix of the groups ranked by single-group validation gain whose combined gain "
             "(those groups adapted together) reaches {frac:.0%} of the gain of adapting all groups")
E2GAN_GROUPS = ["down1", "down2", "attn", "xattn", "ff", "up1", "up2"]


def probe_layers(base: BaseGAN, data_dirs: Sequence[Path], settings: TrainSettings, text_cache: Path | None,
                 rank: int = 4, fraction: float = AUTO_FRACTION, groups: Sequence[str] | None = None,
                 seed: int = 0, ids: dict[str, list[str]] | None = None, quiet: bool = False,
                 bias: bool = False) -> dict:
    """Run the probe over ``data_dirs`` (one concept folder each); returns the full result dict."""
    from tqdm import tqdm

    if not 0 < fraction <= 1:
        raise FactoryError(f"probe fraction must be in (0, 1], got {fraction}")
    groups = parse_groups(list(groups) if groups else list(LAYER_GROUPS))
    started = time.perf_counter()
    concepts = [Path(d).name for d in data_dirs]
    setups = {}
    for d in map(Path, data_dirs):
        fit, val = validation_split(d, seed=seed)
        held = HeldOutPairs(d, split="train", ids=val)
        zero = zero_shot(base, concept_instruction(d), held, text_cache)["psnr"]
        setups[d.name] = (d, (ids or {}).get(d.name) or fit, held, zero)

    runs: list[dict] = []
    bar = tqdm(total=len(concepts) * (len(groups) + 2), desc="layer probe", unit="run", disable=quiet)

    def measure(set_groups: list[str], label: str) -> float:
        """Mean gain over concepts of adapting ``set_groups`` together (runs recorded in ``runs``)."""
        gains = []
        for c, (d, fit, held, zero) in setups.items():
            r = short_run(base, d, LoraLayout(set_groups, ranks=rank, bias=bias), fit, held, settings, text_cache)
            runs.append({"set": label, "groups": set_groups, "concept": c, "zero_shot_psnr": zero,
                         "gain_db": r["psnr"] - zero, **r})
            gains.append(r["psnr"] - zero)
            bar.update(1)
            bar.set_postfix(set=label[:20], gain=f"{gains[-1]:+.2f}")
        return float(np.mean(gains))

    single = {g: measure([g], g) for g in groups}
    ranking = sorted(groups, key=lambda g: (-single[g], groups.index(g)))
    all_gain = measure(groups, "all") if len(groups) > 1 else single[groups[0]]
    prefix = [{"groups": ranking[:1], "gain_db": single[ranking[0]]}]
    target = fraction * all_gain
    if all_gain > 0:
        while prefix[-1]["gain_db"] < target and len(prefix) < len(ranking):
            n = len(prefix) + 1
            bar.total += len(concepts)
            gain = all_gain if n == len(ranking) else measure(ranking[:n], f"top{n}")
            prefix.append({"groups": ranking[:n], "gain_db": gain})
        chosen = prefix[-1]["groups"]
        note = f"reaches {prefix[-1]['gain_db']:.3f} dB >= {target:.3f} dB ({fraction:.0%} of all groups)"
    else:
        chosen = ranking[:1]
        note = f"adapting all groups did not improve on the base ({all_gain:+.3f} dB); kept the best single group"
    e2gan = [g for g in E2GAN_GROUPS if g in groups]
    e2gan_gain = None
    if e2gan and set(e2gan) != set(groups):
        known = next((p["gain_db"] for p in prefix if set(p["groups"]) == set(e2gan)), None)
        if known is None:
            bar.total += len(concepts)
        e2gan_gain = known if known is not None else measure(e2gan, "e2gan")
    bar.close()

    params = {g: next(r["params"] for r in runs if r["groups"] == [g]) for g in groups}
    per_concept = {g: {r["concept"]: round(r["gain_db"], 3) for r in runs if r["set"] == g} for g in groups}
    set_params = lambda gs: sum(params[g] for g in gs)
    return {
        "base": str(base.folder), "base_sha256": base.sha256, "concepts": concepts,
        "rank": rank, "lora_bias": bias, "steps": settings.steps,
        "batch": settings.batch, "lr": settings.lr, "seed": seed, "fraction": fraction,
        "rule": AUTO_RULE.format(frac=fraction), "note": note,
        "zero_shot_psnr": {c: s[3] for c, s in setups.items()},
        "validation_pairs": {c: len(s[2]) for c, s in setups.items()},
        "ranking": [{"group": g, "mean_gain_db": round(single[g], 3), "per_concept": per_concept[g],
                     "adapter_params": params[g]} for g in ranking],
        "all_groups_gain": round(all_gain, 3), "all_groups_params": set_params(groups),
        "prefix": [{"groups": p["groups"], "gain_db": round(p["gain_db"], 3), "adapter_params": set_params(p["groups"]),
                    "share_of_all": round(p["gain_db"] / all_gain, 3) if all_gain > 0 else None} for p in prefix],
        "chosen": chosen, "chosen_params": set_params(chosen),
        "e2gan": {"groups": e2gan, "gain_db": None if e2gan_gain is None else round(e2gan_gain, 3),
                  "adapter_params": set_params(e2gan)},
        "runs": runs, "seconds": round(time.perf_counter() - started, 1),
    }


def write_probe(result: dict, out_dir: Path) -> tuple[Path, Path]:
    """``probe.json`` (everything) and ``probe.md`` (the ranked table and the choice) in ``out_dir``."""
    out_dir = Path(out_dir)
    return (atomic_write_json(out_dir / "probe.json", result),
            atomic_write_text(out_dir / "probe.md", probe_markdown(result)))


def probe_markdown(r: dict) -> str:
    concepts = r["concepts"]
    lines = [f"# Layer probe: {', '.join(concepts)}", "",
             f"Base `{r['base']}`; each run: LoRA rank {r['rank']}{' + lora bias' if r.get('lora_bias') else ''}, "
             f"{r['steps']} steps, batch {r['batch']}, "
             f"lr {r['lr']}, seed {r['seed']}. Gain = validation PSNR after the run minus the base's zero-shot "
             "PSNR (dB), validation = train photos held out.", "",
             "| rank | group | mean gain dB | " + " | ".join(concepts) + " | adapter params |",
             "| ---: | --- | ---: | " + " | ".join("---:" for _ in concepts) + " | ---: |"]
    for i, row in enumerate(r["ranking"], 1):
        cells = " | ".join(f"{row['per_concept'].get(c, float('nan')):+.3f}" for c in concepts)
        lines.append(f"| {i} | {row['group']} | {row['mean_gain_db']:+.3f} | {cells} | {row['adapter_params']} |")
    lines += ["", f"All groups together: {r['all_groups_gain']:+.3f} dB ({r['all_groups_params']} params).", "",
              "| prefix set | combined gain dB | share of all | params |", "| --- | ---: | ---: | ---: |"]
    for p in r["prefix"]:
        share = "" if p["share_of_all"] is None else f"{p['share_of_all']:.0%}"
        lines.append(f"| {','.join(p['groups'])} | {p['gain_db']:+.3f} | {share} | {p['adapter_params']} |")
    e = r["e2gan"]
    lines += ["", f"Rule: {r['rule']}.",
              f"Chosen: **{','.join(r['chosen'])}** ({r['chosen_params']} params); {r['note']}."]
    if e["gain_db"] is not None:
        lines.append(f"E2GAN's set ({','.join(e['groups'])}): {e['gain_db']:+.3f} dB "
                     f"with {e['adapter_params']} params.")
    return "\n".join(lines) + "\n"


def probe_summary(probe: dict) -> dict:
    """The parts of a probe result a fine-tune's metrics.json records about its layer choice."""
    return {k: probe[k] for k in ("ranking", "prefix", "all_groups_gain", "e2gan", "chosen", "concepts") if k in probe}
