"""The lens basis's two rules, applied to their validation results (issue 15): the group means each rule names, its
verdict and the figures behind it. Nothing is measured here; both rules were written down before their runs.

1. Build it (``bench/results/lens-ceiling-validation.json``, ``python bench/colour_ceiling.py --lens``): the degree-3
   monomials with the photo's neighbourhood and radial terms (``monomials-3+taps+radial``) gain at least 3 dB mean
   over the monomials alone on the concepts with a blur or a vignette, and lose at most 0.3 dB on the others.
2. Make it the fine-tunes' default (``bench/results/tune_choice-lens.json``, ``python bench/tune_choice.py --ways
   ...-lens``): the readout LoRA with it beats the one without by at least 1 dB mean at 90 s on the concepts with a
   blur or a vignette, and loses at most 0.3 dB on the others; scratch's pair is reported beside it.

    python bench/lens_choice.py       # writes bench/results/lens-choice.{json,md}
"""

from __future__ import annotations

import json
import statistics

from common import REPO, log, provenance, provenance_line, write_results

RESULTS = REPO / "bench" / "results"
#: validation concepts with a blur or a vignette (day-to-night; the first three colour concepts of the validation draw
#: with a vignette and the first three with a blur and colour ops only, none trained on by a shipped asset)
LENS_CONCEPTS = ("day-to-night", "fam-0ed7d6d780", "fam-fbac38569e", "fam-897e835af4", "fam-03ec9adcb7",
                 "fam-94ff335241", "fam-b8ff4b60c7")
OTHERS = ("autumn", "cyanotype", "pastel", "faded-matte")
RULES = {"build": {"models": ("monomials-3", "monomials-3+taps+radial"), "min_gain_db": 3.0, "max_loss_db": 0.3},
         "default": {"ways": ("readout-lora-ema-colour", "readout-lora-ema-colour-lens"), "min_gain_db": 1.0,
                     "max_loss_db": 0.3}}


def group_means(scores: dict[str, dict[str, float]], names: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """{"lens": {name: mean over LENS_CONCEPTS}, "others": {...}} of ``scores`` ({concept: {name: PSNR}})."""
    missing = [c for c in (*LENS_CONCEPTS, *OTHERS) if c not in scores]
    if missing:
        raise SystemExit(f"no figures for {', '.join(missing)}")
    return {g: {n: round(statistics.fmean(scores[c][n] for c in cs), 2) for n in names}
            for g, cs in (("lens", LENS_CONCEPTS), ("others", OTHERS))}


def verdict(means: dict[str, dict[str, float]], without: str, with_: str, rule: dict) -> dict:
    gain = round(means["lens"][with_] - means["lens"][without], 2)
    change = round(means["others"][with_] - means["others"][without], 2)
    return {"gain_db": gain, "others_change_db": change,
            "holds": gain >= rule["min_gain_db"] and change >= -rule["max_loss_db"]}


def main() -> None:
    ceiling = json.loads((RESULTS / "lens-ceiling-validation.json").read_text())
    tune = json.loads((RESULTS / "tune_choice-lens.json").read_text())
    build = RULES["build"]
    ceiling_means = group_means({r["concept"]: r["psnr_db"] for r in ceiling["concepts"]}, build["models"])
    ways = (*RULES["default"]["ways"], "scratch-noaug-ema-colour", "scratch-noaug-ema-colour-lens")
    tuned = {}
    for row in tune["rows"]:
        tuned.setdefault(row["concept"], {})[row["way"]] = row["psnr"]
    tune_means = group_means(tuned, ways)
    result = {**provenance("lens_choice.py"), "lens_concepts": LENS_CONCEPTS, "others": OTHERS, "rules": RULES,
              "build": {"means": ceiling_means, **verdict(ceiling_means, *build["models"], build),
                        "source": "bench/results/lens-ceiling-validation.json"},
              "default": {"means": tune_means, **verdict(tune_means, *RULES["default"]["ways"], RULES["default"]),
                          "scratch": verdict(tune_means, *ways[2:], RULES["default"]),
                          "source": "bench/results/tune_choice-lens.json"}}
    log(f"wrote {write_results(RESULTS, 'lens-choice', False, result, markdown(result))}")


def markdown(r: dict) -> str:
    lines = ["# The lens basis's rules on validation concepts (lens-choice)", "", f"{provenance_line(r)}. Concepts "
             f"with a blur or a vignette: {', '.join(r['lens_concepts'])}; others: {', '.join(r['others'])}. Mean "
             "held-out PSNR (dB) per group.", ""]
    for key, title, unit in (("build", "Build it: closed-form fits, no network", "model"),
                             ("default", "Make it the default: 90 s fine-tunes, seed 0", "way")):
        part, rule = r[key], r["rules"][key]
        names = list(part["means"]["lens"])
        lines += [f"## {title} (`{part['source']}`)", "", f"| {unit} | blur or vignette | others |",
                  "| --- | ---: | ---: |"]
        lines += [f"| {n} | {part['means']['lens'][n]:.2f} | {part['means']['others'][n]:.2f} |" for n in names]
        lines += ["", f"Rule: at least {rule['min_gain_db']:g} dB gained on the concepts with a blur or a vignette, "
                  f"at most {rule['max_loss_db']:g} dB lost on the others. Gain {part['gain_db']:+.2f} dB, others "
                  f"{part['others_change_db']:+.2f} dB: **{'holds' if part['holds'] else 'does not hold'}**."]
        if "scratch" in part:
            lines.append(f"Scratch with it against without: {part['scratch']['gain_db']:+.2f} dB on the concepts "
                         f"with a blur or a vignette, {part['scratch']['others_change_db']:+.2f} dB on the others.")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
