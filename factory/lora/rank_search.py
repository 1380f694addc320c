"""LoRA rank search: try candidate ranks on a short budget, keep the smallest near the best.

Rule (``RANK_RULE``): among the candidates, keep the smallest rank whose held-out (validation)
PSNR is within ``tolerance`` dB of the best candidate's. ``global`` mode searches one rank for all
adapted groups; ``group`` mode starts from the global choice and then, group by group (in layer
order), sweeps that group's rank with the others fixed and applies the same rule, so each group
can end at its own rank (peft ``rank_pattern``).

The search is independent of how a candidate is scored: ``score(layout) -> {"psnr": ..., ...}``
is supplied by the caller (``factory.lora.trials.short_run`` trains on the fit pairs and measures
the validation pairs).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from factory.core.errors import FactoryError
from factory.lora.adapters import LoraLayout

DEFAULT_CANDIDATES = (1, 2, 4, 8, 16)
DEFAULT_TOLERANCE_DB = 0.2
RANK_RULE = ("smallest candidate rank whose validation PSNR is within {tol} dB of the best candidate's "
             "(short equal-step runs, same seed and batches for every candidate)")

Score = Callable[[LoraLayout], dict]


def pick_smallest_within(rows: list[dict], tolerance: float) -> int:
    """The smallest ``rank`` among rows whose ``psnr`` >= best - tolerance."""
    best = max(r["psnr"] for r in rows)
    return min(r["rank"] for r in rows if r["psnr"] >= best - tolerance)


def search_ranks(score: Score, groups: Sequence[str], candidates: Sequence[int] = DEFAULT_CANDIDATES,
                 tolerance: float = DEFAULT_TOLERANCE_DB, mode: str = "global",
                 on_row: Callable[[dict], None] | None = None, bias: bool = False,
                 fits: Callable[[LoraLayout], bool] | None = None) -> dict:
    """Run the search; returns ``{"ranks": {group: rank}, "table": [...], "rule": ..., ...}``.

    ``fits(layout)`` (optional) is a size budget: layouts that do not fit are listed in the table as
    ``over budget`` and never trained; if no global candidate fits, the smallest is used anyway.
    """
    candidates = sorted({int(c) for c in candidates})
    if not candidates or candidates[0] < 1:
        raise FactoryError(f"rank candidates must be whole numbers >= 1, got {list(candidates)}")
    if mode not in ("global", "group"):
        raise FactoryError(f"unknown rank search mode {mode!r} (known: global, group)")
    groups = list(groups)
    table: list[dict] = []

    def run(layout: LoraLayout, stage: str, rank: int, budget_checked: bool = True) -> dict | None:
        row = {"stage": stage, "rank": rank, "ranks": {g: layout.rank_of(g) for g in groups}}
        if budget_checked and fits is not None and not fits(layout):
            table.append(dict(row, over_budget=True))
            return None
        row.update(score(layout))
        table.append(row)
        if on_row:
            on_row(row)
        return row

    sweep = [r for r in (run(LoraLayout(groups, ranks=c, bias=bias), "global", c) for c in candidates) if r]
    note = None
    if not sweep:
        note = f"no candidate fits the size budget; kept the smallest rank {candidates[0]}"
        sweep = [run(LoraLayout(groups, ranks=candidates[0], bias=bias), "global", candidates[0], False)]
    chosen = pick_smallest_within(sweep, tolerance)
    ranks = dict.fromkeys(groups, chosen)
    if mode == "group" and len(groups) > 1:
        for g in groups:
            rows = []
            for r in candidates:
                trial = dict(ranks, **{g: r})
                if trial == ranks:  # already measured with exactly these ranks
                    prev = next(x for x in table if x["ranks"] == trial and "psnr" in x)
                    rows.append(dict(prev, stage=f"group:{g}", rank=r, reused=True))
                    table.append(rows[-1])
                    continue
                row = run(LoraLayout(groups, ranks=trial, bias=bias), f"group:{g}", r)
                if row:
                    rows.append(row)
            ranks[g] = pick_smallest_within(rows, tolerance)
    return {"mode": mode, "candidates": candidates, "tolerance_db": tolerance,
            "rule": RANK_RULE.format(tol=tolerance), "bias": bias, "global_choice": chosen, "ranks": ranks,
            "budget_note": note, "table": table}
