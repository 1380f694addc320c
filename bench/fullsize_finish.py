"""Choose (on validation concepts) and check (on test concepts) a screen editor's full-size finish.

The finish (``factory.runtime.screen_finish``) blurs the photo by a fraction of the screen's cell before the
tiled edit and sharpens the output's levels after it. For editors that ``bench/fullsize_scales.py`` or
``bench/fullsize.py`` made (their work folders: ``editors/<concept>``, ``images/<concept>``, ``ws-<concept>``),
every blur x levels candidate below is scored against the teacher at full resolution on:

* the 12 MP photo (``images/<concept>/photo-*x*.png``) at full size and shrunk to 2, 4 and 8 times the pairs' size;
* the concept's held-out photos at their own size, centre-cropped as the export measures them.

The rule, run on validation concepts (newsprint): the candidate with the best mean over the held-out photos and
the 12 MP photo. ``--candidates chosen`` scores only the module's constants (for test concepts).

``--max-scales`` then scores the module's finish on the 12 MP photo edited shrunk to each of those multiples of the
pairs' size and upscaled before the levels (``max_scale``; 0: at full size), with the edit's seconds.

    python bench/fullsize_finish.py --runs bench/work/fullsize-scales/newsprint-s16-pairs-now-seed0,...
"""

from __future__ import annotations

import argparse
import itertools
import statistics
from pathlib import Path

import numpy as np

from common import REPO, log, mean_sd_table, provenance, provenance_line, write_results

BLURS = (0.0, 0.2, 0.33, 0.5)
LEVELS = ((0.5, 1.0), (0.55, 1.5), (0.55, 2.0), (0.6, 1.5), (0.6, 2.0), (0.6, 3.0), (0.65, 2.0))
FACTORS = (2.0, 4.0, 8.0)
PHOTOS = 3


def _cases(run: Path) -> tuple[object, list, list[tuple[str, np.ndarray, float]]]:
    """(the editor, its recipe, [(scale label, photo, scale factor)]) of one run folder."""
    import cv2

    from factory.core.images import read_image
    from factory.data.dataset import full_resolution_reference
    from factory.export.fullsize import MAX_PIXELS, held_out_photos
    from factory.export.fullsize import _centre_crop as centre_crop
    from factory.runtime.editor import Editor

    concept = next(p.name for p in (run / "editors").iterdir() if p.is_dir())
    editor = Editor(run / "editors" / concept, threads=2)
    data = run / f"ws-{concept}" / "data" / concept
    recipe, pair_size, why = full_resolution_reference(data)
    if recipe is None:
        raise SystemExit(f"{run}: no full-resolution reference ({why})")
    photo = read_image(next((run / "images" / concept).glob("photo-*x*.png")))
    h, w = photo.shape[:2]
    cases = []
    for factor in FACTORS:
        short = round(pair_size * factor)
        cases.append((f"{factor:g}x", cv2.resize(photo, (round(w * short / h), short), interpolation=cv2.INTER_AREA)))
    cap = min(MAX_PIXELS, (6 * editor.size) ** 2)
    cases += [("held-out", centre_crop(img, cap)) for _, img in held_out_photos(data, PHOTOS)[0]]
    cases.append(("12 MP", photo))
    return editor, recipe, [(label, img, min(img.shape[:2]) / pair_size) for label, img in cases]


def measure(run: Path, candidates: list[tuple[float, float, float]], max_scales: list[float]) -> dict:
    """{scale label: {candidate: [PSNR per photo]}} for one run folder."""
    import json

    from factory.core.images import psnr_u8
    from factory.runtime.screen_finish import blur, levels, screen_cell
    from factory.teachers.rescale import apply_recipe_at

    editor, recipe, cases = _cases(run)
    card = json.loads((editor.path.parent / "card.json").read_text())
    cell = screen_cell(card.get("position", {}).get("screen"))
    if cell is None:
        raise SystemExit(f"{run}: the editor has no screen")
    scores: dict[str, dict[str, list[float]]] = {}
    for label, img, scale in cases:
        reference = apply_recipe_at(img, recipe, scale)
        for b in sorted({c[0] for c in candidates}):
            out = editor.edit([blur(img, b * cell * min(img.shape[:2]))], path="tiled")[0]
            for candidate in (c for c in candidates if c[0] == b):
                level, gain = candidate[1:]
                finished = out if (level, gain) == (0.5, 1.0) else levels(out, level, gain)
                scores.setdefault(label, {}).setdefault(_name(candidate), []).append(
                    round(psnr_u8(finished, reference), 2))
        log(f"{run.name} {label} {img.shape[1]}x{img.shape[0]}: " + ", ".join(
            f"{k} {v[-1]:.2f}" for k, v in scores[label].items()))
    return {"run": str(run.relative_to(REPO)) if run.is_relative_to(REPO) else str(run), "cell": cell,
            "scores": scores, "max_scale": _max_scales(editor, recipe, cases[-1], card, max_scales)}


