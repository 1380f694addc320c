"""Training pairs at larger scales, for a concept whose classic teacher draws a fixed screen.

An editor with position channels draws the screen where its ``position`` input says, so on a photo N times
the pairs' size it is asked for dots N times larger, with edges as crisp as the teacher draws them there.
Pairs at the pairs' size show it one scale only: what it learns of the dot's shape (a 5 px cell with a
1 px soft edge) is a blur at 20x. ``ScaledPairs`` wraps a ``PairedDataset``: its first items are the pairs as
they are; then, ``WINDOWS_PER_PAIR`` times per pair, a window of 1/s of the pair's source (s log-uniform in
[1, max_scale], the window placed at random) upscaled s times to the pairs' size, with the recipe rescaled by s
run on it as the target (the window is the teacher's photo: its screen starts at the window's corner) and
``position`` = the pixel grid / s. Every item carries ``position`` ([2, H, W], the training pairs' pixel units).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from factory.data.dataset import PairedDataset, full_resolution_reference, to_tensor
from factory.runtime.position import position_grid

__all__ = ["ScaledPairs", "rescaled_pairs", "scalable_recipe"]

#: rescaled windows drawn per pair (1: half of the samples at the pairs' size, half windows)
WINDOWS_PER_PAIR = 1


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


def rescaled_pairs(data_dir: Path, ids: list[str], max_scale: float, augment: bool,
                   seed: int) -> tuple[ScaledPairs | None, str]:
    """(the concept's training pairs ``ids`` with windows rescaled up to ``max_scale``, ""), or (None, why not) when
    its teacher cannot be run at that scale."""
    recipe, why = scalable_recipe(data_dir, max_scale)
    if recipe is None:
        return None, why
    pairs = PairedDataset([data_dir], split="train", augment=augment, ids={data_dir.name: ids})
    return ScaledPairs(pairs, recipe, max_scale, seed=seed), ""


class ScaledPairs(Dataset):
    """``pairs`` (one concept, one pair size) and as many rescaled windows of them (see the module docstring)."""

    def __init__(self, pairs: PairedDataset, recipe: list, max_scale: float, seed: int = 0):
        if max_scale < 1:
            raise ValueError(f"max_scale must be >= 1, got {max_scale}")
        if len(pairs.concepts) != 1:
            raise ValueError("rescaled windows are made for one concept's pairs")
        self.pairs, self.recipe, self.max_scale, self.seed = pairs, recipe, float(max_scale), seed
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
        ``where`` (fractions of the free room), upscaled to the pairs' size."""
        from factory.teachers.rescale import apply_recipe_at

        side = max(4, min(self.size, round(self.size / scale)))
        y, x = (int(f * (self.size - side + 1)) for f in where)
        crop = self.pairs.images(k)[0][y:y + side, x:x + side]
        source = cv2.resize(crop, (self.size, self.size), interpolation=cv2.INTER_CUBIC)
        factor = self.size / side
        return source, apply_recipe_at(source, self.recipe, factor, seed=self.seed), factor


def _grid(size: int, factor: float) -> torch.Tensor:
    """[2, size, size]: (row, col) of every pixel over ``factor`` (in the training pairs' pixel units)."""
    return torch.from_numpy(position_grid(size, size, short_side=factor)[0])
