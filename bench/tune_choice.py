"""How a generated start is trained for the equal budget, chosen on **validation** concepts only.

The equal-budget runs (``bench/run_all.py``) found the generated start good and its fine-tune slow: a rank-4
LoRA on three layers of the frozen base climbs about 5 dB in 90 s where the whole network from scratch climbs
14 dB. This measures, for each validation concept, the shipped weight generator's start trained for ``--seconds``
in each of these ways, next to scratch (the reference every goal is against):

- ``lora``: the LoRA on the frozen base at its learning rate (``ADAPTER_LR``, 3e-3: chosen long ago on a 64 px base);
- ``lora-1e-2``: the same at 1e-2;
- ``all``: the start merged into the base, then every weight trained (``--tune all``, ``FULL_LR``);
- ``all-1e-3``: the same at scratch's 1e-3 (added after the first choice: scratch's lead on colour is its
  larger step? The choice below is remade over all ways);
- ``scratch``: our architecture from random weights (``SCRATCH_LR``);
- ``lora-decay``, ``all-1e-3-decay`` and ``scratch-decay``: those three with their learning rate decaying
  linearly to 0 over the second half of the seconds budget (``decay_over="budget"``; otherwise a 90 s run
  never reaches the step schedule's decay), added in a third run;
- ``lora-noaug``, ``all-1e-3-noaug`` and ``scratch-noaug``: those three (constant rate) without the random flip
  and resized crop of the pairs (``augment=False``): a crop moves and rescales what the teacher drew at fixed
  pixel positions and sizes (bench/results/structural-anchored.md), added in a fourth run (``--ways``);
- ``lora-screen`` and ``scratch-screen``: ``lora-noaug`` and ``scratch-noaug`` with position channels at the waves of
  the concept's fixed screen (``screen="auto"``; a concept without one trains as without), added in a fifth run on
  the validation concepts with a screen (``--concepts newsprint,pixel-art``);
- ``readout-lora`` and ``readout-all``: ``lora-noaug`` and ``all-1e-3-noaug`` from the readout start (``head.conv3``
  solved on the training pairs first, ``factory.lora.readout``; its seconds count against the budget), added in a
  sixth run;
- ``readout-lora-warmup`` and ``readout-all-warmup``: those two with the learning rate rising linearly over the first
  ``WARMUP`` steps (Adam's first steps move every weight by about the learning rate, which throws a trained start
  back: the readout start's held-out PSNR falls for its first ~10 s), added in a seventh run;
- ``readout-lora-b4``, ``readout-all-b4`` and ``scratch-noaug-b4``: ``readout-lora``, ``readout-all`` and
  ``scratch-noaug`` with 4 pairs per step instead of 8 (about twice the steps in the budget: a trained start may
  gain more from more steps than from less noisy ones; scratch gets the same, so a gain that any run would have
  is not counted as the start's), added in an eighth run.
- ``readout-all-every15`` (run once, then removed with its option at the commit after edda647): ``readout-all`` with
  the readout solved again every 15 training seconds on 32 random training pairs (the features under it move as the
  rest trains; each solve's seconds were charged), in the ninth run: below every other start there.
- ``readout-lora-ema``, ``readout-all-ema`` and ``scratch-noaug-ema``: ``readout-lora``, ``readout-all`` and
  ``scratch-noaug`` evaluated (and kept) as an exponential moving average of the weights, decay ``EMA`` (at a
  learning rate of 1e-3 the GAN's held-out PSNR swings by several dB from one evaluation to the next; the average
  of the last steps' weights does not), added in the ninth run.
- ``readout-lora-ema-colour``, ``readout-all-ema-colour`` and ``scratch-noaug-ema-colour``: those three with the
  colour basis (``colour_basis=COLOUR``: the source pixel's colour monomials read by ``head.colour``, which the
  readout solves with ``head.conv3``, a LoRA run trains whole and scratch trains from zero like every other
  weight), added in a tenth run; ``scratch-readout-ema-colour``: scratch with the readout (the solve on random
  features and the colour basis, without the base or the generated start: what the solve alone gives).
- ``readout-lora-ema-colour4``, ``readout-lora-ema-colour5``: ``readout-lora-ema-colour`` with the colour
  monomials up to degree 4 (34) or 5 (55) instead of 3 (19), added in an eleventh run: the degree-3 basis leaves
  cross-process's readout start flat near 36 dB through a 90 s run (bench/results/all-colour-rebased), a
  monotone tone curve per channel that a cubic fits only roughly.
- ``readout-lora-ema-colour-lens``, ``scratch-noaug-ema-colour-lens``: ``readout-lora-ema-colour`` and
  ``scratch-noaug-ema-colour`` with the lens basis (``lens_basis``: ``head.lens`` over the photo's 8 neighbours and
  radial gain planes; the readout solves it with ``head.colour``), added in a twelfth run on validation concepts with
  a blur or a vignette and four without (``--concepts``): a per-pixel colour map cannot hold either
  (bench/results/lens-ceiling-validation.md).

Validation concepts: the first ``--per-group`` named validation concepts of each group (concepts/_splits.yaml)
and the first ``--family`` colour and structural concepts of ``sample_concepts(200, 12, 'train')`` that neither
the base nor the weight generator trained on (draw 12: no earlier run used it); or ``--concepts``, named validation
concepts and family ones of that draw. The test concepts are read only
by ``bench/run_all.py``, after the choice. Seed 0, the protocol's pairs (160 at 128 px, data seed 0), PSNR on each
concept's held-out test pairs. Resumable (each finished run is kept in the work folder). Writes
``bench/results/tune_choice.{json,md}``.

    python bench/tune_choice.py            # ~40 min, alone on the machine
    python bench/tune_choice.py --quick    # smoke: one concept, seconds
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from concepts.cards import find_card
from factory.core.workspace import Workspace
from factory.data.card_pairs import PhotoCache, TeacherCache, make_pairs
from factory.evaluation.protocol import DATA_SEED, PAIRS, SIZE, concept_split
from factory.lora.finetune import finetune
from factory.lora.options import FinetuneOptions

from common import log, provenance, write_results
from run_all import init_adapters, shipped

SEED = 0
FAMILY_DRAW = 12
EMA = 0.9  # decay of the weights' moving average in the *-ema ways (a step's weight 0.1: about 10 steps, 2-3 s)
COLOUR = 3  # the colour basis's degree in the *-colour ways (19 monomials)
WARMUP = 50  # steps of linear LR warm-up in the *-warmup ways (about 15 s of a 90 s budget)
#: way -> (init, FinetuneOptions fields): "generated" is the weight generator's start for the concept
WAYS = {
    "lora": ("generated", {}),
    "lora-1e-2": ("generated", {"lr": 1e-2}),
    "all": ("generated", {"tune": "all", "lr": 3e-4}),
    "all-1e-3": ("generated", {"tune": "all", "lr": 1e-3}),
    "scratch": ("scratch", {}),
    "lora-decay": ("generated", {"decay_over": "budget"}),
    "all-1e-3-decay": ("generated", {"tune": "all", "lr": 1e-3, "decay_over": "budget"}),
    "scratch-decay": ("scratch", {"decay_over": "budget"}),
    "lora-noaug": ("generated", {"augment": False}),
    "all-1e-3-noaug": ("generated", {"tune": "all", "lr": 1e-3, "augment": False}),
    "scratch-noaug": ("scratch", {"augment": False}),
    "lora-screen": ("generated", {"augment": False, "screen": "auto"}),
    "scratch-screen": ("scratch", {"augment": False, "screen": "auto"}),
    "readout-lora": ("generated", {"augment": False, "readout": True}),
    "readout-all": ("generated", {"tune": "all", "lr": 1e-3, "augment": False, "readout": True}),
    "readout-lora-warmup": ("generated", {"augment": False, "readout": True, "warmup": WARMUP}),
    "readout-all-warmup": ("generated", {"tune": "all", "lr": 1e-3, "augment": False, "readout": True,
                                         "warmup": WARMUP}),
    "readout-lora-b4": ("generated", {"augment": False, "readout": True, "batch": 4}),
    "readout-all-b4": ("generated", {"tune": "all", "lr": 1e-3, "augment": False, "readout": True, "batch": 4}),
    "scratch-noaug-b4": ("scratch", {"augment": False, "batch": 4}),
    "readout-lora-ema": ("generated", {"augment": False, "readout": True, "ema": EMA}),
    "readout-all-ema": ("generated", {"tune": "all", "lr": 1e-3, "augment": False, "readout": True, "ema": EMA}),
    "scratch-noaug-ema": ("scratch", {"augment": False, "ema": EMA}),
    "readout-lora-ema-colour": ("generated", {"augment": False, "readout": True, "ema": EMA, "colour_basis": COLOUR}),
    "readout-all-ema-colour": ("generated", {"tune": "all", "lr": 1e-3, "augment": False, "readout": True, "ema": EMA,
                                             "colour_basis": COLOUR}),
    "scratch-noaug-ema-colour": ("scratch", {"augment": False, "ema": EMA, "colour_basis": COLOUR}),
    "scratch-readout-ema-colour": ("scratch", {"augment": False, "readout": True, "ema": EMA, "colour_basis": COLOUR}),
    **{f"readout-lora-ema-colour{d}": ("generated", {"augment": False, "readout": True, "ema": EMA, "colour_basis": d})
       for d in (4, 5)},
    "readout-lora-ema-colour-lens": ("generated", {"augment": False, "readout": True, "ema": EMA,
                                                   "colour_basis": COLOUR, "lens_basis": True}),
    "scratch-noaug-ema-colour-lens": ("scratch", {"augment": False, "ema": EMA, "colour_basis": COLOUR,
                                                  "lens_basis": True}),
}


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one concept, 64 px, a few seconds per run")
    ap.add_argument("--seconds", type=float, default=90.0, help="training seconds per run (the equal budget)")
    ap.add_argument("--per-group", type=int, default=2, help="named validation concepts per group")
    ap.add_argument("--family", type=int, default=1, help="family validation concepts per group")
    ap.add_argument("--ways", default=",".join(WAYS), help="comma-separated subset of the ways (default: all)")
    ap.add_argument("--concepts", help="comma-separated validation concepts instead of the default draw: named ones, "
                    f"or family ones (fam-...) of the validation draw {FAMILY_DRAW} that no shipped asset trained on")
    ap.add_argument("--name", default="tune_choice", help="results file name")
    ap.add_argument("--workspace", type=Path, default=Path("bench/work/tune-choice"))
    ap.add_argument("--out", type=Path, default=Path("bench/results"))
    return ap.parse_args()


def validation_concepts(args, ws: Workspace, m: dict) -> dict[str, str]:
    """{concept: group}: named validation concepts, then family ones no shipped asset trained on."""
    from concepts.family import family_card, sample_concepts

    split = concept_split()
    trained = set(m["base"]["concepts"]) | set(m["weightgen"]["concepts"])
    drawn = [c for c in sample_concepts(200, FAMILY_DRAW, "train") if c.name not in trained]
    if args.concepts:
        wanted, family = args.concepts.split(","), {c.name: c for c in drawn}
        if outside := [c for c in wanted if c not in split.validation and c not in family]:
            raise SystemExit(f"--concepts: not validation concepts: {', '.join(outside)}")
        for c in wanted:
            if c in family:
                family_card(ws, family[c])  # its card in the workspace, so the pairs and runs find it by name
        return {c: split.group[c] if c in split.validation else family[c].group for c in wanted}
    named = {c: g for g in ("colour", "structural") for c in split.of("validation", g)[: args.per_group]}
    family = {family_card(ws, c).name: g for g in ("colour", "structural")
              for c in [c for c in drawn if c.group == g][: args.family]}
    return {**named, **family}


def main() -> None:
    from base_gan.models import BaseGAN

    args = parse_args()
    if unknown := [w for w in args.ways.split(",") if w not in WAYS]:
        raise SystemExit(f"--ways: unknown {', '.join(unknown)} (known: {', '.join(WAYS)})")
    ways = {w: WAYS[w] for w in args.ways.split(",")}
    seconds, size, pairs = (4.0, 64, 24) if args.quick else (args.seconds, SIZE, PAIRS)
    if args.quick:
        args.workspace = args.workspace.with_name(args.workspace.name + "-quick")
    ws = Workspace(args.workspace)
    base_dir, wg_dir, m = shipped()
    base = BaseGAN.load(base_dir)
    concepts = validation_concepts(args, ws, m)
    if args.quick:
        concepts = dict(list(concepts.items())[:1])
    teachers, photos = TeacherCache(), PhotoCache()
    rows = []
    for concept, group in concepts.items():
        make_pairs(ws, find_card(concept, ws), pairs, size, DATA_SEED, teachers=teachers, photos=photos)
        run = args.workspace / "runs" / concept
        inits = init_adapters(ws, wg_dir, concept, SEED, run, base_dir, auto=False)
        for way, (init, extra) in ways.items():
            out = run / way
            log(f"{concept} ({group}): {way} ({seconds:g} s)")
            start = str(inits[init]) if init in inits else init
            opts = FinetuneOptions(init=start, steps=10**6, seconds=seconds, eval_every=10**6,  # the ways
                                   checkpoint_every=10**6, seed=SEED,
                                   **{"augment": True, "screen": "off", "screen_scale": 1.0,
                                      "screen_harmonics": False, "screen_lattice": False, "readout": False,
                                      "ema": 0.0, "colour_basis": 0, "lens_basis": False, **extra})  # as recorded
            reused = (out / "metrics.json").is_file()
            metrics = (json.loads((out / "metrics.json").read_text()) if reused else
                       finetune(ws, concept, base, opts, out_dir=out, quiet=True, log=lambda _: None))
            rows.append({"concept": concept, "group": group, "way": way, "lr": opts.learning_rate(), "reused": reused,
                         "psnr": metrics["test"]["student"]["psnr"],
                         "start_psnr": metrics["test"].get("init_adapter", {}).get("psnr"),
                         "readout_start_psnr": metrics["test"].get("readout_start", {}).get("psnr"),
                         "identity": metrics["test"]["identity"]["psnr"], "steps": metrics["training"]["steps"]})
    means = {w: statistics.mean(r["psnr"] for r in rows if r["way"] == w) for w in ways}
    by_group = {g: {w: statistics.mean(r["psnr"] for r in rows if r["way"] == w and r["group"] == g) for w in ways}
                for g in sorted({r["group"] for r in rows})}
    choice = max((w for w in ways if ways[w][0] != "scratch"), key=means.get)
    r = {**provenance("tune_choice.py"), "quick": args.quick, "base": "shipped", "weightgen": "shipped",
         "assets_recipe": m.get("recipe_now") or m.get("recipe"), "concepts": concepts, "split": "validation",
         "family_draw": FAMILY_DRAW, "seconds": seconds, "size": size, "pairs": pairs, "seed": SEED,
         "ways": {w: {"init": i, **e} for w, (i, e) in ways.items()}, "rows": rows, "mean_psnr": means,
         "mean_psnr_by_group": by_group, "choice": choice}
    log(f"choice: {choice} -> {write_results(args.out, args.name, args.quick, r, markdown(r))}")


def markdown(r: dict) -> str:
    ways = list(r["ways"])
    L = [f"# How a generated start is trained for {r['seconds']:g} s, chosen on validation concepts"
         f"{' (QUICK smoke)' if r['quick'] else ''}", "",
         f"Command: `{r['command']}` (commit `{r['commit']}`, {r['date']}, {r['machine']}). The shipped base and "
         f"weight generator; {r['seconds']:g} s of training on {r['pairs']} pairs at {r['size']} px, seed "
         f"{r['seed']}; PSNR (dB) on each concept's held-out test pairs. *start*: the generated adapter before "
         "training. Ways: `lora` the LoRA on the frozen base at 3e-3, `lora-1e-2` at 1e-2, `all` the start merged "
         "and every weight trained at 3e-4 (`--tune all`), `all-1e-3` the same at 1e-3, `scratch` our architecture "
         "from random weights at 1e-3; `-decay`: the learning rate decays to 0 over the second half of the budget; "
         "`-noaug`: no random flip and resized crop of the pairs; `-screen`: also no flip or crop, and position "
         "channels at the waves of the concept's fixed screen (`--screen auto`); `readout-`: from the readout start "
         "(`head.conv3` solved on the training pairs first, its seconds inside the budget), without the flip and crop; "
         f"`-warmup`: the learning rate rising linearly over the first {WARMUP} steps; `-b4`: 4 pairs per step "
         "instead of 8; `-every15`: the readout solved again every 15 training seconds (removed); `-ema`: "
         f"the moving average of the weights (decay {EMA:g}) evaluated and kept; `-colour`: the colour basis of degree "
         f"{COLOUR} (`head.colour`, solved with the readout); `-colourD`: of degree D; `-lens`: the lens basis too "
         "(`head.lens`: the photo's neighbours and radial gain planes, solved with the readout).",
         "", "| concept | group | identity | start | " + " | ".join(ways) + " |",
         "| --- | --- | ---: | ---: | " + " | ".join("---:" for _ in ways) + " |"]
    for c, g in r["concepts"].items():
        by = {x["way"]: x for x in r["rows"] if x["concept"] == c}
        first = next(iter(by.values()))
        start = next((x["start_psnr"] for x in by.values() if x["start_psnr"] is not None), None)
        L.append(f"| {c} | {g} | {first['identity']:.2f} | {'' if start is None else f'{start:.2f}'} | "
                 + " | ".join(f"{by[w]['psnr']:.2f}" for w in ways) + " |")
    for g, means in r["mean_psnr_by_group"].items():
        L.append(f"| mean, {g} | | | | " + " | ".join(f"{means[w]:.2f}" for w in ways) + " |")
    L.append("| **mean** | | | | " + " | ".join(f"**{r['mean_psnr'][w]:.2f}**" for w in ways) + " |")
    steps = {w: statistics.mean(x["steps"] for x in r["rows"] if x["way"] == w) for w in ways}
    L.append("| steps in the budget, mean | | | | " + " | ".join(f"{steps[w]:.0f}" for w in ways) + " |")
    if reused := [f"{x['concept']}/{x['way']}" for x in r["rows"] if x.get("reused")]:
        L += ["", f"{len(reused)} runs were read from an earlier run of this script in the same work folder (same "
              "pairs, seed and budget), not trained again: " + ", ".join(sorted({x.split('/')[1] for x in reused}))
              + "."]
    solved = [w for w in ways if any(x.get("readout_start_psnr") is not None for x in r["rows"] if x["way"] == w)]
    if solved:
        L += ["", "The readout starts: PSNR (dB) after the solve, before the first step (the curve's first point).", "",
              "| concept | " + " | ".join(solved) + " |", "| --- | " + " | ".join("---:" for _ in solved) + " |"]
        for c in r["concepts"]:
            by = {x["way"]: x.get("readout_start_psnr") for x in r["rows"] if x["concept"] == c}
            L.append(f"| {c} | " + " | ".join("" if by.get(w) is None else f"{by[w]:.2f}" for w in solved) + " |")
    L += ["", f"Choice: **{r['choice']}** (the best mean of the ways that start from the generated adapter).", ""]
    return "\n".join(L)


if __name__ == "__main__":
    main()
