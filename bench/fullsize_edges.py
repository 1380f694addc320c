"""Diagnostic: where a screen editor's full-size PSNR goes, by scale (issue 16's halftone goal).

For the editors that ``bench/fullsize_scales.py`` made (its work folders), the 12 MP photo is shrunk to each factor
of the pairs' size (and kept at full size), edited tiled, and compared in grey with the recipe at that factor:

* the dots' phase: the shift (``cv2.phaseCorrelate``) between editor and teacher on 256 px windows over the photo;
* *grey pixels*: the share of pixels between 0.15 and 0.85 (dot edges): the teacher draws 1 px edges at every
  scale, so its share falls as the cells grow; an editor whose edges are soft in units of the cell keeps its share;
* PSNR of the output as it is and hardened at 0.5 (is the loss the edges' softness or the dots' size and shape?).

Chosen nothing; read only by the closing note and the README. Run on validation concepts (newsprint).

    python bench/fullsize_edges.py --runs newsprint-s16-pairs-now-seed0,newsprint-s16-pairs-now-seed1
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np

from common import REPO, log, provenance, provenance_line, write_results

WORK = REPO / "bench" / "work" / "fullsize-scales"
FACTORS = (2.0, 4.0, 8.0, 16.0)
GREY = (0.15, 0.85)
WINDOW = 256


def _grey(a: np.ndarray) -> float:
    """The share of pixels strictly between the ``GREY`` bounds."""
    return float(((a > GREY[0]) & (a < GREY[1])).mean())


def measure(run: Path) -> dict:
    """The figures of one fullsize_scales run's editor (see the module docstring)."""
    import cv2

    from factory.core.images import psnr_u8, read_image
    from factory.data.dataset import full_resolution_reference
    from factory.runtime.editor import Editor
    from factory.teachers.rescale import apply_recipe_at

    concept = run.name.split("-s")[0]
    editor = Editor(run / "editors" / concept, threads=2)
    recipe, pair_size, why = full_resolution_reference(run / f"ws-{concept}" / "data" / concept)
    if recipe is None:
        raise SystemExit(f"{run}: no full-resolution reference ({why})")
    photo = read_image(next((run / "images" / concept).glob("photo-*x*.png")))
    h, w = photo.shape[:2]
    rows = []
    for factor in (*FACTORS, min(h, w) / pair_size):
        short = round(pair_size * factor)
        img = photo if short >= min(h, w) else cv2.resize(photo, (round(w * short / h), short),
                                                         interpolation=cv2.INTER_AREA)
        scale = min(img.shape[:2]) / pair_size
        grey = [cv2.cvtColor(a, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255
                for a in (apply_recipe_at(img, recipe, scale), editor.edit([img], path="tiled")[0])]
        ref, out = grey
        shifts = []
        for y in range(0, img.shape[0] - WINDOW + 1, WINDOW * 2):
            for x in range(0, img.shape[1] - WINDOW + 1, WINDOW * 2):
                a, b = ref[y:y + WINDOW, x:x + WINDOW], out[y:y + WINDOW, x:x + WINDOW]
                (dx, dy), _ = cv2.phaseCorrelate(a - a.mean(), b - b.mean())
                shifts.append(float(np.hypot(dx, dy)))
        rows.append({"scale": round(scale, 1), "psnr_db": round(psnr_u8(255 * out, 255 * ref), 2),
                     "hardened_psnr_db": round(psnr_u8(255 * (out > 0.5), 255 * ref), 2),
                     "grey_teacher": round(_grey(ref), 3), "grey_editor": round(_grey(out), 3),
                     "phase_shift_px_max": round(max(shifts), 2) if shifts else None})
        log(f"{run.name} {scale:.1f}x: {rows[-1]}")
    return {"run": run.name, "rows": rows}


def render(result: dict) -> str:
    scales = [r["scale"] for r in result["runs"][0]["rows"]]
    cols = ("psnr_db", "hardened_psnr_db", "grey_teacher", "grey_editor", "phase_shift_px_max")
    lines = ["# Where a screen editor's full-size PSNR goes (fullsize-edges)", "",
             f"{provenance_line(result)}. The editors "
             "of `bench/fullsize_scales.py`'s runs " + ", ".join(f"`{r['run']}`" for r in result["runs"])
             + ": the 12 MP photo shrunk to each factor of the pairs' size (the last: full size), edited tiled, "
             "compared in grey with the recipe at that factor. *Grey*: the share of pixels between "
             f"{GREY[0]} and {GREY[1]} (dot edges); *hardened*: the output thresholded at 0.5; *phase shift*: the "
             f"largest shift between editor and teacher over {WINDOW} px windows (px). Mean ± sd over the runs.", "",
             "| scale | PSNR (dB) | hardened PSNR (dB) | grey, teacher | grey, editor | phase shift (px) |",
             "| ---: | ---: | ---: | ---: | ---: | ---: |"]
    for i, scale in enumerate(scales):
        cells = []
        for col in cols:
            values = [r["rows"][i][col] for r in result["runs"]]
            mean = statistics.fmean(values)
            digits = 3 if col.startswith("grey") else 2
            cells.append(f"{mean:.{digits}f} ± {statistics.stdev(values):.{digits}f}" if len(values) > 1
                         else f"{mean:.{digits}f}")
        lines.append(f"| {scale}x | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", required=True, help="comma-separated run folders of bench/work/fullsize-scales")
    ap.add_argument("--name", default="fullsize-edges")
    args = ap.parse_args()
    runs = [WORK / name for name in args.runs.split(",")]
    if missing := [str(r) for r in runs if not (r / "editors").is_dir()]:
        raise SystemExit(f"no editor in {', '.join(missing)}: run bench/fullsize_scales.py first")
    result = {**provenance("fullsize_edges.py"), "runs": [measure(r) for r in runs]}
    log(f"wrote {write_results(REPO / 'bench' / 'results', args.name, False, result, render(result))}")


if __name__ == "__main__":
    main()
