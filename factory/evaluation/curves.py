"""Training curves: held-out quality against training seconds, on disk (``curve.csv``), as a chart,
and the time a curve takes to reach a target quality."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np

from factory.core.atomic import atomic_write_text

CURVE_FIELDS = ("step", "seconds", "psnr", "ssim", "l1")


def write_curve(path: Path, rows: list[dict[str, float]]) -> Path:
    """``rows`` as CSV (``CURVE_FIELDS``), atomically."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(CURVE_FIELDS), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (int(r[k]) if k == "step" else round(float(r[k]), 5)) for k in CURVE_FIELDS})
    return atomic_write_text(path, buf.getvalue())


def read_curve(path: Path) -> list[dict[str, float]]:
    """The rows of a curve CSV ([] when it is missing)."""
    if not Path(path).is_file():
        return []
    with open(path, encoding="utf-8") as fh:
        return [{k: (int(v) if k == "step" else float(v)) for k, v in row.items()} for row in csv.DictReader(fh)]


def time_to_reach(curve: list[dict], target: float, offset: float = 0.0) -> dict[str, Any]:
    """When ``curve`` (its seconds shifted by ``offset``, e.g. an init's own cost) first reaches ``target`` PSNR:
    the first evaluation at or above it (``by_evaluation``, an upper bound) and the linear interpolation with
    the evaluation before it (``interpolated``)."""
    prev = None
    for r in curve:
        t = r["seconds"] + offset
        if r["psnr"] >= target:
            interp = t
            if prev is not None and r["psnr"] > prev[1]:
                interp = prev[0] + (target - prev[1]) / (r["psnr"] - prev[1]) * (t - prev[0])
            return {"reached": True, "by_evaluation": round(t, 2), "interpolated": round(interp, 2),
                    "step": r["step"], "at_step_0": r["step"] == 0}
        prev = (t, r["psnr"])
    return {"reached": False, "budget": round(curve[-1]["seconds"] + offset, 2) if curve else None}


def plot_curve(curve: list[dict], concept: str, references: dict[str, float] | None = None) -> np.ndarray:
    """Held-out PSNR against training seconds, with dashed reference lines (e.g. identity, base zero-shot)."""
    from factory.core.plot import line_chart

    return line_chart({"fine-tune": ([r["seconds"] for r in curve], [r["psnr"] for r in curve])},
                      title=f"{concept}: held-out PSNR vs training time", xlabel="seconds", ylabel="PSNR dB",
                      hlines=references or {})
