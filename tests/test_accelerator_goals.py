"""bench/accelerator_goals.py marks each goal from a results file's rows, per group, and refuses validation draws."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from concepts.family import sample_concepts

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import accelerator_goals as goals


def leave_out_file(tmp_path: Path, draw: str = "test+test-2") -> tuple[Path, int, int]:
    """Five colour and five structural family concepts: the generated adapter is closer to the own adapter than
    the mean adapter on all colour ones and on three structural ones; the base's text-only output beats the photo
    everywhere; the generated adapter is 4 dB over the photo and 2 dB over retrieval, 3 dB over a shuffled text."""
    found = {"colour": [], "structural": []}
    for c in sample_concepts(200, seed=3):
        if len(found[c.group]) < 5:
            found[c.group].append(c)
    rows = {}
    for group, concepts in found.items():
        for i, c in enumerate(concepts):
            closer = group == "colour" or i < 3
            rows[c.name] = {"instruction": c.instruction, "identity": 10.0, "text only": 11.0, "generated": 14.0,
                            "retrieval": 12.0, "generated shuffled": 11.0, "mean": 12.5,
                            "to own": {"generated": 30.0 if closer else 20.0, "mean": 25.0}}
    path = tmp_path / "pooled.json"
    path.write_text(json.dumps({"holdout": {"draw": draw, "rows": rows}}))
    return path, len(found["colour"]), len(found["structural"])


def test_leave_out_goals_per_group(tmp_path):
    path, n_colour, n_structural = leave_out_file(tmp_path)
    assert n_colour == n_structural == 5
    rows = {(g["goal"][:2].strip(), g["group"]): g for g in goals.leave_out_rows("x", path)}
    assert rows[("3", "colour")]["status"] == "met" and rows[("3", "colour")]["figure"] == 1.0
    assert rows[("3", "structural")]["status"] == "missed" and rows[("3", "structural")]["figure"] == 0.6
    assert rows[("3", "all")]["figure"] == 0.8 and rows[("3", "all")]["status"] == "met"
    assert rows[("1", "all")]["status"] == "met"
    assert rows[("2a", "all")]["figure"] == pytest.approx(4.0) and rows[("2a", "all")]["status"] == "met"
    assert rows[("2b", "all")]["figure"] == pytest.approx(2.0) and rows[("2b", "all")]["status"] == "met"
    assert rows[("2c", "all")]["figure"] == pytest.approx(3.0) and rows[("2c", "all")]["status"] == "met"


def test_validation_draws_are_refused(tmp_path):
    path, _, _ = leave_out_file(tmp_path, draw="validation+validation-2")
    with pytest.raises(SystemExit, match="validation"):
        goals.leave_out_rows("x", path)
