"""Where the output curves move a protocol run's training curves: per concept and arm, the first point (before any
training) and the point at the equal budget, with the curves the fine-tune kept (``psnr``) and without (``raw_psnr``),
the kinds kept at the end and the seconds each fit cost (charged to its point).

Reads the ``runs/<concept>/seed<N>/<arm>/`` folders a ``bench/run_all.py --output-curves`` run wrote (its
``curve.csv`` and ``metrics.json``); writes ``bench/results/<name>.{json,md}``. Mean +- standard deviation over seeds.

    python bench/curve_points.py --workspace bench/work/protocol-colour-photo --name curve-points-colour-photo
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from common import REPO, log, provenance, provenance_line, write_results


def _ms(values: list[float]) -> str:
    return f"{statistics.fmean(values):.2f} ± {statistics.stdev(values) if len(values) > 1 else 0.0:.2f}"


def points(run: Path, equal_at: float) -> dict:
    """One run's first point and its point at ``equal_at`` charged seconds (with and without the curves)."""
    from factory.evaluation.curves import read_curve

    curve = read_curve(run / "curve.csv")
    if not curve or "raw_psnr" not in curve[0]:
        raise SystemExit(f"{run}: no curve with output curves (run bench/run_all.py with --output-curves)")
    at = [r for r in curve if r["seconds"] <= equal_at + 1e-6][-1]
    from factory.lora.output_calibration import output_gain, saved_output_curves

    kept = json.loads((run / "metrics.json").read_text())["output_curves"]  # runs before the photo kind: no "inputs"
    knots = saved_output_curves(run)
    return {"start": curve[0]["psnr"], "start_raw": curve[0]["raw_psnr"], "start_seconds": curve[0]["seconds"],
            "equal": at["psnr"], "equal_raw": at["raw_psnr"],
            "kept": kept.get("inputs", "output") if kept["kept"] else "none",
            "gain": round(output_gain(knots), 2) if knots is not None else None,
            "fit_seconds": [r["curves_seconds"] for r in curve]}


def render(result: dict) -> str:
    lines = [f"# Output curves in the protocol runs' training curves ({result['name']})", "",
             f"{provenance_line(result)}. From `{result['workspace']}`: each arm's first point (before any training, "
             f"the fit's seconds charged) and its last point at or before {result['equal_at']:g} s, held-out PSNR in "
             "dB with the output curves where the rule kept them and without (*raw*); mean ± standard deviation over "
             "seeds. *Kept at the end*: the kinds the final fit kept, per seed, with their gain "
             "(`factory.lora.output_calibration.output_gain`). *Fit seconds*: the range over every point (the student "
             "over the training pairs and the fits).", "",
             "| concept | arm | first point | first point, raw | at the equal budget | raw | kept at the end (gain) | "
             "fit seconds |", "| --- | --- | ---: | ---: | ---: | ---: | --- | ---: |"]
    for r in result["rows"]:
        runs = r["runs"]
        fits = [s for p in runs for s in p["fit_seconds"]]
        kept = ", ".join(p["kept"] + (f" ({p['gain']:.2f})" if p.get("gain") is not None else "") for p in runs)
        lines.append(f"| {r['concept']} | {r['arm']} | {_ms([p['start'] for p in runs])} | "
                     f"{_ms([p['start_raw'] for p in runs])} | {_ms([p['equal'] for p in runs])} | "
                     f"{_ms([p['equal_raw'] for p in runs])} | {kept} | {min(fits):.2f}-{max(fits):.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workspace", type=Path, required=True)
    ap.add_argument("--arms", default="readout,scratch")
    ap.add_argument("--equal-at", type=float, default=90.0)
    ap.add_argument("--name", required=True)
    args = ap.parse_args()
    rows = []
    for concept in sorted(p.name for p in (args.workspace / "runs").iterdir() if p.is_dir()):
        for arm in args.arms.split(","):
            seeds = sorted((args.workspace / "runs" / concept).glob(f"seed*/{arm}"))
            rows.append({"concept": concept, "arm": arm, "runs": [points(s, args.equal_at) for s in seeds]})
    ws = args.workspace.resolve()
    result = {**provenance("curve_points.py"), "name": args.name, "equal_at": args.equal_at, "rows": rows,
              "workspace": str(ws.relative_to(REPO)) if ws.is_relative_to(REPO) else str(ws)}
    log(f"wrote {write_results(REPO / 'bench' / 'results', args.name, False, result, render(result))}")


if __name__ == "__main__":
    main()
