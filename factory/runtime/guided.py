"""Guided upsampling: run the editor at low resolution, apply its edit to the full-resolution photo.

For edits that are smooth colour transforms (grading, tone curves, toning), the edit at low
resolution is summarised as a local affine colour model, ``out = A(x) . in + b(x)`` (a 3x3 matrix and
an offset per pixel), fitted between the low-resolution input and the editor's output with the colour
guided filter (He, Sun and Tang; its fast variant fits at low resolution and upsamples the
coefficients, He and Sun 2015): per window (radius 1/64 of the low resolution), the least-squares
affine map with ridge regularisation ``eps`` towards the image's global colour map (so flat windows
still carry the full-resolution detail through), then the coefficients averaged over the windows
that contain each pixel. The coefficients are upsampled bilinearly and applied to the full-resolution
photo in horizontal strips (at most ``STRIP_PIXELS`` pixels each, two strips at a time), so memory
beyond the input and the output stays bounded. Detail the editor never saw (the photo's full
resolution) is kept; edits that are not locally affine in colour (strokes, dots, blur) are not
reproduced, which is why the export measures both paths (``factory.export.fullsize``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np

from factory.runtime.colour_curves import apply_curves, fit_curves

DEFAULT_LOW_SIDE = 512
#: window radius as a fraction of the low resolution's longer side (8 px at 512), and the ridge
#: regularisation of the colour fit (towards the image's global colour map, on [0, 1] colours)
RADIUS_FRACTION = 1 / 64
DEFAULT_EPS = 1e-2
STRIP_PIXELS = 1 << 20


def low_resolution_size(h: int, w: int, side: int, stride: int) -> tuple[int, int]:
    """(height, width) with the longer side ``side`` and both sides multiples of ``stride``."""
    scale = side / max(h, w)
    return (max(stride, round(h * scale / stride) * stride), max(stride, round(w * scale / stride) * stride))


def radius_for(side: int) -> int:
    """The fit's window radius at a low resolution of longer side ``side``."""
    return max(1, round(side * RADIUS_FRACTION))


