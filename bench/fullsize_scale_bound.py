"""Could a screen concept's editor run below full size and be upscaled? The teacher's own answer.

Issue 16's 12 MP goal for halftone stays missed with the editor drawing its dots at full size
(``bench/results/fullsize-lattice.md``). The other way to full size is to run the editor on the photo
shrunk to k times the pairs' size, where it scores better (same file, by scale), and upscale its output.
This bounds that path without any editor: the teacher itself run at k times the pairs' size (the recipe
with its pixel sizes scaled by k, as a perfect editor there would draw it), upscaled (bicubic) to
4000x3000, scored against the teacher at full resolution; for each test concept and a few test photos
(each centre-cropped and upscaled to 4000x3000, as ``bench/fullsize.py`` makes its 12 MP photo).
Numpy/OpenCV only. Writes ``bench/results/fullsize-scale-bound.{json,md}``.

    python bench/fullsize_scale_bound.py [--concepts halftone] [--photos 3]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2

from common import log, provenance, write_results

SCALES = (1, 2, 4, 8, 16)
WIDTH, HEIGHT = 4000, 3000


def scale_bound(concept: str, photos: list, pair_size: int) -> dict:
    """PSNR (dB) of the teacher at each k x the pairs' size, upscaled to full size, per photo (``photos``: (name,
    the photo at full size)) and its mean and spread (``mean_spread``)."""
    from concepts.cards import find_card
    from factory.core.images import psnr_u8
    from factory.evaluation.protocol import mean_spread
    from factory.teachers.rescale import apply_recipe_at

    recipe = find_card(concept).teacher.params["recipe"]
    factor = min(WIDTH, HEIGHT) / pair_size
    per_photo = []
    for name, big in photos:
        full = apply_recipe_at(big, recipe, factor)
        row = {"photo": name, "unchanged_db": round(psnr_u8(big, full), 2), "upscaled_db": {}}
        for k in SCALES:
            s = pair_size * k / min(WIDTH, HEIGHT)
            small = cv2.resize(big, (round(WIDTH * s), round(HEIGHT * s)), interpolation=cv2.INTER_AREA)
            up = cv2.resize(apply_recipe_at(small, recipe, k), (WIDTH, HEIGHT), interpolation=cv2.INTER_CUBIC)
            row["upscaled_db"][str(k)] = round(psnr_u8(up, full), 2)
        per_photo.append(row)
        log(f"{concept} {name}: {row['upscaled_db']}")
    return {"concept": concept, "factor": round(factor, 3), "photos": per_photo,
            "upscaled": {str(k): mean_spread(r["upscaled_db"][str(k)] for r in per_photo) for k in SCALES},
            "unchanged": mean_spread(r["unchanged_db"] for r in per_photo)}


def _cell(m: dict) -> str:
    return f"{round(m['mean'], 2)} ± {round(m['std'], 2)}"


def render(res: dict) -> str:
    lines = ["# Full size from a smaller run: the teacher's bound (fullsize-scale-bound)", "",
             f"{res['date']}, commit `{res['commit']}`, `{res['command']}` ({res['machine']}). The teacher run on the "
             f"photo shrunk to k x the pairs' size ({res['pair_size']} px), upscaled (bicubic) to {WIDTH}x{HEIGHT} and "
             "scored against the teacher at full resolution: what a perfect editor run at that size and upscaled "
             f"would score. {len(res['concepts'][0]['photos'])} test photos, PSNR in dB, mean ± sd.", "",
             "| concept | unchanged photo | " + " | ".join(f"{k}x" for k in SCALES) + " |",
             "| --- | ---: | " + " | ".join("---:" for _ in SCALES) + " |"]
    for c in res["concepts"]:
        cells = [_cell(c["upscaled"][str(k)]) for k in SCALES]
        lines.append(f"| {c['concept']} | {_cell(c['unchanged'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    from factory.data.photos import default_photos
    from factory.evaluation.protocol import SIZE

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--concepts", default="halftone,pencil-sketch,cross-process,underwater")
    ap.add_argument("--photos", type=int, default=3, help="test photos per concept")
    ap.add_argument("--out", type=Path, default=Path("bench/results"))
    args = ap.parse_args()
    from fullsize import big_photo

    test = default_photos(fetch=False).split("test")[:args.photos]
    photos = [(p.name, big_photo(p.rgb, WIDTH, HEIGHT)) for p in test]  # each made once, for every concept
    res = {**provenance("fullsize_scale_bound.py"), "pair_size": SIZE, "scales": list(SCALES),
           "concepts": [scale_bound(c, photos, SIZE) for c in args.concepts.split(",")]}
    log(f"wrote {write_results(args.out, 'fullsize-scale-bound', False, res, render(res))}")


if __name__ == "__main__":
    main()
