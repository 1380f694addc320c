"""Benchmark: the exported default editor vs pix2pix ResNet-9 on this CPU (issue 6).

Makes a concept's pairs with the offline classic teacher, trains a default-config base
(``build_generator()``: ngf 32) for a short wall-clock budget (so its activation ranges are a
trained model's, not an initialisation's; ``--train-seconds 0`` exports the untrained base), exports
it with the same code as ``factory export`` (fp32, int8, fp16, .ort; all checks), exports pix2pix
ResNet-9 (ngf 64, random weights: latency does not depend on them) the same way, and times every
model at batch 1 after warm-up with a fixed thread count. Writes ``bench/results/editor.{json,md}``
with the 1-minute load average before and after (other processes on the machine skew latency).

    python bench/editor.py                                  # 256 px, 2 threads, ~5 minutes
    python bench/editor.py --train-seconds 0 --runs 10      # smoke
    python bench/editor.py --base WORKSPACE/base/NAME       # time a trained base instead
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _make_base(ws, concept: str, seconds: float, batch: int, seed: int) -> Path:
    from base_gan.generator import build_generator
    from base_gan.models import is_model_folder, model_spec, save_model
    from base_gan.train import Trainer, TrainSettings

    folder = ws.base("bench-default")
    if is_model_folder(folder):
        return folder
    if seconds <= 0:
        save_model(build_generator(seed=seed), folder, {"concepts": [concept], "steps_done": 0})
        return folder
    settings = TrainSettings(generator=model_spec(build_generator()), steps=100_000, seconds=seconds, batch=batch,
                             checkpoint_every=100_000, seed=seed)
    trainer = Trainer(folder, [ws.data(concept)], settings, text_cache=ws.text_cache)
    trainer.train()
    trainer.save_final({"concepts": [concept], "instructions": trainer.data.instructions})
    return folder


def _export(ws, card, base, args) -> dict:
    from factory.export.editor import ExportRequest, export_editor

    return export_editor(ExportRequest(
        concept=card.name, base=base, adapter_dir=None, adapter_note="base alone (benchmark)",
        instruction=card.instruction, data_dir=ws.data(card.name), out_dir=ws.editor(card.name), size=args.size,
        int8=True, fp16=True, ort=True, threads=args.threads, allow_cpu_fallback=True, text_cache=ws.text_cache),
        log=lambda m: print("  " + m, flush=True))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--concept", default="pencil-sketch")
    ap.add_argument("--pairs", type=int, default=48)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--train-seconds", type=float, default=180.0)
    ap.add_argument("--batch", type=int, default=4, help="training batch")
    ap.add_argument("--base", type=Path, help="a trained base folder to export instead of training one")
    ap.add_argument("--work", type=Path, help="workspace to (re)use; default: a temp folder removed afterwards")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reuse-export", action="store_true",
                    help="time the editor already exported in --work (its card.json) instead of exporting again")
    ap.add_argument("--out", type=Path, default=RESULTS, help="where editor.json and editor.md are written")
    args = ap.parse_args()

    import onnxruntime

    from base_gan.complexity import measure
    from base_gan.models import BaseGAN, model_spec
    from base_gan.pix2pix import build_pix2pix
    from concepts.cards import find_card
    from factory.core.atomic import atomic_write_json, atomic_write_text
    from factory.core.workspace import Workspace
    from factory.data.card_pairs import make_pairs
    from factory.export.editor import pix2pix_reference
    from factory.runtime.latency import benchmark

    work = args.work or Path(tempfile.mkdtemp(prefix="bench-editor-"))
    ws = Workspace(work)
    started = time.perf_counter()
    card = find_card(args.concept)
    make_pairs(ws, card, args.pairs, args.size, args.seed)
    base_dir = args.base or _make_base(ws, card.name, args.train_seconds, args.batch, args.seed)
    base = BaseGAN.load(base_dir)
    model, steps_done = base.model, base.training.get("steps_done")
    card_path = ws.editor(card.name) / "card.json"
    if args.reuse_export and card_path.is_file():
        import json

        export = json.loads(card_path.read_text())
    else:
        print(f"base {base_dir} ({steps_done if steps_done is not None else '?'} steps); exporting ...", flush=True)
        export = _export(ws, card, base, args)
    p2p = pix2pix_reference(work / "pix2pix", args.size)

    editor_dir = ws.editor(card.name)
    models = {"editor_fp32": editor_dir / "editor.onnx", "editor_int8": editor_dir / "editor.int8.onnx",
              "editor_fp16": editor_dir / "editor.fp16.onnx", "pix2pix_fp32": p2p["fp32"], "pix2pix_int8": p2p["int8"]}

    load_before = os.getloadavg()
    timings = benchmark(models, args.size, args.threads, runs=args.runs, warmup=args.warmup)
    load_after = os.getloadavg()
    ms = {k: v["per_image_ms"] for k, v in timings.items()}
    sizes = export["files"]
    gen_cx = measure(model, args.size, text_len=16)
    p2p_cx = measure(build_pix2pix(), args.size)
    quality = export["checks"]["quality"]
    mobile = export["checks"]["mobile"]
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "onnxruntime": onnxruntime.__version__},
        "settings": {"size": args.size, "threads": args.threads, "batch": 1, "runs": args.runs, "warmup": args.warmup,
                     "concept": card.name, "base": str(base_dir), "base_steps": steps_done,
                     "generator": base.training.get("settings", {}).get("generator") or model_spec(model)},
        "load_average": {"before": [round(v, 2) for v in load_before], "after": [round(v, 2) for v in load_after]},
        "latency_ms": ms,
        "latency_detail": timings,
        "speedup_vs_pix2pix": {"fp32": ms["pix2pix_fp32"] / ms["editor_fp32"],
                               "int8": ms["pix2pix_int8"] / ms["editor_int8"],
                               "editor_int8_vs_pix2pix_fp32": ms["pix2pix_fp32"] / ms["editor_int8"]},
        "sizes_bytes": {**sizes, "pix2pix.onnx": p2p["fp32"].stat().st_size,
                        "pix2pix.int8.onnx": p2p["int8"].stat().st_size},
        "int8_size_ratio": export["int8_size_ratio"],
        "complexity": {"editor": {"params": gen_cx.params, "gmacs": round(gen_cx.gmacs, 3)},
                       "pix2pix": {"params": p2p_cx.params, "gmacs": round(p2p_cx.gmacs, 3)}},
        "quality": quality,
        "parity_max_abs": export["checks"]["parity"]["max_abs"],
        "mobile": {v: {ep: r["summary"] for ep, r in mobile[v].items()} for v in ("fp32", "int8", "fp16")
                   if v in mobile},
        "goals": {"editor_5x_faster_than_pix2pix_fp32": ms["pix2pix_fp32"] / ms["editor_fp32"] >= 5,
                  "int8_at_most_quarter_of_fp32": export["int8_size_ratio"] <= 0.25},
        "seconds": round(time.perf_counter() - started, 1),
    }
    atomic_write_json(args.out / "editor.json", report)
    atomic_write_text(args.out / "editor.md", _markdown(report))
    print(_markdown(report))
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


def _markdown(r: dict) -> str:
    s, ms, sz = r["settings"], r["latency_ms"], r["sizes_bytes"]
    q = r["quality"]
    lines = [
        f"# Editor latency and size ({r['date']})",
        "",
        f"{s['size']}x{s['size']} RGB, batch 1, {s['threads']} onnxruntime threads, median of {s['runs']} runs after "
        f"{s['warmup']} warm-up; {r['machine']['cpu']} ({r['machine']['cores']} cores), "
        f"onnxruntime {r['machine']['onnxruntime']}. "
        f"Load average (1/5/15 min) before {r['load_average']['before']}, after {r['load_average']['after']}: "
        "other processes shared these cores, so treat single figures as noisy.",
        "",
        f"Editor: default generator config ({r['complexity']['editor']['params'] / 1e6:.2f} M params, "
        f"{r['complexity']['editor']['gmacs']:.2f} GMACs), base trained {s['base_steps']} steps on `{s['concept']}`, "
        f"exported by `factory export`'s code. pix2pix: ResNet-9 ngf 64 "
        f"({r['complexity']['pix2pix']['params'] / 1e6:.2f} M "
        f"params, {r['complexity']['pix2pix']['gmacs']:.2f} GMACs), exported and quantized the same way.",
        "",
        "| model | fp32 ms | int8 ms | fp32 MB | int8 MB | int8/fp32 size |",
        "|---|---:|---:|---:|---:|---:|",
        f"| editor | {ms['editor_fp32']:.1f} | {ms['editor_int8']:.1f} | {sz['editor.onnx'] / 1e6:.2f} | "
        f"{sz['editor.int8.onnx'] / 1e6:.2f} | {sz['editor.int8.onnx'] / sz['editor.onnx']:.3f} |",
        f"| pix2pix ResNet-9 | {ms['pix2pix_fp32']:.1f} | {ms['pix2pix_int8']:.1f} | {sz['pix2pix.onnx'] / 1e6:.2f} | "
        f"{sz['pix2pix.int8.onnx'] / 1e6:.2f} | {sz['pix2pix.int8.onnx'] / sz['pix2pix.onnx']:.3f} |",
        "",
        f"- editor fp16: {ms['editor_fp16']:.1f} ms ({sz['editor.fp16.onnx'] / 1e6:.2f} MB; x86 CPUs have no fp16 "
        "arithmetic, so this is a size/compatibility figure, fp16 is for phone GPUs/ANE)",
        f"- speed-up vs pix2pix: fp32 {r['speedup_vs_pix2pix']['fp32']:.1f}x, "
        f"int8 {r['speedup_vs_pix2pix']['int8']:.1f}x "
        f"(goal >= 5x: {'met' if r['goals']['editor_5x_faster_than_pix2pix_fp32'] else 'NOT met'})",
        f"- int8 size {r['int8_size_ratio']:.3f} of fp32 (goal <= 0.25: "
        f"{'met' if r['goals']['int8_at_most_quarter_of_fp32'] else 'NOT met'})",
        f"- int8 vs fp32 on {q['held_out_images']} held-out images: {q['int8_vs_fp32']['mean_db']:.2f} dB mean PSNR "
        f"(min {q['int8_vs_fp32']['min_db']:.2f}); against the teacher: fp32 {q['fp32_vs_teacher']['mean_db']:.2f} dB, "
        f"int8 {q['int8_vs_teacher']['mean_db']:.2f} dB, identity {q['identity_vs_teacher']['mean_db']:.2f} dB",
        f"- torch vs onnxruntime fp32 max abs error {r['parity_max_abs']:.1e}",
        "",
        "Mobile delegates (onnxruntime's usability checker, fixed 1x3xSxS input):",
        "",
    ]
    for variant, eps in r["mobile"].items():
        for summary in eps.values():
            lines.append(f"- {variant}: {summary}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
