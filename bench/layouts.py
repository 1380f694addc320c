"""Which layer groups a concept's LoRA should adapt on the family base, chosen on validation concepts (issue 15,
item 2).

For each candidate layout, the adapters of the validation family concepts (the leave-out's validation draws:
family concepts new to the base, never a test draw's) are trained on the frozen base exactly as the weight
dataset's are (``factory.lora.batched``: one shared frozen ``lora_A``, ``B`` and its bias trained, in batches of
``--chunk`` concepts, the recipe's steps, pairs per step and learning rate), then each concept's adapter is
scored on its test pairs (PSNR against the teacher, dB). The layouts differ only in which groups they adapt;
the rank is the recipe's. Reported per layout: the mean ± sd PSNR over the concepts (colour and structural
apart), the gain over the unchanged photo, the adapter's parameters and the training seconds per step of a
chunk. The rule, fixed before the run: the best mean PSNR over all validation concepts; a layout within 0.1 dB
of it with fewer parameters wins the tie.

    python bench/layouts.py            # writes bench/results/layouts.{md,json}
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from base_gan.models import BaseGAN
from concepts.family import parse_instruction
from factory.core.atomic import atomic_write_json, atomic_write_text
from factory.core.workspace import Workspace
from factory.evaluation.heldout import HeldOutPairs
from factory.evaluation.protocol import mean_spread
from factory.lora.adapters import LoraLayout
from factory.lora.batched import AdapterTraining, train_adapters
from factory.text.encoder import TextEncoder

from common import log, provenance

LAYOUTS = ("down1,up2,head", "head", "up2,head", "stem,down1,up2,head", "down1,down2,up1,up2,head",
           "down1,res,up2,head", "down1,attn,xattn,ff,up2,head")
DRAWS = "bench/results/accelerators/remade-1024-recipe-tokens/accelerators-holdout-new-validation-pooled.json"


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", default="factory/pretrained/editfactory-base")
    ap.add_argument("--weights-workspace", default="bench/work/pretrain-family-1024/adapters",
                    help="the weight dataset's workspace: the concepts' cards and pairs (at the adapters' size)")
    ap.add_argument("--draws", default=DRAWS, help="a leave-out results file of validation draws (its concepts)")
    ap.add_argument("--layouts", default=";".join(LAYOUTS), help="';'-separated layouts (comma-separated groups)")
    ap.add_argument("--rank", type=int, default=4)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--per-concept", type=int, default=2)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--chunk", type=int, default=32)
    ap.add_argument("--limit", type=int, default=0, help="only the first N concepts (a smoke run)")
    ap.add_argument("--out", default="bench/results/layouts")
    return ap.parse_args()


@torch.no_grad()
def adapter_psnr(model, k: int, held: HeldOutPairs, tokens: torch.Tensor, mask: torch.Tensor) -> float:
    """Test-pair PSNR of adapter ``k`` of a trained batch, conditioned on its concept's text."""
    model.eval()
    ids = torch.full((len(held),), k, dtype=torch.long)
    out = model(held.source, ids, tokens[k:k + 1].expand(len(held), -1, -1), mask[k:k + 1].expand(len(held), -1))
    model.train()
    return held.score_outputs(out)["psnr"]


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    result = {**provenance("layouts.py"), "settings": {k: v for k, v in vars(args).items() if k != "out"}}
    rows = json.loads(Path(args.draws).read_text())["holdout"]["rows"]
    names = sorted(rows)[:args.limit or None]
    ws = Workspace(Path(args.weights_workspace))
    base = BaseGAN.load(Path(args.base))
    texts = [rows[c]["instruction"] for c in names]
    groups = [parse_instruction(t).concept.group for t in texts]
    held = [HeldOutPairs(ws.data(c), "test") for c in names]
    identity = [h.identity(full=False)["psnr"] for h in held]
    tokens, mask = TextEncoder.from_name(base.model.config.text_encoder, cache_dir=ws.text_cache).tokens(texts)
    settings = AdapterTraining(steps=args.steps, per_concept=args.per_concept, lr=args.lr, seed=0)
    out: dict[str, dict] = {}
    for spec in args.layouts.split(";"):
        layout = LoraLayout([g for g in spec.split(",") if g], ranks=args.rank, bias=True)
        psnr, seconds, params = [], 0.0, 0
        for start in range(0, len(names), args.chunk):
            part = slice(start, start + args.chunk)
            t0 = time.perf_counter()
            model, _ = train_adapters(base.model, layout, [ws.data(c) for c in names[part]], settings, ws.text_cache)
            seconds += time.perf_counter() - t0
            params = params or sum(p[0].numel() for p in model.trainable())  # one adapter: B and bias
            psnr += [adapter_psnr(model, k, h, tokens[part], mask[part]) for k, h in enumerate(held[part])]
        gain = [p - i for p, i in zip(psnr, identity)]
        out[spec] = {"params": params, "seconds_per_step": seconds / (args.steps * -(-len(names) // args.chunk)),
                     "psnr": {g: mean_spread([p for p, gr in zip(psnr, groups) if g in ("all", gr)])
                              for g in ("all", "colour", "structural") if g == "all" or g in groups},
                     "over_photo": mean_spread(gain), "rows": dict(zip(names, psnr))}
        log(f"{spec}: {out[spec]['psnr']['all']['mean']:.2f} dB, {params} parameters")
    best = max(out, key=lambda s: out[s]["psnr"]["all"]["mean"])
    near = [s for s in out if out[s]["psnr"]["all"]["mean"] >= out[best]["psnr"]["all"]["mean"] - 0.1]
    result |= {"concepts": len(names), "identity": mean_spread(identity), "layouts": out,
               "best": best, "chosen": min(near, key=lambda s: out[s]["params"]),
               "minutes": round((time.perf_counter() - started) / 60, 1)}
    atomic_write_json(Path(args.out + ".json"), result)
    atomic_write_text(Path(args.out + ".md"), markdown(result))
    log(f"chosen {result['chosen']} -> {args.out}.md")


def markdown(r: dict) -> str:
    fmt = lambda s: f"{s['mean']:.2f} ± {s['std']:.2f}"
    L = ["# The LoRA layout on the family base, chosen on validation concepts", "",
         f"Date {r['date']}, commit `{r['commit']}`, `{r['command']}` ({r['minutes']} min, {r['machine']}, load "
         f"average {r['load_average_1min']}). {r['concepts']} validation family concepts (`{r['settings']['draws']}`), "
         f"each layout's adapters trained as the weight dataset's (rank {r['settings']['rank']}, "
         f"{r['settings']['steps']} steps, {r['settings']['per_concept']} pairs per step, lr {r['settings']['lr']}); "
         f"PSNR (dB) on each concept's test pairs, mean ± sd over concepts. The unchanged photo: "
         f"{fmt(r['identity'])}.", "",
         "| layout | all | colour | structural | over the photo | trained parameters (B, bias) | s per step (chunk) |",
         "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for spec, o in r["layouts"].items():
        cells = [fmt(o["psnr"][g]) if g in o["psnr"] else "" for g in ("all", "colour", "structural")]
        L.append(f"| `{spec}` | " + " | ".join(cells) + f" | {o['over_photo']['mean']:+.2f} | {o['params']} | "
                 f"{o['seconds_per_step']:.3f} |")
    L += ["", f"Best mean: `{r['best']}`. Chosen (the best mean, or a layout within 0.1 dB of it with fewer "
          f"parameters): **`{r['chosen']}`**.", ""]
    return "\n".join(L)


if __name__ == "__main__":
    main()
