"""One benchmark table, side by side with the published systems' claims (issue 9).

Uses the shipped pretrained base and weight generator (``factory pretrain info``) and only classic
concepts held out of both (and of the weight dataset), with scikit-image's test photos for every
quality figure. Writes ``<out>/run_all.json``, the plots beside it and ``BENCHMARKS.md``:

1. time to quality for a new concept: pix2pix ResNet-9 from scratch, our architecture from
   scratch, base + zero-init LoRA (E2GAN), base + retrieved LoRA, base + generated LoRA (ours); the
   wall time each needs to reach pix2pix's final PSNR, as a speed-up over pix2pix's budget;
2. quality (PSNR / SSIM against the teacher on held-out photos, LPIPS when its weights are
   available offline) next to the identity baseline;
3. sizes: parameters, adapter bytes per concept, editor bytes fp32 / int8;
4. editor latency at 256x256 on this CPU, fp32 and int8, next to pix2pix ResNet-9;
5. weight generation: seconds per adapter, distance to the nearest training adapter vs the typical
   distance between training adapters;
6. scaling: fine-tune step time, adapter size and editor latency at 128/256/512 px, and the weight
   generator's held-out quality against the number of training concepts (10, 20, 30).

    python bench/run_all.py            # full (~60-75 min on this 2-core machine)
    python bench/run_all.py --quick    # smoke (< 5 min): same code, tiny budgets, separate outputs
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import torch

from concepts.cards import find_card
from factory.core.atomic import atomic_write_json, atomic_write_png, atomic_write_text
from factory.core.errors import FactoryError
from factory.core.workspace import Workspace
from factory.evaluation.curves import time_to_reach

HERE = Path(__file__).resolve().parent

FULL = dict(concepts=2, pairs=120, p2p_seconds=300.0, scratch_seconds=300.0, lora_seconds=120.0, eval_every=20,
            p2p_eval_every=40, sizes="128,256,512", wg_counts="10,20,30", wg_seconds=240.0, latency_runs=30,
            workspace="bench/work/run_all", out="bench/results/all", doc="BENCHMARKS.md")
QUICK = dict(concepts=1, pairs=24, p2p_seconds=12.0, scratch_seconds=12.0, lora_seconds=8.0, eval_every=5,
             p2p_eval_every=5, sizes="64,128", wg_counts="4,8", wg_seconds=8.0, latency_runs=5,
             workspace="bench/work/run_all-quick", out="bench/results/all-quick", doc=None)
METHODS = ("pix2pix", "scratch", "zero", "retrieval", "generated")
LABELS = {"pix2pix": "pix2pix ResNet-9 from scratch", "scratch": "our architecture from scratch",
          "zero": "base + zero-init LoRA (E2GAN)", "retrieval": "base + retrieved LoRA",
          "generated": "base + generated LoRA (ours)"}
PUBLISHED = {"zero": "3.3x (E2GAN)", "generated": "15.2x (denoised weights)"}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def bench_module(name: str):
    """Import bench/<name>.py (bench/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", HERE / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny budgets (< 5 min), outputs in bench/results/all-quick")
    for k, v in FULL.items():
        ap.add_argument(f"--{k.replace('_', '-')}", type=type(v) if v is not None else str, default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    preset = QUICK if args.quick else FULL
    for k, v in preset.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    args.workspace, args.out = Path(args.workspace), Path(args.out)
    return args


# -- shared inputs ------------------------------------------------------------------------------------
def shipped() -> tuple[Path, Path, dict]:
    from factory.pipeline.assets import manifest, pretrained_base, pretrained_weightgen

    m = manifest()
    if m is None or pretrained_base() is None or pretrained_weightgen() is None:
        raise FactoryError("no shipped pretrained assets (factory/pretrained/); make them with "
                           "`factory pretrain train --install`")
    return pretrained_base(), pretrained_weightgen(), m


def synth(ws: Workspace, concepts: list[str], pairs: int, size: int, seed: int) -> None:
    """The first ``pairs`` pairs of every concept (its card's own teacher; kept when already there)."""
    from factory.data.card_pairs import PhotoCache, TeacherCache, make_pairs

    teachers, photos = TeacherCache(), PhotoCache()
    for c in concepts:
        make_pairs(ws, find_card(c), pairs, size, seed, teachers=teachers, photos=photos)


# -- 1 + 2. time to quality and quality ---------------------------------------------------------------
def time_to_quality(args, ws: Workspace, base_dir: Path, wg_dir: Path, dataset, concept: str,
                    wgb) -> dict:
    """Curves of the five methods on one held-out concept (each resumes/skips when already done)."""
    from factory.lora.adapters import layout_of_adapter
    from weight_generator.baselines import retrieve_by_text, save_vector_adapter
    from weight_generator.sample import WeightGenerator

    text = find_card(concept).instruction
    run = args.workspace / "runs" / concept
    gen = WeightGenerator.load(wg_dir, text_cache=ws.text_cache)
    gen.encode_texts([text])
    t0 = time.perf_counter()
    generated = gen.sample_to_folder(text, run / "init-generated", steps=1, seed=args.seed)
    init_cost = {"generated": time.perf_counter() - t0, "zero": 0.0}
    t0 = time.perf_counter()
    i, sim = retrieve_by_text(text, dataset, cache_dir=ws.text_cache)
    retrieved = save_vector_adapter(dataset.weights[i], dataset, run / "init-retrieval")
    init_cost["retrieval"] = time.perf_counter() - t0
    layout = layout_of_adapter(generated)
    ns = SimpleNamespace(layers=",".join(layout.groups), rank=layout.max_rank, batch=8, seed=args.seed,
                         curve_seconds=args.lora_seconds, eval_every=args.eval_every, p2p_arch="pix2pix",
                         p2p_minutes=args.p2p_seconds / 60,
                         size=args.size, p2p_batch=4, p2p_eval_every=args.p2p_eval_every)
    curves = {}
    for name, init in (("zero", "base"), ("retrieval", str(retrieved)), ("generated", str(generated))):
        log(f"{concept}: {LABELS[name]}")
        curves[name] = wgb.curve_run(ns, ws, base_dir, concept, init, run / name)
    log(f"{concept}: {LABELS['pix2pix']} ({args.p2p_seconds:.0f} s)")
    curves["pix2pix"] = wgb.pix2pix_run(ns, ws, base_dir, concept, run / "pix2pix")
    log(f"{concept}: {LABELS['scratch']} ({args.scratch_seconds:.0f} s)")
    ns_scratch = SimpleNamespace(**{**vars(ns), "p2p_arch": "e2gan", "p2p_minutes": args.scratch_seconds / 60})
    curves["scratch"] = wgb.pix2pix_run(ns_scratch, ws, base_dir, concept, run / "scratch")
    target, budget = curves["pix2pix"][-1]["psnr"], curves["pix2pix"][-1]["seconds"]
    reach = {m: time_to_reach(curves[m], target, init_cost.get(m, 0.0)) for m in METHODS}
    speed = {m: (budget / r["interpolated"] if r["reached"] and r["interpolated"] > 0 else
                 ("at step 0" if r.get("reached") else None)) for m, r in reach.items()}
    from factory.evaluation.heldout import HeldOutPairs

    ident = HeldOutPairs(ws.data(concept), "test").identity()
    return {"concept": concept, "instruction": text, "retrieved": dataset.concepts[i], "similarity": round(sim, 3),
            "init_seconds": {k: round(v, 3) for k, v in init_cost.items()}, "curves": curves,
            "target_psnr": target, "pix2pix_seconds": budget, "time_to_reach": reach, "speedup": speed,
            "identity": ident, "generated_adapter": str(generated), "adapter_layout": layout.describe()}


def lpips_note() -> str:
    from base_gan.losses import make_lpips

    fn, note = make_lpips()
    return "measured" if fn is not None else f"not measured: {note}"


# -- 3 + 4. sizes and latency -------------------------------------------------------------------------
def export_and_time(args, ws: Workspace, base_dir: Path, concept: str) -> dict:
    """Export the generated-then-fine-tuned editor of ``concept`` at 256 px and time it next to pix2pix."""
    from base_gan.complexity import count_params
    from base_gan.models import BaseGAN
    from base_gan.pix2pix import build_pix2pix
    from factory.export.editor import ExportRequest, export_editor, pix2pix_reference
    from factory.runtime.latency import benchmark

    adapter = args.workspace / "runs" / concept / "generated"
    out = ws.editor(concept)
    base = BaseGAN.load(base_dir)
    if not (out / "card.json").is_file():
        req = ExportRequest(concept=concept, base=base, adapter_dir=adapter, adapter_note="generated + fine-tuned",
                            instruction=find_card(concept).instruction, data_dir=ws.data(concept), out_dir=out,
                            size=256, int8=True, text_cache=ws.text_cache)
        export_editor(req, log=lambda m: None)
    card = json.loads((out / "card.json").read_text())
    p2p = pix2pix_reference(args.workspace / "pix2pix-ref", 256)
    models = {"editor_fp32": out / "editor.onnx", "editor_int8": out / "editor.int8.onnx",
              "pix2pix_fp32": p2p["fp32"], "pix2pix_int8": p2p["int8"]}
    timings = benchmark(models, 256, threads=None, runs=args.latency_runs, warmup=3)
    metrics = json.loads((adapter / "metrics.json").read_text())
    return {"latency_ms_256": {k: round(v["per_image_ms"], 2) for k, v in timings.items()},
            "load_average": [round(v, 2) for v in os.getloadavg()],
            "params": {"generator": count_params(base.model), "pix2pix": count_params(build_pix2pix()),
                       "adapter": metrics["adapter_params"]},
            "adapter_fraction": metrics["adapter_fraction"],
            "bytes": {"adapter_model.safetensors": (adapter / "adapter_model.safetensors").stat().st_size,
                      **card["files"], "pix2pix.onnx": p2p["fp32"].stat().st_size,
                      "pix2pix.int8.onnx": p2p["int8"].stat().st_size},
            "int8_vs_fp32_db": card["checks"]["quality"]["int8_vs_fp32"]["mean_db"]}


# -- 5. weight generation -----------------------------------------------------------------------------
def weight_generation(args, ws: Workspace, wg_dir: Path, dataset, rows: list[dict]) -> dict:
    from weight_generator.baselines import distance_table
    from weight_generator.sample import WeightGenerator
    from weight_generator.tokenize import WeightTokenizer, flatten, read_adapter

    gen = WeightGenerator.load(wg_dir, text_cache=ws.text_cache)
    texts = [r["instruction"] for r in rows]
    gen.encode_texts(texts)
    gen.sample_blocks(texts[:1], steps=1, seed=0)
    times = []
    for rep in range(3):
        for i, t in enumerate(texts):
            t0 = time.perf_counter()
            gen.sample_blocks([t], steps=1, seed=rep * 100 + i)
            times.append(time.perf_counter() - t0)
    scale = WeightTokenizer.load(wg_dir).scale_vector()
    cands = {}
    for r in rows:
        tensors, _ = read_adapter(Path(r["generated_adapter"]))
        cands[r["concept"]] = flatten(tensors, dataset.layout).to(torch.float32)
    table = distance_table(cands, dataset, scale)
    return {"seconds_per_adapter": round(statistics.median(times), 3), "runs": len(times),
            "threads": torch.get_num_threads(), "typical": table["typical"], "rows": table["rows"]}


# -- 6. scaling ---------------------------------------------------------------------------------------
def step_seconds(ws: Workspace, base_dir: Path, concept: str, layout, size: int, steps: int = 4) -> float:
    """Median seconds of the fine-tune's own train step (``Trainer.train_step``: LoRA generator + PatchGAN,
    batch 8) on ``size`` px batches (the concept's pairs resized), after one warm-up step."""
    import torch.nn.functional as F

    from base_gan.models import BaseGAN
    from base_gan.train import Trainer
    from factory.lora.adapters import lora_parameters
    from factory.lora.finetune import FinetuneOptions
    from factory.lora.trials import adapted

    base = BaseGAN.load(base_dir).require_e2gan()
    model, _ = adapted(base, layout, None, seed=0)
    settings = FinetuneOptions().train_settings(base, steps=steps + 1, seconds=None)
    trainer = Trainer(args_tmp(ws) / f"step-{size}", [ws.data(concept)], settings, ws.text_cache, generator=model,
                      trainable=lora_parameters(model))
    real_batch = trainer._batch

    def resized(step: int) -> dict:
        b = real_batch(step)
        for k in ("source", "target"):
            b[k] = F.interpolate(b[k], size=(size, size), mode="bilinear", align_corners=False)
        return b

    trainer._batch = resized
    times = []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        trainer.train_step(i)
        if i:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def args_tmp(ws: Workspace) -> Path:
    return ws.root / "tmp"


def resolution_scaling(args, ws: Workspace, base_dir: Path, concept: str, layout) -> list[dict]:
    from factory.runtime.editor import Editor

    editor = Editor(ws.editor(concept) / "editor.onnx")
    editor8 = Editor(ws.editor(concept) / "editor.int8.onnx")
    adapter_bytes = (args.workspace / "runs" / concept / "generated" / "adapter_model.safetensors").stat().st_size
    rows = []
    for s in (int(v) for v in args.sizes.split(",")):
        log(f"scaling: {s} px")
        rows.append({"size": s, "step_seconds": round(step_seconds(ws, base_dir, concept, layout, s), 3),
                     "adapter_bytes": adapter_bytes,
                     "latency_ms_fp32": round(editor.latency(s, warmup=2, runs=args.latency_runs)["median_ms"], 2),
                     "latency_ms_int8": round(editor8.latency(s, warmup=2, runs=args.latency_runs)["median_ms"], 2)})
    return rows


def weightgen_scaling(args, ws: Workspace, base_dir: Path, wg_dir: Path, dataset, heldout: list[str],
                      wgb) -> list[dict]:
    """Held-out step-0 PSNR of the generated adapter against the number of training concepts (same
    settings as the shipped generator, equal wall-clock budgets)."""
    from base_gan.models import read_training
    from factory.core.configs import from_dict
    from weight_generator.sample import WeightGenerator
    from weight_generator.train import WeightGenSettings, WeightGenTrainer, is_weightgen

    settings = read_training(wg_dir)["settings"]
    rows = []
    for n in (int(v) for v in args.wg_counts.split(",")):
        n = min(n, len(dataset))
        out = ws.weightgen(f"scaling-{n}")
        if not is_weightgen(out):
            sub = dataset.subset(dataset.concepts[:n])
            s = from_dict(WeightGenSettings, {**settings, "steps": 10**9, "seconds": args.wg_seconds,
                                              "checkpoint_every": 10**6, "seed": args.seed})
            log(f"scaling: weight generator on {n} concepts for {args.wg_seconds:.0f} s")
            tr = WeightGenTrainer(out, sub, s, text_cache=ws.text_cache)
            tr.train()
            tr.save_final()
        gen = WeightGenerator.load(out, text_cache=ws.text_cache)
        psnrs = []
        for c in heldout:
            folder = gen.sample_to_folder(find_card(c).instruction, args.workspace / "scaling" / f"{n}-{c}",
                                          seed=args.seed)
            psnrs.append(wgb.adapter_psnr(ws, base_dir, folder, c))
        rows.append({"training_concepts": n, "step0_psnr_mean": round(statistics.mean(psnrs), 3),
                     "per_concept": dict(zip(heldout, [round(p, 3) for p in psnrs]))})
    return rows


# -- output -------------------------------------------------------------------------------------------
def _speed(v) -> str:
    if v is None:
        return "not reached"
    return v if isinstance(v, str) else f"{v:.1f}x"


def markdown(r: dict) -> str:
    q, sz, ttq = r["quick"], r["sizes"], r["time_to_quality"]
    L = [f"# editfactory benchmarks{' (QUICK smoke run: budgets too small to mean anything)' if q else ''}", "",
         f"Machine: {r['machine']}. Date: {r['date']}. Commit: `{r['commit']}`. Command: `{r['command']}` "
         f"({r['total_minutes']:.1f} min in all).", "",
         f"Held-out classic concepts (never in the base's, the weight dataset's or the weight generator's training): "
         f"{', '.join(x['concept'] for x in ttq)}; quality on scikit-image test photos never used for training "
         f"({r['size']} px). Shipped assets: `{r['shipped']['recipe']}`.", "",
         "## 1. Time to quality for a new concept", "",
         "Wall time (fine-tuning seconds on this CPU, evaluation excluded, the init's own cost included) to reach the "
         "held-out PSNR pix2pix-from-scratch has at the end of its budget, as a speed-up over that budget.", "",
         "| method | " + " | ".join(x["concept"] for x in ttq) + " | median | published |",
         "| --- | " + " | ".join("---:" for _ in ttq) + " | ---: | --- |"]
    for m in METHODS:
        vals = [x["speedup"][m] for x in ttq]
        nums = [v for v in vals if isinstance(v, (int, float))]
        med = ("at step 0" if all(v == "at step 0" for v in vals)
               else (f"{statistics.median(nums):.1f}x" if nums else "-"))
        if m == "pix2pix":
            cells = [f"budget {x['pix2pix_seconds']:.0f} s -> {x['target_psnr']:.2f} dB" for x in ttq]
            med = "1.0x"
        else:
            cells = [_speed(v) for v in vals]
        L.append(f"| {LABELS[m]} | " + " | ".join(cells) + f" | {med} | {PUBLISHED.get(m, '')} |")
    L += ["", "Where pix2pix's final PSNR is below what a method has before training (the base's zero-shot output, or "
          "even a random generator's), that method reaches it at once and its ratio only measures its init cost; "
          "the table below uses a target that is hard for every method instead.", "",
          "Wall time to reach our architecture-from-scratch's final PSNR (its budget / that time):", "",
          "| method | " + " | ".join(x["concept"] for x in ttq) + " |",
          "| --- | " + " | ".join("---:" for _ in ttq) + " |"]
    for m in METHODS:
        cells = []
        for x in ttq:
            target, budget = x["curves"]["scratch"][-1]["psnr"], x["curves"]["scratch"][-1]["seconds"]
            hit = time_to_reach(x["curves"][m], target, x["init_seconds"].get(m, 0.0))
            t = hit["interpolated"] if hit["reached"] else None
            cells.append("not in its budget" if t is None
                         else (f"{t:.0f} s ({budget / t:.1f}x)" if t > 0 else "at step 0"))
        L.append(f"| {LABELS[m]} | " + " | ".join(cells) + " |")
    L += ["", "## 2. Quality against the teacher (held-out photos)", "",
          f"Final PSNR (dB) / SSIM of each method at the end of its budget; LPIPS {r['lpips']}.", "",
          "| method | " + " | ".join(x["concept"] for x in ttq) + " |",
          "| --- | " + " | ".join("---:" for _ in ttq) + " |",
          "| identity (source unchanged) | " + " | ".join(f"{x['identity']['psnr']:.2f} / {x['identity']['ssim']:.3f}"
                                                     for x in ttq) + " |"]
    for m in METHODS:
        L.append(f"| {LABELS[m]} | " + " | ".join(f"{x['curves'][m][-1]['psnr']:.2f} / "
                                                  f"{x['curves'][m][-1]['ssim']:.3f} "
                                                  f"({x['curves'][m][-1]['seconds']:.0f} s)" for x in ttq) + " |")
    L.append("| base + generated LoRA at step 0 (no fine-tuning) | "
             + " | ".join(f"{x['curves']['generated'][0]['psnr']:.2f} / {x['curves']['generated'][0]['ssim']:.3f}"
                          for x in ttq) + " |")
    b = sz["bytes"]
    L += ["", "## 3. Size", "", "| what | ours | published |", "| --- | ---: | --- |",
          f"| generator parameters | {sz['params']['generator']:,} | pix2pix ResNet-9: {sz['params']['pix2pix']:,} |",
          f"| adapter parameters per concept | {sz['params']['adapter']:,} ({100 * sz['adapter_fraction']:.2f}% of the "
          f"generator) | about 0.09M, about 1% of the generator (E2GAN) |",
          f"| adapter file (safetensors) | {b['adapter_model.safetensors'] / 1e3:.1f} kB | |",
          f"| editor fp32 / int8 (ONNX) | {b['editor.onnx'] / 1e6:.2f} MB / {b['editor.int8.onnx'] / 1e6:.2f} MB | |",
          f"| pix2pix fp32 / int8 (ONNX) | {b['pix2pix.onnx'] / 1e6:.2f} MB / "
          f"{b['pix2pix.int8.onnx'] / 1e6:.2f} MB | |",
          "", "## 4. Editor latency at 256x256 (onnxruntime, this CPU, batch 1)", "",
          f"1-minute load average when timed: {sz['load_average'][0]}.", "",
          "| model | fp32 ms | int8 ms | published (iPhone 14) |", "| --- | ---: | ---: | --- |",
          f"| our editor | {sz['latency_ms_256']['editor_fp32']:.1f} | {sz['latency_ms_256']['editor_int8']:.1f} | "
          "15.5 ms (E2GAN) |",
          f"| pix2pix ResNet-9 | {sz['latency_ms_256']['pix2pix_fp32']:.1f} | "
          f"{sz['latency_ms_256']['pix2pix_int8']:.1f} | 21.0 ms |",
          "", "## 5. Weight generation", "",
          f"{r['weightgen']['seconds_per_adapter']:.3f} s per adapter (one-step sampling, "
          f"{r['weightgen']['threads']} CPU "
          "threads; the paper: 1.19 s on a GPU).", "",
          f"Typical distances between training adapters: nearest-neighbour median "
          f"{r['weightgen']['typical']['train_nearest_median']:.4f}, pairwise median "
          f"{r['weightgen']['typical']['train_pairwise_median']:.4f}.", "",
          "| held-out concept | nearest training adapter | distance | / typical nearest |",
          "| --- | --- | ---: | ---: |"]
    typ = r["weightgen"]["typical"]["train_nearest_median"]
    for row in r["weightgen"]["rows"]:
        L.append(f"| {row['candidate']} | {row['nearest_training']} | {row['distance_to_nearest']:.4f} | "
                 f"{row['distance_to_nearest'] / typ:.2f} |")
    L += ["", "## 6. Scaling", "",
          "| size px | fine-tune step s (batch 8) | adapter bytes | editor fp32 ms | editor int8 ms |",
          "| ---: | ---: | ---: | ---: | ---: |"]
    for row in r["scaling"]["resolution"]:
        L.append(f"| {row['size']} | {row['step_seconds']:.3f} | {row['adapter_bytes']:,} | "
                 f"{row['latency_ms_fp32']:.1f} | {row['latency_ms_int8']:.1f} |")
    L += ["", "Weight generator trained on the first N concepts of the weight dataset "
          f"({r['scaling']['wg_seconds']:.0f} s "
          "each, the shipped generator's settings); held-out PSNR of the generated adapter before any fine-tuning:", "",
          "| training concepts | step-0 PSNR (mean, dB) |", "| ---: | ---: |"]
    for row in r["scaling"]["weightgen"]:
        L.append(f"| {row['training_concepts']} | {row['step0_psnr_mean']:.2f} |")
    L += ["", "Every figure above comes from the run of this script recorded in the header; the JSON beside it "
          f"(`{r['json']}`) holds the curves."]
    return "\n".join(L) + "\n"


def plot_curves(out: Path, row: dict) -> None:
    from factory.core.plot import line_chart

    series = {LABELS[m]: ([p["seconds"] for p in row["curves"][m]], [p["psnr"] for p in row["curves"][m]])
              for m in METHODS}
    atomic_write_png(out / f"curves-{row['concept']}.png",
                     line_chart(series, title=f"{row['concept']}: held-out PSNR vs training seconds", xlabel="seconds",
                                ylabel="PSNR dB", hlines={"identity": row["identity"]["psnr"]}))


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    wgb = bench_module("weightgen")
    from base_gan.models import config_json, read_training
    from weight_generator.dataset import WeightDataset

    base_dir, wg_dir, m = shipped()
    args.size = int(config_json(base_dir)["image_size"])
    dataset = WeightDataset.load(wg_dir)
    base_concepts = read_training(base_dir).get("concepts", [])
    heldout = [c for c in m["heldout"] if c not in dataset.concepts and c not in base_concepts]
    heldout = heldout[: args.concepts]
    if not heldout:
        raise FactoryError("the shipped manifest lists no held-out concepts")
    ws = Workspace(args.workspace)
    log(f"held out: {', '.join(heldout)}; {args.size} px; workspace {ws.root}")
    synth(ws, heldout, args.pairs, args.size, args.seed)
    rows = []
    for c in heldout:
        rows.append(time_to_quality(args, ws, base_dir, wg_dir, dataset, c, wgb))
        plot_curves(args.out, rows[-1])
    log("sizes and latency")
    sizes = export_and_time(args, ws, base_dir, heldout[0])
    log("weight generation")
    weightgen = weight_generation(args, ws, wg_dir, dataset, rows)
    from factory.lora.adapters import layout_of_adapter

    resolution = resolution_scaling(args, ws, base_dir, heldout[0],
                                    layout_of_adapter(Path(rows[0]["generated_adapter"])))
    wg_scaling = weightgen_scaling(args, ws, base_dir, wg_dir, dataset, heldout, wgb)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=HERE.parent).stdout.strip()
    result = {"quick": args.quick, "date": datetime.now(UTC).isoformat(timespec="seconds"), "commit": commit,
              "machine": f"{platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, "
                         "CPU only",
              "command": "python bench/run_all.py " + " ".join(sys.argv[1:]), "size": args.size,
              "shipped": {"recipe": m["recipe"], "heldout": m["heldout"]},
              "budgets": {k: getattr(args, k) for k in ("p2p_seconds", "scratch_seconds", "lora_seconds", "pairs",
                                                       "wg_seconds")},
              "lpips": lpips_note(), "time_to_quality": rows, "sizes": sizes, "weightgen": weightgen,
              "scaling": {"resolution": resolution, "weightgen": wg_scaling, "wg_seconds": args.wg_seconds},
              "json": str(args.out / "run_all.json")}
    result["total_minutes"] = round((time.perf_counter() - started) / 60, 2)
    atomic_write_json(args.out / "run_all.json", result)
    md = markdown(result)
    atomic_write_text(args.out / "run_all.md", md)
    if args.doc:
        atomic_write_text(Path(args.doc), md)
    print(md)
    log(f"done in {result['total_minutes']:.1f} min -> {args.out}")


if __name__ == "__main__":
    main()
