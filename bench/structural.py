"""Experiment: why structural concepts fail, and which remedy moves the structure-aware metrics (issue 15).

Our architecture (ngf 32, the shipped base's shape) trained from random weights on one concept's pairs
for ``--seconds`` of training, per variant and seed, on the protocol's **validation** structural
concepts (choices are made here; the test concepts are read only by ``--final``, after the choice):

* ``l1``: the recipe today (LSGAN + 100 x L1);
* ``texture``: adversarial and feature-matching losses weighted for texture (10 x L1, 10 x discriminator
  feature matching, LSGAN): an L1 this strong averages stochastic texture (grain, dots) to grey;
* ``coords``: ``l1`` plus coordinate channels (sin/cos of the pixel position at periods 4, 8, 16 px), so a
  fixed screen or scanlines can be placed (a translation-equivariant network cannot);
* ``coords+texture``: both;
* ``long``: ``l1`` at 3x the budget (is it only training length?);
* ``anchored``: ``l1`` without the random flip and resized crop: a crop moves and rescales a screen anchored
  at the image's corner (pixelate's blocks, a halftone cell), so with augmentation no input says where it is;
* ``coords-anchored``: ``coords`` without that augmentation (the coordinate channels then mean the same place
  in every sample; with augmentation, ``coords`` pairs them with a moved and rescaled screen);
* ``screen``: ``anchored`` plus sin/cos channels of the plane waves of the concept's own screen, fitted to its
  training pairs (``factory.data.screen_fit``: peaks in the spectrum of what is anchored in place in every
  target); a concept without such a pattern gets no waves and trains exactly as ``anchored``.

Each run is scored on the concept's held-out test pairs: PSNR, HaarPSI, FSIM, GMSD, quarter-resolution
PSNR, and the *learned* rule (beats the unchanged photo on PSNR and every structural metric). Writes
``bench/results/structural.{json,md}`` (per variant: mean +- spread over concepts x seeds, and learned
counts); resumable (each finished run is kept in the work folder).

    python bench/structural.py                       # validation structural concepts, 3 seeds, 240 s each
    python bench/structural.py --final coords        # the chosen variant(s) and l1 on the test concepts
    python bench/structural.py --quick               # smoke: one concept, one seed, seconds-long runs
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

from base_gan.generator import SCREEN_PERIODS
from base_gan.models import load_model, model_spec
from base_gan.train import Trainer, TrainSettings
from concepts.cards import find_card
from factory.core.atomic import atomic_write_json, atomic_write_text
from factory.core.workspace import Workspace
from factory.data.card_pairs import make_pairs
from factory.evaluation.heldout import HeldOutPairs
from factory.evaluation.metrics import learned
from factory.evaluation.protocol import DATA_SEED, PAIRS, SEEDS, SIZE, concept_split, mean_spread
from factory.lora.finetune import fitted_screen
from factory.lora.options import SCRATCH_LR
from factory.lora.pair_selection import train_ids
from factory.pipeline.assets import pretrained_base

from common import log

VARIANTS = {
    "l1": dict(l1_weight=100.0, fm_weight=0.0, coords=False, budget=1.0),
    "texture": dict(l1_weight=10.0, fm_weight=10.0, coords=False, budget=1.0),
    "coords": dict(l1_weight=100.0, fm_weight=0.0, coords=True, budget=1.0),
    "coords+texture": dict(l1_weight=10.0, fm_weight=10.0, coords=True, budget=1.0),
    "long": dict(l1_weight=100.0, fm_weight=0.0, coords=False, budget=3.0),
    "anchored": dict(l1_weight=100.0, fm_weight=0.0, coords=False, budget=1.0, augment=False),
    "coords-anchored": dict(l1_weight=100.0, fm_weight=0.0, coords=True, budget=1.0, augment=False),
    "screen": dict(l1_weight=100.0, fm_weight=0.0, coords=False, budget=1.0, augment=False, waves=True),
}
METRICS = ("psnr", "haarpsi", "fsim", "gmsd", "psnr_quarter")


def train_one(ws: Workspace, concept: str, variant: str, seed: int, seconds: float) -> dict:
    """One scratch run (resumable); returns its held-out metrics, the identity's and the learned verdict."""
    done = ws.root / "results" / f"{concept}-{variant}-{seed}.json"
    if done.is_file():
        return json.loads(done.read_text())
    v = VARIANTS[variant]
    spec = model_spec(load_model(pretrained_base()))
    if v["coords"]:
        spec = {**spec, "screen_periods": list(SCREEN_PERIODS)}
    waves = None
    if v.get("waves"):
        screen = fitted_screen(ws.data(concept), train_ids(ws.data(concept)))
        waves = screen["screen_waves"] if screen else []
        spec = {**spec, **(screen or {})}
    settings = TrainSettings(generator=spec, disc_nf=32, steps=10**9, seconds=seconds * v["budget"], batch=8,
                             lr=SCRATCH_LR, beta1=0.5, decay_from=1.0, checkpoint_every=200, seed=seed,
                             l1_weight=v["l1_weight"], fm_weight=v["fm_weight"], augment=v.get("augment", True))
    trainer = Trainer(ws.root / "runs" / f"{concept}-{variant}-{seed}", [ws.data(concept)], settings,
                      text_cache=ws.text_cache)
    trainer.resume()
    started = time.perf_counter()
    trainer.train()
    model = trainer.G.eval()
    tokens, mask = trainer.text_tokens, trainer.text_mask

    def edit(x: torch.Tensor) -> torch.Tensor:
        if tokens is None:
            return model(x)
        return model(x, tokens[:1].expand(len(x), -1, -1), mask[:1].expand(len(x), -1))

    test = HeldOutPairs(ws.data(concept), "test")
    with torch.no_grad():
        student = test.score(edit, model, full=True)
    identity = test.identity()
    result = {"concept": concept, "variant": variant, "seed": seed, "settings": v, "screen_waves": waves,
              "steps": trainer.state.step,
              "training_seconds": round(trainer.state.seconds, 1), "student": student, "identity": identity,
              "learned": learned(student, identity), "wall_seconds": round(time.perf_counter() - started, 1),
              "load_average_1min": round(os.getloadavg()[0], 2)}
    atomic_write_json(done, result)
    return result


