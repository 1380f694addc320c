"""Training pairs at larger scales, for a concept whose classic teacher draws a fixed screen.

An editor with position channels draws the screen where its ``position`` input says, so on a photo N times
the pairs' size it is asked for dots N times larger, with edges as crisp as the teacher draws them there.
Pairs at the pairs' size show it one scale only: what it learns of the dot's shape (a 5 px cell with a
1 px soft edge) is a blur at 20x. ``ScaledPairs`` wraps a ``PairedDataset``: its first items are the pairs as
they are; then, ``WINDOWS_PER_PAIR`` times per pair, a window of 1/s of the pair's source (s log-uniform in
[1, max_scale], the window placed at random) upscaled s times to the pairs' size, with the recipe rescaled by s
run on it as the target (the window is the teacher's photo: its screen starts at the window's corner) and
``position`` = the pixel grid / s. Every item carries ``position`` ([2, H, W], the training pairs' pixel units).

Where a window's pixels come from (``WINDOW_SOURCES``): ``pairs`` upscales the window of the pair's own source, so
at 16x a 128 px window holds 8 px of the photo's detail, a smooth blur no full-size photo looks like; ``photo`` cuts
the same window from the photo the pair was cut from, at the photo's own resolution (the detail a full-size photo
has, upscaled only past it), for every pair whose photo can be read again and still gives its source.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from factory.data.dataset import PairedDataset, full_resolution_reference, to_tensor
from factory.runtime.position import position_grid

__all__ = ["WINDOW_SOURCES", "ScaledPairs", "pair_photos", "rescaled_pairs", "scalable_recipe"]

#: rescaled windows drawn per pair (1: half of the samples at the pairs' size, half windows)
WINDOWS_PER_PAIR = 1
#: where a window's pixels come from (see the module docstring)
WINDOW_SOURCES = ("pairs", "photo")
#: a photo read again must give its pair's source within this PSNR (dB) to be used (else: a different photo)
PHOTO_MATCH_DB = 30.0


def scalable_recipe(data_dir: Path, max_scale: float) -> tuple[list | None, str]:
    """(the concept's classic recipe, "") when its teacher can be run at ``max_scale`` times the pairs' size,
    else (None, why not)."""
    from factory.teachers.rescale import RescaleError, rescale_recipe

    recipe, _, why = full_resolution_reference(data_dir)
    if recipe is None:
        return None, why
    try:
        rescale_recipe(recipe, max_scale)
    except RescaleError as exc:
        return None, str(exc)
    return recipe, ""


def rescaled_pairs(data_dir: Path, ids: list[str], max_scale: float, augment: bool, seed: int,
                   windows: str = "pairs") -> tuple[ScaledPairs | None, str]:
    """(the concept's training pairs ``ids`` with windows rescaled up to ``max_scale``, cut from ``windows``
    (``WINDOW_SOURCES``), ""), or (None, why not) when its teacher cannot be run at that scale."""
    if windows not in WINDOW_SOURCES:
        raise ValueError(f"windows={windows!r}: expected one of {', '.join(WINDOW_SOURCES)}")
    recipe, why = scalable_recipe(data_dir, max_scale)
    if recipe is None:
        return None, why
    pairs = PairedDataset([data_dir], split="train", augment=augment, ids={data_dir.name: ids})
    photos = pair_photos(data_dir, pairs) if windows == "photo" else {}
    return ScaledPairs(pairs, recipe, max_scale, seed=seed, photos=photos), ""


def pair_photos(data_dir: Path, pairs: PairedDataset) -> dict[int, tuple[np.ndarray, tuple[int, int, int, int]]]:
    """{item of ``pairs``: (the photo it was cut from, at the photo's own size; the square crop (x, y, w, h))} for
    every pair whose photo can be read again and gives its source to within ``PHOTO_MATCH_DB``."""
    from factory.core.files import read_json
    from factory.core.images import crop_and_resize, psnr_u8
    from factory.data.pair_store import read_manifest
    from factory.data.photos import photos_by_name

    records = {r["id"]: r for r in read_manifest(data_dir) if r.get("photo") and len(r.get("crop") or ()) == 4}
    wanted = {i: records[ref.pair_id] for i, ref in enumerate(pairs.refs) if ref.pair_id in records}
    origin = str((read_json(data_dir / "synth.json") or {}).get("origin", ""))
    photos = photos_by_name(origin, sorted({r["photo"] for r in wanted.values()}))
    found = {}
    for i, record in wanted.items():
        photo, (x, y, w, h) = photos.get(record["photo"]), (int(v) for v in record["crop"])
        if photo is None or w != h or x + w > photo.shape[1] or y + h > photo.shape[0]:
            continue
        source = pairs.images(i)[0]
        if psnr_u8(crop_and_resize(photo, (x, y, w, h), source.shape[0]), source) >= PHOTO_MATCH_DB:
            found[i] = (photo, (x, y, w, h))
    return found


class ScaledPairs(Dataset):
    """``pairs`` (one concept, one pair size) and as many rescaled windows of them (see the module docstring)."""

    def __init__(self, pairs: PairedDataset, recipe: list, max_scale: float, seed: int = 0,
                 photos: dict[int, tuple[np.ndarray, tuple[int, int, int, int]]] | None = None):
        if max_scale < 1:
            raise ValueError(f"max_scale must be >= 1, got {max_scale}")
        if len(pairs.concepts) != 1:
            raise ValueError("rescaled windows are made for one concept's pairs")
        self.pairs, self.recipe, self.max_scale, self.seed = pairs, recipe, float(max_scale), seed
        self.photos = photos or {}  # item -> (its photo, its crop): windows cut from the photo (``pair_photos``)
        self.concepts, self.instructions = pairs.concepts, pairs.instructions
        self.size = pairs.images(0)[0].shape[0]

    def __len__(self) -> int:
        return (1 + WINDOWS_PER_PAIR) * len(self.pairs)

    def __getitem__(self, i: int) -> dict[str, Any]:
        n = len(self.pairs)
        if i < n:
            item = self.pairs[i]
            item["position"] = _grid(self.size, 1.0)
            return item
        k = (i - n) % n
        item = self.pairs[k]
        scale = math.exp(torch.rand(()).item() * math.log(self.max_scale))  # torch's RNG: the Trainer seeds it
        source, target, factor = self.window(k, scale, torch.rand(2).tolist())
        item.update(source=to_tensor(source), target=to_tensor(target), position=_grid(self.size, factor))
        return item

    def window(self, k: int, scale: float, where: list[float]) -> tuple[np.ndarray, np.ndarray, float]:
        """(source, teacher's target, the exact factor) of a window of 1/``scale`` of pair ``k``'s source at
        ``where`` (fractions of the free room), brought to the pairs' size: cut from its photo when ``self.photos``
        has it, else upscaled from the pair's source."""
        from factory.core.images import crop_and_resize
        from factory.teachers.rescale import apply_recipe_at

        side = max(4, min(self.size, round(self.size / scale)))
        y, x = (int(f * (self.size - side + 1)) for f in where)
        image, box = self.pairs.images(k)[0], (x, y, side, side)
        if k in self.photos:
            image, (cx, cy, cw, _) = self.photos[k]
            per = cw / self.size  # photo pixels per pair pixel
            n = max(1, round(side * per))
            box = (min(round(cx + x * per), image.shape[1] - n), min(round(cy + y * per), image.shape[0] - n), n, n)
        source = crop_and_resize(image, box, self.size)
        factor = self.size / side
        return source, apply_recipe_at(source, self.recipe, factor, seed=self.seed), factor


def _grid(size: int, factor: float) -> torch.Tensor:
    """[2, size, size]: (row, col) of every pixel over ``factor`` (in the training pairs' pixel units)."""
    return torch.from_numpy(position_grid(size, size, short_side=factor)[0])
