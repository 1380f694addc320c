"""Benchmark: screen concepts trained on rescaled windows (``factory run --screen-scale``), at full size.

A concept whose teacher draws a fixed screen (halftone dots) gets position channels; trained on its pairs alone it
draws the dots at the pairs' scale only, and on a 12 MP photo (23x the 128 px pairs) its soft 5 px dots become blurs
of the teacher's crisp 117 px ones. ``--screen-scale S`` also trains on windows of the pairs upscaled up to S times
with the recipe run at that scale (``factory.data.multiscale``). Per concept, scale and seed this runs
``bench/fullsize.py`` (an editor from ``factory --seed N run <concept> --seconds 120 --screen-scale S``, fp32, the
12 MP photo and the concept's held-out photos at native size, tiled, against the teacher at full resolution) and
tabulates, as mean +- sd over the seeds: the card's 256 px figure (the editor against the recipe at 256 px on the
held-out pairs), native and 12 MP PSNR, the photos at the pairs' size, and the issue-16 goal (12 MP within 1 dB of
the 256 px figure); and how quality falls with scale: the 12 MP photo shrunk to 1, 2, 4, 8 and 16 times the pairs'
size (and full size), each against the recipe at that scale (``<run>/scale_curve.json``). The scale is chosen on the
validation concept (newsprint); the test concept (halftone) reports.

    python bench/fullsize_scales.py --concepts newsprint --scales 1,8,16,32 --seeds 0 --name fullsize-scales-validation
    python bench/fullsize_scales.py --concepts halftone --scales 1,16 --seeds 0,1,2 --name fullsize-scales

``--variants "label=args;label=args"`` compares `factory run` options side by side, one row per variant (its runs
named ``<concept>-s<scale>-<label>-seed<seed>``; an empty label reuses the runs made without a tag), e.g. the
screen's harmonics:

    python bench/fullsize_scales.py --concepts newsprint --scales 16 --seeds 0 --name fullsize-harmonics-validation \
        --variants "harmonics=;fundamentals=--no-screen-harmonics"
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from common import git_commit, log

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "bench" / "work" / "fullsize-scales"
RESULTS = REPO / "bench" / "results"
GOAL_DB = 1.0
CURVE_FACTORS = (1, 2, 4, 8, 16)


def one_run(concept: str, scale: str, seed: int, runs_dir: Path, run_args: str = "", tag: str = "") -> dict:
    """``bench/fullsize.py``'s result for one editor (reused when its results file is there)."""
    name = f"{concept}-s{scale}{tag}-seed{seed}"
    out = runs_dir / name
    if not (out / "fullsize.json").is_file():
        log(f"{name}: bench/fullsize.py")
        subprocess.run([sys.executable, str(REPO / "bench" / "fullsize.py"), "--concepts", concept, "--precisions",
                        "fp32", "--huge", "0", "--tiles", "512/32", "--repeats", "1", "--seed", str(seed),
                        "--work", str(WORK / name), "--out", str(out),
                        "--run-args", f"--screen-scale {scale} {run_args}"],
                       check=True, cwd=REPO)
    result = json.loads((out / "fullsize.json").read_text())
    if not (out / "scale_curve.json").is_file():
        from factory.core.atomic import atomic_write_json

        atomic_write_json(out / "scale_curve.json", scale_curve(WORK / name, concept))
    result["scale_curve"] = json.loads((out / "scale_curve.json").read_text())
    return result


def scale_curve(work: Path, concept: str) -> dict[str, float]:
    """The editor's tiled PSNR on the 12 MP photo shrunk to each factor of the pairs' size (and at full size),
    against the recipe run at that factor."""
    import cv2

    from factory.core.images import psnr_u8, read_image
    from factory.data.dataset import full_resolution_reference
    from factory.runtime.editor import Editor
    from factory.teachers.rescale import apply_recipe_at

    editor = Editor(work / "editors" / concept, threads=2)
    recipe, pair_size, _ = full_resolution_reference(work / f"ws-{concept}" / "data" / concept)
    photo = read_image(next((work / "images" / concept).glob("photo-*x*.png")))
    h, w = photo.shape[:2]
    curve = {}
    for factor in (*CURVE_FACTORS, min(h, w) / pair_size):
        short = round(pair_size * factor)
        img = photo if short >= min(h, w) else cv2.resize(photo, (round(w * short / h), short),
                                                         interpolation=cv2.INTER_AREA)
        ref = apply_recipe_at(img, recipe, min(img.shape[:2]) / pair_size)
        psnr = psnr_u8(editor.edit([img], path="tiled")[0], ref)
        curve[f"{min(img.shape[:2]) / pair_size:.1f}x"] = round(float(psnr), 2)
    return curve


