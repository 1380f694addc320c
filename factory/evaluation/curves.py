"""Training curves: held-out quality against training seconds, on disk (``curve.csv``), as a chart,
and the time a curve takes to reach a target quality."""

from __future__ import annotations

import csv
import io
import itertools
from pathlib import Path
from typing import Any

import numpy as np

from factory.core.atomic import atomic_write_text
from factory.core.errors import FactoryError

CURVE_FIELDS = ("step", "seconds", "psnr", "ssim", "l1")
#: written when every row has them: the PSNR before the output curves (``psnr`` is the editor as it would ship) and
#: the seconds their fit took (included in ``seconds``)
OPTIONAL_FIELDS = ("raw_psnr", "curves_seconds")


def write_curve(path: Path, rows: list[dict[str, float]]) -> Path:
    """``rows`` as CSV (``CURVE_FIELDS``, then each of ``OPTIONAL_FIELDS`` every row has), atomically."""
    fields = [*CURVE_FIELDS, *(k for k in OPTIONAL_FIELDS if rows and all(k in r for r in rows))]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (int(r[k]) if k == "step" else round(float(r[k]), 5)) for k in fields})
    return atomic_write_text(path, buf.getvalue())


def read_curve(path: Path) -> list[dict[str, float]]:
    """The rows of a curve CSV ([] when it is missing)."""
    if not Path(path).is_file():
        return []
    with open(path, encoding="utf-8") as fh:
        return [{k: (int(v) if k == "step" else float(v)) for k, v in row.items()} for row in csv.DictReader(fh)]


def time_to_quality(curve: list[dict], target: float, costs: dict[str, float] | None = None,
                    identity: float | None = None) -> dict[str, Any]:
    """When ``curve`` first reaches ``target`` PSNR: the first evaluation at or above it (no interpolation:
    a curve evaluated more often gets no finer answer than its cadence allows), as training seconds plus
    every cost charged to the arm (``costs``: loading, text encoding, sampling, probe, rank search...).

    ``status`` is "reached", "not reached" (within the curve) or "target below identity" (``identity``
    is the unchanged photo's PSNR: a target below it measures nothing and is never used).
    """
    charged = {k: float(v) for k, v in (costs or {}).items()}
    extra = sum(charged.values())
    base = {"target": target, "costs": charged}
    if identity is not None and target < identity:
        return {**base, "status": "target below identity", "identity": identity}
    for r in curve:
        if r["psnr"] >= target:
            return {**base, "status": "reached", "seconds": r["seconds"] + extra, "training_seconds": r["seconds"],
                    "step": r["step"]}
    return {**base, "status": "not reached", "budget_seconds": (curve[-1]["seconds"] + extra) if curve else extra}


def cadence(curve: list[dict]) -> float | None:
    """The median interval in training seconds between a curve's evaluations after step 0 (None for < 2)."""
    times = [r["seconds"] for r in curve]
    gaps = sorted(b - a for a, b in itertools.pairwise(times))
    return gaps[len(gaps) // 2] if gaps else None


def check_cadence(curves: dict[str, list[dict]], seconds: float, tolerance: float = 0.35) -> None:
    """FactoryError naming the curves not evaluated every ``seconds`` of training (within ``tolerance``):
    "first evaluation at or above" favours the more often evaluated curve, so arms are only compared
    on one cadence."""
    off = {name: c for name, c in ((n, cadence(cv)) for n, cv in curves.items())
           if c is not None and abs(c - seconds) > tolerance * seconds}
    if off:
        raise FactoryError("curves evaluated on another cadence than every "
                           f"{seconds:g} s: " + ", ".join(f"{n} ({c:.1f} s)" for n, c in off.items()))


def speedup(reference: dict[str, Any], method: dict[str, Any]) -> float | str:
    """``reference`` seconds / ``method`` seconds (both ``time_to_quality`` results), or why there is none."""
    if "target below identity" in (reference["status"], method["status"]):
        return "target below identity"
    if reference["status"] != "reached":
        return "reference did not reach the target"
    if method["status"] != "reached":
        return "not reached"
    return reference["seconds"] / max(method["seconds"], 1e-9)


def plateau(curve: list[dict], min_gain_db: float = 0.2, last_fraction: float = 0.25,
            min_seconds: float = 0.0, keys: tuple[str, ...] = ("psnr",)) -> dict[str, Any] | None:
    """The plateau of a (growing) curve: once it has run ``min_seconds``, the first evaluation at which, for every
    one of ``keys`` (default the PSNR; with output curves also ``raw_psnr``, the student's own), the best of the last
    ``last_fraction`` of the run beats the best before it by less than ``min_gain_db``. None while one still climbs
    (a calibrated curve that drops when its curves stop being kept is no plateau while the student climbs)."""
    for i, r in enumerate(curve):
        t = r["seconds"]
        if t < min_seconds or t <= 0:
            continue
        cut = (1 - last_fraction) * t
        gains = {}
        for key in keys:
            before = [x[key] for x in curve[:i + 1] if x["seconds"] <= cut]
            last = [x[key] for x in curve[:i + 1] if x["seconds"] > cut]
            gains[key] = max(last) - max(before) if before and last else None
        if all(g is not None and g < min_gain_db for g in gains.values()):
            return {"seconds": t, "step": r["step"], "psnr": max(x["psnr"] for x in curve[:i + 1]),
                    "gain_over_last_fraction_db": gains[keys[0]],
                    **{f"{key}_gain_over_last_fraction_db": g for key, g in gains.items() if key != keys[0]}}
    return None


def plot_curve(curve: list[dict], concept: str, references: dict[str, float] | None = None) -> np.ndarray:
    """Held-out PSNR against training seconds, with dashed reference lines (e.g. identity, base zero-shot)."""
    from factory.core.plot import line_chart

    return line_chart({"fine-tune": ([r["seconds"] for r in curve], [r["psnr"] for r in curve])},
                      title=f"{concept}: held-out PSNR vs training time", xlabel="seconds", ylabel="PSNR dB",
                      hlines=references or {})
