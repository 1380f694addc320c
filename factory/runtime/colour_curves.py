"""A global colour stage for the guided path: per output channel, a sum of one curve per input channel.

A tone curve per channel followed by a colour matrix (curves, then saturation; most film and grading looks) is
``out_c = sum_i f_ci(in_i)``: nine curves, each a function of one input channel. The guided filter's local affine
model cannot bend a curve inside a window with a wide range of colours; this stage can. The curves are fitted by
least squares between the guided path's low-resolution input and the editor's output there (piecewise linear on
``KNOTS`` knots per input channel, with a second-difference penalty so colours the photo lacks follow a straight
continuation), and applied at full resolution as 256-entry lookup tables (``cv2.LUT``), before the local affine fit
(``factory.runtime.guided``), which then carries what is left: the edit's dependence on the place in the photo.
"""

from __future__ import annotations

import cv2
import numpy as np

KNOTS = 17
#: second-difference penalty of the curves, relative to the pixels' weight (colours in [0, 1])
SMOOTH = 1e-3
#: ridge on every knot value (the three input channels' curves share an offset, which this pins)
RIDGE = 1e-6
# knots, smoothness and the local fit's ridge after the curves (the guided path's own) were chosen on validation
# editors: bench/results/fullsize-curves-validation*.md


def _hats(levels: np.ndarray, knots: int) -> np.ndarray:
    """Piecewise-linear hat weights (len(levels) x knots) of uint8 ``levels`` on ``knots`` evenly spaced knots."""
    t = levels.astype(np.float32) * np.float32((knots - 1) / 255)
    k0 = np.minimum(t.astype(np.intp), knots - 2)
    frac = t - k0
    out = np.zeros((len(levels), knots), np.float32)
    rows = np.arange(len(levels))
    out[rows, k0] = 1 - frac
    out[rows, k0 + 1] = frac
    return out


def fit_curves(src: np.ndarray, dst: np.ndarray, knots: int = KNOTS, smooth: float = SMOOTH) -> np.ndarray:
    """Lookup tables (3 outputs x 3 inputs x 256, float32, output pixel values) with ``sum_i T[c, i][src_i]`` the
    least-squares fit of ``dst``'s channel c (``src``, ``dst``: HxWx3 uint8 of the same size)."""
    return knot_tables(fit_curve_knots(src, dst, knots, smooth))


def knot_tables(weights: np.ndarray) -> np.ndarray:
    """``fit_curve_knots``'s knot values as lookup tables (3 outputs x C inputs x 256, float32, pixel values)."""
    table = _hats(np.arange(256, dtype=np.uint8), weights.shape[-1])  # 256 x knots
    return (np.einsum("lk,cik->cil", table, weights) * 255).astype(np.float32)


def identity_knots(knots: int = KNOTS, inputs: int = 3) -> np.ndarray:
    """The knot values of the identity map (each output channel its own input channel; further inputs unused)."""
    weights = np.zeros((3, inputs, knots))
    for c in range(3):
        weights[c, c] = np.linspace(0, 1, knots)
    return weights


def fit_curve_knots(src: np.ndarray, dst: np.ndarray, knots: int = KNOTS, smooth: float = SMOOTH) -> np.ndarray:
    """The curves' values at their knots (3 outputs x C inputs x ``knots``, float64, colours in [0, 1]): piecewise
    linear in the input level on ``knots`` evenly spaced knots over 0..255, ``fit_curves``'s least-squares fit
    (``src``: HxWxC uint8, C input channels, e.g. an editor's output and its photo side by side; ``dst``: HxWx3)."""
    if src.shape[:2] != dst.shape[:2] or src.ndim != 3 or dst.ndim != 3 or dst.shape[2] != 3:
        raise ValueError(f"fit_curves needs two HxWx3 images of one size, got {src.shape} and {dst.shape}")
    n = src.shape[2]
    x = src.reshape(-1, n)
    y = dst.reshape(-1, 3).astype(np.float64) / 255
    table = _hats(np.arange(256, dtype=np.uint8), knots)  # 256 x knots
    # the design matrix's Gram from each channel's level histogram and the joint histograms, not per pixel
    counts = [np.bincount(x[:, i], minlength=256).astype(np.float64) for i in range(n)]
    gram = np.zeros((n * knots, n * knots))
    rhs = np.zeros((n * knots, 3))
    for i in range(n):
        for j in range(i, n):
            if i == j:
                joint = np.diag(counts[i])
            else:
                joint = np.bincount(x[:, i].astype(np.intp) * 256 + x[:, j], minlength=65536).reshape(256, 256)
            block = table.T.astype(np.float64) @ joint @ table
            gram[i * knots:(i + 1) * knots, j * knots:(j + 1) * knots] = block
            gram[j * knots:(j + 1) * knots, i * knots:(i + 1) * knots] = block.T
        sums = np.stack([np.bincount(x[:, i], weights=y[:, c], minlength=256) for c in range(3)], 1)
        rhs[i * knots:(i + 1) * knots] = table.T @ sums
    second = np.diff(np.eye(knots), 2, axis=0)
    penalty = np.kron(np.eye(n), second.T @ second) * (smooth * len(x) / knots) + RIDGE * len(x) * np.eye(n * knots)
    weights = np.linalg.solve(gram + penalty, rhs)  # (n knots) x 3 outputs
    return weights.reshape(n, knots, 3).transpose(2, 0, 1).copy()


def apply_curves(channels: list[np.ndarray], tables: np.ndarray) -> list[np.ndarray]:
    """The three float32 output planes (pixel values) of uint8 input ``channels`` (R, G, B planes; or as many as
    ``tables`` has inputs) through ``fit_curves``'s ``tables``."""
    out = []
    for c in range(3):
        acc = cv2.LUT(channels[0], tables[c, 0].reshape(1, 256))
        for i in range(1, len(channels)):
            acc += cv2.LUT(channels[i], tables[c, i].reshape(1, 256))
        out.append(acc)
    return out
