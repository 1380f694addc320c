"""The accelerators' goals (issue 15) in one table, each met or missed, read from the results files that measured them.

Nothing is measured here: every figure comes from a results file written by ``bench/accelerators.py`` (the starts
before training: named test concepts, and family concepts left out of the weight generator) or ``bench/run_all.py``
(the equal-budget runs). Each goal is reported for all test concepts and for the colour and structural ones apart
(a family concept is structural when one of its ops is; ``concepts.family``). Validation files are read only to
say which weight generator the validation rule chose (``validation_choice``), never for a goal's figure.

    python bench/accelerator_goals.py            # writes bench/results/accelerator-goals.{md,json}
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from concepts.family import parse_instruction
from factory.core.atomic import atomic_write_json, atomic_write_text

import accelerator_targets as T
from common import log, provenance

RESULTS = Path("bench/results")
#: label -> results file of named test concepts (``bench/accelerators.py --split test``)
NAMED = {"named test concepts, first shipped assets": "accelerators/shipped/accelerators-test.json",
         "named test concepts, remade family assets": "accelerators/remade/accelerators-test.json",
         "named test concepts, shipped family assets": "accelerators/shipped-family/accelerators-test.json"}
#: label -> pooled leave-out over the test draws (``bench/accelerators.py --split none --holdout 32 --pool``)
LEAVE_OUT = {"family leave-out, 1024 adapters": "accelerators/remade-1024/accelerators-holdout-new-pooled.json",
             "family leave-out, 1024 adapters, recipe tokens":
                 "accelerators/remade-1024-recipe-tokens/accelerators-holdout-new-pooled.json"}
#: label -> equal-budget run (``bench/run_all.py``)
EQUAL = {"equal 90 s, remade family assets": "all-family-remade/run_all.json",
         "equal 90 s, shipped family assets": "all-shipped-family/run_all.json",
         "equal 90 s, held-out family concepts, shipped family assets": "all-family-heldout/run_all.json",
         "equal 90 s, shipped family assets, run again with the readout": "all-shipped-family-readout/run_all.json",
         "each concept's speed-up window, shipped family assets, with the readout":
             "all-shipped-family-window/run_all.json",
         "equal 90 s, shipped family assets, the readout and the weights' moving average (--ema 0.9)":
             "all-shipped-family-ema/run_all.json",
         "equal 90 s, shipped family assets, the colour basis (--colour-basis 3), factory run's training defaults":
             "all-shipped-family-colour/run_all.json",
         "equal 90 s, the colour basis, colour test concepts only, against scratch references with the basis "
         "(bench/results/references-colour-basis)": "all-colour-rebased/run_all.json",
         "each concept's speed-up window, the colour basis, structural test concepts only, against scratch "
         "references with the basis (bench/results/references-colour-basis)": "all-structural-rebased/run_all.json",
         "each concept's speed-up window, the colour basis, colour test concepts only, against scratch references "
         "with the basis (bench/results/references-colour-basis)": "all-colour-window/run_all.json",
         "equal 90 s, the colour basis and output curves of the output only (--output-curves as first built), "
         "colour test concepts only, no calibrated references": "all-colour-curves/run_all.json",
         "equal 90 s, factory run's defaults with its output curves (of the output or of the output and the "
         "photo), colour test concepts only, no calibrated references": "all-colour-photo/run_all.json",
         "equal 90 s, factory run's defaults with its output curves, structural test concepts only, no calibrated "
         "references": "all-structural-curves/run_all.json",
         "each concept's speed-up window, factory run's defaults of then with its output curves (two kinds), colour "
         "test concepts only, against scratch references with the curves (bench/results/references-curves)":
             "all-colour-curves-window/run_all.json",
         "each concept's speed-up window, factory run's defaults with its output curves (three kinds), structural "
         "test concepts only, against scratch references with the curves (bench/results/references-curves)":
             "all-structural-curves-window/run_all.json",
         "each concept's speed-up window, factory run's defaults with its output curves (three kinds), colour test "
         "concepts only, against scratch references with the three kinds (bench/results/references-curves3)":
             "all-colour-curves3-window/run_all.json",
         "each concept's speed-up window, factory run's defaults with its output curves (three kinds, each quarter of "
         "the photos held out in turn), colour test concepts only, against scratch references under the same rule "
         "trained until the student's own PSNR flattens too (bench/results/references-folds)":
             "all-colour-folds-window/run_all.json",
         "each concept's speed-up window, factory run's defaults with its output curves (three kinds, each quarter of "
         "the photos held out in turn), structural test concepts only, against scratch references under the same rule "
         "trained until the student's own PSNR flattens too (bench/results/references-folds)":
             "all-structural-folds-window/run_all.json",
         "each concept's speed-up window, factory run's defaults with its output curves (three kinds, each quarter of "
         "the photos held out in turn), structural test concepts only, against scratch references under the same rule "
         "from 3 seeds each where measured (the target their mean; bench/results/references-folds)":
             "all-structural-folds3-window/run_all.json",
         "each concept's speed-up window, factory run's defaults with its output curves (three kinds, each quarter of "
         "the photos held out in turn), cross-process only, against scratch references under the same rule from 3 "
         "seeds (the target their mean; bench/results/references-folds)":
             "all-colour-folds3-window/run_all.json",
         "each concept's speed-up window, factory run's defaults with the lens basis and its output curves (three "
         "kinds, each quarter of the photos held out in turn), underwater only, against scratch references with the "
         "lens basis under the same rule from 3 seeds (the target their mean; bench/results/references-lens)":
             "all-colour-lens-window/run_all.json",
         "each concept's speed-up window, factory run's defaults with the lens basis and its output curves (three "
         "kinds, each quarter of the photos held out in turn), cross-process only, against scratch references with the "
         "lens basis under the same rule from 3 seeds (the target their mean; bench/results/references-lens)":
             "all-colour-lens-window-cross-process/run_all.json",
         "equal 90 s, factory run's defaults with the lens basis and its output curves (three kinds, each quarter of "
         "the photos held out in turn), colour test concepts only, against scratch references with the lens basis "
         "(bench/results/references-lens)": "all-colour-lens/run_all.json"}
GROUPS = ("all", "colour", "structural")


def validation_choice() -> dict:
    """Each leave-out generator's pooled validation draws (the file beside its test pool) and the one the rule
    chooses: the most concepts whose generated adapter is closer to the own adapter than the mean adapter, then the
    best mean PSNR against the own adapter's edits."""
    scores = {}
    for label, path in LEAVE_OUT.items():
        val = RESULTS / path.replace("-pooled.json", "-validation-pooled.json")
        if not val.is_file():
            raise SystemExit(f"{val}: no pooled validation draws (bench/accelerators.py ... --pool validation)")
        a = json.loads(val.read_text())["holdout"]["by_part"]["all"]
        scores[label] = {"file": str(val), "concepts": a["concepts"], "closer": a["closer_than_mean"]["generated"],
                         "to_own": a["to_own"]["generated"]["mean"]}
    chosen = max(scores, key=lambda k: (scores[k]["closer"], scores[k]["to_own"]))
    return {"chosen": chosen, "scores": scores}


