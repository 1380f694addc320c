"""Line charts drawn with OpenCV (no matplotlib dependency): curves of quality against time."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]  # RGB


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if not math.isfinite(lo) or not math.isfinite(hi):
        return []
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(1, n)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step) * step
    return [start + i * step for i in range(int((hi - start) / step + 1e-9) + 1)]


def _fmt(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 100 or float(v).is_integer() else f"{v:.3g}"


def line_chart(series: dict[str, tuple[Sequence[float], Sequence[float]]], title: str = "",
               xlabel: str = "", ylabel: str = "", hlines: dict[str, float] | None = None,
               size: tuple[int, int] = (720, 440)) -> np.ndarray:
    """An HxWx3 uint8 RGB image: one polyline with markers per series, dashed horizontal references,
    axes with ticks, a legend. ``series[name] = (xs, ys)``; non-finite points are dropped."""
    import cv2

    w, h = size
    img = np.full((h, w, 3), 255, np.uint8)
    left, right, top, bottom = 70, 20, 36, 50
    pts = {k: [(float(x), float(y)) for x, y in zip(*v) if math.isfinite(x) and math.isfinite(y)]
           for k, v in series.items()}
    xs = [x for p in pts.values() for x, _ in p] or [0.0, 1.0]
    ys = [y for p in pts.values() for _, y in p] + [v for v in (hlines or {}).values() if math.isfinite(v)]
    ys = ys or [0.0, 1.0]
    x0, x1 = min(0.0, min(xs)), max(xs)
    y0, y1 = min(ys), max(ys)
    pad = 0.06 * (y1 - y0 or 1.0)
    y0, y1 = y0 - pad, y1 + pad
    if x1 <= x0:
        x1 = x0 + 1.0

    def px(x: float, y: float) -> tuple[int, int]:
        return (int(round(left + (x - x0) / (x1 - x0) * (w - left - right))),
                int(round(h - bottom - (y - y0) / (y1 - y0) * (h - top - bottom))))

    font, grey, black = cv2.FONT_HERSHEY_SIMPLEX, (200, 200, 200), (0, 0, 0)
    for t in _nice_ticks(y0, y1):
        _, yy = px(x0, t)
        cv2.line(img, (left, yy), (w - right, yy), grey, 1)
        cv2.putText(img, _fmt(t), (4, yy + 4), font, 0.4, black, 1, cv2.LINE_AA)
    for t in _nice_ticks(x0, x1):
        xx, _ = px(t, y0)
        cv2.line(img, (xx, top), (xx, h - bottom), grey, 1)
        cv2.putText(img, _fmt(t), (xx - 10, h - bottom + 16), font, 0.4, black, 1, cv2.LINE_AA)
    cv2.rectangle(img, (left, top), (w - right, h - bottom), black, 1)
    cv2.putText(img, title, (left, 22), font, 0.55, black, 1, cv2.LINE_AA)
    cv2.putText(img, xlabel, (w // 2 - 4 * len(xlabel), h - 10), font, 0.45, black, 1, cv2.LINE_AA)
    cv2.putText(img, ylabel, (4, top - 8), font, 0.45, black, 1, cv2.LINE_AA)
    legend = []
    for i, (name, value) in enumerate((hlines or {}).items()):
        if not math.isfinite(value):
            continue
        colour = (120, 120, 120) if i == 0 else PALETTE[(len(pts) + i) % len(PALETTE)]
        _, yy = px(x0, value)
        for xx in range(left, w - right, 12):
            cv2.line(img, (xx, yy), (min(xx + 6, w - right), yy), colour, 1)
        legend.append((name, colour, True))
    for i, (name, p) in enumerate(pts.items()):
        colour = PALETTE[i % len(PALETTE)]
        poly = np.array([px(x, y) for x, y in p], np.int32)
        if len(poly) > 1:
            cv2.polylines(img, [poly], False, colour, 2, cv2.LINE_AA)
        for q in poly:
            cv2.circle(img, tuple(int(v) for v in q), 3, colour, -1, cv2.LINE_AA)
        legend.insert(i, (name, colour, False))
    for j, (name, colour, dashed) in enumerate(legend):
        y = top + 16 + 16 * j
        x = w - right - 200
        cv2.line(img, (x, y - 4), (x + 20, y - 4), colour, 1 if dashed else 2)
        cv2.putText(img, name[:28], (x + 26, y), font, 0.4, black, 1, cv2.LINE_AA)
    return img
