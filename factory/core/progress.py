"""Progress bars for budgeted loops: a time budget counts seconds, a step budget counts steps."""

from __future__ import annotations

import time
from typing import Any

from tqdm import tqdm


class BudgetBar:
    """A tqdm bar over whichever budget ends the loop: ``seconds`` when given, else ``steps``.

    ``update(done_steps, done_seconds, **postfix)`` moves it to the current position, so a loop that
    stops on a 120 s budget shows "87/120 s" and a sensible ETA instead of a step count it never reaches.
    """

    def __init__(self, desc: str, steps: int, seconds: float | None, step: int = 0, done_seconds: float = 0.0,
                 disable: bool = False) -> None:
        self.by_time = seconds is not None
        total = float(seconds) if self.by_time else steps
        unit = "s" if self.by_time else "step"
        fmt = "{l_bar}{bar}| {n:.0f}/{total:.0f} s [{elapsed}<{remaining}{postfix}]" if self.by_time else None
        self.bar = tqdm(total=total, initial=min(done_seconds, total) if self.by_time else step, desc=desc, unit=unit,
                        bar_format=fmt, disable=disable, leave=False)
        self.steps = steps
        self._started = time.perf_counter()

    def update(self, step: int, seconds: float, **postfix: Any) -> None:
        position = min(seconds, self.bar.total) if self.by_time else step
        self.bar.update(position - self.bar.n)
        if postfix:
            self.bar.set_postfix(step=step, **postfix) if self.by_time else self.bar.set_postfix(**postfix)

    def close(self) -> None:
        self.bar.close()

    def __enter__(self) -> BudgetBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
