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

Only on photos at least ``min_scale`` times the pairs' size: nearer the pairs' size the soft edges are the
teacher's. With ``max_scale``, a photo larger than that many times the pairs' size is edited shrunk to it (beyond
the scales it was trained at the editor is no better, and each tile costs the same) and its output upscaled
(bicubic) before the levels, which sharpen the upscaled edges too. The constants were chosen on the validation
concept newsprint (``bench/results/fullsize-finish-validation.md``: at 2x it loses 1 dB, from 4x it gains 1.2-2.6 dB;
``fullsize-finish-maxscale-validation.md``: at most 12x as good as full size on the 12 MP photo, in a quarter of
the time). A card without ``max_scale`` edits at full size.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

#: the finish chosen on newsprint (validation): sigma in cells, output level and gain
BLUR_CELLS = 0.33
LEVEL = 0.55
GAIN = 2.0
#: photos smaller than this many times the pairs' size are edited as they are
MIN_SCALE = 4.0
#: photos larger than this many times the pairs' size are edited shrunk to it (``fullsize-finish-maxscale-validation``:
#: 12 MP newsprint 18.16 dB in 1.43 s against 17.98 dB in 5.24 s at full size)
MAX_SCALE = 12.0
#: the blur is computed this many pixels of sigma per pixel of a shrunk copy (fast at any sigma)
PYRAMID_SIGMA = 4.0


@dataclass(frozen=True)
class Finish:
    """``blur_cells``, ``level``, ``gain``, ``min_scale`` and ``max_scale`` (see the module docstring); ``cell`` the
    screen's cell as a fraction of the photo's short side, ``pair_size`` the short side of the pairs the screen was
    fitted on."""

    cell: float
    pair_size: int
    blur_cells: float = BLUR_CELLS
    level: float = LEVEL
    gain: float = GAIN
    min_scale: float = MIN_SCALE
    max_scale: float = MAX_SCALE  # 0: photos of any size are edited at their own size

    def applies(self, shape: tuple[int, ...]) -> bool:
        """Whether a photo of this (height, width, ...) is large enough to be finished."""
        return min(shape[:2]) >= self.min_scale * self.pair_size

    def to_json(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in FIELDS}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Finish:
        """The finish of a card's ``full_size.finish`` (ValueError when a field is missing or out of range)."""
        try:
            values = {k: float(data.get(k, 0.0) if k == "max_scale" else data[k]) for k in FIELDS}
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"a screen finish needs numbers {', '.join(FIELDS)} ({exc!r})") from None
        if not (0 < values["cell"] <= 1 and values["pair_size"] >= 1 and values["blur_cells"] >= 0
                and 0 < values["level"] < 1 and values["gain"] > 0 and values["min_scale"] >= 0
                and (values["max_scale"] == 0 or values["max_scale"] >= values["min_scale"])):
            raise ValueError(f"a screen finish needs 0 < cell <= 1, pair_size >= 1, blur_cells >= 0, "
                             f"0 < level < 1, gain > 0, min_scale >= 0 and max_scale 0 or >= min_scale, "
                             f"got {values}")
        return cls(**{**values, "pair_size": int(values["pair_size"])})


FIELDS = ("cell", "pair_size", "blur_cells", "level", "gain", "min_scale", "max_scale")


def finish_for(screen: Mapping[str, Any] | None) -> Finish | None:
    """The default finish of an editor whose card's ``position.screen`` is ``screen`` (None without a screen)."""
    cell = screen_cell(screen)
    return None if cell is None else Finish(cell, int(screen["screen_size"]))  # type: ignore[index]


def screen_cell(screen: Mapping[str, Any] | None) -> float | None:
    """The screen's cell as a fraction of the photo's short side (the mean period of its lattice's waves, else of
    its first wave), from the card's ``position.screen``; None without a screen."""
    if not screen or not screen.get("screen_waves") or not screen.get("screen_size"):
        return None
    return lattice_cell(screen.get("screen_lattice") or screen["screen_waves"][:1], screen["screen_size"])


def lattice_cell(waves: Sequence[Sequence[float]], screen_size: float) -> float | None:
    """The mean period of ``waves`` ([fy, fx, ...] in cycles per pixel of pairs whose short side is
    ``screen_size``) as a fraction of the photo's short side; None without a wave of non-zero frequency."""
    periods = [1.0 / math.hypot(w[0], w[1]) for w in waves if math.hypot(w[0], w[1]) > 0]
    return float(np.mean(periods)) / float(screen_size) if periods else None


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """``image`` (HxWxC uint8) Gaussian-blurred by ``sigma`` pixels, on a copy shrunk so that the blur there is
    about ``PYRAMID_SIGMA`` px (then resized back): tens of milliseconds on a 12 MP photo at any sigma."""
    if sigma <= 0:
        return image
    h, w = image.shape[:2]
    k = sigma / PYRAMID_SIGMA
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


def edit_finished(edit: Callable[[np.ndarray], np.ndarray], image: np.ndarray, finish: Finish) -> np.ndarray:
    """``image`` edited by ``edit`` (HxWx3 uint8 -> same, the unfinished tiled edit) with ``finish``: shrunk to
    ``max_scale`` times the pairs' size if larger, blurred, edited, upscaled back, levels sharpened."""
    h, w = image.shape[:2]
    work = image
    if finish.max_scale and min(h, w) > finish.max_scale * finish.pair_size:
        s = finish.max_scale * finish.pair_size / min(h, w)
        work = cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    out = edit(prepare(work, finish))
    if out.shape[:2] != (h, w):
        out = cv2.resize(out, (w, h), interpolation=cv2.INTER_CUBIC)
    return finish_output(out, finish)
