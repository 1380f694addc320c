"""A least-squares readout as a start, before any training, on **validation** concepts only (issue 15).

The generated start is a few decibels over the unchanged photo, and the LoRA's fine-tune from it is slower than
our architecture from scratch. A cheaper head start may sit in the base's own features: the head's last conv
(``head.conv3``, 16 full-resolution feature channels over 3x3 -> the RGB delta) solved in closed form (ridge
regression) against the training pairs' residuals (target - source), with the rest of the network as the start
left it (``factory.lora.readout``). The delta of that conv has rank at most 3, so a rank-4 LoRA on ``head`` can
hold it exactly: the readout is a LoRA start, not a new kind of model. This measures, per concept, the PSNR on its
held-out test pairs of: the unchanged photo; the base with the generated adapter (the shipped weight generator's
start); the same with its ``head.conv3`` solved; and the base alone (its text-only output) with it solved; plus the
readout's cost (a forward pass over the training pairs and the solve, seconds on this machine, not timed alone).
With ``--colour-degrees``, also the generated start solved with a colour basis of each degree (``head.colour``
over the source pixel's colour monomials, solved with ``head.conv3``): how much of a concept a per-pixel colour map
of that degree fits before the first step.

Concepts and pairs are ``bench/tune_choice.py``'s (the first 2 named validation concepts per group and one family
concept per group no shipped asset trained on; 160 pairs at 128 px, data seed 0). Nothing here is a test figure.

    python bench/readout_start.py     # ~5 min
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from concepts.cards import find_card
from factory.core.workspace import Workspace
from factory.data.card_pairs import PhotoCache, TeacherCache, make_pairs
from factory.evaluation.heldout import HeldOutPairs, text_conditioned
from factory.evaluation.protocol import DATA_SEED, PAIRS, SIZE

from common import log, provenance, write_results
from run_all import init_adapters, shipped
from tune_choice import SEED, validation_concepts


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-group", type=int, default=2, help="named validation concepts per group")
    ap.add_argument("--family", type=int, default=1, help="family validation concepts per group")
    ap.add_argument("--concepts", help="comma-separated named validation concepts instead of the default draw")
    ap.add_argument("--colour-degrees", default="",
                    help="comma-separated colour-basis degrees (base_gan.generator.COLOUR_DEGREES) to solve the "
                         "generated start with, beside the plain readout")
    ap.add_argument("--name", default="readout_start", help="results file name")
    ap.add_argument("--workspace", type=Path, default=Path("bench/work/tune-choice"))
    ap.add_argument("--out", type=Path, default=Path("bench/results"))
    return ap.parse_args()


def main() -> None:
    from base_gan.generator import with_colour_basis
    from base_gan.models import BaseGAN
    from factory.lora.adapters import load_adapter
    from factory.lora.readout import RIDGE, SAMPLES, solve_readout

    args = parse_args()
    degrees = [int(d) for d in args.colour_degrees.split(",") if d.strip()]
    ws = Workspace(args.workspace)
    base_dir, wg_dir, m = shipped()
    base = BaseGAN.load(base_dir)
    concepts = validation_concepts(args, ws, m)
    teachers, photos = TeacherCache(), PhotoCache()
    rows = []
    for concept, group in concepts.items():
        make_pairs(ws, find_card(concept, ws), PAIRS, SIZE, DATA_SEED, teachers=teachers, photos=photos)
        card = find_card(concept, ws)
        inits = init_adapters(ws, wg_dir, concept, SEED, args.workspace / "runs" / concept, base_dir, auto=False)
        data = ws.data(concept)
        train, test = HeldOutPairs(data, split="train"), HeldOutPairs(data, split="test")
        row = {"concept": concept, "group": group, "identity": test.identity(full=False)["psnr"]}
        for start in ("generated", "base"):
            model = (load_adapter(base.copy(), inits["generated"]).merge_and_unload() if start == "generated"
                     else base.copy()).eval()
            edit = text_conditioned(model, card.instruction, ws.text_cache)
            row[start] = test.score(edit, model)["psnr"]
            row[f"{start}_seconds"] = round(solve_readout(model, edit, train.source, train.target)["seconds"], 2)
            row[f"{start}+readout"] = test.score(edit, model)["psnr"]
        for degree in degrees:
            model = with_colour_basis(load_adapter(base.copy(), inits["generated"]).merge_and_unload(), degree).eval()
            edit = text_conditioned(model, card.instruction, ws.text_cache)
            solve_readout(model, edit, train.source, train.target)
            row[f"generated+readout+colour{degree}"] = test.score(edit, model)["psnr"]
        log(f"{concept} ({group}): " + ", ".join(f"{k} {v:.2f}" for k, v in row.items() if isinstance(v, float)))
        rows.append(row)
    keys = ["identity", "generated", "generated+readout", "base", "base+readout",
            *(f"generated+readout+colour{d}" for d in degrees)]
    summary = {g: {k: _mean_sd([r[k] for r in rows if g == "all" or r["group"] == g]) for k in keys}
               for g in ("colour", "structural", "all")}
    results = {**provenance("readout_start.py"), "concepts": rows, "summary": summary, "samples": SAMPLES,
               "ridge": RIDGE}
    lines = [f"# A least-squares readout as a start ({args.name})", "",
             f"{results['date']}, commit `{results['commit']}`, `{results['command']}`.", "",
             "PSNR (dB) on each validation concept's test pairs before any training; `+readout`: `head.conv3` solved "
             "by ridge regression on the training pairs' residuals (seconds: the features' pass and the solve)"
             + ("; `+colourD`: `head.colour` over the colour monomials up to degree D solved with it" if degrees
                else "") + ".", "",
             "| concept | group | photo | generated | generated + readout | s | base | base + readout | s |"
             + "".join(f" + colour{d} |" for d in degrees),
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |" + " ---: |" * len(degrees)]
    for r in rows:
        lines.append(f"| {r['concept']} | {r['group']} | {r['identity']:.2f} | {r['generated']:.2f} | "
                     f"{r['generated+readout']:.2f} | {r['generated_seconds']} | {r['base']:.2f} | "
                     f"{r['base+readout']:.2f} | {r['base_seconds']} |"
                     + "".join(f" {r[f'generated+readout+colour{d}']:.2f} |" for d in degrees))
    lines += ["", "| group | " + " | ".join(keys) + " |", "| --- |" + " ---: |" * len(keys)]
    for g, s in summary.items():
        lines.append(f"| {g} | " + " | ".join(s[k] for k in keys) + " |")
    write_results(args.out, args.name, False, results, "\n".join(lines) + "\n")


def _mean_sd(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {sd:.2f}"


if __name__ == "__main__":
    main()
