"""A screen editor's finish on large photos: its input blurred at the screen's cell, its output's levels sharpened.

An editor whose teacher draws a fixed screen (halftone dots) sizes each dot by the photo's tone averaged over a
cell, and draws its edge one pixel wide. On a photo many times the pairs' size the cell is tens of pixels wide:
the network sees that average only through its coarsest features, and its dots' edges stay soft in units of the
cell (``bench/results/fullsize-edges.md``). The finish, used by the tiled path when the export measured it
better on held-out photos (``factory.export.fullsize``), does two cheap things around the unchanged model:

* ``blur_cells``: the photo blurred (Gaussian, sigma this many cells of the screen at the photo's scale) before
  it is edited, so the tone the dots follow is the cell's;
* ``level`` and ``gain``: the output's levels mapped by ``(v - level) * gain + 0.5`` (v in [0, 1], clipped), a
  steeper ramp around the level where the soft edge meets the teacher's.

The constants were chosen on the validation concept newsprint (``bench/results/fullsize-finish-validation.md``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

#: the finish chosen on newsprint (validation): sigma in cells, output level and gain
BLUR_CELLS = 0.33
LEVEL = 0.6
GAIN = 2.0
#: the blur is computed this many pixels of sigma per pixel of a shrunk copy (fast at any sigma)
PYRAMID_SIGMA = 4.0


@dataclass(frozen=True)
class Finish:
    """``blur_cells``, ``level`` and ``gain`` (see the module docstring); ``cell`` the screen's cell as a fraction
    of the photo's short side."""

    cell: float
    blur_cells: float = BLUR_CELLS
    level: float = LEVEL
    gain: float = GAIN

    def to_json(self) -> dict[str, float]:
        return {"cell": self.cell, "blur_cells": self.blur_cells, "level": self.level, "gain": self.gain}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Finish:
        values = {k: float(data[k]) for k in ("cell", "blur_cells", "level", "gain")}
        if not (0 < values["cell"] <= 1 and values["blur_cells"] >= 0 and 0 < values["level"] < 1
                and values["gain"] > 0):
            raise ValueError(f"a screen finish needs 0 < cell <= 1, blur_cells >= 0, 0 < level < 1 and gain > 0, "
                             f"got {values}")
        return cls(**values)


def screen_cell(screen: Mapping[str, Any] | None) -> float | None:
    """The screen's cell as a fraction of the photo's short side (the mean period of its lattice's waves, else of
    its first wave), from the card's ``position.screen``; None without a screen."""
    if not screen or not screen.get("screen_waves") or not screen.get("screen_size"):
        return None
    waves = screen.get("screen_lattice") or screen["screen_waves"][:1]
    periods = [1.0 / math.hypot(w[0], w[1]) for w in waves if math.hypot(w[0], w[1]) > 0]
    return float(np.mean(periods)) / float(screen["screen_size"]) if periods else None


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """``image`` (HxWxC uint8) Gaussian-blurred by ``sigma`` pixels, on a copy shrunk so that the blur there is
    about ``PYRAMID_SIGMA`` px (then resized back): tens of milliseconds on a 12 MP photo at any sigma."""
    if sigma <= 0:
        return image
    h, w = image.shape[:2]
    k = max(1.0, sigma / PYRAMID_SIGMA)
    if k <= 1.0:
        return cv2.GaussianBlur(image, (0, 0), sigma)
    small = cv2.resize(image, (max(1, round(w / k)), max(1, round(h / k))), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma / k)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def levels(image: np.ndarray, level: float, gain: float) -> np.ndarray:
    """``image`` (uint8) with every value v/255 mapped to ``clip((v - level) * gain + 0.5, 0, 1)``."""
    v = np.arange(256, dtype=np.float32) / 255.0
    lut = np.clip(np.rint(np.clip((v - level) * gain + 0.5, 0.0, 1.0) * 255.0), 0, 255).astype(np.uint8)
    return cv2.LUT(image, lut)


def prepare(image: np.ndarray, finish: Finish) -> np.ndarray:
    """The photo as the finished editor reads it: blurred at ``blur_cells`` of the screen's cell."""
    return blur(image, finish.blur_cells * finish.cell * min(image.shape[:2]))


def finish_output(out: np.ndarray, finish: Finish) -> np.ndarray:
    """The editor's output with its levels sharpened."""
    return levels(out, finish.level, finish.gain)
