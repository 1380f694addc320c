"""Divergence guard: put a run that blows up back to a state from before, at half the learning rate.

GAN training at the learning rates a 90-second fine-tune needs (1e-3) sometimes diverges within a few
steps: the L1 to the target climbs from ~0.05 to thousands and the run never comes back (output past
the soft bound's leak). Of the 126 test and validation runs of ``bench/run_all.py`` / ``tune_choice.py``
(``bench/results/divergence-before-guard.md``), 118 kept their L1 at or below 1.906; the 8 others reached 179 or more,
and 7 of them ended 3.5 to 25.6 dB below their best held-out PSNR. The guard keeps the last ``keep`` in-memory
snapshots taken every ``every`` steps; a step whose L1 is not finite or above ``limit`` restores the
oldest of them, and the run goes on from there (with new batches) at half its learning rate. The time
the snapshots take is training time: a run pays for its guard.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from typing import Any

#: an L1 between images in [-1, 1] is at most 2: above 4, the generator's output has left the image range
DEFAULT_LIMIT = 4.0
SNAPSHOT_EVERY = 25


class Rollback:
    """``after_step(step, l1)`` after every training step: snapshots every ``every`` steps, a restore on divergence."""

    def __init__(self, capture: Callable[[], Any], restore: Callable[[Any], None], limit: float = DEFAULT_LIMIT,
                 every: int = SNAPSHOT_EVERY, keep: int = 2):
        if limit <= 0 or every < 1 or keep < 1:
            raise ValueError("Rollback: limit > 0, every >= 1 and keep >= 1")
        self.capture, self.restore, self.limit, self.every = capture, restore, limit, every
        self.snapshots: deque = deque([capture()], maxlen=keep)

    def diverged(self, l1: float) -> bool:
        return not math.isfinite(l1) or l1 > self.limit

    def after_step(self, step: int, l1: float) -> bool:
        """True when the step diverged and the run was put back to the oldest snapshot (then the only one)."""
        if self.diverged(l1):
            oldest = self.snapshots[0]
            self.restore(oldest)
            self.snapshots.clear()
            self.snapshots.append(oldest)
            return True
        if step % self.every == 0:
            self.snapshots.append(self.capture())
        return False
