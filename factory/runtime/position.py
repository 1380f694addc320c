"""The position input of an editor with a screen: where each pixel of a model call sits in the photo.

An editor whose teacher draws a fixed screen (halftone dots, pixel blocks) places it from each pixel's (row, col),
given as fractions of the photo's short side: the same screen lands on a tile as on the whole photo, and on a
12 MP photo at the scale the full-resolution teacher draws it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

POSITION_NAME = "position"


def position_grid(h: int, w: int, origins: Sequence[tuple[int, int]] = ((0, 0),),
                  short_side: float | None = None) -> np.ndarray:
    """[len(origins), 2, h, w] float32: the (row, col) of every pixel of ``h`` x ``w`` windows whose top-left corners
    are ``origins`` (pixels of the photo), divided by the photo's ``short_side`` (by default the window is the whole
    photo: one origin at (0, 0), short side ``min(h, w)``)."""
    short_side = min(h, w) if short_side is None else short_side
    if short_side < 1 or not origins:
        raise ValueError(f"need a short side >= 1 and at least one origin, got {short_side} and {list(origins)}")
    rows = np.arange(h, dtype=np.float32)[:, None]
    cols = np.arange(w, dtype=np.float32)[None, :]
    out = np.empty((len(origins), 2, h, w), np.float32)
    for i, (y0, x0) in enumerate(origins):
        out[i, 0] = (rows + np.float32(y0)) / np.float32(short_side)
        out[i, 1] = (cols + np.float32(x0)) / np.float32(short_side)
    return out
