"""Benchmark: screen concepts trained on rescaled windows (``factory run --screen-scale``), at full size.

A concept whose teacher draws a fixed screen (halftone dots) gets position channels; trained on its pairs alone it
draws the dots at the pairs' scale only, and on a 12 MP photo (23x the 128 px pairs) its soft 5 px dots become blurs
of the teacher's crisp 117 px ones. ``--screen-scale S`` also trains on windows of the pairs upscaled up to S times
with the recipe run at that scale (``factory.data.multiscale``). Per concept, scale and seed this runs
``bench/fullsize.py`` (an editor from ``factory --seed N run <concept> --seconds 120 --screen-scale S``, fp32, the
12 MP photo and the concept's held-out photos at native size, tiled, against the teacher at full resolution) and
tabulates, as mean +- sd over the seeds: the card's 256 px figure (the editor against the recipe at 256 px on the
held-out pairs), native and 12 MP PSNR, the photos at the pairs' size, and the issue-16 goal (12 MP within 1 dB of
the 256 px figure). The scale is chosen on the validation concept (newsprint); the test concept (halftone) reports.

    python bench/fullsize_scales.py --concepts newsprint --scales 1,8,16,32 --seeds 0 --name fullsize-scales-validation
    python bench/fullsize_scales.py --concepts halftone --scales 1,16 --seeds 0,1,2 --name fullsize-scales
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


def one_run(concept: str, scale: str, seed: int, runs_dir: Path) -> dict:
    """``bench/fullsize.py``'s result for one editor (reused when its results file is there)."""
    name = f"{concept}-s{scale}-seed{seed}"
    out = runs_dir / name
    if not (out / "fullsize.json").is_file():
        log(f"{name}: bench/fullsize.py")
        subprocess.run([sys.executable, str(REPO / "bench" / "fullsize.py"), "--concepts", concept, "--precisions",
                        "fp32", "--huge", "0", "--tiles", "512/32", "--repeats", "1", "--seed", str(seed),
                        "--work", str(WORK / name), "--out", str(out), "--run-args", f"--screen-scale {scale}"],
                       check=True, cwd=REPO)
    return json.loads((out / "fullsize.json").read_text())


def figures(result: dict) -> dict[str, float]:
    """The figures of one run this table compares (dB)."""
    row = result["concepts"][0]
    tiled = next(r for r in row["runs"] if r["path"] == "tiled" and r["size"] != "tile-sweep")
    native = row["native"]["psnr_db"]
    return {"256 px (card)": row["psnr_256_db"], "native tiled": native["tiled"],
            "native at the pairs' size": native["pairs' size"], "12 MP tiled": tiled["psnr_db"],
            "12 MP at the pairs' size": row["photo"]["pair_size_psnr_db"], "12 MP seconds": tiled["seconds"],
            "12 MP peak MB": tiled["peak_mb"]}


def summary(values: list[float]) -> str:
    mean = statistics.fmean(values)
    return f"{mean:.2f} ± {statistics.stdev(values):.2f}" if len(values) > 1 else f"{mean:.2f}"


def render(result: dict) -> str:
    cols = list(next(iter(result["rows"]))["figures"][0])
    lines = [f"# Screen concepts at full size: training on rescaled windows ({result['name']})", "",
             f"{result['date']}, commit `{result['commit']}`, `{result['command']}`. Each run: "
             "`bench/results/fullsize-scales-runs/<concept>-s<scale>-seed<seed>/fullsize.md`. Editors from `factory "
             "--seed N run <concept> --seconds 120 --screen-scale S`; PSNR against the teacher at each size (the "
             "recipe with its pixel sizes scaled); 12 MP = a held-out photo upscaled to 4000x3000; mean ± sd over "
             f"{len(result['seeds'])} seed(s).", "",
             "| concept | --screen-scale | " + " | ".join(cols) + " | 12 MP within 1 dB of 256 px |",
             "| --- | ---: | " + " | ".join("---:" for _ in cols) + " | --- |"]
    for row in result["rows"]:
        cells = [summary([f[c] for f in row["figures"]]) for c in cols]
        met = sum(f["12 MP tiled"] >= f["256 px (card)"] - GOAL_DB for f in row["figures"])
        lines.append(f"| {row['concept']} | {row['scale']} | " + " | ".join(cells)
                     + f" | {met}/{len(row['figures'])} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--concepts", default="halftone")
    ap.add_argument("--scales", default="1,16", help="--screen-scale values")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--name", default="fullsize-scales", help="results: bench/results/<name>.{json,md}")
    args = ap.parse_args()
    from factory.core.atomic import atomic_write_json, atomic_write_text

    seeds = [int(s) for s in args.seeds.split(",")]
    runs_dir = RESULTS / "fullsize-scales-runs"
    rows = [{"concept": c, "scale": s, "seeds": seeds,
             "figures": [figures(one_run(c, s, seed, runs_dir)) for seed in seeds]}
            for c in args.concepts.split(",") for s in args.scales.split(",")]
    result = {"name": args.name, "date": datetime.now(UTC).isoformat(timespec="seconds"), "commit": git_commit(),
              "command": "python bench/fullsize_scales.py " + " ".join(sys.argv[1:]), "seeds": seeds, "rows": rows}
    atomic_write_json(RESULTS / f"{args.name}.json", result)
    atomic_write_text(RESULTS / f"{args.name}.md", render(result))
    log(f"wrote {RESULTS / args.name}.md")


if __name__ == "__main__":
    main()