def goal(name: str, source: str, group: str, figure: float | None, text: str, ok: bool | None) -> dict:
    return {"goal": name, "source": source, "group": group, "figure": figure, "text": text,
            "status": "not measured" if ok is None else "met" if ok else "missed"}


def named_rows(label: str, path: Path) -> list[dict]:
    """Goals 1 and 2 on the named test concepts (the results file's own per-group figures)."""
    out = []
    for group, g in json.loads(path.read_text())["goals"].items():
        share = g["text_only_at_or_above_identity"]
        out.append(goal(f"1 base text-only at or above the photo on {T.BASE_SHARE:.0%}", label, group, share,
                        f"{share:.0%} of {g['concepts']}", share >= T.BASE_SHARE))
        if "shuffle_loss" in g:
            out += step0_goals(label, group, g["generated_minus_identity"], g["generated_minus_retrieval"],
                               g["shuffle_loss"])
    return out


def step0_goals(label: str, group: str, over_photo: float, over_retrieval: float, shuffle: float | None) -> list[dict]:
    return [goal(f"2a generated at step 0: {T.OVER_PHOTO_DB:+g} dB over the photo", label, group, over_photo,
                 f"{over_photo:+.2f} dB", over_photo >= T.OVER_PHOTO_DB),
            goal(f"2b generated at step 0: {T.OVER_RETRIEVAL_DB:+g} dB over retrieval", label, group, over_retrieval,
                 f"{over_retrieval:+.2f} dB", over_retrieval >= T.OVER_RETRIEVAL_DB),
            goal(f"2c shuffled texts lose at least {T.SHUFFLE_LOSS_DB:g} dB", label, group, shuffle,
                 "not in this run" if shuffle is None else f"{shuffle:+.2f} dB",
                 None if shuffle is None else shuffle >= T.SHUFFLE_LOSS_DB)]


