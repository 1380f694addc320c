"""Benchmark: filter packs for apps with many filters (issue 16, goal "Packs").

For 20 concepts on the shipped pretrained base, float16-exact as ``factory pretrain install`` now installs a
base (``round_to_float16_``: the workspace's ``default`` base), each with the shipped weight generator's
LoRA for its instruction (an adapter of the real layout and size; pack bytes and equality do not depend on
how well an adapter is trained):

* standalone editors as ``factory export`` writes their model files: ``editor.onnx`` (``export_onnx``) and
  ``editor.int8.onnx`` (``quantize_int8``, calibrated on the protocol's train photos), one per concept;
* one pack per precision (``factory export --pack``: fp32 and fp16), checked against every concept's
  standalone fp32 graph on 4 held-out images (the pack's own check, ``max_abs``);
* inference cost: median ms at 256x256 of the pack's session next to the standalone fp32 editor's for the
  first 3 concepts (same threads), and the time to create a session (load).

Goals: total pack bytes <= base + 20 x 1.2 x adapter size and <= 1/5 of the 20 standalone int8 editors;
per-concept download <= 150 KB; outputs within 1e-4 of the standalone editor. Writes
``bench/results/packs.{json,md}`` (``--quick``: 3 concepts, ``bench/results/smoke/packs.*``).

    python bench/packs.py          # ~5 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

from concepts.cards import find_card, list_cards
from factory.core.atomic import atomic_write_json, atomic_write_text
from factory.core.workspace import Workspace
from factory.evaluation.protocol import concept_split

GOAL_PER_CONCEPT_BYTES = 150_000
GOAL_EQUAL_MAX_ABS = 1e-4


def concepts(n: int) -> list[str]:
    """``n`` named cards, validation and train concepts first (no test concept is needed for bytes)."""
    split = concept_split()
    test = set(split.test)
    names = [c.name for c in list_cards() if c.name not in test]
    return names[:n]


def exact_base(ws: Workspace) -> None:
    """The shipped base, float16-exact, as the workspace's ``default`` base (what every part below uses); the
    editors and adapters of an earlier run on another base are made again."""
    import shutil

    from base_gan.models import load_model, round_to_float16_, save_model
    from factory.core.files import sha256_file
    from factory.pipeline.assets import pretrained_base

    out = ws.base("default")
    source = sha256_file(pretrained_base() / "diffusion_pytorch_model.safetensors")
    stamp = out / "made_from.txt"
    if stamp.is_file() and stamp.read_text() == source:
        return
    for stale in (ws.root / "standalone", ws.root / "loras", ws.root / "packs"):
        shutil.rmtree(stale, ignore_errors=True)
    save_model(round_to_float16_(load_model(pretrained_base())), out, {"made_from": str(pretrained_base())})
    stamp.write_text(source)


def standalone_sizes(ws: Workspace, names: list[str], out: Path) -> dict[str, dict]:
    """Each concept's editor.onnx and editor.int8.onnx, written as ``export_editor`` writes them."""
    from base_gan.models import BaseGAN
    from factory.export.editor import photo_crops
    from factory.export.onnx_export import EditorModule, export_onnx, merge_adapter, text_condition
    from factory.export.quantize import quantize_int8
    from factory.runtime.editor import to_input

    base = BaseGAN.load(ws.base("default"))
    calibration = [to_input([im])[0] for im in photo_crops("train", 16, 256)]
    sizes = {}
    for name in names:
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        fp32, int8 = folder / "editor.onnx", folder / "editor.int8.onnx"
        if not int8.is_file():
            model = merge_adapter(base.copy().eval(), ws.lora(name))
            module = EditorModule(model, *text_condition(model, find_card(name).instruction, ws.text_cache)).eval()
            export_onnx(module, fp32, 256)
            quantize_int8(fp32, int8, calibration)
        sizes[name] = {"fp32": fp32.stat().st_size, "int8": int8.stat().st_size,
                       "adapter": (ws.lora(name) / "adapter_model.safetensors").stat().st_size}
    return sizes


