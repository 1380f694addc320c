"""What a LoRA fine-tune will train before it trains: its pairs, its layer groups and their ranks.

Layers (``--layers auto``) come from the workspace's probe table for this base when there is one,
else from a layer probe on this concept; ranks (``--rank auto``) from a rank search on short runs,
optionally within a size budget. Every search run is scored on validation pairs (whole train photos
held out, ``pair_selection.validation_split``), never on the test split.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from base_gan.models import BaseGAN
from base_gan.train import TrainSettings
from factory.core.errors import FactoryError
from factory.core.workspace import Workspace
from factory.data.dataset import concept_instruction
from factory.evaluation.heldout import HeldOutPairs
from factory.lora.adapters import LoraLayout, count_adapter_params, layout_of_adapter, parse_groups, wrap
from factory.lora.options import FinetuneOptions
from factory.lora.trials import short_run, zero_shot

PROBE_DIR = "_probe"  # <workspace>/loras/_probe/<base name>/probe.json (not a concept)


def probe_path(workspace: Workspace, base: BaseGAN) -> Path:
    return workspace.lora(PROBE_DIR) / base.name / "probe.json"


def search_settings(base: BaseGAN, opts: FinetuneOptions) -> TrainSettings:
    """The training settings of every probe and rank-search run."""
    return opts.train_settings(base, opts.search_steps, None)


def plan_pairs(data_dir: Path, base: BaseGAN, opts: FinetuneOptions) -> dict[str, Any]:
    """Training pairs (all of the train split, or K by ``opts.select``) and the validation pairs of searches."""
    from factory.lora.pair_selection import select_pairs, train_ids, validation_split

    all_ids = train_ids(data_dir)
    fit, val = validation_split(data_dir, seed=opts.seed)
    plan = {"available": len(all_ids), "k": opts.pairs, "method": opts.select if opts.pairs else "all",
            "validation": val, "validation_rule": "whole train photos held out (>= 15% of train pairs); "
            "used only to score probe and rank-search runs"}
    if opts.pairs is None:
        plan.update(train=all_ids, search=fit)
        return plan
    model = base.model if opts.select == "cluster" else None
    plan["train"] = select_pairs(data_dir, opts.pairs, opts.select, model, all_ids, opts.seed)
    plan["search"] = select_pairs(data_dir, min(opts.pairs, len(fit)), opts.select, model, fit, opts.seed)
    return plan


def plan_layers(workspace: Workspace, concept: str, base: BaseGAN, opts: FinetuneOptions, pairs: dict,
                out_dir: Path, quiet: bool) -> dict[str, Any]:
    """The adapted groups: ``--layers``, the base's probe table, or a probe on this concept."""
    if opts.layers not in (None, "auto"):
        return {"groups": parse_groups(opts.layers), "source": "explicit (--layers)"}
    from factory.lora.probe import AUTO_RULE, probe_layers, probe_summary, write_probe

    table = Path(opts.probe_table) if opts.probe_table else probe_path(workspace, base)
    if table.is_file():
        probe = json.loads(table.read_text(encoding="utf-8"))
        if probe.get("base_sha256") != base.sha256:
            raise FactoryError(f"{table}: measured on another version of the base {base.folder}; rerun "
                               "`factory lora probe ...` for this base or pass --layers GROUPS")
        return {"groups": probe["chosen"], "source": f"auto: probe table {table} "
                f"(concepts {', '.join(probe['concepts'])})", "rule": probe["rule"], "probe": probe_summary(probe)}
    if opts.probe_table:
        raise FactoryError(f"--probe-table {table}: no such file")
    probe = probe_layers(base, [workspace.data(concept)], search_settings(base, opts), workspace.text_cache,
                         rank=opts.probe_rank, fraction=opts.auto_fraction, seed=opts.seed,
                         ids={concept: pairs["search"]}, quiet=quiet, bias=opts.bias())
    write_probe(probe, out_dir / "probe")
    return {"groups": probe["chosen"], "source": f"auto: probed on this concept (no probe table at {table}; "
            f"run `factory lora probe` to share one across concepts)", "rule": AUTO_RULE.format(
                frac=opts.auto_fraction), "probe": probe_summary(probe)}


