"""One concept's synthesis spread over N processes (one per GPU when there are GPUs), merged into one store.

Each shard is ``factory synth CONCEPT --shard K/N`` (same workspace, seed and teacher options): it makes
the pairs of its teacher batches (``factory.data.synthesize.shard_of``) in its own store. When all have
exited, their pairs are merged in pair order, so the data folder holds the same pairs, byte for byte, as
one process with the same seed makes. A failed or killed shard loses nothing it finished: its pairs are
merged, and running the same command again makes only what is missing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from factory.core.errors import FactoryError
from factory.core.workspace import Workspace
from factory.data.pair_store import read_manifest
from factory.data.synthesize import merge_shards
from factory.pipeline.batch import gpu_for, visible_gpus


def shard_command(ws: Workspace, concept: str, n: int, size: int, seed: int, images: Path | None,
                  teacher: str | None, overrides: dict[str, Any], test_fraction: float, shard: tuple[int, int]
                  ) -> list[str]:
    """The ``factory synth`` command line of one shard."""
    cmd = [sys.executable, "-m", "factory", "--workspace", str(ws.root), "--seed", str(seed), "synth", concept,
           "-n", str(n), "--size", str(size), "--test-fraction", str(test_fraction), "--shard",
           f"{shard[0]}/{shard[1]}"]
    if images is not None:
        cmd += ["--images", str(images)]
    if teacher is not None:
        cmd += ["--teacher", teacher]
    for key, value in overrides.items():
        if value is not None:
            cmd += [f"--{key.replace('_', '-')}", str(value)]
    return cmd


def synthesize_sharded(ws: Workspace, concept: str, n: int, size: int, shards: int, *, target: str | None = None,
                       seed: int = 0,
                       images: Path | None = None, teacher: str | None = None,
                       overrides: dict[str, Any] | None = None, test_fraction: float = 0.1,
                       log: Callable[[str], None] = print) -> int:
    """Run ``shards`` shard processes for ``concept`` (its card as ``target`` names it to ``factory synth``: the
    name, or a .yaml path; GPUs round-robin unless ``device`` is given), wait, merge; returns the number of pairs
    in the store. Raises (after merging what finished) when a shard failed."""
    if shards < 2:
        raise FactoryError(f"--shards {shards}: a sharded synthesis needs at least 2 shards")
    overrides = overrides or {}
    folder = ws.data(concept)
    merge_shards(folder)  # what an earlier, interrupted sharded run finished
    gpus = visible_gpus() if overrides.get("device") is None else []
    threads = str(max(1, (os.cpu_count() or 1) // shards))
    procs = []
    for k in range(shards):
        env = dict(os.environ)
        gpu = gpu_for(k, gpus, [])
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = gpu
        env.setdefault("OMP_NUM_THREADS", threads)
        cmd = shard_command(ws, target or concept, n, size, seed, images, teacher, overrides, test_fraction,
                            (k, shards))
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL))
    log(f"synth {concept}: {shards} shard processes" + (f" on GPUs {', '.join(gpus)}" if gpus else ""))
    failed = []
    for k, proc in enumerate(procs):
        code = proc.wait()
        if code != 0:
            failed.append(f"shard {k}/{shards} " + (f"killed by {signal.Signals(-code).name}" if code < 0
                                                    else f"exited {code}"))
    merge_shards(folder)
    total = len(read_manifest(folder))
    if failed:
        raise FactoryError(f"synth {concept}: {'; '.join(failed)}; the {total} finished pairs are kept, run the "
                           "same command again to make the rest")
    return total