def fit_affine(src: np.ndarray, dst: np.ndarray, radius: int, eps: float = DEFAULT_EPS,
               outputs: int = 3) -> np.ndarray:
    """Per-pixel affine colour maps from ``src`` to ``dst`` (HxWx3, same size; pixel values 0-255, uint8, or float32
    for ``src`` already through the colour curves), as 4 x ``outputs`` x H x W float32 planes: plane ``4c + i`` is
    A[c, i] (i < 3) and plane ``4c + 3`` is b[c], mapping input pixel values to output pixel values of ``dst``'s first
    ``outputs`` channels."""
    x = [c.astype(np.float32) * np.float32(1 / 255) for c in cv2.split(src)]
    p = [c.astype(np.float32) * np.float32(1 / 255) for c in cv2.split(dst)[:outputs]]
    k = (2 * radius + 1,) * 2

    def box(a: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(a, -1, k, borderType=cv2.BORDER_REFLECT)

    mx, mp = [box(c) for c in x], [box(c) for c in p]
    e = np.float32(eps)
    s = {(i, j): box(x[i] * x[j]) - mx[i] * mx[j] + (e if i == j else 0) for i in range(3) for j in range(i, 3)}
    s.update({(j, i): v for (i, j), v in list(s.items())})
    # inverse of the symmetric 3x3 (covariance + eps I) by cofactors, per pixel
    cof = {(0, 0): s[1, 1] * s[2, 2] - s[1, 2] ** 2, (0, 1): s[0, 2] * s[1, 2] - s[0, 1] * s[2, 2],
           (0, 2): s[0, 1] * s[1, 2] - s[0, 2] * s[1, 1], (1, 1): s[0, 0] * s[2, 2] - s[0, 2] ** 2,
           (1, 2): s[0, 1] * s[0, 2] - s[0, 0] * s[1, 2], (2, 2): s[0, 0] * s[1, 1] - s[0, 1] ** 2}
    cof.update({(j, i): v for (i, j), v in list(cof.items())})
    det = s[0, 0] * cof[0, 0] + s[0, 1] * cof[0, 1] + s[0, 2] * cof[0, 2]
    inv = {key: v / det for key, v in cof.items()}
    prior = _global_affine(src, dst)  # [c, i]: where a window has too little colour variation for its own map
    planes = []
    for c in range(outputs):
        cov = [box(x[j] * p[c]) - mx[j] * mp[c] + e * prior[c, j] for j in range(3)]  # ridge towards the prior
        a = [sum(cov[j] * inv[j, i] for j in range(3)) for i in range(3)]
        b = mp[c] - a[0] * mx[0] - a[1] * mx[1] - a[2] * mx[2]
        planes += [box(a[i]) for i in range(3)] + [box(b) * np.float32(255)]
    return np.stack(planes)


def _global_affine(src: np.ndarray, dst: np.ndarray, eps: float = 1e-4) -> np.ndarray:
    """The least-squares colour matrix [output c, input i] of the whole image (colours in [0, 1])."""
    x, p = src.reshape(-1, 3) / 255.0, dst.reshape(-1, 3) / 255.0
    xc, pc = x - x.mean(0), p - p.mean(0)
    return np.linalg.solve(xc.T @ xc / len(xc) + eps * np.eye(3), xc.T @ pc / len(xc)).T.astype(np.float32)


def upsample_rows(plane: np.ndarray, y0: int, y1: int, h: int, w: int) -> np.ndarray:
    """Rows ``y0:y1`` of a low-resolution float32 ``plane`` upsampled bilinearly (pixel centres aligned) to
    ``h`` x ``w``: vertically at the low width, then horizontally."""
    hl = plane.shape[0]
    sy = np.clip((np.arange(y0, y1) + 0.5) * (hl / h) - 0.5, 0, hl - 1)
    i0 = np.floor(sy).astype(np.intp)
    i1 = np.minimum(i0 + 1, hl - 1)
    lo = plane[i0]
    lo += (plane[i1] - lo) * (sy - i0).astype(np.float32)[:, None]
    return cv2.resize(lo, (w, y1 - y0), interpolation=cv2.INTER_LINEAR)


def apply_affine(image: np.ndarray, coefs: np.ndarray, workers: int | None = None,
                 curves: np.ndarray | None = None) -> np.ndarray:
    """``image`` (HxWx3 uint8) mapped by ``coefs`` (a low-resolution ``fit_affine`` result, upsampled
    bilinearly), in strips, after the colour ``curves`` (``colour_curves.fit_curves``' tables) if given; returns a
    new HxWx3 uint8 image."""
    h, w = image.shape[:2]
    out = np.empty_like(image)
    rows = max(8, STRIP_PIXELS // w)

    def upsample(plane: np.ndarray, y0: int, y1: int) -> np.ndarray:
        return upsample_rows(plane, y0, y1, h, w)

    def strip(y0: int) -> None:
        y1 = min(h, y0 + rows)
        planes = cv2.split(image[y0:y1])
        x = apply_curves(planes, curves) if curves is not None else [c.astype(np.float32) for c in planes]
        result = []
        for c in range(3):
            acc = upsample(coefs[4 * c + 3], y0, y1)
            for i in range(3):
                cv2.accumulateProduct(upsample(coefs[4 * c + i], y0, y1), x[i], acc)
            cv2.max(acc, 0, dst=acc)
            result.append(cv2.convertScaleAbs(acc))  # rounds, saturates at 255
        cv2.merge(result, dst=out[y0:y1])

    starts = range(0, h, rows)
    workers = workers or min(2, os.cpu_count() or 1)
    if workers > 1 and len(starts) > 1:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(strip, starts))
    else:
        for y0 in starts:
            strip(y0)
    return out


def guided_edit(edit_low: Callable[[np.ndarray], np.ndarray], image: np.ndarray, side: int, stride: int,
                radius: int | None = None, eps: float = DEFAULT_EPS, curves: bool = False
                ) -> tuple[np.ndarray, np.ndarray]:
    """Edit an HxWx3 uint8 image: ``edit_low`` (uint8 image -> edited uint8 image of the same size, sides
    multiples of ``stride``) runs at longer side ``side``, its edit is applied at full resolution (first through
    global colour curves fitted to it if ``curves``: ``factory.runtime.colour_curves``).
    Returns (full-resolution output, low-resolution output)."""
    h, w = image.shape[:2]
    lh, lw = low_resolution_size(h, w, side, stride)
    small = cv2.resize(image, (lw, lh), interpolation=cv2.INTER_AREA)
    edited = edit_low(small)
    tables = fit_curves(small, edited) if curves else None
    src = cv2.merge(apply_curves(cv2.split(small), tables)) if tables is not None else small
    return apply_affine(image, fit_affine(src, edited, radius or radius_for(side), eps), curves=tables), edited
