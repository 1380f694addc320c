"""bench/run_all.py --window: each concept runs as long as its speed-up goals allow, read from its references."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from factory.core.errors import FactoryError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import run_all


def reference(path: Path, curve: list[tuple[float, float]]) -> None:
    path.write_text(json.dumps({"best_psnr": max(p for _, p in curve),
                                "curve": [{"step": i, "seconds": s, "psnr": p} for i, (s, p) in enumerate(curve)]}))


def only(refs: list[dict]) -> dict:
    assert len(refs) == 1
    return refs[0]


def test_window_covers_the_slowest_speed_up_goal_and_falls_back_to_the_budget(tmp_path):
    # scratch reaches its plateau - 0.5 dB (30.0) at 500 s + 2 s of text encoding: 5x sooner is 100.4 s, i.e. the
    # evaluation at 110 s; pix2pix reaches its plateau at 1000 s: 20x sooner is 50 s
    reference(tmp_path / "scratch-a.json", [(0, 10.0), (250, 29.0), (500, 30.2), (1000, 30.5)])
    reference(tmp_path / "pix2pix-a.json", [(0, 10.0), (1000, 20.0)])
    args = SimpleNamespace(window=True, budget=90.0, equal_at=90.0, eval_seconds=10.0, references=tmp_path)
    assert run_all.window_budget(args, "a", {"text_encoding": 2.0}, identity=12.0) == 110.0
    assert run_all.window_budget(args, "no-references", {"text_encoding": 2.0}, identity=12.0) == 90.0
    # a target below the unchanged photo is never used, so it asks for no longer run
    assert run_all.window_budget(args, "a", {"text_encoding": 2.0}, identity=31.0) == 90.0
    assert run_all.window_budget(SimpleNamespace(**{**vars(args), "window": False, "budget": 60.0}), "a",
                                 {"text_encoding": 2.0}, identity=12.0) == 60.0


def test_a_scratch_reference_trained_with_other_output_curves_than_the_arms_is_refused(tmp_path):
    from factory.lora.options import CURVE_FOLDS, CURVE_KINDS

    curve = [{"step": 0, "seconds": 0, "psnr": 10.0}, {"step": 1, "seconds": 500, "psnr": 30.0}]
    args = SimpleNamespace(references=tmp_path, output_curves=True)
    for settings, ok in (({"output_curves": True, "curve_kinds": CURVE_KINDS, "curve_folds": CURVE_FOLDS}, True),
                         ({"output_curves": True, "curve_kinds": CURVE_KINDS}, False),  # before the folds: one
                         ({"output_curves": True}, False),  # recorded before the kinds: the two kinds of then
                         ({"output_curves": False}, False), ({}, False)):
        (tmp_path / "scratch-a.json").write_text(json.dumps({"best_psnr": 30.0, "curve": curve,
                                                             "settings": settings}))
        if ok:
            assert only(run_all.references_of(args, "scratch", "a"))["best_psnr"] == 30.0
        else:
            with pytest.raises(FactoryError, match="output curves"):
                run_all.references_of(args, "scratch", "a")
    # without curves the arms match a reference trained without them (or recorded before the option existed)
    no_curves = SimpleNamespace(references=tmp_path, output_curves=False)
    assert only(run_all.references_of(no_curves, "scratch", "a"))["best_psnr"] == 30.0
    (tmp_path / "scratch-a.json").write_text(json.dumps({"best_psnr": 30.0, "curve": curve,
                                                         "settings": {"output_curves": True}}))
    with pytest.raises(FactoryError, match="arms run with off"):
        run_all.references_of(no_curves, "scratch", "a")
    # under curves, one stopped on its calibrated curve alone (it dropped; the student climbed) sets too low a target
    rule = {"min_gain_db": 0.2, "last_fraction": 0.25, "min_seconds": 600.0}
    dropped = [{"step": s, "seconds": s, "raw_psnr": 20 + s / 100, "psnr": 20 + s / 100 + (3 if s < 450 else 0)}
               for s in range(0, 661, 30)]
    settings = {"output_curves": True, "curve_kinds": CURVE_KINDS, "curve_folds": CURVE_FOLDS}
    (tmp_path / "scratch-a.json").write_text(json.dumps({"best_psnr": 27.5, "curve": dropped, "settings": settings,
                                                         "stopped": "plateau", "plateau_rule": rule}))
    with pytest.raises(FactoryError, match="calibrated curve alone"):
        run_all.references_of(args, "scratch", "a")
    capped = {"best_psnr": 27.5, "curve": dropped, "settings": settings, "stopped": "cap reached", "plateau_rule": rule}
    (tmp_path / "scratch-a.json").write_text(json.dumps(capped))
    assert only(run_all.references_of(args, "scratch", "a"))["best_psnr"] == 27.5
    # pix2pix's recipe has no curves: its reference is read whatever the arms run with
    (tmp_path / "pix2pix-a.json").write_text(json.dumps({"best_psnr": 20.0, "curve": curve}))
    assert only(run_all.references_of(args, "pix2pix", "a"))["best_psnr"] == 20.0


def test_a_target_of_several_reference_seeds_is_their_mean_and_its_time_the_mean_of_theirs(tmp_path):
    """Seeds beside the first (``-seedN``) pool into one target: their mean best PSNR - 0.5 dB, reached at the mean
    of each seed's time; a seed that never reaches it leaves the reference's time unclaimed."""
    def ref(name: str, seed: int, curve: list[tuple[float, float]]) -> None:
        reference(tmp_path / name, curve)
        (tmp_path / name).write_text(json.dumps({**json.loads((tmp_path / name).read_text()), "seed": seed,
                                                 "concept": "a"}))

    ref("scratch-a.json", 0, [(0, 10.0), (100, 29.0), (200, 31.0)])
    ref("scratch-a-seed1.json", 1, [(0, 10.0), (100, 30.0), (200, 30.5)])
    ref("scratch-a-seed2.json", 2, [(0, 10.0), (100, 28.0), (300, 30.0)])
    ref("scratch-b-seed1.json", 1, [(0, 10.0), (100, 99.0)])  # another concept's: not a's
    args = SimpleNamespace(references=tmp_path, output_curves=False)
    refs = run_all.references_of(args, "scratch", "a")
    assert [r["seed"] for r in refs] == [0, 1, 2]
    (refs, target, costs), = run_all.speedup_targets(args, "a", {"text_encoding": 2.0}).values()
    assert target == pytest.approx((31.0 + 30.5 + 30.0) / 3 - 0.5)  # 30.0: seeds at 200, 100 and 300 s
    t = run_all.reference_time(refs, target, costs, identity=12.0)
    assert t["status"] == "reached" and t["seeds"] == [0, 1, 2]
    assert t["seconds"] == pytest.approx((200 + 100 + 300) / 3 + 2.0)
    assert t["seconds_sd"] == pytest.approx(100.0)
    assert [x["seconds"] for x in t["per_seed"]] == [202.0, 102.0, 302.0]
    # a seed that never reaches the pooled target: no reference time is claimed
    ref("scratch-a-seed2.json", 2, [(0, 10.0), (100, 28.0), (300, 28.5)])
    (refs, target, costs), = run_all.speedup_targets(args, "a", {"text_encoding": 2.0}).values()
    t = run_all.reference_time(refs, target, costs, identity=12.0)
    assert t["status"] == "not reached" and t["budget_seconds"] == 302.0
    # two files of one seed are refused
    ref("scratch-a-seed2.json", 1, [(0, 10.0), (100, 28.0)])
    with pytest.raises(FactoryError, match="distinct"):
        run_all.references_of(args, "scratch", "a")


def test_a_concept_whose_reference_time_is_not_claimed_is_listed_apart_not_counted_as_missed() -> None:
    cells = dict.fromkeys(("step0_psnr", "psnr_at_equal", "psnr_final", "haarpsi", "fsim", "gmsd"), 20.0)
    identity = dict.fromkeys(("psnr", "haarpsi", "fsim", "gmsd"), 10.0)
    target = run_all.TARGETS[0]

    def concept(name: str, reference_time: dict, speedups: list) -> dict:
        rows = {"target_psnr": 30.0, "reference_time": reference_time, "arms": {"readout": {"speedups": speedups}}}
        return {"concept": name, "group": "structural", "identity": identity, "time": {target: rows},
                "seeds": [{"readout": {**cells, "learned": True}} for _ in speedups]}

    unclaimed = {"status": "not reached", "seeds": [0, 1, 2], "per_seed": [
        {"status": "reached"}, {"status": "reached"}, {"status": "not reached"}]}
    r = {"concepts": [concept("a", {"status": "reached", "seconds": 100.0}, [4.0, "not reached"]),
                      concept("b", unclaimed, ["not reached"] * 3)]}
    times = run_all.summarize(r)["time"]["structural"]
    assert times[target]["concepts"] == ["a"]
    assert times[target]["arms"]["readout"]["reached"] == "1/2"  # b's three runs are not misses of a target
    (why,) = times[f"{target}: not used"]["not_used"]
    assert why["concept"] == "b" and "seed 2 never reaches its 30.00 dB" in why["why"]
