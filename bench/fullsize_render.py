"""Choose (on validation concepts) a screen editor's render at full size: the low scale its editor runs at.

The screen path (``factory.runtime.screen_render``) runs the editor on the photo shrunk to at most ``low_scale``
times the pairs' size, reads the ink from its output and draws the dots at full resolution from a threshold array
that the export fits on training photos. For editors that ``bench/fullsize_scales.py`` or ``bench/fullsize.py``
made (their work folders: ``editors/<concept>``, ``images/<concept>``, ``ws-<concept>``), the array is fitted as the
export does (``factory.export.fullsize._fit_render``) and each ``--low-scales`` value is scored against the teacher
at full resolution on the concept's held-out photos at their own size (centre-cropped as the export measures them)
and on the 12 MP photo (``images/<concept>/photo-*x*.png``), beside the tiled path with the module's finish.

Rule: the best mean of held-out photos and 12 MP; within 0.1 dB, the lower scale (faster).

    python bench/fullsize_render.py --runs bench/work/fullsize-scales/newsprint-s16-pairs-now-seed0,...
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path

from common import REPO, log, mean_sd_table, provenance, provenance_line, write_results

PHOTOS = 6


def measure(run: Path, low_scales: list[float], fit_photos: int) -> dict:
    """{label: {candidate: [PSNR per photo]}, seconds: {candidate: [seconds on the 12 MP photo]}} for one run."""
    from factory.core.images import psnr_u8, read_image
    from factory.data.dataset import full_resolution_reference
    from factory.export.fullsize import MAX_PIXELS, MAX_SIDE_IN_EXPORT_SIZES, _fit_render, held_out_photos
    from factory.export.fullsize import _centre_crop as centre_crop
    from factory.runtime.editor import Editor
    from factory.runtime.screen_finish import edit_finished, finish_for
    from factory.runtime.screen_render import render_screen
    from factory.teachers.rescale import apply_recipe_at

    concept = next(p.name for p in (run / "editors").iterdir() if p.is_dir())
    editor = Editor(run / "editors" / concept, threads=2)
    screen = json.loads((run / "editors" / concept / "card.json").read_text())["position"]["screen"]
    data = run / f"ws-{concept}" / "data" / concept
    recipe, pair_size, _ = full_resolution_reference(data)
    cap = min(MAX_PIXELS, (MAX_SIDE_IN_EXPORT_SIZES * editor.size) ** 2)
    t0 = time.perf_counter()
    render = _fit_render(data, recipe, pair_size, screen, fit_photos, cap, log)
    fit_seconds = time.perf_counter() - t0
    finish = finish_for(screen)

    def plain(a):
        return editor.edit([a], path="tiled", finish=False)[0]

    def tiled(a):
        return edit_finished(plain, a, finish) if finish.applies(a.shape) else plain(a)

    cases = [("held-out", centre_crop(img, cap)) for _, img in held_out_photos(data, PHOTOS)[0]]
    cases.append(("12 MP", read_image(next((run / "images" / concept).glob("photo-*x*.png")))))
    scores: dict[str, dict[str, list[float]]] = {}
    seconds: dict[str, list[float]] = {}
    for label, img in cases:
        reference = apply_recipe_at(img, recipe, min(img.shape[:2]) / pair_size)
        outs = {}
        t = time.perf_counter()
        outs["tiled + finish"] = tiled(img)
        timing = {"tiled + finish": time.perf_counter() - t}
        for m, (how, edit) in itertools.product(low_scales, (("", tiled), (", no finish", plain))):
            t = time.perf_counter()
            outs[f"render {m:g}x{how}"] = render_screen(edit, img, replace(render, low_scale=m))
            timing[f"render {m:g}x{how}"] = time.perf_counter() - t
        for k, out in outs.items():
            scores.setdefault(label, {}).setdefault(k, []).append(round(psnr_u8(out, reference), 2))
            if label == "12 MP":
                seconds.setdefault(k, []).append(round(timing[k], 2))
        log(f"{run.name} {label} {img.shape[1]}x{img.shape[0]}: "
            + ", ".join(f"{k} {v[-1]:.2f}" for k, v in scores[label].items()))
    return {"run": str(run.relative_to(REPO)) if run.is_relative_to(REPO) else str(run), "scores": scores,
            "seconds_12mp": seconds, "fit_seconds": round(fit_seconds, 2)}


def summarise(runs: list[dict]) -> dict:
    """Per label and candidate: mean and sd over runs of each run's mean over photos; the rule's choice."""
    table = mean_sd_table(runs)
    secs = {n: round(statistics.fmean(s for r in runs for s in r["seconds_12mp"][n]), 2) for n in table["12 MP"]}
    score = {n: (table["held-out"][n][0] + table["12 MP"][n][0]) / 2 for n in table["12 MP"] if n.startswith("render")}
    best = max(score.values())
    chosen = min((n for n in score if score[n] >= best - 0.1), key=lambda n: float(n.split()[1].rstrip("x,")))
    return {"table": table, "seconds_12mp": secs, "chosen": chosen}


def render(result: dict) -> str:
    s = result["summary"]
    table, labels = s["table"], list(s["table"])
    lines = ["# A screen editor's render at full size (fullsize-render)", "",
             f"{provenance_line(result)}. Editors: "
             + ", ".join(f"`{r['run']}`" for r in result["runs"])
             + ". PSNR (dB) against the teacher at full resolution; *held-out*: the concept's held-out photos at "
             "their own size (mean over them); *12 MP*: the bench's upscaled photo. *tiled + finish*: the tiled path "
             "with the module's finish; *render Nx*: the screen path with the editor at most N times the pairs' "
             "size (*no finish*: the editor's low-resolution edit "
             "without the tiled path's finish), its threshold array fitted on "
             f"{result['fit_photos']} training photos as the export does "
             f"(fit {', '.join(str(r['fit_seconds']) for r in result['runs'])} s). Mean ± sd over the editors.", "",
             f"Rule: the best mean of held-out and 12 MP; within 0.1 dB the lower scale. Chosen: **{s['chosen']}**.",
             "", "| candidate | " + " | ".join(labels) + " | 12 MP seconds |",
             "| --- |" + " ---: |" * (len(labels) + 1)]
    for name in table["12 MP"]:
        mark = " (chosen)" if name == s["chosen"] else ""
        lines.append(f"| {name}{mark} | " + " | ".join(f"{table[lb][name][0]:.2f} ± {table[lb][name][1]:.2f}"
                                                          for lb in labels) + f" | {s['seconds_12mp'][name]:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    from factory.export.fullsize import RENDER_PHOTOS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", required=True, help="comma-separated run folders (editors/, images/, ws-<concept>/)")
    ap.add_argument("--low-scales", default="6,8,12", help="comma-separated low_scale values to score")
    ap.add_argument("--fit-photos", type=int, default=RENDER_PHOTOS, help="training photos the array is fitted on")
    ap.add_argument("--name", default="fullsize-render")
    args = ap.parse_args()
    runs = [Path(r).resolve() for r in args.runs.split(",")]
    if missing := [str(r) for r in runs if not (r / "editors").is_dir()]:
        raise SystemExit(f"no editors/ in {', '.join(missing)}")
    measured = [measure(r, [float(m) for m in args.low_scales.split(",")], args.fit_photos) for r in runs]
    result = {**provenance("fullsize_render.py"), "runs": measured, "summary": summarise(measured),
              "fit_photos": args.fit_photos}
    log(f"wrote {write_results(REPO / 'bench' / 'results', args.name, False, result, render(result))}")


if __name__ == "__main__":
    main()