def size_budget(base: BaseGAN, max_fraction: float | None) -> Callable[[LoraLayout], bool] | None:
    """``fits(layout)``: the layout's adapter is at most ``max_fraction`` of the generator's parameters."""
    if not max_fraction:
        return None
    from base_gan.complexity import count_params

    total = count_params(base.model)
    return lambda layout: count_adapter_params(wrap(base.copy(), layout)) <= max_fraction * total


def plan_ranks(base: BaseGAN, data_dir: Path, groups: list[str], opts: FinetuneOptions, pairs: dict,
               text_cache: Path | None, quiet: bool) -> dict[str, Any]:
    """One rank per group: ``--rank N`` or the rank search on short runs."""
    if opts.rank not in (None, "auto"):
        r = int(opts.rank)
        return {"mode": "explicit (--rank)", "ranks": dict.fromkeys(groups, r), "bias": opts.bias()}
    from tqdm import tqdm

    from factory.lora.rank_search import search_ranks

    val = HeldOutPairs(data_dir, split="train", ids=pairs["validation"])
    settings = search_settings(base, opts)
    zero = zero_shot(base, concept_instruction(data_dir), val, text_cache)
    n = len(opts.rank_candidates) * (1 + (len(groups) if opts.rank_mode == "group" and len(groups) > 1 else 0))
    with tqdm(total=n, desc="rank search", unit="run", disable=quiet, leave=False) as bar:
        def show(row: dict) -> None:
            bar.update(1)
            bar.set_postfix(rank=row["rank"], psnr=f"{row['psnr']:.2f}")

        result = search_ranks(lambda lay: short_run(base, data_dir, lay, pairs["search"], val, settings, text_cache),
                              groups, opts.rank_candidates, opts.rank_tolerance, opts.rank_mode, on_row=show,
                              bias=opts.bias(), fits=size_budget(base, opts.max_fraction))
    result["max_fraction"] = opts.max_fraction
    result["validation_zero_shot_psnr"] = zero["psnr"]
    result["search_steps"] = opts.search_steps
    return result


def make_plan(workspace: Workspace, concept: str, base: BaseGAN, opts: FinetuneOptions, out_dir: Path,
              quiet: bool = False) -> dict[str, Any]:
    """Resolve pairs, layers and ranks (running the probe / rank search when asked to)."""
    data_dir = workspace.data(concept)
    started = time.perf_counter()
    plan: dict[str, Any] = {"pairs": plan_pairs(data_dir, base, opts)}
    if opts.kind == "adapter":
        init_dir = Path(opts.init)
        layout = layout_of_adapter(init_dir)
        _check_matches(layout, opts)
        plan.update(init_adapter=str(init_dir.resolve()), layout=layout_dict(layout),
                    layers={"groups": layout.groups, "source": f"the init adapter's ({init_dir})"},
                    rank={"mode": "the init adapter's", "ranks": layout.ranks})
    elif opts.kind == "base":
        plan["layers"] = plan_layers(workspace, concept, base, opts, plan["pairs"], out_dir, quiet)
        plan["rank"] = plan_ranks(base, data_dir, plan["layers"]["groups"], opts, plan["pairs"],
                                  workspace.text_cache, quiet)
        plan["layout"] = layout_dict(LoraLayout(plan["layers"]["groups"], ranks=plan["rank"]["ranks"],
                                                bias=opts.bias()))
    plan["search_seconds"] = round(time.perf_counter() - started, 1)
    return plan


def layout_dict(layout: LoraLayout) -> dict[str, Any]:
    from factory.core.configs import to_dict

    return to_dict(layout)


def _check_matches(layout: LoraLayout, opts: FinetuneOptions) -> None:
    if opts.layers not in (None, "auto") and parse_groups(opts.layers) != layout.groups:
        raise FactoryError(f"--layers {opts.layers} differs from the init adapter's groups {','.join(layout.groups)}")
    if opts.rank not in (None, "auto") and any(layout.rank_of(g) != int(opts.rank) for g in layout.groups):
        raise FactoryError(f"--rank {opts.rank} differs from the init adapter's ranks {layout.ranks}")
    if opts.lora_bias is not None and opts.lora_bias != layout.bias:
        raise FactoryError(f"--{'' if opts.lora_bias else 'no-'}lora-bias differs from the init adapter's "
                           f"(lora_bias {str(layout.bias).lower()})")
