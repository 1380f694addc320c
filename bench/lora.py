"""Benchmark: per-concept LoRA on the frozen base vs full training from scratch (issue 4).

On classic concepts held OUT of the base's training, at 128 px on this machine, writes
``bench/results/lora.{json,md}`` (+ curve PNGs in ``bench/results/lora/``):

1. adapter size as a fraction of the generator (parameters and file bytes; goal <= 2%);
2. held-out (test split) PSNR of LoRA-from-base vs the same architecture trained from scratch at
   equal wall-clock training time, with both curves (PSNR vs seconds, evaluation time excluded);
3. the wall time each needs to reach the PSNR scratch has at the end of its budget, and the ratio
   (E2GAN: 3.3x faster than pix2pix);
4. test PSNR against K in {25, 50, 100, 200} training pairs, clustered vs random selection (equal
   steps for every run).

The layer probe (``--layers auto``) runs once on the held-out concepts' validation pairs and its
table is written beside the results; ranks are searched per concept (``--rank auto``). Search time
is reported separately from training time. Every run is skipped when its outputs exist, so an
interrupted benchmark resumes.

    # full run (trains a base first; about 2 h on 2 idle cores, see --help for the budgets)
    python bench/lora.py
    # reuse a trained base (its training.json lists the concepts it was trained on)
    python bench/lora.py --base-from factory-workspace/base/default
    # smoke (a couple of minutes)
    python bench/lora.py --smoke
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

from concepts.cards import find_card, list_cards
from factory.core.atomic import atomic_write_json, atomic_write_png, atomic_write_text
from factory.core.workspace import Workspace
from factory.evaluation.curves import time_to_reach

HELDOUT = ["autumn", "watercolor", "cyanotype"]
BASE_AUTO_K = 12


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workspace", type=Path, default=Path("bench/work/lora"))
    ap.add_argument("--out", type=Path, default=Path("bench/results"))
    ap.add_argument("--heldout", default=",".join(HELDOUT), help="classic concepts never seen by the base")
    ap.add_argument("--k-concepts", type=int, default=2, help="how many of the held-out concepts run the K sweep")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--pairs", type=int, default=270, help="pairs synthesized per concept (7/9 are train)")
    ap.add_argument("--base-from", type=Path, help="an existing base folder (else one is trained here)")
    ap.add_argument("--base-concepts", default=f"auto:{BASE_AUTO_K}",
                    help="A,B,C or auto:K (k-means over the classic cards' text, held-out ones excluded)")
    ap.add_argument("--base-minutes", type=float, default=30.0)
    ap.add_argument("--ngf", type=int, default=32)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--layers", default="auto", help="auto (layer probe) or groups")
    ap.add_argument("--rank", default="auto", help="auto (rank search) or N")
    ap.add_argument("--probe-concepts", type=int, default=2, help="held-out concepts the probe runs on")
    ap.add_argument("--probe-steps", type=int, default=60)
    ap.add_argument("--search-steps", type=int, default=100)
    ap.add_argument("--max-fraction", type=float, default=0.02,
                    help="rank search skips adapters larger than this share of the generator (0: no budget)")
    ap.add_argument("--minutes", type=float, default=6.0, help="training budget of EACH of LoRA and scratch")
    ap.add_argument("--eval-every", type=int, default=25)
    ap.add_argument("--lora-lr", type=float, help="default: factory.lora.finetune.ADAPTER_LR")
    ap.add_argument("--k-values", default="25,50,100,200")
    ap.add_argument("--k-steps", type=int, default=200, help="steps of every K-sweep run (equal for all)")
    ap.add_argument("--e2gan-layers", action="store_true",
                    help="also train LoRA on E2GAN's layer set for the same budget (comparison)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's; use 1 on busy cores)")
    ap.add_argument("--smoke", action="store_true", help="tiny settings to check the script end to end")
    args = ap.parse_args()
    if args.smoke:
        args.workspace = Path("bench/work/lora-smoke")
        args.out = args.out / "smoke"
        args.size, args.ngf, args.pairs, args.batch = 32, 8, 36, 4
        args.heldout, args.k_concepts, args.probe_concepts = "autumn,watercolor", 1, 1
        args.base_concepts, args.base_minutes = "sepia,negative", 0.25
        args.probe_steps, args.search_steps, args.minutes, args.eval_every = 2, 2, 0.1, 4
        args.k_values, args.k_steps = "4,8", 3
    return args


# -- data and base ----------------------------------------------------------------------------------
def synth(ws: Workspace, concepts: list[str], pairs: int, size: int, seed: int) -> None:
    """The first ``pairs`` pairs of every concept (its card's own teacher; kept when already there)."""
    from factory.data.card_pairs import PhotoCache, TeacherCache, make_pairs

    teachers, photos = TeacherCache(), PhotoCache()
    for name in concepts:
        make_pairs(ws, find_card(name), pairs, size, seed, teachers=teachers, photos=photos)


def base_concepts(args, ws: Workspace, heldout: list[str]) -> list[str]:
    if not args.base_concepts.startswith("auto:"):
        return [find_card(c).name for c in args.base_concepts.split(",")]
    from base_gan.concept_selection import representative_concepts
    from factory.text.encoder import TextEncoder

    pool = [c for c in list_cards() if c.teacher.kind == "classic" and c.name not in heldout]
    emb = TextEncoder.from_name("minilm", cache_dir=ws.text_cache).pooled([c.instruction for c in pool]).numpy()
    return representative_concepts([c.name for c in pool], emb, int(args.base_concepts[5:]), seed=args.seed)


def _generator_spec(folder: Path) -> dict:
    """The generator a base was trained as (``TrainSettings.generator``), else its architecture and config."""
    from base_gan.models import load_model, model_spec, read_training

    return read_training(folder).get("settings", {}).get("generator") or model_spec(load_model(folder))


def ensure_base(args, ws: Workspace, heldout: list[str]) -> tuple[Path, dict]:
    from base_gan.models import is_model_folder, read_training
    from base_gan.train import Trainer, TrainSettings

    if args.base_from:
        folder = args.base_from
        if not is_model_folder(folder):
            raise SystemExit(f"--base-from {folder}: not a trained base (a diffusers model folder)")
        meta = read_training(folder)
        overlap = sorted(set(meta.get("concepts", [])) & set(heldout))
        if overlap:
            raise SystemExit(f"--base-from {folder} was trained on {', '.join(overlap)}: not held out")
        return folder, {"reused": str(folder), "concepts": meta.get("concepts"), "generator": _generator_spec(folder)}
    folder = ws.base("bench-base")
    if is_model_folder(folder):
        meta = read_training(folder)
        return folder, {"trained_here": True, "concepts": meta["concepts"], "generator": _generator_spec(folder),
                        "steps": meta.get("steps_done")}
    concepts = base_concepts(args, ws, heldout)
    synth(ws, concepts, args.pairs, args.size, args.seed)
    settings = TrainSettings(generator={"arch": "e2gan", "ngf": args.ngf, "image_size": args.size},
                             steps=10**9, seconds=args.base_minutes * 60, batch=args.batch, seed=args.seed,
                             decay_from=1.0, checkpoint_every=500)
    trainer = Trainer(folder, [ws.data(c) for c in concepts], settings, text_cache=ws.text_cache)
    if trainer.resume():
        log(f"base: resuming from step {trainer.state.step}")
    log(f"base: training on {', '.join(concepts)} for {args.base_minutes} min")
    trainer.train()
    trainer.save_final({"concepts": concepts, "instructions": trainer.data.instructions})
    return folder, {"trained_here": True, "concepts": concepts, "generator": settings.generator,
                    "steps": trainer.state.step, "seconds": round(trainer.state.seconds, 1)}


# -- runs ---------------------------------------------------------------------------------------------
def run(ws: Workspace, concept: str, base_dir: Path, out_dir: Path, **opts) -> dict:
    """One ``finetune`` into ``out_dir`` (skipped when its metrics.json exists); returns its metrics."""
    from factory.pipeline.steps import finetune

    done = out_dir / "metrics.json"
    if done.is_file():
        return json.loads(done.read_text())
    log(f"{concept}: {out_dir.name} ...")
    m = finetune(concept, workspace=ws, base=base_dir, out_dir=out_dir, quiet=True, log=log, **opts)
    log(f"{concept}: {out_dir.name}: test PSNR {m['test']['student']['psnr']:.2f} dB after "
        f"{m['training']['steps']} steps / {m['training']['seconds']:.0f} s")
    return m


def seconds_to_reach(curve: list[dict], target: float) -> float | None:
    """Training seconds at which the curve first reaches ``target`` PSNR (linear between points), or None."""
    r = time_to_reach(curve, target)
    return r["interpolated"] if r["reached"] else None


def speedup(t_lora: float | None, t_scratch: float | None) -> float | str | None:
    """scratch's seconds / LoRA's seconds to scratch's final PSNR ("base" when the base alone reaches it)."""
    if t_scratch is not None and t_scratch <= 0:
        return "undefined (scratch ended no better than its start)"
    if t_lora is None or not t_scratch:
        return None
    return "base already there" if t_lora <= 0 else round(t_scratch / t_lora, 1)


def probe(args, ws: Workspace, base_dir: Path, heldout: list[str], common: dict) -> dict | None:
    from base_gan.models import BaseGAN
    from factory.lora.finetune import FinetuneOptions
    from factory.lora.plan import probe_path
    from factory.lora.probe import probe_layers, write_probe

    if args.layers != "auto":
        return None
    base = BaseGAN.load(base_dir).require_e2gan()
    path = probe_path(ws, base)
    if path.is_file():
        return json.loads(path.read_text())
    concepts = heldout[: args.probe_concepts]
    log(f"layer probe on {', '.join(concepts)} ({args.probe_steps} steps per run)")
    settings = FinetuneOptions(**common).train_settings(base, args.probe_steps, None)
    result = probe_layers(base, [ws.data(c) for c in concepts], settings, ws.text_cache, seed=args.seed,
                          quiet=False)
    write_probe(result, path.parent)
    return result


def main() -> None:
    from base_gan.models import WEIGHTS
    from factory.core.plot import line_chart
    from factory.evaluation.curves import read_curve
    from factory.lora.finetune import ADAPTER_LR

    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    ws = Workspace(args.workspace)
    heldout = [find_card(c).name for c in args.heldout.split(",")]
    base_dir, base_info = ensure_base(args, ws, heldout)
    synth(ws, heldout, args.pairs, args.size, args.seed)
    common = {"batch": args.batch, "seed": args.seed, "eval_every": args.eval_every,
              "search_steps": args.search_steps}
    lora_lr = args.lora_lr or ADAPTER_LR
    probe_result = probe(args, ws, base_dir, heldout, dict(common, lr=lora_lr))
    runs_root = ws.root / "runs"
    budget = args.minutes * 60
    k_values = [int(k) for k in args.k_values.split(",")]

    rows, sizes, curves_png = [], [], {}
    for concept in heldout:
        d = runs_root / concept
        lora = run(ws, concept, base_dir, d / "lora", init="base", layers=args.layers, rank=args.rank,
                   max_fraction=args.max_fraction or None, steps=10**9, seconds=budget, lr=lora_lr, **common)
        scratch = run(ws, concept, base_dir, d / "scratch", init="scratch", steps=10**9, seconds=budget, **common)
        series = {"LoRA on base": read_curve(d / "lora" / "curve.csv"),
                  "scratch (same arch)": read_curve(d / "scratch" / "curve.csv")}
        extra = {}
        if args.e2gan_layers:
            from factory.lora.probe import E2GAN_GROUPS

            rank = max(lora["layout"]["ranks"].values())
            e2 = run(ws, concept, base_dir, d / "lora-e2gan-layers", init="base", layers=",".join(E2GAN_GROUPS),
                     rank=rank, steps=10**9, seconds=budget, lr=lora_lr, **common)
            series["LoRA, E2GAN layers"] = read_curve(d / "lora-e2gan-layers" / "curve.csv")
            extra = {"e2gan_layers_psnr": round(e2["test"]["student"]["psnr"], 2),
                     "e2gan_layers_params": e2["adapter_params"]}
        target = series["scratch (same arch)"][-1]["psnr"]  # scratch's PSNR at the end of its budget
        t_lora = seconds_to_reach(series["LoRA on base"], target)
        t_scratch = seconds_to_reach(series["scratch (same arch)"], target)
        rows.append({
            "concept": concept, "budget_seconds": budget, "target_psnr": round(target, 2),
            "lora_psnr": round(lora["test"]["student"]["psnr"], 2),
            "scratch_psnr": round(scratch["test"]["student"]["psnr"], 2),
            "base_zero_shot_psnr": round(lora["test"]["base_zero_shot"]["psnr"], 2),
            "identity_psnr": round(lora["test"]["identity"]["psnr"], 2),
            "lora_steps": lora["training"]["steps"], "scratch_steps": scratch["training"]["steps"],
            "lora_seconds_to_target": None if t_lora is None else round(t_lora, 1),
            "scratch_seconds_to_target": None if t_scratch is None else round(t_scratch, 1),
            "speedup": speedup(t_lora, t_scratch),
            "lora_search_seconds": lora["search_seconds"], "layout": lora["layout"], **extra,
        })
        bytes_adapter = (d / "lora" / "adapter_model.safetensors").stat().st_size
        bytes_gen = (base_dir / WEIGHTS).stat().st_size
        sizes.append({"concept": concept, "adapter_params": lora["adapter_params"],
                      "generator_params": lora["generator_params"],
                      "fraction": round(lora["adapter_fraction"], 5), "adapter_bytes": bytes_adapter,
                      "generator_bytes": bytes_gen, "bytes_fraction": round(bytes_adapter / bytes_gen, 5),
                      "layout": lora["layout"]})
        png = args.out / "lora" / f"curve-{concept}.png"
        atomic_write_png(png, line_chart({k: ([r["seconds"] for r in v], [r["psnr"] for r in v])
                                          for k, v in series.items()},
                                         title=f"{concept} (held out): test PSNR vs training seconds",
                                         xlabel="training seconds", ylabel="PSNR dB",
                                         hlines={"identity": rows[-1]["identity_psnr"],
                                                 "scratch final": target}))
        curves_png[concept] = str(png)

    k_rows = []
    for concept in heldout[: args.k_concepts]:
        available = len(json.loads((runs_root / concept / "lora" / "metrics.json").read_text())["pairs"]["train"])
        layout = json.loads((runs_root / concept / "lora" / "metrics.json").read_text())["layout"]
        groups, ranks = ",".join(layout["groups"]), sorted(set(layout["ranks"].values()))
        rank = ranks[0] if len(ranks) == 1 else max(ranks)
        for k in k_values:
            if k > available:
                log(f"{concept}: K={k} skipped ({available} train pairs)")
                continue
            for method in ("cluster", "random"):
                m = run(ws, concept, base_dir, runs_root / concept / f"k{k}-{method}", init="base", layers=groups,
                        rank=rank, pairs=k, select=method, steps=args.k_steps, lr=lora_lr,
                        **dict(common, eval_every=args.k_steps))
                k_rows.append({"concept": concept, "k": k, "select": method,
                               "psnr": round(m["test"]["student"]["psnr"], 2),
                               "ssim": round(m["test"]["student"]["ssim"], 4), "steps": m["training"]["steps"],
                               "seconds": m["training"]["seconds"]})

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    summary = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"), "commit": commit,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, CPU",
        "command": "python bench/lora.py " + ("--smoke" if args.smoke else " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()
            if k not in ("workspace", "out", "smoke") and v not in (None, False))),
        "size": args.size, "heldout": heldout, "base": base_info, "lora_lr": lora_lr,
        "max_fraction": args.max_fraction or None,
        "probe": None if probe_result is None else {
            k: probe_result[k] for k in ("concepts", "ranking", "all_groups_gain", "prefix", "chosen", "e2gan",
                                         "rule", "note", "steps", "rank")},
        "adapter_size": sizes, "lora_vs_scratch": rows, "k_sweep": {"steps": args.k_steps, "rows": k_rows},
        "curves": curves_png, "total_seconds": round(time.perf_counter() - t_start, 1),
    }
    # a resumed invocation reuses finished runs: keep the wall time of the invocation that computed them
    previous = json.loads((args.out / "lora.json").read_text()) if (args.out / "lora.json").is_file() else {}
    summary["computed_seconds"] = max(summary["total_seconds"], previous.get("computed_seconds", 0.0)
                                      if previous.get("command") == summary["command"] else 0.0)
    atomic_write_json(args.out / "lora.json", summary)
    atomic_write_text(args.out / "lora.md", markdown(summary))
    print(markdown(summary))


