"""The step loop shared by every trainer here: a step and/or wall-clock budget, history, checkpoints."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable


@dataclass
class TrainState:
    """Where a run is: steps done, training seconds spent (evaluation pauses excluded), per-step logs."""

    step: int = 0
    seconds: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)


def run_budgeted(state: TrainState, *, steps: int, seconds: float | None, checkpoint_every: int,
                 train_step: Callable[[int], dict[str, float]], save_checkpoint: Callable[[], object],
                 progress: Callable[[dict[str, float]], None] | None = None,
                 pause_every: int | None = None, on_pause: Callable[[TrainState], None] | None = None) -> TrainState:
    """Run ``train_step(step)`` until ``steps`` or the ``seconds`` budget, whichever comes first.

    Checkpoints every ``checkpoint_every`` steps and once at the end (unless nothing was trained).
    ``on_pause`` is called every ``pause_every`` steps; its time counts neither in ``state.seconds``
    nor against the budget (e.g. measuring a held-out quality curve).
    """
    started = time.perf_counter() - state.seconds
    while state.step < steps:
        if seconds is not None and time.perf_counter() - started >= seconds:
            break
        log = train_step(state.step)
        state.step += 1
        state.seconds = time.perf_counter() - started
        log["seconds"] = round(state.seconds, 3)
        state.history.append(log)
        if progress:
            progress(log)
        if on_pause is not None and pause_every and state.step % pause_every == 0:
            paused = time.perf_counter()
            on_pause(state)
            started += time.perf_counter() - paused
        if state.step % checkpoint_every == 0:
            save_checkpoint()
    if state.step and (not state.history or state.step % checkpoint_every):
        save_checkpoint()
    return state
