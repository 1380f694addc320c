"""The learning rate of ``factory finetune --init full`` (every weight of the pretrained base fine-tuned),
chosen on **validation** concepts only (the test concepts are read by ``bench/run_all.py``, after the choice).

For each candidate learning rate and each validation concept (two colour, two structural): the base in use
(the shipped one, or ``$FACTORY_PRETRAINED``'s) fine-tuned in full for ``--seconds`` of training on the
concept's pairs (the protocol's: 160 pairs at 128 px, data seed 0), scored on its held-out test pairs. The
choice is the rate with the best mean PSNR over the concepts; ``factory.lora.options.FULL_LR`` is set to it
by hand, with this file cited. Resumable (each finished run is kept in the work folder). Writes
``bench/results/full_lr.{json,md}``.

    FACTORY_PRETRAINED=bench/work/family-assets python bench/full_lr.py     # ~20 min, alone on the machine
    python bench/full_lr.py --quick                                         # smoke: one concept, seconds
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
from factory.pipeline.assets import manifest, resolve_base

from common import log, provenance, write_results

SEED = 0
LRS = (1e-4, 3e-4, 1e-3)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one concept, 64 px, a few seconds per run")
    ap.add_argument("--seconds", type=float, default=90.0, help="training seconds per run (the equal budget)")
    ap.add_argument("--per-group", type=int, default=2, help="validation concepts per group")
    ap.add_argument("--workspace", type=Path, default=Path("bench/work/full-lr"))
    ap.add_argument("--out", type=Path, default=Path("bench/results"))
    return ap.parse_args()


def main() -> None:
    from base_gan.models import BaseGAN

    args = parse_args()
    split = concept_split()
    concepts = [c for g in ("colour", "structural") for c in split.of("validation", g)[: args.per_group]]
    seconds, size, pairs = (4.0, 64, 24) if args.quick else (args.seconds, SIZE, PAIRS)
    if args.quick:
        concepts, args.workspace = concepts[:1], args.workspace.with_name(args.workspace.name + "-quick")
    ws = Workspace(args.workspace)
    base = BaseGAN.load(resolve_base(ws))
    teachers, photos = TeacherCache(), PhotoCache()
    rows = []
    for concept in concepts:
        make_pairs(ws, find_card(concept), pairs, size, DATA_SEED, teachers=teachers, photos=photos)
        for lr in LRS:
            out = args.workspace / "runs" / concept / f"lr{lr:g}"
            log(f"{concept}: every weight of the base at lr {lr:g} ({seconds:g} s)")
            m = (json.loads((out / "metrics.json").read_text()) if (out / "metrics.json").is_file() else
                 finetune(ws, concept, base, FinetuneOptions(init="full", lr=lr, steps=10**6, seconds=seconds,
                                                             eval_every=10**6, checkpoint_every=10**6, seed=SEED,
                                                             augment=True),  # as its recorded runs
                          out_dir=out, quiet=True, log=lambda _: None))
            rows.append({"concept": concept, "group": split.group.get(concept), "lr": lr,
                         "psnr": m["test"]["student"]["psnr"], "identity": m["test"]["identity"]["psnr"],
                         "base_zero_shot": m["test"]["base_zero_shot"]["psnr"], "steps": m["training"]["steps"]})
    means = {lr: statistics.mean(r["psnr"] for r in rows if r["lr"] == lr) for lr in LRS}
    choice = max(means, key=means.get)
    m = manifest() or {}
    r = {**provenance("full_lr.py"), "quick": args.quick, "base": str(base.folder),
         "assets_recipe": m.get("recipe_now") or m.get("recipe"), "concepts": concepts, "split": "validation",
         "seconds": seconds, "size": size, "pairs": pairs, "seed": SEED, "rows": rows,
         "mean_psnr": {f"{lr:g}": v for lr, v in means.items()}, "choice": choice}
    log(f"choice: lr {choice:g} -> {write_results(args.out, 'full_lr', args.quick, r, markdown(r))}")


def markdown(r: dict) -> str:
    lrs = list(r["mean_psnr"])
    L = [f"# `--init full`: its learning rate, chosen on validation concepts{' (QUICK smoke)' if r['quick'] else ''}",
         "", f"Command: `{r['command']}` (commit `{r['commit']}`, {r['date']}, {r['machine']}). Base: "
         f"`{r['base']}`. Every weight of the base fine-tuned for {r['seconds']:g} s of training on "
         f"{r['pairs']} pairs at {r['size']} px, seed {r['seed']}; PSNR (dB) on each concept's held-out test pairs.",
         "", "| concept | group | identity | base, text only | " + " | ".join(f"lr {lr}" for lr in lrs) + " |",
         "| --- | --- | ---: | ---: | " + " | ".join("---:" for _ in lrs) + " |"]
    for c in r["concepts"]:
        by = {f"{x['lr']:g}": x for x in r["rows"] if x["concept"] == c}
        first = next(iter(by.values()))
        L.append(f"| {c} | {first['group']} | {first['identity']:.2f} | {first['base_zero_shot']:.2f} | "
                 + " | ".join(f"{by[lr]['psnr']:.2f}" for lr in lrs) + " |")
    L.append("| **mean** | | | | " + " | ".join(f"**{v:.2f}**" for v in r["mean_psnr"].values()) + " |")
    L += ["", f"Choice: **lr {r['choice']:g}** (best mean).", ""]
    return "\n".join(L)


if __name__ == "__main__":
    main()