def _max_scales(editor, recipe: list, case: tuple, card: dict, max_scales: list[float]) -> dict[str, dict]:
    """{max_scale: {psnr_db, seconds}} of the module's finish on the 12 MP photo (``case``)."""
    import time
    from dataclasses import replace

    from factory.core.images import psnr_u8
    from factory.runtime.screen_finish import edit_finished, finish_for
    from factory.teachers.rescale import apply_recipe_at

    label, img, scale = case
    reference = apply_recipe_at(img, recipe, scale)
    finish = finish_for(card["position"]["screen"])
    out = {}
    for m in max_scales:
        t = time.perf_counter()
        edited = edit_finished(lambda a: editor.edit([a], path="tiled", finish=False)[0], img,
                               replace(finish, max_scale=m))
        seconds = time.perf_counter() - t
        out[f"{m:g}"] = {"psnr_db": round(psnr_u8(edited, reference), 2), "seconds": round(seconds, 2)}
        log(f"{label}, finish, max scale {m:g}: {out[f'{m:g}']}")
    return out


def _name(candidate: tuple[float, float, float]) -> str:
    return "blur {:g}, level {:g}, gain {:g}".format(*candidate)


def summarise(runs: list[dict]) -> dict:
    """Per scale and candidate: mean and sd over runs of each run's mean over photos; the rule's choice."""
    table = mean_sd_table(runs)
    names = list(table["12 MP"])
    chosen = max(names, key=lambda n: (table["held-out"][n][0] + table["12 MP"][n][0]) / 2)
    by_max = {}
    for m in runs[0]["max_scale"]:
        psnr, secs = ([r["max_scale"][m][k] for r in runs] for k in ("psnr_db", "seconds"))
        by_max[m] = {"psnr_db": (round(statistics.fmean(psnr), 2), round(statistics.stdev(psnr), 2) if len(psnr) > 1
                                 else 0.0), "seconds": round(statistics.fmean(secs), 2)}
    return {"table": table, "chosen": chosen, "none": names[0], "max_scale": by_max}


def render(result: dict) -> str:
    s = result["summary"]
    table, labels = s["table"], list(s["table"])
    lines = ["# A screen editor's full-size finish (fullsize-finish)", "",
             f"{provenance_line(result)}. Editors: "
             + ", ".join(f"`{r['run']}`" for r in result["runs"])
             + ". PSNR (dB) against the teacher at full resolution, tiled edit; the 12 MP photo at full size and "
             "shrunk to 2, 4 and 8 times the pairs' size; *held-out*: the concept's held-out photos at their own "
             "size (mean over them). *blur*: sigma in screen cells before the edit; *level*, *gain*: the output's "
             "levels mapped by (v - level) x gain + 0.5. Mean ± sd over the editors.", "",
             f"Rule: the best mean of held-out and 12 MP. Chosen: **{s['chosen']}** (none: {s['none']}).", "",
             "| candidate | " + " | ".join(labels) + " |", "| --- |" + " ---: |" * len(labels)]
    for name in table["12 MP"]:
        mark = " (chosen)" if name == s["chosen"] else ""
        lines.append(f"| {name}{mark} | " + " | ".join(f"{table[lb][name][0]:.2f} ± {table[lb][name][1]:.2f}"
                                                          for lb in labels) + " |")
    if s["max_scale"]:
        lines += ["", f"The module's finish ({result['finish']}) on the 12 MP photo, edited at most *max scale* times "
                  "the pairs' size (0: full size) and upscaled before the levels; seconds of the edit (mean):", "",
                  "| max scale | 12 MP PSNR (dB) | seconds |", "| ---: | ---: | ---: |"]
        lines += [f"| {m} | {v['psnr_db'][0]:.2f} ± {v['psnr_db'][1]:.2f} | {v['seconds']:.2f} |"
                  for m, v in s["max_scale"].items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    from factory.runtime.screen_finish import BLUR_CELLS, GAIN, LEVEL

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", required=True, help="comma-separated run folders (editors/, images/, ws-<concept>/)")
    ap.add_argument("--candidates", choices=("grid", "chosen"), default="grid",
                    help="grid: every blur x levels candidate (validation); chosen: none and the module's finish")
    ap.add_argument("--max-scales", default="", help="comma-separated max_scale values to score (0: full size)")
    ap.add_argument("--name", default="fullsize-finish")
    args = ap.parse_args()
    runs = [Path(r).resolve() for r in args.runs.split(",")]
    if missing := [str(r) for r in runs if not (r / "editors").is_dir()]:
        raise SystemExit(f"no editors/ in {', '.join(missing)}")
    candidates = ([(b, lv, g) for b, (lv, g) in itertools.product(BLURS, LEVELS)] if args.candidates == "grid"
                  else [(0.0, 0.5, 1.0), (BLUR_CELLS, LEVEL, GAIN)])
    max_scales = [float(m) for m in args.max_scales.split(",") if m]
    measured = [measure(r, candidates, max_scales) for r in runs]
    result = {**provenance("fullsize_finish.py"), "runs": measured, "summary": summarise(measured),
              "finish": f"blur {BLUR_CELLS:g} cells, level {LEVEL:g}, gain {GAIN:g}"}
    log(f"wrote {write_results(REPO / 'bench' / 'results', args.name, False, result, render(result))}")


if __name__ == "__main__":
    main()
