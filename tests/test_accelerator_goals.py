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


def test_equal_budget_goals_for_the_generated_and_the_default_start(tmp_path):
    def cell(psnr: float) -> dict:
        return {"psnr_at_equal": {"mean": psnr}}

    summary = {"equal": {"colour": {"scratch": cell(20.0), "generated": cell(22.5), "auto": cell(21.0)}},
               "time": {}}
    path = tmp_path / "run_all.json"
    path.write_text(json.dumps({"summary": summary, "concepts": []}))
    rows = {(g["goal"][:2].strip(), g["source"]): g for g in goals.equal_rows("eq", path)}
    assert rows[("4a", "eq")]["status"] == "met" and rows[("4a", "eq")]["figure"] == pytest.approx(2.5)
    auto = rows[("4a", "eq, the start of --init auto")]
    assert auto["status"] == "missed" and auto["figure"] == pytest.approx(1.0)
    assert rows[("4b", "eq")]["status"] == "not measured"  # no plateau reference for the group


def test_family_choice_takes_the_best_start_factory_run_can_make_on_validation_draws():
    import family_choice

    summary = {"recipe+generated": {"mean": 19.3}, "generated": {"mean": 19.2}, "ridge rbf": {"mean": 25.0},
               "identity": {"mean": 30.0}, "ridge": {"mean": 18.4}}
    init, means = family_choice.choose({"holdout": {"draw": "validation+validation-2", "summary": summary}})
    assert init == "recipe+weightgen" and means == {"recipe+weightgen": 19.3, "weightgen": 19.2, "ridge": 18.4}
    with pytest.raises(SystemExit, match="validation"):
        family_choice.choose({"holdout": {"draw": "test+test-2", "summary": summary}})


def test_run_all_family_test_concepts_are_held_out_family_recipes_half_of_each_group(tmp_path):
    from types import SimpleNamespace

    from concepts.cards import find_card
    from concepts.family import teaches_family_recipe
    from factory.core.workspace import Workspace
    from factory.evaluation.protocol import concept_split

    import run_all

    ws = Workspace(tmp_path / "ws")
    args = SimpleNamespace(family_test=4, family_seed=11, concepts=None, quick=False)
    nothing = {"base": {"concepts": []}, "weightgen": {"concepts": []}}
    groups = run_all.measured_concepts(args, ws, concept_split(), nothing)
    assert sorted(groups.values()) == ["colour", "colour", "structural", "structural"]
    for name in groups:
        card = find_card(name, ws)
        assert teaches_family_recipe(card) and card.name.startswith("fam-")
    assert run_all.measured_concepts(args, ws, concept_split(), nothing) == groups  # the same draw, cards kept
    with pytest.raises(Exception, match="in the shipped assets' training"):
        run_all.measured_concepts(args, ws, concept_split(), {**nothing, "base": {"concepts": [next(iter(groups))]}})


def timed_concept(reference_seconds: float, *runs: tuple[str, float]) -> dict:
    """A run_all concept whose scratch reference reached its target after ``reference_seconds``, with one readout
    run per ``(status, seconds)``: the time to the target when reached, else the run's whole budget."""
    times = [{"status": st, "seconds": sec} if st == "reached" else {"status": st, "budget_seconds": sec}
             for st, sec in runs]
    return {"group": "colour", "time": {"scratch plateau - 0.5 dB": {
        "reference_time": {"status": "reached", "seconds": reference_seconds}, "arms": {"readout": {"times": times}}}}}


def test_a_window_run_without_scratch_gives_the_speed_ups_not_the_equal_budget_lead(tmp_path):
    summary = {"equal": {"colour": {"readout": {"psnr_at_equal": {"mean": 30.0}}}},
               "time": {"colour": {"scratch plateau - 0.5 dB": {"arms": {"readout": {
                   "reached": "3/3", "speedup": {"mean": 6.0}}}}}}}
    path = tmp_path / "run_all.json"
    concepts = [timed_concept(60.0, ("reached", 8.0), ("reached", 9.0), ("reached", 10.0))]
    path.write_text(json.dumps({"summary": summary, "concepts": concepts}))
    rows = {g["goal"][:2].strip(): g for g in goals.equal_rows("w", path)}
    assert "4a" not in rows  # no scratch arm beside it: no lead to report
    assert rows["4b"]["status"] == "met" and rows["4b"]["figure"] == pytest.approx(6.0)
    assert rows["5"]["status"] == "not measured"


def test_a_speed_up_is_judged_run_by_run_within_its_window():
    """Reference at 100 s, goal 5x: a 20 s window. Reached inside it: met; reached after it, or not reached in a run
    that lasted the window: missed; not reached in a run shorter than the window: not measured (it might have)."""
    verdict = lambda *runs: goals.speedup_verdict([timed_concept(100.0, *runs)], "colour",
                                                  "scratch plateau - 0.5 dB", "readout", 5.0)
    assert verdict(("reached", 15.0), ("reached", 20.0))[0] is True
    assert verdict(("reached", 15.0), ("reached", 25.0))[0] is False  # one run too slow
    assert verdict(("reached", 15.0), ("not reached", 30.0))[0] is False  # ran the window, never reached
    ok, why = verdict(("reached", 15.0), ("not reached", 12.0))
    assert ok is None and "1 ended before the 5x window of 20-20 s" in why
    assert verdict(("not reached", 12.0), ("reached", 40.0))[0] is False  # a miss outweighs an unmeasured run
    assert verdict(("not reached", 12.0))[0] is None
    # a structural concept's runs say nothing about the colour group
    other = {**timed_concept(100.0, ("reached", 50.0)), "group": "structural"}
    assert goals.speedup_verdict([other], "colour", "scratch plateau - 0.5 dB", "readout", 5.0)[0] is None