def figures(result: dict) -> dict[str, float]:
    """The figures of one run this table compares (dB)."""
    row = result["concepts"][0]
    tiled = next(r for r in row["runs"] if r["path"] == "tiled" and r["size"] != "tile-sweep")
    native = row["native"]["psnr_db"]
    return {"256 px (card)": row["psnr_256_db"], "native tiled": native["tiled"],
            "native at the pairs' size": native["pairs' size"], "12 MP tiled": tiled["psnr_db"],
            "12 MP at the pairs' size": row["photo"]["pair_size_psnr_db"], "12 MP seconds": tiled["seconds"],
            "12 MP peak MB": tiled["peak_mb"]}


def curve_table(result: dict) -> list[str]:
    """PSNR by scale (the 12 MP photo shrunk), mean ± sd over seeds."""
    cols = sorted(result["rows"][0]["curves"][0], key=lambda k: float(k.rstrip("x")))
    lines = ["", "PSNR (dB) by scale: the 12 MP photo shrunk to each factor of the pairs' size, tiled, against the "
             "recipe at that scale (the last column is full size).", "",
             "| concept | --screen-scale | " + " | ".join(cols) + " |",
             "| --- | ---: | " + " | ".join("---:" for _ in cols) + " |"]
    for row in result["rows"]:
        lines.append(f"| {row['concept']} | {row['scale']} | "
                     + " | ".join(summary([c[k] for c in row["curves"]]) for k in cols) + " |")
    return lines


def summary(values: list[float]) -> str:
    mean = statistics.fmean(values)
    return f"{mean:.2f} ± {statistics.stdev(values):.2f}" if len(values) > 1 else f"{mean:.2f}"


def render(result: dict) -> str:
    cols = list(next(iter(result["rows"]))["figures"][0])
    lines = [f"# Screen concepts at full size: training on rescaled windows ({result['name']})", "",
             f"{result['date']}, commit `{result['commit']}`, `{result['command']}`. Each run: "
             "`bench/results/fullsize-scales-runs/<concept>-s<scale>[-<variant>]-seed<seed>/fullsize.md`. Editors from "
             "`factory --seed N run <concept> --seconds 120 --screen-scale S`; PSNR against the teacher at each size "
             "(the recipe with its pixel sizes scaled); 12 MP = a held-out photo upscaled to 4000x3000; mean ± sd over "
             f"{len(result['seeds'])} seed(s).", "",
             "| concept | --screen-scale | " + " | ".join(cols) + " | 12 MP within 1 dB of 256 px |",
             "| --- | ---: | " + " | ".join("---:" for _ in cols) + " | --- |"]
    for row in result["rows"]:
        cells = [summary([f[c] for f in row["figures"]]) for c in cols]
        met = sum(f["12 MP tiled"] >= f["256 px (card)"] - GOAL_DB for f in row["figures"])
        lines.append(f"| {row['concept']} | {row['scale']} | " + " | ".join(cells)
                     + f" | {met}/{len(row['figures'])} |")
    return "\n".join(lines + curve_table(result)) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--concepts", default="halftone")
    ap.add_argument("--scales", default="1,16", help="--screen-scale values")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--run-args", default="", help="more `factory run` arguments for every editor (e.g. "
                    "\"--seconds 300\"), with --tag")
    ap.add_argument("--tag", default="", help="a suffix naming the runs made with --run-args (e.g. -300s)")
    ap.add_argument("--variants", default="", help="label=run-args;label=run-args: one row per variant (e.g. "
                    "\"harmonics=;fundamentals=--no-screen-harmonics\"); overrides --run-args/--tag")
    ap.add_argument("--name", default="fullsize-scales", help="results: bench/results/<name>.{json,md}")
    args = ap.parse_args()
    from factory.core.atomic import atomic_write_json, atomic_write_text

    seeds = [int(s) for s in args.seeds.split(",")]
    runs_dir = RESULTS / "fullsize-scales-runs"
    variants = ([(label.strip(), run_args.strip()) for label, _, run_args in
                 (v.partition("=") for v in args.variants.split(";"))] if args.variants else [("", args.run_args)])
    rows = []
    for concept in args.concepts.split(","):
        for scale in args.scales.split(","):
            for label, run_args in variants:
                tag = f"-{label}" if label else args.tag
                runs = [one_run(concept, scale, seed, runs_dir, run_args, tag) for seed in seeds]
                shown = " ".join(x for x in (scale, label, f"({run_args})" if run_args else "") if x)
                rows.append({"concept": concept, "scale": shown, "seeds": seeds,
                             "figures": [figures(r) for r in runs], "curves": [r["scale_curve"] for r in runs]})
    result = {"name": args.name, "date": datetime.now(UTC).isoformat(timespec="seconds"), "commit": git_commit(),
              "command": "python bench/fullsize_scales.py " + " ".join(sys.argv[1:]), "seeds": seeds, "rows": rows}
    atomic_write_json(RESULTS / f"{args.name}.json", result)
    atomic_write_text(RESULTS / f"{args.name}.md", render(result))
    log(f"wrote {RESULTS / args.name}.md")


if __name__ == "__main__":
    main()