def markdown(s: dict) -> str:
    L = [f"# LoRA benchmark ({s['size']} px, {s['date']}, commit {s['commit']}, {s['machine']})", "",
         f"Command: `{s['command']}` ({s.get('computed_seconds', s['total_seconds']) / 60:.1f} min in all"
         + (f"; this invocation {s['total_seconds'] / 60:.1f} min, resuming finished runs"
            if s.get("computed_seconds", 0) > s["total_seconds"] + 60 else "") + ")", "",
         f"Base: {s['base'].get('generator')} trained on {', '.join(s['base'].get('concepts') or [])}; "
         f"held-out concepts: {', '.join(s['heldout'])}. LoRA lr {s['lora_lr']}.", ""]
    p = s["probe"]
    if p:
        L += ["## Layer probe (validation gain of adapting one group alone)", "",
              f"On {', '.join(p['concepts'])}, rank {p['rank']}, {p['steps']} steps per run.", "",
              "| group | mean gain dB | params |", "| --- | ---: | ---: |"]
        L += [f"| {r['group']} | {r['mean_gain_db']:+.3f} | {r['adapter_params']} |" for r in p["ranking"]]
        e = p["e2gan"]
        L += ["", f"All groups: {p['all_groups_gain']:+.3f} dB. Chosen (rule: {p['rule']}): "
              f"**{','.join(p['chosen'])}**; {p['note']}.",
              f"E2GAN's set ({','.join(e['groups'])}): "
              + ("not measured" if e["gain_db"] is None else f"{e['gain_db']:+.3f} dB") + ".", ""]
    budget = (f"rank search limited to adapters <= {100 * s['max_fraction']:.1f}% of the generator"
              if s.get("max_fraction") else "no size budget in the rank search")
    L += ["## Adapter size", "", f"({budget})", "",
          "| concept | layout | adapter params | generator params | fraction | file bytes fraction |",
          "| --- | --- | ---: | ---: | ---: | ---: |"]
    for r in s["adapter_size"]:
        lay = ", ".join(f"{g}@{k}" for g, k in r["layout"]["ranks"].items())
        L.append(f"| {r['concept']} | {lay} | {r['adapter_params']} | {r['generator_params']} | "
                 f"{100 * r['fraction']:.2f}% | {100 * r['bytes_fraction']:.2f}% |")
    L += ["", "## LoRA on the base vs training from scratch, equal wall-clock training time", "",
          "| concept | budget s | identity | base zero-shot | LoRA | scratch | LoRA s to scratch's final | "
          "scratch s to its final | speed-up | LoRA search s |",
          "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    na = lambda v, unit="": "not reached" if v is None else f"{v}{unit}"
    for r in s["lora_vs_scratch"]:
        L.append(f"| {r['concept']} | {r['budget_seconds']:.0f} | {r['identity_psnr']} | {r['base_zero_shot_psnr']} | "
                 f"{r['lora_psnr']} | {r['scratch_psnr']} | {na(r['lora_seconds_to_target'])} | "
                 f"{na(r['scratch_seconds_to_target'])} | "
                 f"{na(r['speedup'], 'x' if isinstance(r['speedup'], float) else '')} | {r['lora_search_seconds']} |")
    L += ["", "PSNR in dB on the test split (test photos never used in training or selection). Training seconds "
          "exclude evaluation; the LoRA's layer probe and rank search are listed separately.", "",
          f"## Quality vs number of training pairs K ({s['k_sweep']['steps']} steps each)", "",
          "| concept | K | cluster PSNR | random PSNR |", "| --- | ---: | ---: | ---: |"]
    by = {}
    for r in s["k_sweep"]["rows"]:
        by.setdefault((r["concept"], r["k"]), {})[r["select"]] = r["psnr"]
    for (c, k), v in by.items():
        L.append(f"| {c} | {k} | {v.get('cluster')} | {v.get('random')} |")
    return "\n".join(L) + "\n"


if __name__ == "__main__":
    main()
