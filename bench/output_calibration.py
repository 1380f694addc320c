"""A closed-form colour calibration of a fine-tuned editor's output: how much of its error is one global colour map?

For issue 15's colour runs that flatten below scratch's plateau. Per editor (a workspace ``factory run`` made:
``editors/<concept>``, ``data/<concept>``), the editor (fp32, onnxruntime) runs on the concept's training pairs'
sources; nine curves (``factory.runtime.colour_curves``: one per input and output channel) are fitted from its
output to the pairs' targets by least squares, and applied to its output on the test pairs. PSNR (dB) on the test
pairs (the pairs' size) without and with the calibration; *kept by the rule*: the curves fitted on the pairs of three
quarters of the training photos must score higher than the raw output on the other quarter's pairs, else the output
stays raw (the rule a pipeline stage would use, reading no test pair). Seconds: the editor on the training pairs plus
the fit (what a run would be charged). Run it on validation concepts.

    python bench/output_calibration.py --workspaces bench/work/fullsize-curves-validation/ws-autumn,...
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import cv2
import numpy as np

from common import REPO, log, provenance, provenance_line, read_pairs, write_results


def _fit(outputs: list[np.ndarray], targets: list[np.ndarray]) -> np.ndarray:
    from factory.runtime.colour_curves import fit_curves

    return fit_curves(np.concatenate(outputs, 0), np.concatenate(targets, 0))


def _calibrated(img: np.ndarray, tables: np.ndarray) -> np.ndarray:
    from factory.runtime.colour_curves import apply_curves

    return np.clip(cv2.merge(apply_curves(cv2.split(img), tables)) + 0.5, 0, 255).astype(np.uint8)


def _mean_psnr(outputs: list[np.ndarray], targets: list[np.ndarray], tables: np.ndarray | None = None) -> float:
    from factory.core.images import psnr_u8

    return statistics.fmean(psnr_u8(o if tables is None else _calibrated(o, tables), t)
                            for o, t in zip(outputs, targets))


def measure(ws: Path, concept: str) -> dict:
    from factory.runtime.editor import Editor

    data = ws / "data" / concept
    editor = Editor(ws / "editors" / concept, threads=2)
    (train_src, train_dst, groups), (test_src, test_dst, _) = read_pairs(data, "train"), read_pairs(data, "test")
    t0 = time.perf_counter()
    train_out = editor.edit(train_src, path="tiled")
    tables = _fit(train_out, train_dst)
    seconds = time.perf_counter() - t0
    # the rule's hold-out: a quarter of the training photos (every pair of a photo on one side, as test photos are)
    names = sorted(set(groups))
    out_groups = set(names[3 * len(names) // 4:]) or {names[-1]}
    fit_i = [i for i, g in enumerate(groups) if g not in out_groups]
    held_i = [i for i, g in enumerate(groups) if g in out_groups]
    held = _fit([train_out[i] for i in fit_i], [train_dst[i] for i in fit_i])
    held_out, held_dst = [train_out[i] for i in held_i], [train_dst[i] for i in held_i]
    keep = bool(fit_i) and _mean_psnr(held_out, held_dst, held) > _mean_psnr(held_out, held_dst)
    test_out = editor.edit(test_src, path="tiled")
    raw, calibrated = _mean_psnr(test_out, test_dst), _mean_psnr(test_out, test_dst, tables)
    identity = _mean_psnr(test_src, test_dst)
    row = {"concept": concept, "workspace": str(ws.relative_to(REPO)) if ws.is_relative_to(REPO) else str(ws),
           "train_pairs": len(train_src), "test_pairs": len(test_src), "identity_db": round(identity, 2),
           "raw_db": round(raw, 2), "calibrated_db": round(calibrated, 2), "kept": bool(keep),
           "rule_db": round(calibrated if keep else raw, 2), "seconds": round(seconds, 2)}
    log(f"{concept}: {row}")
    return row


def render(result: dict) -> str:
    lines = ["# A fine-tuned editor's output, calibrated by global colour curves (output-calibration)", "",
             f"{provenance_line(result)}. PSNR (dB) on each concept's test pairs at the pairs' size: the editor's "
             "output (*raw*), through nine curves fitted from its output to the targets on the training pairs "
             "(*calibrated*), and as the rule keeps it (curves fitted on the pairs of 3/4 of the training photos "
             "must beat the raw output on the other 1/4's pairs). Seconds: the editor on the training pairs and the "
             "fit.", "",
             "| concept | workspace | pairs (train / test) | identity | raw | calibrated | kept by the rule | rule "
             "| seconds |", "| --- | --- | --- | ---: | ---: | ---: | --- | ---: | ---: |"]
    for r in result["editors"]:
        lines.append(f"| {r['concept']} | `{r['workspace']}` | {r['train_pairs']} / {r['test_pairs']} | "
                     f"{r['identity_db']:.2f} | {r['raw_db']:.2f} | {r['calibrated_db']:.2f} | "
                     f"{'yes' if r['kept'] else 'no'} | {r['rule_db']:.2f} | {r['seconds']:.2f} |")
    gain = [r["rule_db"] - r["raw_db"] for r in result["editors"]]
    lines += ["", f"Rule minus raw over {len(gain)} editors: mean {statistics.fmean(gain):+.2f} dB, "
              f"min {min(gain):+.2f}, max {max(gain):+.2f}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workspaces", required=True, help="comma-separated workspaces (editors/<concept>, data/)")
    ap.add_argument("--name", default="output-calibration-validation")
    args = ap.parse_args()
    editors = [measure(ws, c.name) for ws in (Path(w).resolve() for w in args.workspaces.split(","))
               for c in sorted((ws / "editors").iterdir()) if (c / "card.json").is_file()]
    result = {**provenance("output_calibration.py"), "editors": editors}
    log(f"wrote {write_results(REPO / 'bench' / 'results', args.name, False, result, render(result))}")


if __name__ == "__main__":
    main()
