"""Where each pixel of a model call sits in the photo: the ``position`` input of an editor with a screen and the
``frame`` input of an editor with a lens basis.

An editor whose teacher draws a fixed screen (halftone dots, pixel blocks) places it from each pixel's (row, col),
given as fractions of the photo's short side: the same screen lands on a tile as on the whole photo, and on a
12 MP photo at the scale the full-resolution teacher draws it. A photo resized for the editor (a low resolution,
a mobile model's fixed square) passes ``zoom``, the photo's pixels per resized pixel along rows and columns: each
resized pixel gets the place of the photo pixels it covers, so the screen is where the full-resolution teacher
draws it (one scale for both sides would let it drift across the photo when the sides are rounded to the stride).

An editor with a lens basis (a vignette's gain about the photo's centre, ``base_gan.generator.lens_planes``) takes
each pixel's place as a fraction of the photo's own height and width instead, -1 at one edge and 1 at the other
(``frame_grid``): a tile gets its part of the photo's vignette, not a vignette of its own.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

POSITION_NAME = "position"
FRAME_NAME = "frame"


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


def frame_grid(h: int, w: int, origins: Sequence[tuple[int, int]] = ((0, 0),), photo: tuple[int, int] | None = None,
               zoom: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """[len(origins), 2, h, w] float32: the (row, col) of every pixel's centre of ``h`` x ``w`` windows whose
    top-left corners are ``origins`` as fractions of the ``photo`` (its height and width in pixels; default: the
    window is the whole photo), -1 at its top (left) edge and 1 at its bottom (right) edge. ``zoom`` as in
    ``position_grid``: the array the windows are cut from is the photo resized."""
    photo = (h, w) if photo is None else photo
    if min(photo) < 1 or not origins or min(zoom) <= 0:
        raise ValueError(f"need a photo of at least 1 x 1, at least one origin and a zoom > 0, got {photo}, "
                         f"{list(origins)} and {zoom}")
    zy, zx = (np.float64(z) for z in zoom)
    out = np.empty((len(origins), 2, h, w), np.float32)
    for i, (y0, x0) in enumerate(origins):
        rows = ((np.arange(h) + y0 + 0.5) * zy - photo[0] / 2) * (2.0 / photo[0])
        cols = ((np.arange(w) + x0 + 0.5) * zx - photo[1] / 2) * (2.0 / photo[1])
        out[i, 0] = rows.astype(np.float32)[:, None]
        out[i, 1] = cols.astype(np.float32)[None, :]
    return out


def whole_photo_feeds(names: Sequence[str], h: int, w: int) -> dict[str, np.ndarray]:
    """The ``position`` and ``frame`` inputs among ``names`` for a model call whose images are whole photos."""
    grids = {POSITION_NAME: position_grid, FRAME_NAME: frame_grid}
    unknown = [n for n in names if n not in grids]
    if unknown:
        raise ValueError(f"no whole-photo value for the inputs {unknown} (known: {', '.join(grids)})")
    return {name: grids[name](h, w) for name in names}
