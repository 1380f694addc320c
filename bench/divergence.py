"""Which fine-tune runs diverged: the largest training L1 of every run in the benchmark workspaces.

The divergence guard (``base_gan.rollback``) puts a run back when a step's L1 (images in [-1, 1]) is above its
limit. This reads what every finished run under ``bench/work/*/runs/`` recorded (the step history of its newest
checkpoint, its held-out curve) and writes, per run: the largest L1 and its step, the guard's rollbacks, and the
held-out PSNR at its start, best point and end. It trains nothing, so it may run beside other work.

    python bench/divergence.py                 # bench/results/divergence.{json,md}
    python bench/divergence.py --name divergence-before-guard   # the same scan under another name
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from base_gan.rollback import DEFAULT_LIMIT
from factory.core.training_loop import latest_checkpoint

from common import REPO, log, provenance, write_results


def run_record(folder: Path, work: Path) -> dict | None:
    """One run's figures, or None when the folder holds no finished fine-tune."""
    ckpt, curve = latest_checkpoint(folder), folder / "curve.csv"
    if ckpt is None or not curve.is_file():
        return None
    state = json.loads((ckpt / "state.json").read_text())
    l1 = [h["l1"] for h in state["history"]]
    psnr = [float(r["psnr"]) for r in csv.DictReader(curve.open())]
    peak = max(range(len(l1)), key=l1.__getitem__)
    return {"run": str(folder.relative_to(work)), "steps": len(l1), "max_l1": round(l1[peak], 3),
            "max_l1_step": peak + 1, "rollbacks": state.get("rollbacks", []),
            "psnr_start": round(psnr[0], 2), "psnr_best": round(max(psnr), 2), "psnr_end": round(psnr[-1], 2)}


def markdown(result: dict) -> str:
    runs, limit = result["runs"], result["limit"]
    healthy = [r["max_l1"] for r in runs if r["max_l1"] <= limit]
    wild = [r for r in runs if r["max_l1"] > limit or r["rollbacks"]]
    lines = [f"# Divergence in the benchmark fine-tunes ({len(runs)} runs)", "",
             f"`{result['command']}` at {result['commit']} ({result['date']}), workspaces: "
             + ", ".join(f"`{w}`" for w in result["workspaces"]) + ".", "",
             f"- The guard's limit: a training L1 above **{limit}** (images in [-1, 1]: no two differ by more than 2).",
             f"- Runs whose L1 stayed at or below it: {len(healthy)}, largest L1 among them "
             f"{max(healthy, default=0):.3f}.",
             f"- Runs above it or put back by the guard: {len(wild)}.", "",
             "| run | steps | largest L1 (step) | rollbacks | PSNR start | best | end |",
             "| --- | ---: | ---: | --- | ---: | ---: | ---: |"]
    for r in sorted(wild, key=lambda r: r["run"]):
        back = ", ".join(f"step {b['step']} (L1 {b['l1']:.3g})" for b in r["rollbacks"]) or "none"
        lines.append(f"| {r['run']} | {r['steps']} | {r['max_l1']:.3g} ({r['max_l1_step']}) | {back} | "
                     f"{r['psnr_start']:.2f} | {r['psnr_best']:.2f} | {r['psnr_end']:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=REPO / "bench" / "work")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    ap.add_argument("--name", default="divergence", help="results file name (without .json / .md)")
    args = ap.parse_args()
    workspaces = sorted(p.parent for p in args.work.glob("*/runs") if "quick" not in p.parent.name)
    runs = [r for ws in workspaces for state in sorted((ws / "runs").glob("**/checkpoints"))
            if (r := run_record(state.parent, args.work)) is not None]
    result = {**provenance("divergence.py"), "limit": DEFAULT_LIMIT,
              "workspaces": [str(w.relative_to(args.work)) for w in workspaces], "runs": runs}
    log(f"{len(runs)} runs -> {write_results(args.out, args.name, False, result, markdown(result))}")


if __name__ == "__main__":
    main()
