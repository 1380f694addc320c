"""What an editor that does not draw a concept's fine pattern can score at full resolution, and why.

Issue 16's quality goal compares an editor's PSNR against the full-resolution teacher with its 256 px figure.
For a pattern of fixed size in the scene (a halftone screen, pencil strokes) the teacher at full resolution
draws the pattern at the scaled size, but its edges stay about a pixel wide, so the pattern is crisper
there. An editor that renders only the local mean of the pattern (what a student that never learned the
screen does) then loses more against the full-resolution reference than at the pairs' size, whatever path
(tiled, guided, resize) runs it.

This measures that bound without any editor: the teacher's own output, Gaussian-blurred by ``sigma`` pixels
at the pairs' scale (and ``sigma`` x the scale factor at full size), scored against the unblurred output at
the pairs' size and at full resolution, on the 12 MP photo ``bench/fullsize.py`` made for each concept; and a
perfect editor at the pairs' size, its output upscaled to full size. Numpy/OpenCV only (about a minute per
concept). Writes ``bench/results/fullsize-bound.{json,md}``.

    python bench/fullsize.py ...            # first: makes bench/work/fullsize/ (editors, the 12 MP photos)
    python bench/fullsize_bound.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2

from factory.core.atomic import atomic_write_json, atomic_write_text
from factory.core.images import psnr_u8
from factory.data.dataset import full_resolution_reference
from factory.teachers.rescale import apply_recipe_at

from common import log, provenance, shrink_to_pairs

SIGMAS = (0.5, 1.0, 2.0, 3.0, 5.0)


def bound(concept: str, work: Path) -> dict:
    """PSNR of the blurred teacher output at the pairs' size and at full size, for each sigma."""
    recipe, pair_size, why = full_resolution_reference(work / f"ws-{concept}" / "data" / concept)
    if recipe is None:
        return {"concept": concept, "measured": False, "why": why}
    photo = next(iter(sorted((work / "images" / concept).glob("photo-*.png"))), None)
    if photo is None:
        return {"concept": concept, "measured": False,
                "why": f"no 12 MP photo in {work / 'images' / concept} (run bench/fullsize.py first)"}
    img = cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2RGB)
    h, w = img.shape[:2]
    factor = min(h, w) / pair_size
    full = apply_recipe_at(img, recipe, factor)
    small_in = shrink_to_pairs(img, pair_size)  # as bench/fullsize.py scores the photo at the pairs' size
    small = apply_recipe_at(small_in, recipe, 1.0)
    rows = [{"sigma": s, "pairs_size_db": round(psnr_u8(cv2.GaussianBlur(small, (0, 0), s), small), 2),
             "full_db": round(psnr_u8(cv2.GaussianBlur(full, (0, 0), s * factor), full), 2)} for s in SIGMAS]
    return {"concept": concept, "measured": True, "photo": photo.name, "pair_size": pair_size,
            "factor": round(factor, 3), "blurred": rows,
            "identity": {"pairs_size_db": round(psnr_u8(small_in, small), 2), "full_db": round(psnr_u8(img, full), 2)},
            "perfect_upscaled_db": round(psnr_u8(cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC), full), 2)}


def render(res: dict) -> str:
    lines = ["# Full-size quality bound of an editor that draws no fine pattern", "",
             f"Date {res['date']}, commit `{res['commit']}`, `{res['command']}` ({res['machine']}). The teacher's own "
             "output blurred by sigma pixels (at the pairs' scale), scored against the unblurred output at the "
             "pairs' size and at full resolution (the 12 MP photo of `bench/fullsize.py`); *perfect, upscaled*: "
             "the teacher's output at the pairs' size, upscaled (bicubic) to full size. PSNR in dB.", ""]
    for r in res["concepts"]:
        if not r["measured"]:
            lines += [f"## {r['concept']}", "", f"Not measured: {r['why']}", ""]
            continue
        lines += [f"## {r['concept']}", "",
                  f"Photo `{r['photo']}`, pairs' size {r['pair_size']} px (full size is {r['factor']}x). Unchanged "
                  f"photo: {r['identity']['pairs_size_db']} dB at the pairs' size, {r['identity']['full_db']} dB at "
                  f"full size. Perfect editor at the pairs' size, upscaled: {r['perfect_upscaled_db']} dB.", "",
                  "| sigma (pairs' px) | pairs' size | full size | loss at full size |",
                  "| ---: | ---: | ---: | ---: |"]
        lines += [f"| {b['sigma']} | {b['pairs_size_db']} | {b['full_db']} | "
                  f"{round(b['pairs_size_db'] - b['full_db'], 2)} |" for b in r["blurred"]]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--concepts", default="cross-process,underwater,pencil-sketch,halftone")
    ap.add_argument("--work", type=Path, default=Path("bench/work/fullsize"))
    ap.add_argument("--out", type=Path, default=Path("bench/results"))
    args = ap.parse_args()
    res = provenance("fullsize_bound.py")
    res["concepts"] = []
    for c in args.concepts.split(","):
        res["concepts"].append(bound(c, args.work))
        log(f"{c}: {res['concepts'][-1].get('blurred') or res['concepts'][-1].get('why')}")
    atomic_write_json(args.out / "fullsize-bound.json", res)
    atomic_write_text(args.out / "fullsize-bound.md", render(res))
    log(f"wrote {args.out / 'fullsize-bound.md'}")


if __name__ == "__main__":
    main()
