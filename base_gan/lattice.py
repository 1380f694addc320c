"""Distance planes of a screen's lattice: where in its cell every pixel sits, for round dots and square blocks.

A halftone dot is the set of pixels whose distance to the cell's centre is below a radius that follows the tone.
From sin/cos planes of the screen's waves a network draws that circle only approximately (a soft blob of the wrong
shape, which shows once the cell is large: a full-size photo). These planes give it the distance itself.

For each lattice wave ``[fy, fx, offset]`` (cycles per pixel at the pairs' size; ``offset`` in cycles, fitted so
that the pattern's extremes sit at whole and half cycles, ``factory.data.screen_fit.fit_lattice``) the phase is
``u = fy * row + fx * col + offset`` and ``f = |u - round(u)|`` in [0, 0.5] is how far the pixel is, in cells,
from the nearest whole cycle along the wave (``0.5 - f`` from the nearest half cycle). With two waves the four
distances ``hypot(a, b)`` for ``a`` in (f1, 0.5 - f1) and ``b`` in (f2, 0.5 - f2) are the distances to the
nearest lattice point of each of the four kinds (centres, corners, edge midpoints), so whichever the pattern is
centred on, one plane is its radius.

``f`` is computed from the triangle wave's Fourier series (odd harmonics up to ``HARMONICS``) with Sin, Conv, Mul
and Sqrt only: a frac() needs Floor or Round, which CoreML or NNAPI lack, and the fp32 editor must stay whole on
both. The series is exact to ~0.006 cycles at the cusps and far closer between them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

#: highest odd harmonic of the triangle wave's series
HARMONICS = 15
#: f (and 0.5 - f) times this is in [0, sqrt 2], so the sum of two squares is at most 4 (hypot(0.5, 0.5) = 1 / sqrt 2)
SCALE = 2 * math.sqrt(2)


def _orders() -> list[int]:
    return list(range(1, HARMONICS + 1, 2))


def check_lattice(lattice: list[list[float]]) -> None:
    """ValueError unless ``lattice`` is one or two waves [fy, fx, offset], each frequency within +-0.5."""
    if not 1 <= len(lattice) <= 2:
        raise ValueError(f"a screen lattice has one or two waves, got {len(lattice)}")
    for wave in lattice:
        if len(wave) != 3 or not all(abs(f) <= 0.5 for f in wave[:2]):
            raise ValueError(f"a lattice wave is [fy, fx, offset] in cycles per pixel (each within +-0.5) and "
                             f"cycles, got {wave}")


def plane_count(lattice: list[list[float]] | None) -> int:
    """How many planes ``lattice_planes`` gives: f and 0.5 - f per wave, plus the four distances with two waves."""
    if not lattice:
        return 0
    return 2 * len(lattice) + (4 if len(lattice) == 2 else 0)


def lattice_buffers(lattice: list[list[float]]) -> dict[str, torch.Tensor]:
    """The fixed tensors of ``lattice_planes``: the phase conv (every odd harmonic of every wave, as cosines), the
    series' conv to (f, 0.5 - f) per wave, and with two waves the conv summing the squares per distance."""
    check_lattice(lattice)
    orders = torch.tensor(_orders(), dtype=torch.float64)
    weights, biases = [], []
    for fy, fx, offset in lattice:
        weights.append(2 * math.pi * orders[:, None] * torch.tensor([fy, fx], dtype=torch.float64))
        biases.append(2 * math.pi * orders * offset + math.pi / 2)  # sin(x + pi/2) = cos(x): NNAPI has no Cos
    n = len(orders)
    series = torch.zeros(2 * len(lattice), n * len(lattice), dtype=torch.float64)
    series_bias = torch.full((2 * len(lattice),), 0.25 * SCALE, dtype=torch.float64)  # the series' 1/4
    coeff = 2 / math.pi**2 / orders.square()  # f(u) = 1/4 - sum over odd n of 2 cos(2 pi n u) / (pi n)^2
    for i in range(len(lattice)):
        series[i, i * n:(i + 1) * n] = -coeff * SCALE            # f
        series[len(lattice) + i, i * n:(i + 1) * n] = coeff * SCALE  # 0.5 - f
    out = {
        "lattice_weight": torch.cat(weights).reshape(-1, 2, 1, 1),
        "lattice_bias": torch.cat(biases),
        "lattice_series": series.reshape(*series.shape, 1, 1),
        "lattice_series_bias": series_bias,
    }
    if len(lattice) == 2:  # planes (f1, f2, g1, g2) squared -> (f1,f2), (g1,g2), (f1,g2), (g1,f2), scaled to [0, 2]
        pick = torch.zeros(4, 4, dtype=torch.float64)
        for row, (a, b) in enumerate(((0, 1), (2, 3), (0, 3), (2, 1))):
            pick[row, a] = pick[row, b] = 1.0
        out["lattice_sum"] = pick.reshape(4, 4, 1, 1)
    return {k: v.float() for k, v in out.items()}


def lattice_planes(buffers: dict[str, torch.Tensor], position: torch.Tensor) -> torch.Tensor:
    """[B, plane_count, H, W] at ``position`` [B, 2, H, W] (row, col in the pairs' pixels): f of each wave, then
    0.5 - f of each, then with two waves the four distances, each scaled to [-1, 1] like the sin/cos planes (on the
    validation concept newsprint, planes in [0, 2] trained less steadily: bench/results/fullsize-lattice-validation*).
    No Slice or Clip: both would leave NNAPI."""
    dtype = position.dtype
    cosines = torch.sin(F.conv2d(position, buffers["lattice_weight"].to(dtype), buffers["lattice_bias"].to(dtype)))
    sides = F.conv2d(cosines, buffers["lattice_series"].to(dtype), buffers["lattice_series_bias"].to(dtype))
    centred = sides * (4 / SCALE) - 1  # 4 f - 1
    if "lattice_sum" not in buffers:
        return centred
    distances = torch.sqrt(F.conv2d(sides * sides, buffers["lattice_sum"].to(dtype)))  # a sum of squares: >= 0
    return torch.cat([centred, distances - 1], dim=1)  # S hypot is in [0, 2]