def group_of(instruction: str) -> str:
    concept = parse_instruction(instruction).concept
    if concept is None:
        raise SystemExit(f"'{instruction}': a leave-out concept's instruction the family grammar does not read")
    return concept.group


def leave_out_rows(label: str, path: Path) -> list[dict]:
    """Goals 1-3 on the family concepts left out of the weight generator, per group (from the file's rows)."""
    h = json.loads(path.read_text())["holdout"]
    if "validation" in h.get("draw", ""):
        raise SystemExit(f"{path}: a validation draw; the goals are read on test draws only")
    rows = list(h["rows"].values())
    out = []
    for group in GROUPS:
        sel = [r for r in rows if group == "all" or group_of(r["instruction"]) == group]
        if not sel:
            continue
        n = len(sel)
        mean = lambda k: statistics.fmean(r[k] for r in sel)  # noqa: B023 - used at once
        above = sum(r["text only"] >= r["identity"] for r in sel) / n
        out.append(goal(f"1 base text-only at or above the photo on {T.BASE_SHARE:.0%}", label, group, above,
                        f"{above:.1%} of {n}", above >= T.BASE_SHARE))
        shuffle = mean("generated") - mean("generated shuffled") if "generated shuffled" in sel[0] else None
        out += step0_goals(label, group, mean("generated") - mean("identity"), mean("generated") - mean("retrieval"),
                           shuffle)
        closer = sum(r["to own"]["generated"] > r["to own"]["mean"] for r in sel) / n
        out.append(goal(f"3 leave-out: generated closer to the own adapter than the mean adapter on "
                        f"{T.CLOSER_SHARE:.0%}", label, group,
                        closer, f"{closer:.1%} of {n}", closer >= T.CLOSER_SHARE))
    return out


def equal_rows(label: str, path: Path) -> list[dict]:
    """Goals 4 and 5 from an equal-budget run: generated LoRA against scratch at the equal budget, and the speed-ups
    to scratch's plateau minus 0.5 dB and to pix2pix's plateau (every run of the group must reach it); the same
    for the generated start with every weight fine-tuned (``tuned``), the start ``factory run`` takes
    (``auto``) and the generated start with the readout solved first (``readout``, ``readout-tuned``) where the run
    measured them."""
    r = json.loads(path.read_text())
    s = r["summary"]
    out = []
    for group in GROUPS:
        eq = s["equal"].get(group)
        if not eq:
            continue
        for arm, source in (("generated", label), ("tuned", f"{label}, the generated start with every weight tuned"),
                            ("auto", f"{label}, the start of --init auto"),
                            ("readout", f"{label}, the generated start and the readout (factory run's default)"),
                            ("readout-tuned", f"{label}, the readout start with every weight tuned"),
                            ("scratch-readout", f"{label}, control: scratch with the readout, no base (not an "
                                                "accelerator: what the solve alone gives)")):
            if arm in eq:
                out += arm_goals(s, eq, group, arm, source, r["concepts"])
    return out


def speedup_verdict(concepts: list[dict], group: str, key: str, arm: str, need: float) -> tuple[bool | None, str]:
    """Whether every run of ``arm`` in ``group`` reached target ``key`` at least ``need`` times sooner than its
    reference, judged run by run: a run that reached it later, or ran the whole window (the reference's time /
    ``need``) without reaching it, misses; a run that stopped before that window without reaching it measured
    nothing (None, unless another run already missed), since it might still have reached it in time."""
    slow = short = judged = 0
    windows = []
    for c in concepts:
        rows = c["time"].get(key) if group in ("all", c["group"]) else None
        if not rows or arm not in rows["arms"] or rows["reference_time"]["status"] != "reached":
            continue
        window = rows["reference_time"]["seconds"] / need
        windows.append(window)
        for t in rows["arms"][arm]["times"]:
            judged += t["status"] in ("reached", "not reached")
            if t["status"] == "reached":
                slow += t["seconds"] > window
            elif t["status"] == "not reached":
                short += t["budget_seconds"] < window
                slow += t["budget_seconds"] >= window
    if not judged:
        return None, " (no run could be judged against a reference that reached the target)"
    if slow:
        return False, ""
    if short:
        return None, (f" ({short} ended before the {need:g}x window of {min(windows):.0f}-{max(windows):.0f} s "
                      "without reaching it)")
    return True, ""


