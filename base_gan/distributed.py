"""Data-parallel training over several processes: the launcher's process group, one global batch.

A trainer draws each step's *global* batch from its seed and step alone, and every process takes its slice
(``Parallel.shard``); gradients are averaged over the processes after each backward (the all-reduce DDP
does), so N processes train the same model as one process with the same global batch, up to float
rounding, and a checkpoint (written by process 0 only) resumes with any number of processes.

The process group comes from the environment that ``accelerate launch``, ``torchrun`` or
``factory base train --processes N`` set (``WORLD_SIZE``, ``RANK``, ``MASTER_ADDR``, ``MASTER_PORT``):
gloo on CPUs, NCCL on GPUs (``LOCAL_RANK`` picks the GPU).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import torch

from factory.core.errors import FactoryError

T = TypeVar("T")
#: how long a process waits for the others at a barrier or collective
TIMEOUT_HOURS = 6


@dataclass(frozen=True)
class Parallel:
    """This process's place in the group (``world == 1``: a single process, every method a no-op)."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def shard(self, items: Sequence[T]) -> list[T]:
        """This process's slice of a global batch (equal slices: the global batch must divide evenly)."""
        if len(items) % self.world:
            raise FactoryError(f"a global batch of {len(items)} does not split evenly over {self.world} processes")
        return list(items[self.rank::self.world])

    def average_gradients(self, params: Iterable[torch.nn.Parameter]) -> None:
        """Average every gradient over the processes (each holds its slice's mean: the result is the global mean)."""
        if self.world == 1:
            return
        import torch.distributed as dist

        for p in params:
            if p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad /= self.world

    def mean(self, values: list[float]) -> list[float]:
        """Scalars averaged over the processes (losses for the logs), in one all-reduce."""
        if self.world == 1:
            return values
        import torch.distributed as dist

        t = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(t)
        return (t / self.world).tolist()

    def any(self, flag: bool) -> bool:
        """True on every process when it is true on any (e.g. a wall-clock budget reached by one of them)."""
        if self.world == 1:
            return flag
        import torch.distributed as dist

        t = torch.tensor([1.0 if flag else 0.0])
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()


_GROUP: Parallel | None = None


def parallel() -> Parallel:
    """The process group the launcher described in the environment, set up once (a single process without one)."""
    global _GROUP
    if _GROUP is not None:
        return _GROUP
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        _GROUP = Parallel()
        return _GROUP
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        # long: process 0 may synthesize pairs, and the others wait at a barrier for it or for the slowest chunk
        dist.init_process_group(backend=backend, timeout=timedelta(hours=TIMEOUT_HOURS))
    _GROUP = Parallel(dist.get_rank(), dist.get_world_size())
    return _GROUP


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(argv: list[str], processes: int) -> int:
    """Run ``python -m factory ARGV`` as ``processes`` processes of one group on this machine (what torchrun
    does), each with its share of the cores; returns the first non-zero exit code (0 when all succeed)."""
    port = str(free_port())
    threads = str(max(1, (os.cpu_count() or 1) // processes))
    procs = []
    for rank in range(processes):
        env = {**os.environ, "WORLD_SIZE": str(processes), "RANK": str(rank), "LOCAL_RANK": str(rank),
               "LOCAL_WORLD_SIZE": str(processes), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port,
               "OMP_NUM_THREADS": threads}
        procs.append(subprocess.Popen([sys.executable, "-m", "factory", *argv], env=env,
                                      stdout=None if rank == 0 else subprocess.DEVNULL))
    codes = [p.wait() for p in procs]
    return next((c for c in codes if c), 0)


def relaunch(processes: int) -> None:
    """Run this very command (``sys.argv`` without ``--processes N``) as ``processes`` processes of one group
    and exit with their status; nothing to do for 1 process or under a launcher (``WORLD_SIZE`` set)."""
    if processes <= 1 or "WORLD_SIZE" in os.environ:
        return
    argv, skip = [], False
    for a in sys.argv[1:]:
        if skip:
            skip = False
        elif a == "--processes":
            skip = True
        elif not a.startswith("--processes="):
            argv.append(a)
    raise SystemExit(launch(argv, processes))
