"""CPU latency of exported editors, timed fairly side by side."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from factory.runtime.editor import Editor


def benchmark(models: dict[str, str | os.PathLike], size: int, threads: int | None, runs: int = 30,
              warmup: int = 5, batch: int = 1, seed: int = 0) -> dict[str, dict]:
    """Latency of each named model on this CPU, plus its size on disk.

    Runs are interleaved in blocks (A x5, B x5, ..., A x5, ...; each block starts with one untimed run
    to re-warm caches after the other models) after every model's warm-up, so a burst of load from
    other processes hits every model alike instead of whichever happened to be timed then.
    """
    block = 5
    editors = {name: Editor(path, threads) for name, path in models.items()}
    inputs = {}
    for name, ed in editors.items():
        side = ed.fixed_hw[0] or size
        inputs[name] = np.random.default_rng(seed).uniform(-1, 1, (batch, 3, side, side)).astype(np.float32)
        for _ in range(warmup):
            ed.run(inputs[name])
    times: dict[str, list[float]] = {name: [] for name in editors}
    for start in range(0, runs, block):
        for name, ed in editors.items():
            ed.run(inputs[name])
            for _ in range(min(block, runs - start)):
                t0 = time.perf_counter()
                ed.run(inputs[name])
                times[name].append((time.perf_counter() - t0) * 1000.0)
    results = {}
    for name, path in models.items():
        t = np.asarray(times[name])
        results[name] = {"path": str(path), "bytes": Path(path).stat().st_size, "median_ms": float(np.median(t)),
                         "p10_ms": float(np.percentile(t, 10)), "p90_ms": float(np.percentile(t, 90)),
                         "per_image_ms": float(np.median(t)) / batch, "runs": runs, "warmup": warmup, "batch": batch,
                         "size": int(inputs[name].shape[-1]), "threads": threads}
    return results