def latency(make, runs: int) -> dict[str, float]:
    """Session creation seconds and median ms per 1x3x256x256 run of the editor ``make()`` returns."""
    t0 = time.perf_counter()
    editor = make()
    load = time.perf_counter() - t0
    ms = editor.latency(256, warmup=3, runs=runs)
    return {"load_seconds": round(load, 3), "median_ms": round(ms["median_ms"], 2), "p10_ms": round(ms["p10_ms"], 2),
            "p90_ms": round(ms["p90_ms"], 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--concepts", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--quick", action="store_true", help="3 concepts, few runs, separate outputs")
    ap.add_argument("--workspace", type=Path, default=Path("bench/work/packs"))
    ap.add_argument("--out", type=Path, default=Path("bench/results"))
    args = ap.parse_args()
    if args.quick:
        args.concepts, args.runs = 3, 5
        args.workspace, args.out = Path("bench/work/packs-quick"), Path("bench/results/smoke")
    import factory
    from factory.runtime.editor import Editor

    ws = Workspace(args.workspace)
    names = concepts(args.concepts)
    started = time.perf_counter()
    exact_base(ws)
    for name in names:  # the weight generator's adapter for the instruction, as `factory run --init weightgen` starts
        if not (ws.lora(name) / "adapter_model.safetensors").is_file():
            factory.generate_adapter(find_card(name).instruction, ws.lora(name), workspace=ws)
    sizes = standalone_sizes(ws, names, ws.root / "standalone")
    packs, timing = {}, {}
    for precision in ("fp32", "fp16"):
        manifest = factory.export_pack(names, f"bench-{precision}", workspace=ws, base="default", precision=precision,
                                       threads=args.threads, log=print)
        folder = ws.pack(f"bench-{precision}")
        per = [e["bytes"] for e in manifest["concepts"]]
        layout = manifest["layout"]
        total = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and p.name != "pack.json")
        packs[precision] = {
            "total_bytes": total, "pack_json_bytes": (folder / "pack.json").stat().st_size,
            "base_bytes": manifest["bytes"]["base"], "per_concept_bytes_max": max(per),
            "per_concept_bytes_min": min(per),
            "max_abs_vs_standalone": max(manifest["checks"][n]["max_abs"] for n in names),
            "mean_abs_vs_standalone": statistics.mean(manifest["checks"][n]["mean_abs"] for n in names),
            "checked_images_per_concept": manifest["checks"][names[0]]["images"],
            "layout": {"modules": len(layout["ranks"]), "max_rank": max(layout["ranks"].values()),
                       "text_len": layout["text_len"]},
        }
        timing[precision] = [latency(lambda n=n, f=folder: Editor.from_pack(f, n, args.threads), args.runs)
                             for n in names[:3]]
    timing["standalone_fp32"] = [latency(lambda n=n: Editor(ws.root / "standalone" / n / "editor.onnx", args.threads),
                                         args.runs) for n in names[:3]]
    adapter = max(s["adapter"] for s in sizes.values())
    int8_total = sum(s["int8"] for s in sizes.values())
    n = len(names)
    goals = {}
    for precision, p in packs.items():
        goals[precision] = {
            "bytes_vs_base_plus_adapters": {"limit": p["base_bytes"] + round(n * 1.2 * adapter),
                                            "value": p["total_bytes"]},
            "bytes_vs_fifth_of_int8_editors": {"limit": round(int8_total / 5), "value": p["total_bytes"]},
            "per_concept_download": {"limit": GOAL_PER_CONCEPT_BYTES, "value": p["per_concept_bytes_max"]},
            "equal_to_standalone": {"limit": GOAL_EQUAL_MAX_ABS, "value": p["max_abs_vs_standalone"]},
        }
        for g in goals[precision].values():
            g["met"] = g["value"] <= g["limit"]
    result = {
        "benchmark": "packs", "concepts": names, "n": n, "standalone": sizes,
        "standalone_totals": {"int8": int8_total, "fp32": sum(s["fp32"] for s in sizes.values()),
                              "adapter_max": adapter},
        "packs": packs, "goals": goals, "latency_256": timing, "threads": args.threads,
        "seconds": round(time.perf_counter() - started, 1), "quick": args.quick,
        "date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": platform.machine(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "command": "python bench/packs.py" + (" --quick" if args.quick else ""),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "packs.json", result)
    atomic_write_text(args.out / "packs.md", render(result))
    print(render(result))


def render(r: dict) -> str:
    def mb(b: float) -> str:
        return f"{b / 1e6:.2f} MB"

    lines = ["# Filter packs", "", f"Written by `{r['command']}` ({r['date']}, {r['machine']}, load average "
             f"{r['load_average_1min']}). {r['n']} concepts on the shipped base made float16-exact (as `factory "
             "pretrain install` installs a base), each with the shipped weight generator's LoRA for its "
             "instruction.", "",
             f"Standalone: {r['n']} int8 editors {mb(r['standalone_totals']['int8'])}, {r['n']} fp32 editors "
             f"{mb(r['standalone_totals']['fp32'])}; adapter file "
             f"{r['standalone_totals']['adapter_max'] / 1e3:.1f} KB.",
             "", "| pack | total | base | per concept | max abs vs standalone fp32 | goals met |",
             "| --- | ---: | ---: | ---: | ---: | --- |"]
    for precision, p in r["packs"].items():
        met = ", ".join(f"{k} {'yes' if g['met'] else 'NO'}" for k, g in r["goals"][precision].items())
        lines.append(f"| {precision} | {mb(p['total_bytes'])} | {mb(p['base_bytes'])} | "
                     f"{p['per_concept_bytes_max'] / 1e3:.1f} KB | {p['max_abs_vs_standalone']:.1e} | {met} |")
    lines += ["", "Goal limits: " + "; ".join(
        f"{k} <= {g['limit']:.0e}" if k == "equal_to_standalone" else f"{k} <= {g['limit'] / 1e3:.1f} KB"
        for k, g in next(iter(r["goals"].values())).items()), "",
        f"Latency at 256x256, {r['threads']} threads (median ms; session creation s), first 3 concepts:", "",
        "| editor | median ms | load s |", "| --- | ---: | ---: |"]
    for kind, rows in r["latency_256"].items():
        ms = " / ".join(f"{x['median_ms']:.1f}" for x in rows)
        load = " / ".join(f"{x['load_seconds']:.2f}" for x in rows)
        lines.append(f"| {kind} | {ms} | {load} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
