"""The main job as a user runs it: ``factory run autumn --seconds 120`` (what ``make demo`` runs), timed, over
the protocol's seeds, each in a fresh workspace; optionally ``make demo`` itself from a fresh clone.

autumn is a validation concept (concepts/_splits.yaml): the demo is not a test figure. Writes
``bench/results/demo.{json,md}``: the exported editors' held-out quality (PSNR and the structural
metrics, next to the unchanged photo), steps done in the budget and wall time, mean ± spread.

    python bench/demo.py                  # 3 seeds of `factory run autumn` in fresh workspaces
    python bench/demo.py --fresh-clone    # also `make demo` from a fresh clone (venv install included)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from factory.core.atomic import atomic_write_json, atomic_write_text
from factory.evaluation.protocol import SEEDS, mean_spread

from common import provenance

REPO = Path(__file__).resolve().parents[1]
CONCEPT, SECONDS = "autumn", 120


def one_run(seed: int, workspace: Path) -> dict:
    shutil.rmtree(workspace, ignore_errors=True)
    cmd = [sys.executable, "-m", "factory", "--workspace", str(workspace), "--seed", str(seed), "run", CONCEPT,
           "--seconds", str(SECONDS)]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    ev = json.loads((workspace / "runs" / CONCEPT / "eval.json").read_text())
    ev.pop("grid", None)  # image paths in a temporary workspace: not results
    state = json.loads((workspace / "runs" / CONCEPT / "state.json").read_text())
    finetune = state["stages"]["finetune"]["info"]
    finetune["out"] = Path(finetune["out"]).relative_to(workspace).as_posix()  # a temporary workspace's path
    return {"seed": seed, "wall_seconds": round(wall, 1), "finetune": finetune,
            "stage_seconds": {k: v["seconds"] for k, v in state["stages"].items()}, "eval": ev}


def fresh_clone() -> dict:
    """``make demo`` from a fresh clone of HEAD (its own venv: pip install from the local cache included)."""
    with tempfile.TemporaryDirectory(prefix="demo-clone-") as tmp:
        subprocess.run(["git", "clone", "-q", str(REPO), tmp], check=True)
        started = time.perf_counter()
        proc = subprocess.run(["make", "demo"], cwd=tmp, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            raise SystemExit(f"make demo failed:\n{proc.stderr[-2000:]}")
        ev = json.loads((Path(tmp) / "factory-workspace" / "runs" / CONCEPT / "eval.json").read_text())
    return {"wall_seconds": round(wall, 1), "psnr_int8": ev["editor_int8"]["psnr"], "learned": ev.get("learned")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    ap.add_argument("--fresh-clone", action="store_true")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = ap.parse_args()
    header = provenance("demo.py")  # the code the runs start with (+dirty: code no commit holds)
    runs = []
    with tempfile.TemporaryDirectory(prefix="demo-ws-") as tmp:
        for seed in (int(s) for s in args.seeds.split(",")):
            runs.append(one_run(seed, Path(tmp) / f"ws{seed}"))
            print(f"seed {seed}: {runs[-1]['eval']['editor_int8']['psnr']:.2f} dB, {runs[-1]['wall_seconds']:.0f} s",
                  flush=True)
    keys = ("psnr", "ssim", "haarpsi", "fsim", "gmsd")
    summary = {f"editor_int8_{k}": mean_spread(r["eval"]["editor_int8"][k] for r in runs) for k in keys}
    summary.update({f"identity_{k}": runs[0]["eval"]["identity"][k] for k in keys})
    summary["steps"] = mean_spread(r["finetune"]["steps"] for r in runs)
    summary["wall_seconds"] = mean_spread(r["wall_seconds"] for r in runs)
    summary["learned"] = f"{sum(bool(r['eval'].get('learned')) for r in runs)}/{len(runs)}"
    result = {**header, "concept": CONCEPT, "seconds": SECONDS, "runs": runs, "summary": summary,
              "test_pairs": runs[0]["eval"]["test_pairs"]}
    if args.fresh_clone:
        result["fresh_clone"] = fresh_clone()
    atomic_write_json(args.out / "demo.json", result)
    s = summary
    md = [f"# `make demo` ({CONCEPT}, a validation concept, {SECONDS} s fine-tune)", "",
          f"{result['date']}, {result['machine']}, commit `{result['commit']}`; `{result['command']}`; "
          f"{len(runs)} seeds, fresh workspace each; "
          f"{result['test_pairs']} held-out pairs.", "",
          "| | int8 editor (mean ± sd) | unchanged photo |", "| --- | ---: | ---: |"]
    for k in keys:
        e = s[f"editor_int8_{k}"]
        md.append(f"| {k} | {e['mean']:.3f} ± {e['std']:.3f} | {s[f'identity_{k}']:.3f} |")
    md += ["", f"Learned (beats the unchanged photo on PSNR and every structural metric): {s['learned']}. "
           f"Fine-tune steps in {SECONDS} s: {s['steps']['mean']:.0f} ± {s['steps']['std']:.0f}. `factory run` wall "
           f"time: {s['wall_seconds']['mean']:.1f} ± {s['wall_seconds']['std']:.1f} s."]
    if args.fresh_clone:
        fc = result["fresh_clone"]
        md.append(f"`make demo` from a fresh clone (venv and pip install from a warm cache included): "
                  f"{fc['wall_seconds']:.1f} s, int8 PSNR {fc['psnr_int8']:.3f} dB.")
    atomic_write_text(args.out / "demo.md", "\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
