"""bench/references.py: a reference is never continued or kept under other output curves than the run asks for."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import references

from factory.core.errors import FactoryError
from factory.evaluation.curves import read_curve, write_curve
from factory.lora.options import ADDED_LATER, CURVE_KINDS


def test_a_run_folder_reports_the_kinds_its_points_were_evaluated_with(tmp_path):
    raw = [{"step": 0, "seconds": 0.0, "psnr": 10.0, "ssim": 0.5, "l1": 0.1}]
    write_curve(tmp_path / "curve.csv", raw)
    assert references.run_kinds(tmp_path, read_curve(tmp_path / "curve.csv")) is None
    # recorded before the marker, calibrated points: the two kinds of then
    write_curve(tmp_path / "curve.csv", [{**raw[0], "raw_psnr": 9.0}])
    assert references.run_kinds(tmp_path, read_curve(tmp_path / "curve.csv")) == ADDED_LATER["curve_kinds"]
    (tmp_path / "curve-kinds.json").write_text(json.dumps({"curve_kinds": CURVE_KINDS}))
    assert references.run_kinds(tmp_path, read_curve(tmp_path / "curve.csv")) == CURVE_KINDS


def test_other_kinds_than_the_run_asks_for_are_refused():
    references.check_same_kinds("a run", CURVE_KINDS, CURVE_KINDS)
    references.check_same_kinds("a run", None, None)
    assert ADDED_LATER["curve_kinds"] != CURVE_KINDS
    for recorded, wanted in ((ADDED_LATER["curve_kinds"], CURVE_KINDS), (None, CURVE_KINDS), (CURVE_KINDS, None)):
        with pytest.raises(FactoryError, match="another --workspace"):
            references.check_same_kinds("a run", recorded, wanted)
