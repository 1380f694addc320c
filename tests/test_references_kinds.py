"""bench/references.py: a reference is never continued or kept under another output-curve rule than the run asks for."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import references

from factory.core.errors import FactoryError
from factory.evaluation.curves import read_curve, write_curve
from factory.lora.options import ADDED_LATER, CURVE_FOLDS, CURVE_KINDS, curve_rule

RULE = curve_rule(CURVE_KINDS, CURVE_FOLDS)


def test_a_run_folder_reports_the_rule_its_points_were_evaluated_with(tmp_path):
    raw = [{"step": 0, "seconds": 0.0, "psnr": 10.0, "ssim": 0.5, "l1": 0.1}]
    write_curve(tmp_path / "curve.csv", raw)
    assert references.run_rule(tmp_path, read_curve(tmp_path / "curve.csv")) is None
    # recorded before the marker, calibrated points: the two kinds of then, one quarter held out
    write_curve(tmp_path / "curve.csv", [{**raw[0], "raw_psnr": 9.0}])
    assert references.run_rule(tmp_path, read_curve(tmp_path / "curve.csv")) == ADDED_LATER["curve_kinds"]
    (tmp_path / "curve-kinds.json").write_text(json.dumps({"curve_kinds": CURVE_KINDS}))  # a marker before the folds
    assert references.run_rule(tmp_path, read_curve(tmp_path / "curve.csv")) == CURVE_KINDS
    (tmp_path / "curve-kinds.json").write_text(json.dumps({"curve_rule": RULE}))
    assert references.run_rule(tmp_path, read_curve(tmp_path / "curve.csv")) == RULE


def test_another_rule_than_the_run_asks_for_is_refused():
    references.check_same_rule("a run", RULE, RULE)
    references.check_same_rule("a run", None, None)
    assert len({ADDED_LATER["curve_kinds"], CURVE_KINDS, RULE}) == 3
    for recorded, wanted in ((ADDED_LATER["curve_kinds"], RULE), (CURVE_KINDS, RULE), (None, RULE), (RULE, None)):
        with pytest.raises(FactoryError, match="another --workspace"):
            references.check_same_rule("a run", recorded, wanted)


def test_a_reference_names_its_rule_in_words():
    settings = {"augment": False, "output_curves": True, "curve_kinds": CURVE_KINDS, "curve_folds": 4}
    assert references.training_of(settings) == "no augmentation, output curves (output, output+photo, photo; 4 folds)"
    assert references.training_of({**settings, "curve_folds": 1}) == (
        "no augmentation, output curves (output, output+photo, photo)")


def test_a_reference_stopped_on_its_calibrated_curve_alone_trains_on():
    """A finished reference whose calibrated curve dropped (the curves no longer kept) while the student climbed is
    not kept under output curves; one at its cap, or whose both curves flattened, is."""
    rows = [{"step": s, "seconds": float(s), "raw_psnr": 30 + s / 100, "psnr": 30 + s / 100 + (3 if s < 450 else 0)}
            for s in range(0, 661, 30)]
    result = {"stopped": "plateau", "curve": rows, "plateau_rule": {"min_gain_db": 0.2, "last_fraction": 0.25,
                                                                    "min_seconds": 600.0}}
    assert not references.stopped_before_plateau(result, output_curves=False)
    assert references.stopped_before_plateau(result, output_curves=True)
    capped = {**result, "stopped": "cap reached (no plateau yet: said plainly)"}
    assert not references.stopped_before_plateau(capped, output_curves=True)
    no_raw = [{k: v for k, v in r.items() if k != "raw_psnr"} for r in rows]  # pix2pix's: no curves, no raw PSNR
    assert not references.stopped_before_plateau({**result, "curve": no_raw}, output_curves=True)
    flat = [{**r, "raw_psnr": 35.0, "psnr": 36.0} for r in rows]
    assert not references.stopped_before_plateau({**result, "curve": flat}, output_curves=True)


def test_the_pooled_table_gives_run_alls_target_and_time_or_the_seed_that_never_reaches_it():
    """references.md's pooled rows: the seeds' mean best - 0.5 dB, the mean of their training seconds to it; a
    concept whose seed never reaches the pooled target says which, and a single seed is not pooled."""
    def ref(concept: str, seed: int, curve: list[tuple[float, float]]) -> dict:
        return {"arch": "scratch", "concept": concept, "seed": seed, "identity": {"psnr": 10.0},
                "best_psnr": max(p for _, p in curve),
                "curve": [{"step": i, "seconds": s, "psnr": p} for i, (s, p) in enumerate(curve)]}

    rows = [ref("a", 0, [(0, 11), (100, 20), (200, 22)]), ref("a", 1, [(0, 11), (100, 21.6), (300, 22)]),
            ref("b", 0, [(0, 11), (100, 30)]), ref("b", 1, [(0, 11), (100, 20)]), ref("c", 0, [(0, 11), (50, 15)])]
    lines = references.pooled_lines(rows)
    table = {line.split(" | ")[0].strip("| "): line for line in lines if line.startswith("| ") and " | " in line}
    assert "| 22.00 ± 0.00 | 21.50 | 150 ± 71 (seeds: 200, 100) |" in table["a"]
    assert "not claimed: seed 1 never reaches it" in table["b"] and "c" not in table