def summarise(runs: list[dict]) -> dict:
    out = {}
    for variant in dict.fromkeys(r["variant"] for r in runs):
        rows = [r for r in runs if r["variant"] == variant]
        out[variant] = {m: mean_spread([r["student"][m] for r in rows]) for m in METRICS}
        out[variant]["identity"] = {m: mean_spread([r["identity"][m] for r in rows]) for m in METRICS}
        out[variant]["learned"] = f"{sum(r['learned'] for r in rows)}/{len(rows)}"
        out[variant]["psnr_by_concept"] = {c: mean_spread([r["student"]["psnr"] for r in rows if r["concept"] == c])
                                           for c in dict.fromkeys(r["concept"] for r in rows)}
    return out


def render(r: dict) -> str:
    lines = ["# Structural concepts: which remedy moves the structure-aware metrics", "",
             f"Written by `{r['command']}` ({r['date']}, {r['machine']}). Our architecture from random weights, "
             f"{r['seconds']:g} s of training per run (`long`: 3x), concepts {', '.join(r['concepts'])} "
             f"({r['split']} split), seeds {r['seeds']}; held-out test pairs; mean +- spread over concepts x seeds. "
             "HaarPSI, FSIM higher is better, GMSD lower. *learned*: beats the unchanged photo on PSNR and every "
             "structural metric.", "",
             "| variant | PSNR | HaarPSI | FSIM | GMSD | PSNR 1/4 | learned |",
             "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]

    def cell(d: dict) -> str:
        return f"{d['mean']:.3f} ± {d['std']:.3f}"

    first = next(iter(r["summary"].values()))
    lines.append("| identity | " + " | ".join(cell(first["identity"][m]) for m in METRICS) + " | |")
    for variant, s in r["summary"].items():
        lines.append(f"| {variant} | " + " | ".join(cell(s[m]) for m in METRICS) + f" | {s['learned']} |")
    lines += ["", "PSNR by concept (mean ± spread over seeds):", "",
              "| variant | " + " | ".join(r["concepts"]) + " |", "| --- |" + " ---: |" * len(r["concepts"])]
    for variant, s in r["summary"].items():
        if "psnr_by_concept" in s:
            lines.append(f"| {variant} | " + " | ".join(cell(s["psnr_by_concept"][c]) for c in r["concepts"]) + " |")
    fitted = {run["concept"]: run["screen_waves"] for run in r["runs"] if "screen_waves" in run and run["seed"] == 0
              and VARIANTS.get(run["variant"], {}).get("waves")}
    if fitted:
        lines += ["", "Screen waves fitted to each concept's training pairs ([fy, fx], cycles per pixel; none: the "
                  "variant trains as `anchored`): " + "; ".join(f"{c} {w or 'none'}" for c, w in fitted.items()) + "."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--seconds", type=float, default=240.0)
    ap.add_argument("--concepts", help="comma-separated subset of the split's structural concepts (default: all)")
    ap.add_argument("--final", metavar="VARIANTS", help="run l1 and these comma-separated variants on the test "
                    "structural concepts")
    ap.add_argument("--name", help="results file name (default: structural, or structural-final with --final)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--workspace", type=Path, default=Path("bench/work/structural"))
    ap.add_argument("--out", type=Path, default=Path("bench/results"))
    args = ap.parse_args()
    split = concept_split()
    concepts = split.of("test" if args.final else "validation", "structural")
    if args.concepts:
        wanted = args.concepts.split(",")
        outside = [c for c in wanted if c not in concepts]
        if outside:
            ap.error(f"{', '.join(outside)}: not {'test' if args.final else 'validation'} structural concepts "
                     f"({', '.join(concepts)})")
        concepts = wanted
    variants = ["l1", *args.final.split(",")] if args.final else args.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        ap.error(f"unknown variant(s) {', '.join(unknown)} (known: {', '.join(VARIANTS)})")
    seeds = list(SEEDS)
    if args.quick:
        concepts, seeds, args.seconds = concepts[:1], seeds[:1], 6.0
        args.workspace, args.out = Path("bench/work/structural-quick"), Path("bench/results/smoke")
    ws = Workspace(args.workspace)
    runs = []
    for concept in concepts:
        make_pairs(ws, find_card(concept), 24 if args.quick else PAIRS, 64 if args.quick else SIZE, DATA_SEED)
        for variant in variants:
            for seed in seeds:
                log(f"{concept} {variant} seed {seed}")
                runs.append(train_one(ws, concept, variant, seed, args.seconds))
                s = runs[-1]["student"]
                log(f"  PSNR {s['psnr']:.2f} HaarPSI {s['haarpsi']:.3f} FSIM {s['fsim']:.3f} GMSD {s['gmsd']:.3f} "
                    f"learned {runs[-1]['learned']}")
    name = args.name or ("structural-final" if args.final else "structural")
    result = {"command": " ".join(["python bench/structural.py", *sys.argv[1:]]),
              "date": datetime.now(UTC).isoformat(timespec="seconds"),
              "machine": platform.machine(), "split": "test" if args.final else "validation", "concepts": concepts,
              "seeds": seeds, "seconds": args.seconds, "variants": {v: VARIANTS[v] for v in variants},
              "runs": runs, "summary": summarise(runs)}
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / f"{name}.json", result)
    atomic_write_text(args.out / f"{name}.md", render(result))
    print(render(result))


if __name__ == "__main__":
    main()