def arm_goals(s: dict, eq: dict, group: str, arm: str, source: str, concepts: list[dict]) -> list[dict]:
    """Goals 4a (where the run has a scratch arm beside it), 4b and 5 of one arm of an equal-budget run's summary
    ``s`` in ``group`` (``concepts``: the run's per-concept times, for the speed-ups' run-by-run verdict)."""
    out = []
    if "scratch" in eq:
        lead = eq[arm]["psnr_at_equal"]["mean"] - eq["scratch"]["psnr_at_equal"]["mean"]
        out.append(goal(f"4a at an equal 90 s: generated LoRA {T.EQUAL_LEAD_DB:g} dB ahead of scratch", source, group,
                        lead, f"{lead:+.2f} dB", lead >= T.EQUAL_LEAD_DB))
    targets = ((f"4b {T.SCRATCH_SPEEDUP:g}x sooner to scratch's plateau - 0.5 dB", "scratch plateau - 0.5 dB",
                T.SCRATCH_SPEEDUP),
               (f"5 {T.PIX2PIX_SPEEDUP:g}x sooner to pix2pix's plateau", "pix2pix plateau", T.PIX2PIX_SPEEDUP))
    for name, key, need in targets:
        measured = s["time"].get(group, {}).get(key, {}).get("arms", {}).get(arm)
        if measured is None:
            out.append(goal(name, source, group, None, "no target in this group", None))
            continue
        reached, runs = map(int, measured["reached"].split("/"))
        speed = measured["speedup"]["mean"] if measured["speedup"] else None
        ok, why = speedup_verdict(concepts, group, key, arm, need)
        text = f"reached in {reached}/{runs} runs" + (f", {speed:.1f}x" if speed else "") + why
        out.append(goal(name, source, group, speed, text, ok))
    return out


def markdown(r: dict) -> str:
    L = ["# The accelerators' goals (issue 15), met or missed", "",
         f"Date {r['date']}, commit `{r['commit']}`, `{r['command']}`. Read from the results files named in each row "
         "(test concepts and test draws only; nothing is measured here). A goal counts as met only where its "
         "figure reaches the goal. A speed-up is judged run by run: every run of the group must reach the target "
         "within its window (the reference's time to it / the speed-up asked); a run that stopped sooner without "
         "reaching it measured nothing, so the goal is *not measured* unless another run already missed it.", "",
         "| goal | measured on | " + " | ".join(GROUPS) + " |", "| --- | --- |" + " --- |" * len(GROUPS)]
    cells: dict[tuple[str, str], dict[str, str]] = {}
    for g in r["goals"]:
        status = f"**{g['status']}**" if g["status"] != "not measured" else g["status"]
        cells.setdefault((g["goal"], g["source"]), {})[g["group"]] = f"{g['text']}: {status}"
    for (name, source), row in cells.items():
        L.append(f"| {name} | {source} | " + " | ".join(row.get(group, "") for group in GROUPS) + " |")
    L += ["", "Sources:", ""] + [f"- {label}: `{path}`" for label, path in r["sources"].items()]
    c = r["validation_choice"]
    L += ["", "The default weight generator is the one the validation rule chose on the leave-out's validation draws "
          "(most concepts closer to the own adapter than the mean adapter, then the best mean): "
          f"**{c['chosen']}**.", ""]
    L += [f"- {label}: closer on {v['closer']}/{v['concepts']}, {v['to_own']:.2f} dB against the own adapter's edits "
          f"(`{v['file']}`)" for label, v in c["scores"].items()]
    return "\n".join(L) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(RESULTS / "accelerator-goals"), help="results file stem (.md and .json)")
    args = ap.parse_args()
    sources = {label: RESULTS / p for d in (NAMED, LEAVE_OUT, EQUAL) for label, p in d.items()}
    missing = [str(p) for p in sources.values() if not p.is_file()]
    if missing:
        raise SystemExit(f"results files missing (run their benchmarks first): {', '.join(missing)}")
    rows = ([g for label, p in NAMED.items() for g in named_rows(label, RESULTS / p)]
            + [g for label, p in LEAVE_OUT.items() for g in leave_out_rows(label, RESULTS / p)]
            + [g for label, p in EQUAL.items() for g in equal_rows(label, RESULTS / p)])
    rows.sort(key=lambda g: (g["goal"], g["source"], GROUPS.index(g["group"])))
    result = {**provenance("accelerator_goals.py"), "goals": rows, "sources": {k: str(v) for k, v in sources.items()},
              "validation_choice": validation_choice()}
    atomic_write_json(Path(args.out).with_suffix(".json"), result)
    atomic_write_text(Path(args.out).with_suffix(".md"), markdown(result))
    log(f"{sum(g['status'] == 'met' for g in rows)} of {len(rows)} goal rows met -> {args.out}.md")


if __name__ == "__main__":
    main()
