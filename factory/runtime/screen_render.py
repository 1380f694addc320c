"""A screen editor's dots drawn at full resolution: the editor gives the ink, a fitted threshold array the dots.

A halftone teacher darkens a pixel where the photo's local ink (its darkness, blurred by about a third of a cell)
exceeds a threshold that depends only on where the pixel sits in the screen's cell: a clustered-dot threshold
array. On a 12 MP photo a cell is about a hundred pixels wide and the dots' edges one pixel: the editor's own
output places them to about a pixel, which PSNR against one-pixel edges reads as 17-18 dB even with the screen
finish (``factory.runtime.screen_finish``). The screen render, the ``screen`` path when the export measured it
better on held-out photos (``factory.export.fullsize``), keeps what the editor does well and draws the rest:

1. the editor edits the photo shrunk to at most ``low_scale`` times the pairs' size (tiled, with the screen
   finish); its output's darkness averaged over about a cell is its coverage, the ink it gives each place;
2. a local affine fit (the guided filter's, ``factory.runtime.guided.fit_affine``) from the photo's colours,
   blurred as the coverage is, to that coverage is applied to the photo blurred by a third of a cell at full
   resolution: the editor's ink, with the photo's own detail inside a cell;
3. each pixel is dark where its ink exceeds the threshold array at its place in the screen's lattice (the card's
   ``position.screen``), with a one-pixel antialiased edge; the output is grey (black ink on white).

The threshold array (``BINS`` x ``BINS`` over the lattice's cell) is fitted at export on training photos at full
resolution with the teacher's output (``fit_render``): per bin, the ink that best separates dark pixels from light
ones, the ink read from the teacher's coverage the same way. Constants: chosen on the validation concept newsprint
(``bench/results/fullsize-render-validation-fit8.md``: the editor at 12x with its finish, fitted on eight
training photos; the earlier files of that name tried other fits).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from factory.runtime.guided import fit_affine, upsample_rows
from factory.runtime.screen_finish import blur, lattice_cell

#: bins per side of the threshold array over the lattice's cell
BINS = 64
#: the editor runs on the photo shrunk to at most this many times the pairs' size
LOW_SCALE = 12.0
#: photos smaller than this many times the pairs' size are edited by the tiled path
MIN_SCALE = 4.0
#: the coverage: the editor's darkness blurred by this many cells (Gaussian sigma)
COVERAGE_CELLS = 0.5
#: the ink: the photo blurred by this many cells (the teacher's own blur)
INK_CELLS = 1 / 3
#: the affine fit's window radius, in cells, and its regularisation
RADIUS_CELLS = 4.0
EPS = 1e-2
#: the threshold array's fit: ink levels over this range, error curves averaged over this many bins (sigma)
INK_RANGE = (-0.1, 1.7)
LEVELS = 360
SMOOTH_BINS = 1.0
#: rows drawn at a time at full resolution (memory)
STRIP_ROWS = 256


@dataclass(frozen=True)
class ScreenRender:
    """The fitted ``table`` ([bins, bins] thresholds of ink over the cell of ``lattice``, the card's
    ``screen_lattice`` of waves [fy, fx, offset] in cycles per pixel of pairs whose short side is ``screen_size``)
    and where it applies (see the module docstring)."""

    lattice: tuple[tuple[float, float, float], ...]
    screen_size: int
    table: np.ndarray = field(repr=False)
    low_scale: float = LOW_SCALE
    min_scale: float = MIN_SCALE

    @property
    def cell(self) -> float:
        """The lattice's cell as a fraction of the photo's short side (the mean period of its waves)."""
        cell = lattice_cell(self.lattice, self.screen_size)
        if cell is None:
            raise ValueError(f"a screen render's lattice needs waves of non-zero frequency, got {self.lattice}")
        return cell

    def applies(self, shape: tuple[int, ...]) -> bool:
        """Whether a photo of this (height, width, ...) is large enough to be rendered."""
        return min(shape[:2]) >= self.min_scale * self.screen_size

    def to_json(self) -> dict[str, Any]:
        return {"lattice": [list(w) for w in self.lattice], "screen_size": self.screen_size,
                "low_scale": self.low_scale, "min_scale": self.min_scale,
                "table": np.round(self.table, 4).tolist()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ScreenRender:
        """The render of a card's ``full_size.render`` (ValueError when a field is missing or out of range)."""
        try:
            lattice = tuple(tuple(float(v) for v in w) for w in data["lattice"])
            table = np.asarray(data["table"], dtype=np.float32)
            size, low, low_min = int(data["screen_size"]), float(data["low_scale"]), float(data["min_scale"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"a screen render needs lattice, screen_size, low_scale, min_scale and table ({exc!r})"
                             ) from None
        if not (check_lattice(lattice) and size >= 1 and low >= low_min >= 0 and table.ndim == 2
                and table.shape[0] == table.shape[1] >= 2 and np.isfinite(table).all()):
            raise ValueError("a screen render needs two lattice waves [fy, fx, offset], screen_size >= 1, "
                             f"low_scale >= min_scale >= 0 and a square finite table, got lattice {lattice}, "
                             f"screen_size {size}, scales {low}/{low_min}, table {table.shape}")
        return cls(lattice, size, table, low, low_min)


def check_lattice(lattice: Sequence[Sequence[float]] | None) -> bool:
    """Whether ``lattice`` is two waves [fy, fx, offset] of non-zero frequency (a cell the array can cover)."""
    return (bool(lattice) and len(lattice) == 2 and all(len(w) == 3 and math.hypot(w[0], w[1]) > 0 for w in lattice)
            and abs(lattice[0][0] * lattice[1][1] - lattice[0][1] * lattice[1][0]) > 1e-9)


def phases(rows: np.ndarray, cols: np.ndarray, lattice: Sequence[Sequence[float]], screen_size: int,
           short_side: int) -> tuple[np.ndarray, np.ndarray]:
    """([R, C], [R, C]) float32 in [0, 1): each lattice wave's phase at pixel ``rows`` x ``cols`` of a photo with
    short side ``short_side`` (the generator's position: pixels / short side x ``screen_size``)."""
    k = screen_size / short_side
    r, c = np.asarray(rows, np.float64)[:, None] * k, np.asarray(cols, np.float64)[None, :] * k
    out = []
    for fy, fx, offset in lattice:
        p = fy * r + fx * c + offset
        out.append((p - np.floor(p)).astype(np.float32))
    return out[0], out[1]


def lookup(table: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``table`` at phases (u, v), bilinear and periodic."""
    n = table.shape[0]
    x, y = u * n - 0.5, v * n - 0.5
    i0, j0 = np.floor(x).astype(np.int32), np.floor(y).astype(np.int32)
    fx, fy = x - i0, y - j0
    i0 %= n
    j0 %= n
    i1, j1 = (i0 + 1) % n, (j0 + 1) % n
    top = table[i0, j0] + (table[i1, j0] - table[i0, j0]) * fx
    bottom = table[i0, j1] + (table[i1, j1] - table[i0, j1]) * fx
    return top + (bottom - top) * fy


def darkness(image: np.ndarray) -> np.ndarray:
    """HxW float32 in [0, 1]: one less the mean of an HxWx3 uint8 image's channels."""
    return 1.0 - image.astype(np.float32).mean(2) * np.float32(1 / 255)


def ink_coefficients(photo: np.ndarray, dark: np.ndarray, cell_px: float) -> np.ndarray:
    """[4, H, W] float32: the local affine map from ``photo``'s colours (0-255, blurred as the coverage is) to the
    coverage of ``dark`` (its darkness blurred by ``COVERAGE_CELLS`` of a cell of ``cell_px`` pixels), in 0-255."""
    coverage = cv2.GaussianBlur(dark, (0, 0), COVERAGE_CELLS * cell_px)
    target = np.repeat(np.clip(coverage * 255 + 0.5, 0, 255).astype(np.uint8)[..., None], 3, 2)
    guide = blur(photo, math.hypot(INK_CELLS, COVERAGE_CELLS) * cell_px)
    return fit_affine(guide, target, max(1, round(RADIUS_CELLS * cell_px)), EPS, outputs=1)


def ink_rows(guide: np.ndarray, coefs: np.ndarray, y0: int, y1: int) -> np.ndarray:
    """Rows ``y0:y1`` of the ink in [0, 1]: ``coefs`` (low resolution) applied to ``guide`` (the photo blurred by
    ``INK_CELLS`` of a cell)."""
    h, w = guide.shape[:2]
    g = guide[y0:y1].astype(np.float32)
    ink = upsample_rows(coefs[3], y0, y1, h, w)
    for i in range(3):
        ink += upsample_rows(coefs[i], y0, y1, h, w) * g[..., i]
    return ink * np.float32(1 / 255)


def fit_table(ink: np.ndarray, dark: np.ndarray, u: np.ndarray, v: np.ndarray, bins: int = BINS) -> np.ndarray:
    """[bins, bins] float32: per bin of the lattice's cell, the ink above which pixels are dark with the least
    darkness on the wrong side (``dark`` in [0, 1]; soft edges count in part), over ``LEVELS`` ink levels. Where a
    bin's own pixels leave a wide gap of equally good thresholds (photos with few mid tones there), the one its
    neighbours' error curves (a periodic Gaussian of ``SMOOTH_BINS`` bins) favour; within a flat minimum, its
    middle."""
    edges = np.linspace(INK_RANGE[0], INK_RANGE[1], LEVELS + 1, dtype=np.float32)
    level = np.clip(np.searchsorted(edges, ink.ravel()) - 1, 0, LEVELS - 1)
    index = (np.minimum((u.ravel() * bins).astype(np.int64), bins - 1) * bins
             + np.minimum((v.ravel() * bins).astype(np.int64), bins - 1))
    cell = index * LEVELS + level
    d = np.clip(dark.ravel(), 0.0, 1.0).astype(np.float64)
    darks = np.bincount(cell, d, bins * bins * LEVELS).reshape(bins, bins, LEVELS)
    lights = np.bincount(cell, 1.0 - d, bins * bins * LEVELS).reshape(bins, bins, LEVELS)
    if darks.sum() + lights.sum() == 0:
        raise ValueError("no samples to fit a threshold array on")
    # a threshold at edge t (t = 0..LEVELS): pixels below it light, above it dark
    zeros = np.zeros((bins, bins, 1))
    errors = (np.concatenate([zeros, np.cumsum(darks, 2)], 2)
              + np.concatenate([np.cumsum(lights[..., ::-1], 2)[..., ::-1], zeros], 2))
    reach = max(1, math.ceil(3 * SMOOTH_BINS))
    weights = np.exp(-0.5 * (np.arange(-reach, reach + 1) / SMOOTH_BINS) ** 2)
    smooth = errors
    for axis in (0, 1):  # a separable periodic Gaussian over the bins
        smooth = sum(wk * np.roll(smooth, k, axis) for k, wk in zip(range(-reach, reach + 1), weights / weights.sum()))
    own = errors <= errors.min(2, keepdims=True) + 1e-6  # the bin's own best thresholds (a gap in its inks)
    score = np.where(own, smooth, np.inf)
    flat = score <= score.min(2, keepdims=True) * (1 + 1e-6) + 1e-9
    first, last = flat.argmax(2), LEVELS - flat[..., ::-1].argmax(2)
    return edges[(first + last) // 2].astype(np.float32)


def fit_render(screen: Mapping[str, Any], samples: Iterable[tuple[np.ndarray, np.ndarray]],
               bins: int = BINS) -> ScreenRender:
    """The render of a card's ``position.screen``, its table fitted on ``samples``: (photo, the teacher's output at
    the photo's resolution) HxWx3 uint8 pairs at least ``MIN_SCALE`` times the pairs' size."""
    lattice = tuple(tuple(float(v) for v in w) for w in screen.get("screen_lattice") or ())
    if not check_lattice(lattice) or not screen.get("screen_size"):
        raise ValueError("a screen render needs a card screen with a two-wave screen_lattice and its screen_size")
    size = int(screen["screen_size"])
    cell = lattice_cell(lattice, size)
    inks, darks, us, vs = [], [], [], []
    for photo, target in samples:
        h, w = photo.shape[:2]
        cell_px = cell * min(h, w)
        dark = darkness(target)
        guide = blur(photo, INK_CELLS * cell_px)
        inks.append(ink_rows(guide, ink_coefficients(photo, dark, cell_px), 0, h).ravel())
        u, v = phases(np.arange(h), np.arange(w), lattice, size, min(h, w))
        darks.append(dark.ravel())
        us.append(u.ravel())
        vs.append(v.ravel())
    if not inks:
        raise ValueError("no photos to fit a threshold array on")
    table = fit_table(np.concatenate(inks), np.concatenate(darks), np.concatenate(us), np.concatenate(vs), bins)
    return ScreenRender(lattice, size, table)


def draw_rows(ink: np.ndarray, render: ScreenRender, rows: np.ndarray, width: int, short_side: int) -> np.ndarray:
    """Grey levels (float32 in [0, 1]) of ``rows`` (consecutive) from their ``ink``: dark where the ink exceeds the
    table, a one-pixel antialiased edge between (the edge's slope from the neighbouring pixels)."""
    u, v = phases(rows, np.arange(width), render.lattice, render.screen_size, short_side)
    f = ink - lookup(render.table, u, v)
    gy, gx = np.gradient(f)
    slope = np.sqrt(gx * gx + gy * gy) + np.float32(1e-6)
    return 1.0 - np.clip(0.5 + f / slope, 0.0, 1.0)


def render_screen(edit: Callable[[np.ndarray], np.ndarray], image: np.ndarray, render: ScreenRender) -> np.ndarray:
    """``image`` (HxWx3 uint8) with its dots drawn at full resolution from ``edit``'s ink (``edit``: the editor on
    an image, HxWx3 uint8 -> same; run on the photo shrunk to ``low_scale`` times the pairs' size)."""
    h, w = image.shape[:2]
    short = min(h, w)
    s = min(1.0, render.low_scale * render.screen_size / short)
    low = image if s >= 1 else cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))),
                                          interpolation=cv2.INTER_AREA)
    coefs = ink_coefficients(low, darkness(edit(low)), render.cell * min(low.shape[:2]))
    guide = blur(image, INK_CELLS * render.cell * short)
    out = np.empty((h, w), np.uint8)
    for y0 in range(0, h, STRIP_ROWS):
        y1 = min(h, y0 + STRIP_ROWS)
        a, b = max(0, y0 - 1), min(h, y1 + 1)  # a row either side for the edges' slope
        grey = draw_rows(ink_rows(guide, coefs, a, b), render, np.arange(a, b), w, short)[y0 - a : y1 - a]
        out[y0:y1] = np.clip(grey * 255 + 0.5, 0, 255).astype(np.uint8)
    return np.repeat(out[..., None], 3, 2)
