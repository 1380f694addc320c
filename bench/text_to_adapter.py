"""Does a starting adapter follow the text? Held-out concept-family concepts, every start before training.

The concept family (``concepts.family``) gives many concepts whose text says their edit. On the shipped
base (frozen), adapters of one fixed layout (``down1,up2,head``, rank 4, with bias; not tuned) are
trained in batches over one shared frozen lora_A (``factory weightgen family``): ``--train`` concepts of
the family's training region make the weight dataset, and ``--heldout`` concepts of its held-out region
(operation pairs and strengths never in training) are the test concepts, used for nothing else.

For each held-out concept, the quality on its test pairs (test photos) of each start, before any
training: the unchanged photo; the base with the text alone; the mean adapter; ridge regression from
the text embedding (penalty by leave-one-out on the training adapters); the adapter of the nearest
training text; the Text-to-LoRA hypernetwork (``weight_generator/hypernet.py``) trained through the
frozen base on the training concepts' pairs; and, as the ceiling, the concept's own adapter trained
the same way on its own pairs. The text-shuffle ablation gives each held-out concept another held-out
concept's text: a start that follows the text loses quality. The hypernetwork is trained with each of
``--seeds``; the other starts are deterministic given the weight dataset (trained once, seed 0).

Writes ``bench/results/text_to_adapter.{json,md}``. Resumable (pairs and adapters are kept in the
workspace).

    python bench/text_to_adapter.py            # 64 training + 8 held-out family concepts at 64 px
    python bench/text_to_adapter.py --quick    # smoke: a few concepts, a few steps, separate outputs
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

from base_gan.models import BaseGAN
from factory.core.atomic import atomic_write_json, atomic_write_text
from factory.core.workspace import Workspace
from factory.evaluation.heldout import HeldOutPairs, text_conditioned
from factory.evaluation.protocol import SEEDS, mean_spread
from factory.lora.adapters import LoraLayout, load_adapter
from factory.lora.batched import AdapterTraining
from factory.pipeline.assets import pretrained_base
from factory.pipeline.weight_dataset import family_weight_dataset
from weight_generator.baselines import baseline_vector, save_vector_adapter
from weight_generator.hypernet import HypernetTraining, TextToLora, hypernet_adapter, train_hypernet

from common import log, provenance

LAYOUT = dict(groups=["down1", "up2", "head"], ranks=4, bias=True)
FULL = dict(train=64, heldout=8, size=64, pairs=48, steps=150, chunk=32, hyper_steps=400,
            seeds=",".join(map(str, SEEDS)), workspace="bench/work/text-to-adapter", out="bench/results")
QUICK = dict(train=6, heldout=3, size=32, pairs=12, steps=3, chunk=4, hyper_steps=3, seeds="0",
             workspace="bench/work/text-to-adapter-quick", out="bench/results/smoke")
STARTS = ("identity", "text only (base)", "mean", "ridge", "retrieval", "hypernet", "own adapter (ceiling)")


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    for k, v in FULL.items():
        ap.add_argument(f"--{k.replace('_', '-')}", type=type(v), default=None)
    args = ap.parse_args()
    for k, v in (QUICK if args.quick else FULL).items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    args.seed_list = [int(s) for s in args.seeds.split(",")]
    return args


def psnr_of(base: BaseGAN, folder: Path | None, text: str, held: HeldOutPairs, cache: Path) -> float:
    """Test-pair PSNR of the base with the adapter in ``folder`` (None: the base alone), conditioned on ``text``."""
    model = base.copy() if folder is None else load_adapter(base.copy(), folder).eval()
    return held.score(text_conditioned(model, text, cache), model)["psnr"]


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    ws = Workspace(Path(args.workspace))
    base = BaseGAN.load(pretrained_base())
    layout = LoraLayout(**LAYOUT)
    settings = AdapterTraining(steps=args.steps, per_concept=4, lr=3e-3, seed=0)
    common = dict(pairs=args.pairs, seed=0, chunk=args.chunk, size=args.size, log=log)
    t0 = time.perf_counter()
    train = family_weight_dataset(ws, base, args.train, layout, settings, region="train", **common)
    held = family_weight_dataset(ws, base, args.heldout, layout, settings, region="held-out", **common)
    adapters_seconds = time.perf_counter() - t0
    groups = {c: json.loads((ws.lora(c) / "metrics.json").read_text())["recipe"] for c in held.concepts}
    test = {c: HeldOutPairs(ws.data(c), "test") for c in held.concepts}
    texts = dict(zip(held.concepts, held.instructions))
    shuffled = dict(zip(held.concepts, held.instructions[1:] + held.instructions[:1]))  # another concept's text
    cache = ws.text_cache
    rows = {c: {"instruction": texts[c], "recipe": groups[c], "test_pairs": len(test[c])} for c in held.concepts}
    work = ws.root / "starts"
    for c in held.concepts:
        r = rows[c]
        r["identity"] = test[c].identity(full=False)["psnr"]
        r["text only (base)"] = psnr_of(base, None, texts[c], test[c], cache)
        r["own adapter (ceiling)"] = psnr_of(base, ws.lora(c), texts[c], test[c], cache)
        for kind in ("mean", "ridge", "retrieval"):
            for label, text in (("", texts[c]), (" shuffled", shuffled[c])):
                vec, info = baseline_vector(kind, text, train, cache_dir=cache)
                folder = save_vector_adapter(vec, train, work / f"{c}-{kind}{label.strip()}")
                r[kind + label] = psnr_of(base, folder, texts[c], test[c], cache)
                r[f"{kind}{label} info"] = info
        log(f"{c}: identity {r['identity']:.2f}, text only {r['text only (base)']:.2f}, mean {r['mean']:.2f}, "
            f"ridge {r['ridge']:.2f}, retrieval {r['retrieval']:.2f}, own {r['own adapter (ceiling)']:.2f} dB")
    hyper_seconds = []
    for seed in args.seed_list:
        folder = ws.root / "hypernet" / f"seed{seed}"
        if (folder / "config.json").is_file():
            net = TextToLora.from_pretrained(folder)
        else:
            t0 = time.perf_counter()
            net, _ = train_hypernet(base.model, layout, [ws.data(c) for c in train.concepts],
                                    HypernetTraining(steps=args.hyper_steps, seed=seed), cache)
            hyper_seconds.append(time.perf_counter() - t0)
            net.save_pretrained(folder)
        for c in held.concepts:
            for label, text in (("", texts[c]), (" shuffled", shuffled[c])):
                folder = work / f"{c}-hypernet{seed}{label.strip()}"
                out = hypernet_adapter(net, base.model, layout, text, folder, cache)
                rows[c].setdefault("hypernet" + label, []).append(psnr_of(base, out, texts[c], test[c], cache))
        log(f"hypernet seed {seed}: " + ", ".join(f"{c} {rows[c]['hypernet'][-1]:.2f}" for c in held.concepts))
    summary = {}
    for start in (*STARTS, "mean shuffled", "ridge shuffled", "retrieval shuffled", "hypernet shuffled"):
        values = [rows[c][start] for c in held.concepts]
        per_concept = [statistics.fmean(v) if isinstance(v, list) else v for v in values]
        summary[start] = mean_spread(per_concept)
        if start.startswith("hypernet"):  # the spread over seeds of the mean over concepts
            by_seed = [statistics.fmean(rows[c][start][i] for c in held.concepts) for i in range(len(args.seed_list))]
            summary[start + " (over seeds)"] = mean_spread(by_seed)
    r = {"quick": args.quick, **provenance("text_to_adapter.py"),
         "settings": {k: getattr(args, k) for k in FULL}, "layout": LAYOUT, "adapter_training": vars(settings),
         "train_concepts": len(train), "heldout_concepts": held.concepts, "rows": rows, "summary": summary,
         "adapters_seconds": round(adapters_seconds, 1), "hypernet_seconds": [round(s, 1) for s in hyper_seconds],
         "total_minutes": round((time.perf_counter() - started) / 60, 1)}
    out = Path(args.out)
    atomic_write_json(out / "text_to_adapter.json", r)
    atomic_write_text(out / "text_to_adapter.md", markdown(r))
    log(f"done in {r['total_minutes']:.1f} min -> {out / 'text_to_adapter.md'}")


def markdown(r: dict) -> str:
    s = r["summary"]
    fmt = lambda m: f"{m['mean']:.2f} ± {m['std']:.2f}"
    L = [f"# Does the starting adapter follow the text?{' (QUICK smoke run)' if r['quick'] else ''}", "",
         f"Date {r['date']}, commit `{r['commit']}`, `{r['command']}` ({r['total_minutes']:.1f} min, {r['machine']}, "
         f"load average {r['load_average_1min']}). Weight dataset: {r['train_concepts']} concept-family adapters of "
         f"the training region; test: {len(r['heldout_concepts'])} concepts of the family's held-out region. "
         f"{r['settings']['size']} px, {r['settings']['pairs']} pairs per concept; PSNR in dB on each concept's test "
         "pairs (test photos), before any training; mean ± sd over the held-out concepts.", "",
         "| start | own text | another concept's text |", "| --- | ---: | ---: |"]
    for start in STARTS:
        shuf = s.get(start + " shuffled")
        L.append(f"| {start} | {fmt(s[start])} | {fmt(shuf) if shuf else ''} |")
    if "hypernet (over seeds)" in s:
        L += ["", f"Hypernetwork over its {s['hypernet (over seeds)']['n']} training seeds (mean over concepts "
              f"per seed): {fmt(s['hypernet (over seeds)'])} dB.", ""]
    L += ["| held-out concept | instruction | identity | text only | mean | ridge | retrieval | hypernet | own |",
          "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for c, row in r["rows"].items():
        hyper = statistics.fmean(row["hypernet"])
        L.append(f"| {c} | {row['instruction']} | {row['identity']:.2f} | {row['text only (base)']:.2f} | "
                 f"{row['mean']:.2f} | {row['ridge']:.2f} | {row['retrieval']:.2f} | {hyper:.2f} | "
                 f"{row['own adapter (ceiling)']:.2f} |")
    return "\n".join(L) + "\n"


if __name__ == "__main__":
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    main()
