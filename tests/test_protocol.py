"""The evaluation protocol: time to quality on synthetic curves, the concept split, the plateau rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from factory.core.errors import FactoryError
from factory.evaluation.curves import check_cadence, plateau, speedup, time_to_quality
from factory.evaluation.metrics import learned
from factory.evaluation.protocol import GROUPS, concept_split, mean_spread

ROOT = Path(__file__).resolve().parents[1]


def curve(points: list[tuple[float, float]]) -> list[dict]:
    return [{"step": i * 10, "seconds": s, "psnr": p} for i, (s, p) in enumerate(points)]


def test_the_first_evaluation_at_or_above_the_target_plus_every_cost() -> None:
    c = curve([(0, 20.0), (10, 24.0), (20, 27.9), (30, 28.1), (40, 29.0)])
    t = time_to_quality(c, 28.0, costs={"load_base": 1.5, "sampling": 0.5}, identity=21.0)
    assert t["status"] == "reached" and t["seconds"] == 32.0 and t["training_seconds"] == 30 and t["step"] == 30
    # no interpolation between 20 s (27.9) and 30 s (28.1): the answer is the evaluation that reached it
    assert time_to_quality(c, 28.0)["seconds"] == 30
    # reached at step 0: the costs alone
    assert time_to_quality(c, 19.0, costs={"sampling": 0.04})["seconds"] == pytest.approx(0.04)


def test_never_reached_and_a_target_below_identity() -> None:
    c = curve([(0, 20.0), (10, 24.0), (20, 25.0)])
    never = time_to_quality(c, 30.0, costs={"x": 1.0})
    assert never["status"] == "not reached" and never["budget_seconds"] == 21.0 and "seconds" not in never
    below = time_to_quality(c, 14.1, identity=19.3)
    assert below["status"] == "target below identity" and "seconds" not in below
    ref = time_to_quality(curve([(0, 10.0), (100, 31.0)]), 30.0)
    assert speedup(ref, time_to_quality(c, 24.0)) == pytest.approx(10.0)
    assert speedup(ref, never) == "not reached"
    assert speedup(below, time_to_quality(c, 14.1)) == "target below identity"


def test_curves_on_unequal_cadences_are_not_compared() -> None:
    dense = curve([(s, 20 + s / 10) for s in range(0, 121, 10)])
    sparse = curve([(s, 20 + s / 10) for s in range(0, 121, 40)])
    check_cadence({"a": dense, "b": dense}, 10.0)
    with pytest.raises(FactoryError, match=r"another cadence.*b \(40\.0 s\)"):
        check_cadence({"a": dense, "b": sparse}, 10.0)
    # why: on the same curve, a sparser cadence reports a later time
    assert time_to_quality(sparse, 25.0)["seconds"] > time_to_quality(dense, 25.0)["seconds"]


def test_plateau_rule() -> None:
    climbing = curve([(s, 20 + s / 60) for s in range(0, 1201, 30)])
    assert plateau(climbing, min_gain_db=0.2, last_fraction=0.25, min_seconds=600) is None
    flat = curve([(s, min(30.0, 20 + s / 30)) for s in range(0, 1201, 30)])
    p = plateau(flat, min_gain_db=0.2, last_fraction=0.25, min_seconds=600)
    assert p is not None and p["seconds"] >= 600 and p["psnr"] == pytest.approx(30.0)


def test_plateau_of_calibrated_curves_waits_for_the_student() -> None:
    """With output curves the calibrated PSNR drops when the rule stops keeping the curves; the student's own PSNR
    (``raw_psnr``) still climbs: no plateau until both have flattened."""
    rows = []
    for s in range(0, 2401, 30):
        raw = min(40.0, 30 + s / 120)
        rows.append({"step": s, "seconds": float(s), "raw_psnr": raw, "psnr": raw + 2.5 if s < 450 else raw})
    calibrated_only = plateau(rows, 0.2, 0.25, 600)
    assert calibrated_only is not None and calibrated_only["seconds"] < 700  # the drop reads as a plateau
    both = plateau(rows, 0.2, 0.25, 600, keys=("psnr", "raw_psnr"))
    assert both is not None and both["seconds"] > 1200  # raw reaches 40 at 1200 s and must flatten first
    assert both["raw_psnr_gain_over_last_fraction_db"] < 0.2
    assert plateau(rows[:40], 0.2, 0.25, 600, keys=("psnr", "raw_psnr")) is None


def test_learned_needs_the_structural_metrics_too() -> None:
    ident = {"psnr": 7.1, "haarpsi": 0.49, "fsim": 0.72, "gmsd": 0.20}
    assert not learned({"psnr": 8.8, "haarpsi": 0.37, "fsim": 0.64, "gmsd": 0.25}, ident)  # washed out: PSNR only
    assert learned({"psnr": 8.8, "haarpsi": 0.55, "fsim": 0.80, "gmsd": 0.15}, ident)


def test_concept_split_is_complete_disjoint_and_unseen() -> None:
    from concepts.cards import builtin_cards

    split = concept_split()
    names = list(split.train) + list(split.validation) + list(split.test)
    assert sorted(names) == sorted(c.name for c in builtin_cards() if c.teacher.kind == "classic")
    assert len(set(names)) == len(names)
    structural = split.of("test", "structural")
    assert len(structural) * 3 >= len(split.test) and set(split.group.values()) == set(GROUPS)
    shipped = json.loads((ROOT / "factory" / "pretrained" / "manifest.json").read_text())
    seen = set(shipped["base"]["concepts"]) | set(shipped["weightgen"]["concepts"])
    assert not seen & (set(split.test) | set(split.validation)), "test/validation concepts were trained on"
    with pytest.raises(FactoryError, match="never trained on"):
        split.refuse_in_training(["sepia", split.test[0]], "a base")
    s = mean_spread([1.0, 2.0, 3.0])
    assert s["mean"] == 2.0 and s["std"] == 1.0 and s["n"] == 3
