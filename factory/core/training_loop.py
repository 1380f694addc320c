"""The step loop shared by every trainer here: a step and/or wall-clock budget, history, checkpoints."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from factory.core.atomic import atomic_folder


@dataclass
class TrainState:
    """Where a run is: steps done, training seconds spent (evaluation pauses excluded), per-step logs, and the
    steps at which a divergence guard put the run back (``base_gan.rollback``)."""

    step: int = 0
    seconds: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)
    rollbacks: list[dict[str, float]] = field(default_factory=list)


def run_budgeted(state: TrainState, *, steps: int, seconds: float | None, checkpoint_every: int,
                 train_step: Callable[[int], dict[str, float]], save_checkpoint: Callable[[], object],
                 progress: Callable[[dict[str, float]], None] | None = None,
                 pause_every: int | None = None, on_pause: Callable[[TrainState], bool | None] | None = None,
                 pause_seconds: float | None = None, agree: Callable[[bool], bool] | None = None) -> TrainState:
    """Run ``train_step(step)`` until ``steps`` or the ``seconds`` budget, whichever comes first.

    Checkpoints every ``checkpoint_every`` steps and once at the end (unless nothing was trained).
    ``on_pause`` is called every ``pause_every`` steps, or with ``pause_seconds`` after the first step at
    or past each multiple of that many training seconds (the same cadence in time for runs whose steps
    cost differently); its time counts neither in ``state.seconds`` nor against the budget (e.g.
    measuring a held-out quality curve); when it returns True the loop stops (e.g. at a plateau).
    ``agree(flag)`` makes a stop decision common to the processes of a data-parallel group (True when any
    of them says so: one process's clock must not leave the others waiting in an all-reduce).
    """
    agree = agree or (lambda flag: flag)
    started = time.perf_counter() - state.seconds
    next_pause = (int(state.seconds // pause_seconds) + 1) * pause_seconds if pause_seconds else None
    while state.step < steps:
        if agree(seconds is not None and time.perf_counter() - started >= seconds):
            break
        log = train_step(state.step)
        state.step += 1
        state.seconds = time.perf_counter() - started
        log["seconds"] = round(state.seconds, 3)
        state.history.append(log)
        if progress:
            progress(log)
        due = (next_pause is not None and state.seconds >= next_pause) or \
            (next_pause is None and pause_every and state.step % pause_every == 0)
        stop = False
        if on_pause is not None and due:
            paused = time.perf_counter()
            stop = bool(on_pause(state))
            started += time.perf_counter() - paused
            if next_pause is not None:
                next_pause = (int(state.seconds // pause_seconds) + 1) * pause_seconds
        if state.step % checkpoint_every == 0:
            save_checkpoint()
        if agree(stop):
            break
    if state.step and (not state.history or state.step % checkpoint_every):
        save_checkpoint()
    return state


CHECKPOINTS = "checkpoints"


def write_checkpoint(out_dir: Path, step: int, write: Callable[[Path], None], keep: int) -> Path:
    """Write ``out_dir/checkpoints/step-NNNNNNN/`` whole (``write(folder)`` fills it; ``state.json`` marks it
    complete) through ``atomic_folder``; only the newest ``keep`` are kept."""
    root = Path(out_dir) / CHECKPOINTS
    final = root / f"step-{step:07d}"
    with atomic_folder(final) as tmp:
        write(tmp)
    for old in sorted(root.glob("step-*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    """The newest complete checkpoint folder under ``out_dir``, or None."""
    root = Path(out_dir) / CHECKPOINTS
    done = sorted(p for p in root.glob("step-*") if (p / "state.json").exists()) if root.is_dir() else []
    return done[-1] if done else None
