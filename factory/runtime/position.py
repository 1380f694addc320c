"""The position input of an editor with a screen: where each pixel of a model call sits in the photo.

An editor whose teacher draws a fixed screen (halftone dots, pixel blocks) places it from each pixel's (row, col),
given as fractions of the photo's short side: the same screen lands on a tile as on the whole photo, and on a
12 MP photo at the scale the full-resolution teacher draws it. A photo resized for the editor (a low resolution,
a mobile model's fixed square) passes ``zoom``, the photo's pixels per resized pixel along rows and columns: each
resized pixel gets the place of the photo pixels it covers, so the screen is where the full-resolution teacher
draws it (one scale for both sides would let it drift across the photo when the sides are rounded to the stride).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

POSITION_NAME = "position"


def position_grid(h: int, w: int, origins: Sequence[tuple[int, int]] = ((0, 0),),
                  short_side: float | None = None, zoom: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """[len(origins), 2, h, w] float32: the (row, col) of every pixel of ``h`` x ``w`` windows whose top-left corners
    are ``origins`` (pixels of the array the windows are cut from), divided by the photo's ``short_side`` (by default
    the window is the whole photo: one origin at (0, 0), short side ``min(h, w)``). With ``zoom`` (photo pixels per
    array pixel, rows then columns) the array is the photo resized, and each pixel gets the photo's coordinates of
    its centre, ``(i + 0.5) * zoom - 0.5``; ``short_side`` is then the photo's."""
    short_side = min(h, w) if short_side is None else short_side
    if short_side < 1 or not origins or min(zoom) <= 0:
        raise ValueError(f"need a short side >= 1, at least one origin and a zoom > 0, got {short_side}, "
                         f"{list(origins)} and {zoom}")
    zy, zx = (np.float64(z) for z in zoom)
    out = np.empty((len(origins), 2, h, w), np.float32)
    for i, (y0, x0) in enumerate(origins):
        rows = ((np.arange(h) + y0 + 0.5) * zy - 0.5) / short_side
        cols = ((np.arange(w) + x0 + 0.5) * zx - 0.5) / short_side
        out[i, 0] = rows.astype(np.float32)[:, None]
        out[i, 1] = cols.astype(np.float32)[None, :]
    return out
