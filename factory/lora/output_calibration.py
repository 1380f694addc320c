"""Output calibration: global colour curves from a fine-tuned student's output (and photo) to its teacher's targets.

Much of a fine-tuned editor's remaining error on a colour concept is one global colour map (its tones a little
off everywhere); ``factory.runtime.colour_curves`` fits that map in closed form on the training pairs in well
under a second: curves of the student's output, of its output and the photo (a concept that is a global colour
map of the photo gets it from the photo's own colours, the student adding what is not), or of the photo alone (a
colour map the student's output only blurs). A kind is kept only when it
generalises to photos it did not see: curves fitted on the pairs of three quarters of the training photos must
score higher than the raw output on the other quarter's pairs (every pair of a photo on one side, as the test
split's photos are; a fine-tune holds out each quarter in turn and pools the scores, ``folds``), and only when it
multiplies the student's output by at most ``MAX_GAIN``; of the kinds (``INPUTS``) the best there. Chosen on
validation concepts:
``bench/results/output-calibration-validation.md`` (the output's curves), then
``output-calibration-validation-photo.md`` (both kinds: +2.10 dB mean over 18 editors against +1.19), then
``output-calibration-validation-photo-only.md`` (the three: +3.61 dB; faded-matte's editors +10.4 to +11.5 dB over
the two, one cyanotype editor -1.81), then ``output-calibration-validation-folds.md`` (each quarter held out in
turn: +4.15 dB, none below its raw output; a single quarter of 4 photos had picked the photo's curves for that
cyanotype editor and the output's for pastel's, where all 16 photos pick the output's and the photo's). Kept curves
are saved beside the adapter (``CURVES_FILE``) and baked into the exported editor
(``base_gan.output_curves.OutputCurves`` after the generator).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from base_gan.output_curves import CURVE_INPUTS
from factory.core.atomic import atomic_write_json
from factory.core.errors import FactoryError
from factory.core.images import psnr_u8
from factory.data.dataset import to_uint8
from factory.data.pair_store import photo_group, read_manifest

CURVES_FILE = "output_curves.json"
#: the fraction of the training photos the rule holds out
HOLD_OUT = 0.25
#: how many of the training photos' quarters the rule holds out in turn, from the last (1: the last quarter alone;
#: 4: every photo is held out once, each kind scored on all the training pairs)
FOLDS = 1
#: what curves may read: the student's output (3 channels), its output and the photo (6: a global colour map of the
#: photo the student's output adds to, or corrects), or the photo alone (saved as the second kind with flat curves of
#: the output: a concept that is a colour map of the photo, which curves fit better than the student does)
KINDS = ("output", "output+photo", "photo")
#: the kinds the rule tries by default (a fine-tune's: ``factory.lora.options.CURVE_KINDS``)
INPUTS = KINDS
#: the most the curves may multiply a change of the student's output (the largest sum over its channels of the
#: curves' slopes, colour per colour): steeper curves stretch an output that barely varies yet (a student that has
#: not learned) and multiply its int8 rounding past the export's check (a 4 s halftone run: 31). The kept curves of
#: every validation editor stay under 4.1 (bench/results/output-calibration-validation-photo.md's editors), a
#: 90 s halftone LoRA's at 6.5 (its int8 editor 32.5 dB from fp32)
MAX_GAIN = 8.0


def output_gain(knots: np.ndarray) -> float:
    """``MAX_GAIN``'s measure of curves' knot values (3 x C x K): the largest, over output channels and knot
    intervals, sum over the output's channels of the curves' absolute slopes."""
    slopes = np.abs(np.diff(knots[:, :3], axis=2)) * (knots.shape[2] - 1)
    return float(slopes.sum(1).max())


def photo_groups(data_dir: Path, ids: list[str]) -> list[str]:
    """Each pair's photo (``pair_store.photo_group``; a pair the manifest lacks: its own id), in ``ids``' order."""
    records = {r["id"]: r for r in read_manifest(data_dir)}
    return [photo_group(records.get(i, {"id": i})) for i in ids]


def _fit(outputs: list[np.ndarray], targets: list[np.ndarray]) -> np.ndarray:
    from factory.runtime.colour_curves import fit_curve_knots

    return fit_curve_knots(np.concatenate(outputs, 0), np.concatenate(targets, 0))


def _mean_psnr(outputs: list[np.ndarray], targets: list[np.ndarray], knots: np.ndarray | None = None) -> float:
    """Mean PSNR of ``outputs`` (HxWx3, or HxWx6 with the photo beside the output) through the curves ``knots``
    (None: the output as it is) against ``targets``."""
    import cv2

    from factory.runtime.colour_curves import apply_curves, knot_tables

    if knots is not None:
        tables = knot_tables(knots)
        outputs = [np.clip(cv2.merge(apply_curves(cv2.split(o), tables)) + 0.5, 0, 255).astype(np.uint8)
                   for o in outputs]
    else:
        outputs = [o[..., :3] for o in outputs]
    return float(np.mean([psnr_u8(o, t) for o, t in zip(outputs, targets)]))


def held_out_folds(groups: list[str], folds: int = FOLDS) -> list[list[int]]:
    """The pairs each fold holds out (``groups``: each pair's photo): the photos, sorted, cut into quarters
    (``HOLD_OUT``), and ``folds`` of them from the last, all of a photo's pairs on one side; none when fewer than two
    photos leave nothing to hold out."""
    if not 1 <= folds <= round(1 / HOLD_OUT):
        raise FactoryError(f"output curves hold out 1 to {round(1 / HOLD_OUT)} quarters of the photos, got {folds}")
    names, quarters = sorted(set(groups)), round(1 / HOLD_OUT)
    if len(names) < 2:
        return []
    edges = [int(j * len(names) / quarters) for j in range(quarters + 1)]
    chosen = [set(names[edges[j]:edges[j + 1]]) for j in reversed(range(quarters))][:folds]
    return [[i for i, g in enumerate(groups) if g in held] for held in chosen if held]


def solve_output_curves(outputs: torch.Tensor, targets: torch.Tensor, groups: list[str],
                        photos: torch.Tensor | None = None, inputs: tuple[str, ...] = INPUTS,
                        folds: int = FOLDS) -> dict[str, Any]:
    """The calibration of ``outputs`` (a student's, N x 3 x H x W in [-1, 1]) towards ``targets`` (its training
    pairs'; ``groups``: each pair's photo; ``photos``: the pairs' sources, needed for the curves that read them):
    ``{"kept", "inputs", "knots" (3 x C x K, colours in [0, 1]), "held_out": {photos, raw_db, <inputs>_db...},
    "pairs", "seconds"}``. Of the ``inputs`` kinds, the one scoring highest on the held-out photos (over ``folds``
    folds, ``held_out_folds``: each kind fitted on the others' pairs, scored on the fold's, pooled over every
    held-out pair) is kept when it beats the raw output there; none is kept when fewer than two photos leave nothing
    to hold out."""
    if len(outputs) != len(targets) or len(outputs) != len(groups) or not len(outputs):
        raise FactoryError(f"output calibration needs one target and photo per output, got {len(outputs)} outputs, "
                           f"{len(targets)} targets, {len(groups)} photos")
    if unknown := [k for k in inputs if k not in KINDS]:
        raise FactoryError(f"output curves of {', '.join(unknown)}: expected some of {', '.join(KINDS)}")
    t0 = time.perf_counter()
    out = [to_uint8(o) for o in outputs]
    dst = [to_uint8(t) for t in targets]
    sides: dict[str, list[np.ndarray]] = {"output": out}
    if {"output+photo", "photo"} & set(inputs):
        if photos is None or len(photos) != len(outputs):
            raise FactoryError(f"{' and '.join(k for k in inputs if 'photo' in k)} curves need the photo of every "
                               "output")
        sides["photo"] = [to_uint8(p) for p in photos]
        sides["output+photo"] = [np.concatenate([o, p], 2) for o, p in zip(out, sides["photo"])]
    held_folds = held_out_folds(groups, folds)
    held_i = [i for fold in held_folds for i in fold]
    fit_folds = [[i for i in range(len(dst)) if i not in kept_out] for kept_out in map(set, held_folds)]
    held: dict[str, Any] = {"photos": len({groups[i] for i in held_i}), "raw_db": None}
    if folds != 1:
        held["folds"] = len(held_folds)
    scores: dict[str, float] = {}
    fits = {kind: _fit(sides[kind], dst) for kind in inputs}
    if "photo" in fits:  # as output+photo curves, flat (zero) on the output
        fits["photo"] = np.concatenate([np.zeros_like(fits["photo"]), fits["photo"]], 1)
    if held_i:
        held_dst = [dst[i] for i in held_i]
        held["raw_db"] = round(_mean_psnr([out[i] for i in held_i], held_dst), 3)
        for kind in inputs:
            total = 0.0  # the PSNR summed over every held-out pair, each fold's curves fitted without it
            for fold, fit_i in zip(held_folds, fit_folds):
                part = _fit([sides[kind][i] for i in fit_i], [dst[i] for i in fit_i])
                total += _mean_psnr([sides[kind][i] for i in fold], [dst[i] for i in fold], part) * len(fold)
            held[f"{kind}_db"] = round(total / len(held_i), 3)
            held[f"{kind}_gain"] = round(output_gain(fits[kind]), 2)
            if held[f"{kind}_gain"] <= MAX_GAIN:
                scores[kind] = held[f"{kind}_db"]
    best = max(scores, key=scores.get) if scores and max(scores.values()) > held["raw_db"] else None
    kind = best or inputs[0]
    return {"kept": best is not None, "inputs": kind, "knots": fits[kind].tolist(), "held_out": held,
            "pairs": len(out), "seconds": round(time.perf_counter() - t0, 3)}


def calibrated(edit, knots: np.ndarray | list):
    """``edit`` (an image -> image function in [-1, 1]) followed by the curves (of its output, or of its output and
    the photo)."""
    from base_gan.output_curves import OutputCurves

    curves = OutputCurves(np.asarray(knots))
    return lambda x: curves(edit(x), x)


def save_output_curves(folder: Path, calibration: dict[str, Any] | None) -> None:
    """``CURVES_FILE`` in ``folder`` for kept curves; removes a stale one otherwise."""
    path = Path(folder) / CURVES_FILE
    if calibration and calibration["kept"]:
        atomic_write_json(path, {k: calibration[k] for k in ("inputs", "knots", "held_out", "pairs")})
    else:
        path.unlink(missing_ok=True)


def saved_output_curves(folder: Path | None) -> np.ndarray | None:
    """The knot values saved beside an adapter (``CURVES_FILE``), else None; a FactoryError for a broken file."""
    path = Path(folder) / CURVES_FILE if folder is not None else None
    if path is None or not path.is_file():
        return None
    try:
        knots = np.asarray(json.loads(path.read_text(encoding="utf-8"))["knots"], dtype=np.float64)
    except (ValueError, KeyError, TypeError) as err:
        raise FactoryError(f"{path}: not an output-curves file ({err})") from err
    if knots.ndim != 3 or knots.shape[0] != 3 or knots.shape[1] not in CURVE_INPUTS or knots.shape[2] < 3 \
            or not np.isfinite(knots).all():
        raise FactoryError(f"{path}: knot values must be finite, 3 x C x K (C of {CURVE_INPUTS}, K >= 3), got "
                           f"shape {knots.shape}")
    return knots
