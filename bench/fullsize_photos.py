"""12 MP quality over several photos: the card's path on each of a concept's largest held-out photos upscaled.

``bench/fullsize.py`` times and scores one 12 MP photo per concept (its largest held-out photo, upscaled); one
photo's PSNR varies by decibels with its content, so the issue's quality goal (12 MP within 1 dB of the editor's
256 px card figure, a mean over other photos) read on it alone says as much about the photo as about the path.
For the editors of run folders that ``bench/fullsize.py`` made (``editors/<concept>``, ``ws-<concept>``), this
scores the path each card chose (fp32; ``factory apply``'s default) on the ``--photos`` largest held-out photos,
each upscaled (bicubic) to 4000x3000 as that bench does (the first is its photo), against the teacher at full
resolution, and each photo shrunk to the pairs' size (editor and teacher there), with the goal checked on the
mean against the card and against the same photos at the pairs' size.

    python bench/fullsize_photos.py --runs bench/work/fullsize-render/halftone-seed0,...
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from fullsize import big_photo, pair_size_psnr

from common import REPO, log, provenance, provenance_line, write_results

WIDTH, HEIGHT = 4000, 3000


def measure(run: Path, concept: str, photos: int) -> dict:
    """One editor's card figure and per-photo 12 MP and pairs'-size PSNR on its card's path."""
    from factory.core.images import psnr_u8
    from factory.data.dataset import full_resolution_reference
    from factory.export.fullsize import held_out_photos
    from factory.runtime.editor import Editor
    from factory.teachers.rescale import apply_recipe_at

    folder = run / "editors" / concept
    card = json.loads((folder / "card.json").read_text())
    data = run / f"ws-{concept}" / "data" / concept
    recipe, pair_size, why = full_resolution_reference(data)
    if recipe is None:
        raise SystemExit(f"{run}: {why}")
    ed = Editor(folder, threads=2)
    rows = []
    for name, photo in held_out_photos(data, photos)[0]:
        big = big_photo(photo, WIDTH, HEIGHT)
        reference = apply_recipe_at(big, recipe, HEIGHT / pair_size)
        rows.append({"photo": name, "psnr_12mp_db": round(psnr_u8(ed.edit([big])[0], reference), 2),
                     "pairs_size_db": pair_size_psnr(ed, big, recipe, pair_size)})
        log(f"{run.name} {concept} {name}: {rows[-1]}")
    return {"run": str(run.relative_to(REPO)) if run.is_relative_to(REPO) else str(run), "concept": concept,
            "path": card["full_size"]["path"], "card_db": card["checks"]["quality"]["fp32_vs_teacher"]["mean_db"],
            "photos": rows,
            "mean_12mp_db": round(statistics.fmean(r["psnr_12mp_db"] for r in rows), 2),
            "mean_pairs_size_db": round(statistics.fmean(r["pairs_size_db"] for r in rows), 2)}


def render(result: dict) -> str:
    lines = ["# 12 MP quality over several photos (fullsize-photos)", "",
             f"{provenance_line(result)}. Per "
             f"editor, the path its card chose (fp32) on the {result['photos']} largest held-out photos, each upscaled "
             f"to {WIDTH}x{HEIGHT} (the first is `bench/fullsize.py`'s photo), PSNR (dB) against the teacher at full "
             "resolution; *pairs' size*: the same photos shrunk to the pairs' size, editor and teacher there. Goal: "
             "the 12 MP mean within 1 dB of the card (and of the same photos at the pairs' size).", "",
             "| concept | editor | path | card | 12 MP per photo | 12 MP mean | pairs' size mean | within 1 dB of "
             "the card | of the pairs' size |", "| --- | --- | --- | ---: | --- | ---: | ---: | --- | --- |"]
    for r in result["editors"]:
        per = ", ".join(f"{p['psnr_12mp_db']:.2f}" for p in r["photos"])
        lines.append(f"| {r['concept']} | `{r['run']}` | {r['path']} | {r['card_db']} | {per} "
                     f"| {r['mean_12mp_db']:.2f} "
                     f"| {r['mean_pairs_size_db']:.2f} | {'yes' if r['mean_12mp_db'] >= r['card_db'] - 1 else 'NO'} "
                     f"| {'yes' if r['mean_12mp_db'] >= r['mean_pairs_size_db'] - 1 else 'NO'} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", required=True, help="comma-separated run folders of bench/fullsize.py (editors/, ws-*)")
    ap.add_argument("--photos", type=int, default=3, help="held-out photos per editor")
    ap.add_argument("--name", default="fullsize-photos")
    args = ap.parse_args()
    runs = [Path(r).resolve() for r in args.runs.split(",")]
    if missing := [str(r) for r in runs if not (r / "editors").is_dir()]:
        raise SystemExit(f"no editors/ in {', '.join(missing)}")
    editors = [measure(r, c.name, args.photos) for r in runs for c in sorted((r / "editors").iterdir()) if c.is_dir()]
    result = {**provenance("fullsize_photos.py"), "photos": args.photos, "editors": editors}
    log(f"wrote {write_results(REPO / 'bench' / 'results', args.name, False, result, render(result))}")


if __name__ == "__main__":
    main()
