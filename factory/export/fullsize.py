"""The export's choice of how an editor edits full-size photos: guided upsampling or native tiles.

On a few of the concept's held-out photos at full size (the largest test-split photos its pairs came
from, centre-cropped to at most ``max_pixels``), both paths are compared with the teacher's output at
full resolution: the classic recipe with its pixel sizes scaled to the photo
(``factory.teachers.rescale``), i.e. the training pairs' look on the whole photo. Guided is chosen when
its mean PSNR is within ``MARGIN_DB`` of tiled's (it is several times faster) there and on the same crops
upscaled ``LARGER`` times (a larger photo's scale, where an edit's detail can go wrong that the guided filter
cannot draw), else tiled. Guided is measured
with the editor at a few resolutions (``guided_sides``: the pairs' size, the export size and twice it), and the
best is the card's ``low_side``: an edit that depends on the place in the frame (a vignette) is drawn right
only near the size the editor was trained at. Each resolution is measured with the local affine fit alone and after
global colour curves fitted to the editor's output (``factory.runtime.colour_curves``: a tone curve the local
fit cannot bend, and the editor's pixel errors averaged over the photo); the best is the card's ``guided_curves``.
Without a full-resolution reference (a diffusion or imported-pairs teacher, a recipe that cannot be rescaled,
no held-out photos) nothing is measured and the path is tiled, the one that works for any edit.
For an editor with a screen, tiled is also measured with the screen finish
(``factory.runtime.screen_finish``: input blurred at the screen's cell, output levels sharpened, on photos
large enough), which is kept when it scores higher than tiled without it; and, when the screen is a two-wave
lattice, the screen path (``factory.runtime.screen_render``), its threshold array fitted on the concept's training
photos at full resolution with the teacher's output (never on the photos it is measured on). The screen path is
chosen when it scores highest of the native paths (the finish then stays in the card: the render's low-resolution
edit uses it).
The result is card.json's ``full_size`` section, next to the editor's 256 px figure.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from factory.core.files import read_json
from factory.core.images import psnr_u8
from factory.data.dataset import full_resolution_reference
from factory.runtime.editor import Editor
from factory.runtime.guided import DEFAULT_EPS, radius_for
from factory.runtime.screen_finish import edit_finished, finish_for
from factory.runtime.screen_render import MIN_SCALE as RENDER_MIN_SCALE
from factory.runtime.screen_render import ScreenRender, check_lattice, fit_render, render_screen
from factory.runtime.tiles import DEFAULT_TILE

MARGIN_DB = 0.5
PHOTOS = 3
#: guided, when chosen, is measured again on the crops (a quarter of their pixels) upscaled this much: an edit
#: whose guided output holds at the held-out photos' scale may not at a phone photo's (pencil-sketch, 12 MP)
LARGER = 2
#: training photos the screen render's threshold array is fitted on (``bench/results/fullsize-render-validation*``)
RENDER_PHOTOS = 8
MAX_PIXELS = 2_000_000
#: the measured crops are at most this many export sizes on a side (so small test editors measure fast)
MAX_SIDE_IN_EXPORT_SIZES = 6


def low_side_for(export_size: int, stride: int) -> int:
    """The guided path's editor resolution: twice the export size (512 for a 256 px editor)."""
    return max(stride, 2 * export_size // stride * stride)


def guided_sides(pair_size: int, export_size: int, stride: int) -> list[int]:
    """The guided path's editor resolutions (longer side) the export measures: the pairs' size, the export size
    and ``low_side_for``'s, each a multiple of the stride, smallest first."""
    def to_stride(n: int) -> int:
        return max(stride, round(n / stride) * stride)

    return sorted({to_stride(pair_size), to_stride(export_size), low_side_for(export_size, stride)})


def _centre_crop(rgb: np.ndarray, max_pixels: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    if h * w <= max_pixels:
        return rgb
    s = math.sqrt(max_pixels / (h * w))
    ch, cw = max(1, int(h * s)), max(1, int(w * s))
    y, x = (h - ch) // 2, (w - cw) // 2
    return np.ascontiguousarray(rgb[y : y + ch, x : x + cw])


def held_out_photos(data_dir: Path, n: int, split: str = "test") -> tuple[list[tuple[str, np.ndarray]], str]:
    """The ``n`` largest ``split`` photos the concept's pairs were cut from, and where they came from."""
    from factory.data.pair_store import read_manifest
    from factory.data.photos import photos_by_name

    meta = read_json(data_dir / "synth.json") or {}
    records = [r for r in read_manifest(data_dir) if r.get("split") == split and r.get("photo")]
    names = list(dict.fromkeys(r["photo"] for r in sorted(records, key=lambda r: r["id"])))
    origin = str(meta.get("origin", ""))
    found = list(photos_by_name(origin, names).items())
    found.sort(key=lambda item: -item[1].shape[0] * item[1].shape[1])  # stable: ties keep the pairs' order
    return found[:n], origin


def measure_full_size(editor: Editor, data_dir: Path, export_size: int, editor_db: float | None = None,
                      photos: int = PHOTOS, max_pixels: int = MAX_PIXELS, log=print,
                      screen: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """card.json's ``full_size`` section for ``editor`` (see the module docstring); ``screen``: the card's
    ``position.screen`` of an editor with a screen."""
    from factory.teachers.rescale import RescaleError, apply_recipe_at, rescale_recipe

    low_side = low_side_for(export_size, editor.stride)
    tile = DEFAULT_TILE
    section: dict[str, Any] = {
        "path": "tiled", "low_side": low_side, "tile": tile, "guided_radius": radius_for(low_side),
        "guided_eps": DEFAULT_EPS, "margin_db": MARGIN_DB, "measured": False,
        "editor_psnr_db": editor_db,  # the editor vs its teacher at the export size, held-out pairs
    }
    recipe, pair_size, why = full_resolution_reference(data_dir)
    if recipe is not None:
        try:
            rescale_recipe(recipe, 2.0)
        except RescaleError as exc:
            recipe, why = None, f"the recipe cannot be run at full resolution ({exc})"
    chosen: list[tuple[str, np.ndarray]] = []
    if recipe is not None:
        chosen, origin = held_out_photos(data_dir, photos)
        if not chosen:
            recipe, why = None, f"no readable test-split photo among the concept's pairs (from {origin or 'unknown'})"
    if recipe is None:
        section["why"] = f"not measured: {why}; tiled works for any edit"
        log(f"full size: {section['why']}")
        return section

    cap = min(max_pixels, (MAX_SIDE_IN_EXPORT_SIZES * export_size) ** 2)
    sides = guided_sides(pair_size, export_size, editor.stride)
    variants = {f"{kind}_{side}": (side, kind == "curves") for kind in ("guided", "curves") for side in sides}
    rows, seconds = [], {"tiled": 0.0, **dict.fromkeys(variants, 0.0)}
    finish = finish_for(screen)
    megapixels = 0.0
    measured: list[tuple[np.ndarray, float]] = []

    def native(a: np.ndarray) -> np.ndarray:  # the model alone at native resolution, in tiles
        return editor.edit([a], tile=tile, batch=1, path="tiled", finish=False)[0]

    def finished_edit(a: np.ndarray) -> np.ndarray:  # with the screen finish where it applies (the render's edit)
        return edit_finished(native, a, finish) if finish is not None and finish.applies(a.shape) else native(a)

    try:
        render = _fit_render(data_dir, recipe, pair_size, screen, RENDER_PHOTOS, cap, log)
        for name, full in chosen:
            factor = min(full.shape[:2]) / pair_size
            img = _centre_crop(full, cap)
            reference = apply_recipe_at(img, recipe, factor)
            t0 = time.perf_counter()
            tiled = native(img)
            seconds["tiled"] += time.perf_counter() - t0
            outputs = {"tiled": tiled}
            for key, (side, curves) in variants.items():
                t0 = time.perf_counter()
                outputs[key], edited = editor.guided(img, side, 1, max(tile, side), curves=curves, eps=DEFAULT_EPS)
                seconds[key] += time.perf_counter() - t0
                if side == sides[-1]:
                    low = edited  # the editor at the largest side, for the resize path
            outputs["resize"] = cv2.resize(low, img.shape[1::-1], interpolation=cv2.INTER_CUBIC)  # largest side
            if finish is not None:
                outputs["tiled_finished"] = finished_edit(img)
            if render is not None:
                t0 = time.perf_counter()
                outputs["screen"] = (render_screen(finished_edit, img, render)
                                     if render.applies(img.shape) else outputs.get("tiled_finished", tiled))
                seconds["screen"] = seconds.get("screen", 0.0) + time.perf_counter() - t0
            megapixels += img.shape[0] * img.shape[1] / 1e6
            measured.append((img, factor))
            rows.append({"photo": name, "photo_size": list(full.shape[:2]), "measured_size": list(img.shape[:2]),
                         "scale": round(factor, 3),
                         "psnr_db": {k: round(psnr_u8(v, reference), 2) for k, v in outputs.items()}})
    except RescaleError as exc:  # e.g. a bilateral diameter that grows too large on a large photo
        section["why"] = f"not measured: the recipe cannot be run at full resolution ({exc}); tiled works for any edit"
        log(f"full size: {section['why']}")
        return section
    mean = {k: round(float(np.mean([r["psnr_db"][k] for r in rows])), 2) for k in rows[0]["psnr_db"]}
    best = max(variants, key=lambda k: (mean[k], -variants[k][0], not variants[k][1]))  # ties: faster, no curves
    low_side, curves = variants[best]
    mean["guided"] = mean[best]
    seconds["guided"] = seconds[best]
    for r in rows:
        r["psnr_db"]["guided"] = r["psnr_db"][best]

    def guided(a: np.ndarray) -> np.ndarray:
        return editor.guided(a, low_side, 1, max(tile, low_side), curves=curves, eps=DEFAULT_EPS)[0]

    native_db = {k: mean[k] for k in ("tiled", "tiled_finished", "screen") if k in mean}
    best_native = max(native_db, key=lambda k: native_db[k])
    guided_close = mean["guided"] >= native_db[best_native] - MARGIN_DB
    larger = (_larger(measured, recipe, cap, {"guided": guided, "tiled": native})
              if guided_close and best_native == "tiled" else None)
    guided_ok, larger_note = guided_close, ""
    if larger is not None:
        guided_ok = larger["guided"] >= larger["tiled"] - MARGIN_DB
        larger_note = (f"; {LARGER}x larger: guided {larger['guided']:.2f} dB vs tiled {larger['tiled']:.2f} dB, "
                       f"{'within' if guided_ok else 'beyond'} the margin")
    path = "guided" if guided_ok else "screen" if best_native == "screen" else "tiled"
    finished = finish is not None and (mean["tiled_finished"] > mean["tiled"] or path == "screen")
    best_tiled = native_db[best_native]
    finish_note = (f"the screen finish {'kept' if finished else 'dropped'} (tiled {mean['tiled']:.2f} dB without, "
                   f"{mean['tiled_finished']:.2f} dB with)" if finish is not None else "")
    if render is not None:
        finish_note += f"; screen render {mean['screen']:.2f} dB ({'chosen' if path == 'screen' else 'not chosen'})"
    curves_note = ", after colour curves" if curves else ""
    section.update({
        "path": path,
        "low_side": low_side,
        "guided_radius": radius_for(low_side),
        "guided_curves": curves,
        "finish": finish.to_json() if finished and finish is not None else None,
        "render": render.to_json() if path == "screen" and render is not None else None,
        "measured": True,
        "reference": f"the classic recipe at full resolution (pixel sizes x photo side / {pair_size} px pair side)",
        "psnr_db": mean,
        "psnr_db_larger": larger,
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "megapixels": round(megapixels, 3),
        "photos": rows,
        "why": f"guided {mean['guided']:.2f} dB (editor at {low_side} px{curves_note}) vs native {best_tiled:.2f} dB: "
               f"{'within' if guided_close else 'beyond'} the {MARGIN_DB} dB margin{larger_note}"
               + (f"; {finish_note}" if finish_note else ""),
    })
    ref = f", {export_size} px {editor_db:.2f} dB" if editor_db is not None else ""
    log(f"full size: guided {mean['guided']:.2f} dB, native {best_tiled:.2f} dB{ref} vs the teacher at full "
        f"resolution on {len(rows)} held-out photos ({megapixels:.1f} MP) -> {section['path']}"
        + (f" ({finish_note})" if finish_note else ""))
    return section


def _larger(measured: list[tuple[np.ndarray, float]], recipe: list, cap: int,
            paths: Mapping[str, Callable[[np.ndarray], np.ndarray]]) -> dict[str, float] | None:
    """Mean PSNR of each of ``paths`` (name -> edit) on the measured crops, each cut to a quarter of ``cap`` pixels
    and upscaled ``LARGER`` times (bicubic), against the teacher at that scale; None if it cannot run."""
    from factory.teachers.rescale import RescaleError, apply_recipe_at

    scores: dict[str, list[float]] = {k: [] for k in paths}
    try:
        for img, factor in measured:
            small = _centre_crop(img, cap // (LARGER * LARGER))
            big = cv2.resize(small, (small.shape[1] * LARGER, small.shape[0] * LARGER), interpolation=cv2.INTER_CUBIC)
            reference = apply_recipe_at(big, recipe, factor * LARGER)
            for k, edit in paths.items():
                scores[k].append(psnr_u8(edit(big), reference))
    except RescaleError:
        return None
    return {k: round(float(np.mean(v)), 2) for k, v in scores.items()} if measured else None


def _fit_render(data_dir: Path, recipe: list, pair_size: int, screen: Mapping[str, Any] | None, photos: int,
                cap: int, log) -> ScreenRender | None:
    """The screen path's render fitted on up to ``photos`` training photos at full resolution (centre-cropped to
    ``cap`` pixels) with the teacher's output; None without a two-wave lattice or a training photo large enough."""
    from factory.teachers.rescale import apply_recipe_at

    if not screen or not check_lattice(screen.get("screen_lattice")):
        return None
    train = [_centre_crop(img, cap) for _, img in held_out_photos(data_dir, photos, split="train")[0]]
    train = [img for img in train if min(img.shape[:2]) >= RENDER_MIN_SCALE * pair_size]
    if not train:
        log(f"full size: no training photo at least {RENDER_MIN_SCALE:g}x the pairs' size to fit a screen render on")
        return None
    return fit_render(screen, [(img, apply_recipe_at(img, recipe, min(img.shape[:2]) / pair_size)) for img in train])


def skipped_section(export_size: int, stride: int, why: str = "skipped at export") -> dict[str, Any]:
    """The ``full_size`` section when nothing was measured (``--no-full-size``, or a failed check)."""
    return {"path": "tiled", "low_side": low_side_for(export_size, stride), "tile": DEFAULT_TILE, "measured": False,
            "why": f"not measured ({why}); tiled works for any edit"}

