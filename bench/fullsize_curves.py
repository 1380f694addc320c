"""The guided path's global colour curves (``factory.runtime.colour_curves``): do they help, and with which ridge?

For the editors of workspaces ``factory run`` made (``editors/<concept>``, ``data/<concept>``), this scores the
guided path with and without the curve stage, for a few ridge weights ``eps`` of the local affine fit (large: the
local stage barely moves from the global map), at the editor resolutions the export measures, on the concept's
held-out photos as the export crops them and on the same photos upscaled (bicubic) to 4000x3000, against the
teacher at full resolution (PSNR, dB). Tiled is beside them. Run it on validation concepts: the variant chosen
here is what the export measures on every editor.

    python bench/fullsize_curves.py --workspaces bench/work/fullsize-curves-validation/ws-autumn,...
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
from pathlib import Path

from fullsize import big_photo

from common import REPO, log, provenance, provenance_line, write_results

WIDTH, HEIGHT = 4000, 3000
#: name -> (curves, the local fit's eps, the curves' knots, their smoothness); --variants picks some
ALL_VARIANTS = {"guided": (False, 1e-2, 17, 1e-3), "curves": (True, 1e-2, 17, 1e-3),
                "curves_eps0.1": (True, 1e-1, 17, 1e-3), "curves_eps1": (True, 1.0, 17, 1e-3),
                "curves_k33": (True, 1e-2, 33, 1e-3), "curves_s1e-4": (True, 1e-2, 17, 1e-4),
                "curves_k33_s1e-4": (True, 1e-2, 33, 1e-4)}
VARIANTS = dict(ALL_VARIANTS)


def measure(ws: Path, concept: str, photos: int) -> dict:
    """Per photo and scale (export crop, 12 MP): PSNR of tiled and of every variant at every guided side."""
    from factory.core.images import psnr_u8
    from factory.data.dataset import full_resolution_reference
    from factory.export.fullsize import MAX_PIXELS, _centre_crop, guided_sides, held_out_photos
    from factory.runtime import colour_curves, guided
    from factory.runtime.editor import Editor
    from factory.teachers.rescale import apply_recipe_at

    folder = ws / "editors" / concept
    card = json.loads((folder / "card.json").read_text())
    data = ws / "data" / concept
    recipe, pair_size, why = full_resolution_reference(data)
    if recipe is None:
        raise SystemExit(f"{ws}: {why}")
    ed = Editor(folder, threads=2)
    sides = guided_sides(pair_size, 256, ed.stride)
    scores: dict[str, dict[str, list[float]]] = {"crop": {}, "12mp": {}}
    for name, photo in held_out_photos(data, photos)[0]:
        for scale, img, factor in (("crop", _centre_crop(photo, MAX_PIXELS), min(photo.shape[:2]) / pair_size),
                                   ("12mp", big_photo(photo, WIDTH, HEIGHT), HEIGHT / pair_size)):
            reference = apply_recipe_at(img, recipe, factor)
            row = scores[scale]
            row.setdefault("tiled", []).append(psnr_u8(ed.edit([img], path="tiled")[0], reference))
            for side in sides:
                for variant, (curves, eps, knots, smooth) in VARIANTS.items():
                    guided.fit_curves = functools.partial(colour_curves.fit_curves, knots=knots, smooth=smooth)
                    out = ed.guided(img, side, 1, 512, curves=curves, eps=eps)[0]
                    row.setdefault(f"{variant}_{side}", []).append(psnr_u8(out, reference))
        log(f"{concept} {name}: " + ", ".join(f"{k} {v[-1]:.2f}" for k, v in scores["crop"].items()))
    means = {scale: {k: round(statistics.fmean(v), 2) for k, v in row.items()} for scale, row in scores.items()}
    return {"concept": concept, "workspace": str(ws.relative_to(REPO)) if ws.is_relative_to(REPO) else str(ws),
            "card_db": card["checks"]["quality"]["fp32_vs_teacher"]["mean_db"], "sides": sides, "psnr_db": means,
            "best": {scale: {v: max(sides, key=lambda s: (row[f"{v}_{s}"], -s)) for v in VARIANTS}
                     for scale, row in means.items()}}


def render(result: dict) -> str:
    lines = ["# The guided path's colour curves (fullsize-curves)", "",
             f"{provenance_line(result)}. Per editor, mean PSNR (dB) against the teacher at full resolution on its "
             f"{result['photos']} largest held-out photos, as the export crops them (*crop*) and upscaled to "
             f"{WIDTH}x{HEIGHT} (*12 MP*); each guided variant at the editor resolution that scored best on the crops "
             "(the export's rule). Variants: " + "; ".join(
                 f"`{k}`: {f'curves ({n} knots, smoothness {m:g}), then ' if c else ''}local affine eps {e:g}"
                 for k, (c, e, n, m) in VARIANTS.items())
             + ".", "",
             "| concept | card | scale | tiled | " + " | ".join(VARIANTS) + " |",
             "| --- | ---: | --- | ---: | " + " | ".join("---:" for _ in VARIANTS) + " |"]
    for r in result["editors"]:
        for scale in ("crop", "12mp"):
            row = r["psnr_db"][scale]
            best = r["best"]["crop"]
            cells = [f"{row[v + '_' + str(best[v])]:.2f} ({best[v]})" for v in VARIANTS]
            lines.append(f"| {r['concept']} | {r['card_db']} | {scale} | {row['tiled']:.2f} | " + " | ".join(cells)
                         + " |")
    mean = {v: statistics.fmean(r["psnr_db"]["crop"][f"{v}_{r['best']['crop'][v]}"] for r in result["editors"])
            for v in VARIANTS}
    lines += ["", "Mean over editors (crop): " + ", ".join(f"{k} {v:.2f}" for k, v in mean.items()) + "."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workspaces", required=True, help="comma-separated workspaces (editors/<concept>, data/)")
    ap.add_argument("--photos", type=int, default=3, help="held-out photos per editor")
    ap.add_argument("--name", default="fullsize-curves-validation")
    ap.add_argument("--variants", default=",".join(ALL_VARIANTS), help="comma-separated, of " + ", ".join(ALL_VARIANTS))
    args = ap.parse_args()
    VARIANTS.clear()
    VARIANTS.update({k: ALL_VARIANTS[k] for k in args.variants.split(",")})
    spaces = [Path(w).resolve() for w in args.workspaces.split(",")]
    editors = [measure(ws, c.name, args.photos) for ws in spaces for c in sorted((ws / "editors").iterdir())
               if (c / "card.json").is_file()]
    result = {**provenance("fullsize_curves.py"), "photos": args.photos, "editors": editors}
    log(f"wrote {write_results(REPO / 'bench' / 'results', args.name, False, result, render(result))}")


if __name__ == "__main__":
    main()
