"""Issue 15's accelerator goals that need no fine-tuning: the base's text-only output and every starting
adapter before training, on the protocol's concepts; and leave-out over the weight dataset.

Assets: a base and a weight generator (default: the ``factory pretrain family`` workspace
``bench/work/pretrain-family`` and its ``adapters/``; ``--base`` / ``--weightgen`` for others, e.g. the shipped
ones). None of the protocol's validation or test concepts is in their training (refused otherwise).

1. Starts (``--split validation`` to choose, ``--split test`` to report): for each concept of the split, on
   its test pairs (test photos, 128 px): the unchanged photo; the base with the concept's text alone; the
   base + the mean adapter, the ridge adapter (text embedding -> adapter, penalty by leave-one-out), the
   recipe ridge (the family grammar's parse of the text and its embedding -> adapter; the text-embedding ridge
   for a text the grammar does not read), the adapter of the nearest training text, the weight generator's
   one-step sample (``--seeds``), the mean of the recipe adapter and the generator's mean sample (``--init
   recipe+weightgen``), and the Text-to-LoRA hypernetwork trained through the frozen base (one per seed).
   The shuffle ablation gives each concept the next concept's text (for the adapter and the base's
   conditioning alike): a start that follows the text loses quality. The start with the best mean on
   validation is the one ``--init`` should default to (``choice`` in the validation results).
2. Leave-out (``--holdout N``): N weight-dataset concepts left out; a weight generator trained on the
   rest with the full one's settings for as many steps as it took; for each left-out concept, the PSNR on
   its test pairs of the generated adapter (mean over seeds) next to the mean, ridge, recipe and retrieved
   adapters of the rest, the hypernetworks trained on the rest (one per seed), and the concept's own adapter (the
   ceiling), each also scored by how close its edits of the test photos are to the own adapter's (PSNR against
   them: the issue's measure). The goal: generated closer to the own adapter than the mean adapter on at least
   80% of them. ``--holdout-from new`` (the
   default) draws them from the weight dataset's concepts the base never trained on, as a user's new concept
   would be; ``any`` from all of them (the base then knows most of the left-out texts already). Each row
   records whether the base trained on its concept, and the results split by it. (Proper leave-one-out
   would retrain the generator once per concept: hours each.) The candidate predictors (``CANDIDATES``: the
   text-embedding ridge with a Gaussian kernel, the mean of 8 generator samples, half-and-half blends of it
   with the ridge and the recipe ridge, and the first recipe ridge, from the (op, level) one-hot alone) are
   scored too; ``--holdout-draw validation``
   leaves out the next N concepts of the same seeded order instead, to choose among them without the test draw;
   ``test-2`` the N after those, a second reported draw with its own leave-out generator; ``--pool`` writes
   both test draws as one leave-out of 2N concepts.

Writes ``<out>/accelerators-<split>.{json,md}``; resumable (pairs, hypernetworks, the leave-out generator
are kept in ``--workspace``).

    python bench/accelerators.py --split validation
    python bench/accelerators.py --split test
    python bench/accelerators.py --split none --holdout 32   # the leave-out part alone (concepts new to the base)
    python bench/accelerators.py --split none --holdout 32 --holdout-draw validation --hyper-steps 0  # to choose
    python bench/accelerators.py --split none --holdout 32 --holdout-draw test-2   # a second reported draw
    python bench/accelerators.py --split none --holdout 32 --pool  # both test draws as one leave-out
    python bench/accelerators.py --split test --base-only    # the base's text-only output alone
    python bench/accelerators.py --quick        # smoke: tiny budgets, separate outputs
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

from base_gan.models import BaseGAN, read_training
from concepts.cards import find_card
from factory.core.atomic import atomic_write_json, atomic_write_text
from factory.core.errors import FactoryError
from factory.core.workspace import Workspace
from factory.evaluation.heldout import HeldOutPairs, text_conditioned
from factory.evaluation.metrics import quality
from factory.evaluation.protocol import DATA_SEED, PAIRS, SEEDS, SIZE, concept_split, mean_spread
from factory.lora.adapters import LoraLayout, layout_of_adapter, load_adapter
from weight_generator.baselines import (
    BASELINES,
    Ridge,
    baseline_vector,
    recipe_one_hot,
    recipe_weightgen_adapter,
    ridge_adapter,
    save_vector_adapter,
)
from weight_generator.dataset import WeightDataset
from weight_generator.hypernet import (
    HYPERNET_DIR,
    HypernetTraining,
    TextToLora,
    hypernet_adapter,
    load_hypernet,
    save_hypernet,
    train_hypernet,
)
from weight_generator.init_choice import write_init_choice
from weight_generator.sample import MEAN_SAMPLES, WeightGenerator

import accelerator_targets as T
from common import log, provenance

FAMILY = Path("bench/work/pretrain-family")
FULL = dict(split="test", base=str(FAMILY / "base/family-base"),
            weightgen=str(FAMILY / "adapters/weightgen/family-weightgen"), weights_workspace=str(FAMILY / "adapters"),
            seeds=",".join(map(str, SEEDS)), hyper_steps=2000, holdout=0, concepts="",
            workspace="bench/work/protocol", out="bench/results/accelerators")
QUICK = dict(hyper_steps=3, seeds="0", workspace="bench/work/protocol-quick",
             out="bench/results/smoke")
#: a text that names no edit and is not among the base's null texts (base_gan.train.NULL_TEXTS)
UNRELATED = "a bowl of fruit on a wooden table"
STARTS = ("identity", "unrelated text", "text only", "mean", "ridge", "recipe", "retrieval", "generated",
          "recipe+weightgen", "hypernet")
HOLDOUT_FROM = ("new", "any")
#: consecutive blocks of N in one seeded order (a new draw goes at the end, so the others keep their concepts)
HOLDOUT_DRAWS = ("test", "validation", "test-2", "validation-2")
POOLS = {"test": ("test", "test-2"), "validation": ("validation", "validation-2")}  # what --pool KIND reads
TEST_DRAWS = POOLS["test"]
PARTS = ("all", "new to the base", "in the base's training")  # the leave-out's rows: all, and apart
#: predictors tried on the validation draw of the leave-out (``candidate_vectors``)
CANDIDATES = ("ridge rbf", "generated avg", "ridge+generated", "recipe+generated", "recipe one-hot")
#: the first recipe start's kernel widths (``recipe one-hot``: its (op, level) one-hot alone)
ONE_HOT_GAMMAS = (0.0, 0.5, 1.0, 2.0, 4.0)
_ONE_HOT_FITS: dict[str, Ridge] = {}
HOLDOUT_STARTS = ("identity", "text only", "own", "mean", "ridge", "recipe", "retrieval", "generated",
                  "generated shuffled", "hypernet", *CANDIDATES)
#: Gaussian kernel widths the text-embedding ridge may pick by leave-one-out (0: linear)
EMBEDDING_GAMMAS = (0.0, 1.0, 3.0, 10.0, 30.0)
#: generator samples averaged into one adapter (an estimate of the posterior mean)
GEN_AVERAGE = MEAN_SAMPLES


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--record-choice", action="store_true",
                    help="with --split validation: write the best start into the weight generator's folder "
                         "(init_choice.json), which `factory run --init auto` then takes with this base")
    ap.add_argument("--holdout-from", choices=HOLDOUT_FROM, default="new",
                    help="--holdout's concepts: new = only weight-dataset concepts the base never trained on (a new "
                         "concept's situation); any = all of them (the draw of the first leave-out runs)")
    ap.add_argument("--holdout-draw", choices=HOLDOUT_DRAWS, default="test",
                    help="which --holdout concepts: test = the first N of the seeded order (reported); validation "
                         "= the next N, to choose a predictor on; test-2 = the N after those (reported); "
                         "validation-2 = the N after those (to choose on)")
    ap.add_argument("--pool", nargs="?", const="test", choices=tuple(POOLS), default=None,
                    help="with --split none --holdout N: read the results files of the test draws (--pool or --pool "
                         "test) or of the validation draws (--pool validation), run each first, and write them as "
                         "one leave-out over all their concepts")
    ap.add_argument("--train-first", type=int, default=None, metavar="N",
                    help="with --holdout: train the leave-out weight generator on the weight dataset's first N "
                         "adapters only (less the draw); the draw is the same as without it, so a smaller dataset "
                         "(a recipe's --adapters N grown to the full one) is compared on the same left-out concepts")
    ap.add_argument("--base-only", action="store_true",
                    help="only the unchanged photo and the base's text-only output (no weight generator needed)")
    for k, v in FULL.items():
        ap.add_argument(f"--{k.replace('_', '-')}", type=type(v), default=None)
    args = ap.parse_args()
    for k, v in FULL.items():
        if getattr(args, k) is None:
            setattr(args, k, QUICK.get(k, v) if args.quick else v)
    if args.split not in ("validation", "test", "none"):
        raise SystemExit(f"--split {args.split}: expected validation, test or none (with --holdout: that part only)")
    if args.split == "none" and not args.holdout:
        raise SystemExit("--split none measures nothing without --holdout N")
    if args.pool and args.split != "none":
        raise SystemExit("--pool reads the leave-out's draws: use it with --split none --holdout N")
    args.seed_list = [int(s) for s in args.seeds.split(",")]
    return args


def edits_of(base: BaseGAN, folder: Path | None, text: str, held: HeldOutPairs, cache: Path) -> torch.Tensor:
    """The test photos edited by the base with the adapter in ``folder`` (None: the base alone), conditioned on
    ``text``; made once per concept's pairs (kept on ``held``: the PSNR against the teacher and against the own
    adapter's edits read the same edits)."""
    made = held.__dict__.setdefault("_edits", {})
    key = (id(base), None if folder is None else str(Path(folder).resolve()), text)
    if key not in made:
        model = base.copy() if folder is None else load_adapter(base.copy(), folder).eval()
        made[key] = held.outputs(text_conditioned(model, text, cache), model)
    return made[key]


def psnr_of(base: BaseGAN, folder: Path | None, text: str, held: HeldOutPairs, cache: Path) -> float:
    """Test-pair PSNR of the base with the adapter in ``folder`` (None: the base alone), conditioned on ``text``."""
    return held.score_outputs(edits_of(base, folder, text, held, cache))["psnr"]


def to_own(base: BaseGAN, own: Path, folders: dict[str, Path | list[Path] | None], text: str, held: HeldOutPairs,
           cache: Path) -> dict[str, float]:
    """How close each start's edit is to the concept's own adapter's: the PSNR (dB) of its edits of the test photos
    against the own adapter's (the mean over a start's seeds; "identity": the unchanged photos)."""
    ref = edits_of(base, own, text, held, cache)
    close = lambda out: float(quality(out, ref, full=False)["psnr"].mean())
    out = {"identity": close(held.source)}
    for kind, f in folders.items():
        out[kind] = statistics.fmean(close(edits_of(base, g, text, held, cache)) for g in
                                     (f if isinstance(f, list) else [f]))
    return out


def hypernets(args, base: BaseGAN, dataset: WeightDataset, weights_ws: Workspace, work: Path,
              shipped: Path | None = None) -> list[TextToLora]:
    """One Text-to-LoRA hypernetwork per seed, trained through the frozen base on the weight dataset's concepts
    and kept in ``work/hypernet`` (or the one in ``shipped``, where it was trained with the seed and steps)."""
    layout = layout_of_adapter(weights_ws.lora(dataset.concepts[0]))
    nets = []
    for seed in args.seed_list:
        folder = work / "hypernet" / f"seed{seed}"
        settings = HypernetTraining(steps=args.hyper_steps, seed=seed)
        wanted = {**vars(settings), "concepts": len(dataset.concepts)}
        saved = next((f for f in (folder, shipped) if f is not None and made_with(f, wanted)), None)
        if saved is not None:  # this seed's network, trained on this weight dataset with these settings
            net, saved_layout = load_hypernet(saved)
            spec = lambda lay: (lay.groups, lay.ranks, lay.bias)
            if spec(saved_layout) == spec(layout):
                nets.append(net)
                log(f"hypernet seed {seed}: {saved}")
                continue
        t0 = time.perf_counter()
        net, hist = train_hypernet(base.model, layout, [weights_ws.data(c) for c in dataset.concepts], settings,
                                   weights_ws.text_cache)
        save_hypernet(net, layout, folder, {**vars(settings), "concepts": len(dataset.concepts), "base": str(args.base),
                                            "seconds": round(time.perf_counter() - t0, 1),
                                            "l1_first": hist[0]["l1"], "l1_last": hist[-1]["l1"]})
        log(f"hypernet seed {seed}: {args.hyper_steps} steps, L1 {hist[0]['l1']:.4f} -> {hist[-1]['l1']:.4f}")
        nets.append(net)
    return nets


def made_with(folder: Path, wanted: dict) -> bool:
    """Whether the hypernetwork saved in ``folder`` was trained with every setting in ``wanted``."""
    record = folder / "training.json"
    made = json.loads(record.read_text()) if record.is_file() else {}
    return all(made.get(k) == v for k, v in wanted.items())


def starts(args, base: BaseGAN, dataset: WeightDataset | None, gen: WeightGenerator | None, nets: list[TextToLora],
           concepts: list[str], ws: Workspace, weights_ws: Workspace) -> dict[str, dict]:
    """Every start's test-pair PSNR per concept, with its own text and with the next concept's (without a weight
    dataset: the unchanged photo and the base's text-only output)."""
    from factory.data.card_pairs import PhotoCache, TeacherCache, make_pairs

    layout = layout_of_adapter(weights_ws.lora(dataset.concepts[0])) if dataset is not None and nets else None
    teachers, photos = TeacherCache(), PhotoCache()
    texts = {c: find_card(c).instruction for c in concepts}
    other = {c: texts[concepts[(i + 1) % len(concepts)]] for i, c in enumerate(concepts)}
    cache, work = ws.text_cache, ws.root / "accelerators"
    rows = {}
    for c in concepts:
        make_pairs(ws, find_card(c), 24 if args.quick else PAIRS, 64 if args.quick else SIZE, DATA_SEED,
                   teachers=teachers, photos=photos)
        held = HeldOutPairs(ws.data(c), "test")
        r = {"instruction": texts[c], "group": concept_split().group.get(c), "test_pairs": len(held),
             "identity": held.identity(full=False)["psnr"],
             "unrelated text": psnr_of(base, None, UNRELATED, held, cache)}  # text dropout: near the photo?
        for label, text in (("", texts[c]), (" shuffled", other[c])):
            r["text only" + label] = psnr_of(base, None, text, held, cache)
            if dataset is None:
                continue
            out = work / f"{c}{label.replace(' ', '-')}"
            scores, info, _ = text_starts(base, dataset, gen, nets, layout, text, held, cache, args.seed_list, out)
            vec = recipe_weightgen_adapter(text, dataset, gen, cache_dir=cache)[0]
            blend = save_vector_adapter(vec, dataset, out / "recipe+weightgen")
            scores["recipe+weightgen"] = psnr_of(base, blend, text, held, cache)
            r |= {kind + label: v for kind, v in scores.items()}
            r |= {f"{kind}{label} info": v for kind, v in info.items()}
        rows[c] = r
        log(f"{c}: " + ", ".join(f"{s} {value(r[s]):.2f}" for s in STARTS if s in r))
    return rows


def text_starts(base: BaseGAN, dataset: WeightDataset, gen: WeightGenerator, nets: list[TextToLora],
                layout: LoraLayout | None, text: str, held: HeldOutPairs, cache: Path, seeds: list[int], out: Path,
                ) -> tuple[dict[str, float | list[float]], dict[str, dict], dict[str, Path | list[Path]]]:
    """Test-pair PSNR of every start made from ``text``: the baselines (``BASELINES``: mean, ridge, retrieval,
    recipe; one figure each), the generator's one-step samples and the hypernetworks' adapters (one per seed); what
    each baseline was made from; and the adapters' folders (written under ``out``)."""
    info, folders = {}, {}
    for kind in BASELINES:
        vec, info[kind] = baseline_vector(kind, text, dataset, cache_dir=cache)
        folders[kind] = save_vector_adapter(vec, dataset, out / kind)
    folders["generated"] = [gen.sample_to_folder(text, out / f"generated{s}", steps=1, seed=s) for s in seeds]
    if nets:
        folders["hypernet"] = [hypernet_adapter(net, base.model, layout, text, out / f"hypernet{s}", cache)
                               for s, net in zip(seeds, nets)]
    scores = {kind: [psnr_of(base, g, text, held, cache) for g in f] if isinstance(f, list) else
              psnr_of(base, f, text, held, cache) for kind, f in folders.items()}
    return scores, info, folders


def value(v: float | list[float]) -> float:
    return statistics.fmean(v) if isinstance(v, list) else v


def holdout(args, base_dir: Path, wg_dir: Path, dataset: WeightDataset, weights_ws: Workspace,
            work: Path) -> dict:
    """Leave ``--holdout`` weight-dataset concepts out of a weight generator (and of the hypernetworks) trained on
    the rest."""
    from factory.core.configs import from_dict
    from weight_generator.train import WeightGenSettings, WeightGenTrainer, is_weightgen

    base_seen = set(read_training(base_dir).get("concepts", []))
    pool = [c for c in dataset.concepts if args.holdout_from == "any" or c not in base_seen]
    first = args.holdout * HOLDOUT_DRAWS.index(args.holdout_draw)  # validation: the N after the test draw's N
    if len(pool) <= first + args.holdout:
        raise SystemExit(f"--holdout {args.holdout} --holdout-draw {args.holdout_draw}: only {len(pool)} "
                         f"weight-dataset concepts to draw from (--holdout-from {args.holdout_from})")
    g = torch.Generator().manual_seed(DATA_SEED)
    order = torch.randperm(len(pool), generator=g).tolist()
    out_names = [pool[i] for i in order[first:first + args.holdout]]
    kept = dataset.concepts[:args.train_first] if args.train_first else dataset.concepts
    rest = dataset.subset([c for c in kept if c not in set(out_names)])
    folder = work / f"holdout-{args.holdout}{holdout_suffix(args)}"
    if not is_weightgen(folder):
        rest.save(folder)
        made = json.loads((wg_dir / "training.json").read_text())
        s = from_dict(WeightGenSettings, {**made["settings"], "steps": made["steps_done"], "seconds": None},
                      "holdout weightgen")
        trainer = WeightGenTrainer(folder, rest, s, text_cache=weights_ws.text_cache)
        trainer.resume()
        log(f"leave-out weight generator: {len(rest)} adapters, {s.steps} steps (as many as {wg_dir.name})")
        trainer.train()
        trainer.save_final()
    gen = WeightGenerator.load(folder, text_cache=weights_ws.text_cache)
    base = BaseGAN.load(base_dir)
    layout = layout_of_adapter(weights_ws.lora(rest.concepts[0]))
    nets = hypernets(args, base, rest, weights_ws, folder) if args.hyper_steps else []
    cache, rows, shuffle_inputs = weights_ws.text_cache, {}, {}
    for c in out_names:
        text = dataset.instructions[dataset.index(c)]
        held = HeldOutPairs(weights_ws.data(c), "test")
        if not len(held):
            continue
        r = {"instruction": text, "in base training": c in base_seen, "identity": held.identity(full=False)["psnr"],
             "text only": psnr_of(base, None, text, held, cache),  # what the base does alone, in-family
             "own": psnr_of(base, weights_ws.lora(c), text, held, cache)}
        scores, _, folders = text_starts(base, rest, gen, nets, layout, text, held, cache, args.seed_list,
                                         folder / "starts" / c)
        r |= {kind: value(v) for kind, v in scores.items()}  # generated, hypernet: the mean over seeds
        shuffle_inputs[c] = (held, folders["generated"])
        for kind, vec in candidate_vectors(text, rest, gen, cache).items():
            folders[kind] = save_vector_adapter(vec, rest, folder / "starts" / f"{c}-{kind}")
            r[kind] = psnr_of(base, folders[kind], text, held, cache)
        r["to own"] = to_own(base, weights_ws.lora(c), {"text only": None, **folders}, text, held, cache)
        held.__dict__.pop("_edits", None)  # the pairs stay for the shuffle ablation, the edits are not needed again
        rows[c] = r
    if not rows:
        raise SystemExit(f"{weights_ws.root}: none of the {len(out_names)} left-out concepts has test pairs")
    shuffled_generated(rows, shuffle_inputs, base, cache)
    return leave_out_result(rows, {"from": args.holdout_from, "draw": args.holdout_draw, "trained_on": len(rest),
                                   "train_first": args.train_first,
                                   "steps": json.loads((folder / "training.json").read_text())["steps_done"],
                                   "hyper_steps": args.hyper_steps if nets else 0})


def shuffled_generated(rows: dict[str, dict], inputs: dict[str, tuple[HeldOutPairs, list[Path]]], base: BaseGAN,
                       cache: Path) -> None:
    """Add each row's "generated shuffled": the generated adapters (and the base's conditioning) of the next left-out
    concept's text, scored on this concept's test pairs, so the goal's text-shuffle ablation is on the leave-out."""
    names = list(rows)
    if len(names) < 2:  # no other left-out concept's text to shuffle in
        return
    for i, c in enumerate(names):
        other = names[(i + 1) % len(names)]
        held, text = inputs[c][0], rows[other]["instruction"]
        rows[c]["generated shuffled"] = statistics.fmean(psnr_of(base, g, text, held, cache) for g in inputs[other][1])


def leave_out_result(rows: dict[str, dict], settings: dict) -> dict:
    """The leave-out's results: its rows and ``settings``, each start's summary over all the rows and, when both
    kinds occur, apart for the concepts new to the base and those in its training."""
    split = {name: sel for name, seen in ((PARTS[1], False), (PARTS[2], True))
             if (sel := [r for r in rows.values() if r["in base training"] == seen])}
    parts = {"all": list(rows.values())} | (split if len(split) > 1 else {})  # apart only when both occur
    by_part = {name: leave_out_summary(sel) for name, sel in parts.items()}
    above = by_part["all"]["above_mean"]
    log(f"leave-out: above the mean adapter on {len(rows)} concepts: {above}")
    if "closer_than_mean" in by_part["all"]:
        log(f"leave-out: closer to the own adapter's edit than the mean adapter: {by_part['all']['closer_than_mean']}")
    return {"concepts": len(rows), **settings, "generated_above_mean": above["generated"],
            "share": above["generated"] / max(1, len(rows)), "ridge_above_mean": above["ridge"], "above_mean": above,
            "rows": rows, "summary": by_part["all"]["summary"], "by_part": by_part}


def pooled(args) -> dict:
    """The leave-outs of the ``--pool`` kind's draws (``POOLS``, read from their results files in ``--out``) as one:
    disjoint concepts, each scored by the generator and the starts trained without its own draw."""
    found = {}
    draws = POOLS[args.pool]
    for draw in draws:
        path = Path(args.out) / f"accelerators-holdout{holdout_suffix(args, draw)}.json"
        if not path.is_file():
            raise SystemExit(f"{path}: no results for the {draw} draw; run it first (--holdout-draw {draw})")
        found[draw] = json.loads(path.read_text())["holdout"]
    first = next(iter(found.values()))
    # with --train-first each draw leaves its own number of adapters out of the first N
    keys = ("from", "train_first", "steps", "hyper_steps") + (() if first.get("train_first") else ("trained_on",))
    differ = [k for k in keys if len({json.dumps(h.get(k)) for h in found.values()}) > 1]
    if differ:
        raise SystemExit(f"the {args.pool} draws' leave-outs differ in {', '.join(differ)}: not one "
                         "measurement to pool")
    trained = sorted({h["trained_on"] for h in found.values()})
    rows = {c: r for h in found.values() for c, r in h["rows"].items()}
    return leave_out_result(rows, {"from": first["from"], "draw": "+".join(draws),
                                   "train_first": first.get("train_first"),
                                   "trained_on": trained[0] if len(trained) == 1 else f"{trained[0]}-{trained[-1]}",
                                   **{k: first[k] for k in ("steps", "hyper_steps")}})


def candidate_vectors(text: str, dataset: WeightDataset, gen: WeightGenerator, cache: Path) -> dict[str, torch.Tensor]:
    """Starting adapters [P] for ``text`` from the candidate predictors (``CANDIDATES``; the ridge fits are the
    ones ``text_starts`` already made, cached by ``weight_generator.baselines``)."""
    rbf = ridge_adapter(text, dataset, cache_dir=cache, gammas=EMBEDDING_GAMMAS)[0]
    ridge = baseline_vector("ridge", text, dataset, cache_dir=cache)[0].to(torch.float64)
    recipe = baseline_vector("recipe", text, dataset, cache_dir=cache)[0].to(torch.float64)
    gen_avg = gen.mean_sample(text, GEN_AVERAGE)
    return {"ridge rbf": rbf, "generated avg": gen_avg,
            "ridge+generated": (ridge + gen_avg) / 2, "recipe+generated": (recipe + gen_avg) / 2,
            "recipe one-hot": one_hot_recipe(text, dataset)}


def one_hot_recipe(text: str, dataset: WeightDataset) -> torch.Tensor:
    """The first recipe start's adapter [P] for a text the grammar reads: kernel ridge from the (op, level) one-hot
    alone (``recipe_one_hot``), before ``recipe_features`` added the ops, their pairs and the text embedding."""
    key = dataset.fingerprint()
    if key not in _ONE_HOT_FITS:
        y = dataset.weights.to(torch.float64)
        _ONE_HOT_FITS[key] = Ridge.fit(torch.stack(recipe_one_hot(dataset.instructions)), y,
                                       y.std(0).clamp_min(1e-8), gammas=ONE_HOT_GAMMAS)
    return _ONE_HOT_FITS[key].predict(torch.stack(recipe_one_hot([text])))[0].to(torch.float64)


def pool_name(kind: str | None) -> str | None:
    """The draw name a pooled leave-out's files carry (``pooled`` for the test draws, as the first pools did)."""
    return None if kind is None else "pooled" if kind == "test" else f"{kind}-pooled"


def holdout_suffix(args, draw: str | None = None) -> str:
    """What the leave-out's folder and results file add for ``--holdout-from`` and ``--holdout-draw`` (or ``draw``;
    nothing for ``any`` and ``test``, the first runs' draw, so their names still hold)."""
    draw = draw or args.holdout_draw
    return ("" if args.holdout_from == "any" else f"-{args.holdout_from}") + ("" if draw == "test" else f"-{draw}")


def leave_out_summary(rows: list[dict]) -> dict:
    """Mean +- sd of each start over ``rows`` and how many of them each start from the text puts above the mean
    adapter (the base's text-only output included); and, when the rows have them, the same for the starts' PSNR
    against the own adapter's edits (``to_own``) and how often a start is closer to them than the mean adapter."""
    starts = [k for k in HOLDOUT_STARTS if k in rows[0]]
    out = {"concepts": len(rows), "summary": {k: mean_spread(r[k] for r in rows) for k in starts},
           "above_mean": {k: sum(r[k] > r["mean"] for r in rows)
                          for k in starts if k not in ("identity", "own", "mean")},
           "text_only_at_or_above_identity": sum(r["text only"] >= r["identity"] for r in rows)}
    if "generated shuffled" in starts:  # the generated adapter's goal at step 0 (means over the concepts)
        mean = lambda k: out["summary"][k]["mean"]
        out["generated_goal"] = {"minus_identity": mean("generated") - mean("identity"),
                                 "minus_retrieval": mean("generated") - mean("retrieval"),
                                 "shuffle_loss": mean("generated") - mean("generated shuffled")}
    if all("to own" in r for r in rows):
        near = [k for k in HOLDOUT_STARTS if k in rows[0]["to own"]]
        out |= {"to_own": {k: mean_spread(r["to own"][k] for r in rows) for k in near},
                "closer_than_mean": {k: sum(r["to own"][k] > r["to own"]["mean"] for r in rows)
                                     for k in near if k not in ("identity", "mean")}}
    return out


def goals(rows: dict[str, dict]) -> dict[str, dict]:
    """The issue's start goals per group (colour / structural / all)."""
    out = {}
    for group in ("colour", "structural", "all"):
        sel = [r for r in rows.values() if group == "all" or r["group"] == group]
        if not sel:
            continue
        names = [s for s in STARTS if s in sel[0]]
        out[group] = {
            "concepts": len(sel),
            "text_only_at_or_above_identity": sum(r["text only"] >= r["identity"] for r in sel) / len(sel),
            "by_start": {s: mean_spread(value(r[s]) for r in sel) for s in names},
            "by_start_shuffled": {s: mean_spread(value(r[s + " shuffled"]) for r in sel)
                                  for s in names if s + " shuffled" in sel[0]},
        }
        if "generated" in names:
            gen = [value(r["generated"]) for r in sel]
            out[group] |= {
                "generated_minus_identity": statistics.fmean(g - r["identity"] for g, r in zip(gen, sel)),
                "generated_minus_retrieval": statistics.fmean(g - r["retrieval"] for g, r in zip(gen, sel)),
                "shuffle_loss": statistics.fmean(g - value(r["generated shuffled"]) for g, r in zip(gen, sel)),
            }
    return out


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    base_dir, wg_dir = Path(args.base), Path(args.weightgen)
    for p in (base_dir, *([] if args.base_only else [wg_dir])):
        if not p.is_dir():
            raise FactoryError(f"{p}: no such folder (run `factory pretrain family` first, or pass --base/--weightgen)")
    if args.base_only and (args.holdout or args.split == "none"):
        raise SystemExit("--base-only measures the base's text-only output on a split; no --holdout, no --split none")
    split = concept_split()
    concepts = args.concepts.split(",") if args.concepts else split.of(args.split) if args.split != "none" else []
    base = BaseGAN.load(base_dir)
    dataset = None if args.base_only else WeightDataset.load(wg_dir)
    trained_on = set(dataset.concepts if dataset else []) | set(read_training(base_dir).get("concepts", []))
    split.refuse_in_training(trained_on, f"{base_dir} / {wg_dir}")
    ws, weights_ws = Workspace(Path(args.workspace)), Workspace(Path(args.weights_workspace))
    rows, g = {}, {}
    work = ws.root / "accelerators" / base_dir.name
    if args.split != "none":
        gen = None if args.base_only else WeightGenerator.load(wg_dir, text_cache=ws.text_cache)
        nets = [] if args.base_only or not args.hyper_steps else hypernets(args, base, dataset, weights_ws, work,
                                                                               wg_dir / HYPERNET_DIR)
        rows = starts(args, base, dataset, gen, nets, concepts, ws, weights_ws)
        g = goals(rows)
    result = {"split": args.split, "quick": args.quick, **provenance("accelerators.py"),
              "base": str(base_dir), "weightgen": str(wg_dir),
              "weight_dataset": len(dataset) if dataset else 0, "seeds": args.seed_list,
              "hyper_steps": args.hyper_steps, "rows": rows, "goals": g}
    if args.split == "validation" and not args.base_only:
        means = g["all"]["by_start"]
        adapters = [s for s in STARTS if s not in ("identity", "unrelated text", "text only") and s in means]
        result["choice"] = max(adapters, key=lambda s: means[s]["mean"])
        if args.record_choice:
            init = {"generated": "weightgen"}.get(result["choice"], result["choice"])
            path = write_init_choice(wg_dir, init, base.sha256, {
                "commit": result["commit"], "date": result["date"],  # the command is in the results file
                "results": f"{Path(args.out) / 'accelerators-validation.json'}",
                "validation_means": {s: round(means[s]["mean"], 3) for s in adapters}})
            log(f"recorded --init auto = {init} in {path}")
    if args.holdout:
        result["holdout"] = pooled(args) if args.pool else holdout(args, base_dir, wg_dir, dataset, weights_ws, work)
    result["minutes"] = round((time.perf_counter() - started) / 60, 1)
    out = Path(args.out)
    stem = (f"accelerators-holdout{holdout_suffix(args, pool_name(args.pool))}" if args.split == "none"
            else f"accelerators-{args.split}")
    stem += "-base" if args.base_only else ""
    atomic_write_json(out / f"{stem}.json", result)
    atomic_write_text(out / f"{stem}.md", markdown(result))
    log(f"done in {result['minutes']} min -> {out / stem}.md")


def met(ok: bool) -> str:
    return "**met**" if ok else "**missed**"


def markdown(r: dict) -> str:
    fmt = lambda m: f"{m['mean']:.2f} ± {m['std']:.2f}"
    title = ("Leave-out over the weight dataset" if r["split"] == "none"
             else f"Starts before training, {r['split']} concepts")
    L = [f"# {title}{' (QUICK smoke run)' if r['quick'] else ''}", "",
         f"Date {r['date']}, commit `{r['commit']}`, `{r['command']}` ({r['minutes']} min, {r['machine']}, load "
         f"average {r['load_average_1min']}). Base `{r['base']}`"
         + (f", weight generator `{r['weightgen']}` ({r['weight_dataset']} adapters)" if r["weight_dataset"] else
            " alone (--base-only)")
         + ". PSNR in dB on each concept's test pairs (test photos), before any training; "
         + (f"generated = one-step samples with seeds {r['seeds']}"
            + (f", hypernet = one network per seed ({r['hyper_steps']} steps); " if r["hyper_steps"] else
               " (no hypernetwork: --hyper-steps 0); ") if r["weight_dataset"] else "")
         + "mean ± sd over concepts; shuffled = the next concept's text (for the base's conditioning too).", ""]
    for group, g in r["goals"].items():
        L += [f"## {group} ({g['concepts']} concepts)", "", "| start | own text | shuffled text |",
              "| --- | ---: | ---: |"]
        for s in g["by_start"]:
            shuf = g["by_start_shuffled"].get(s)
            L.append(f"| {s} | {fmt(g['by_start'][s])} | {fmt(shuf) if shuf else ''} |")
        share = g["text_only_at_or_above_identity"]
        L += ["", f"- base text only at or above identity: {share:.0%} of concepts (goal: at least {T.BASE_SHARE:.0%}: "
              f"{met(share >= T.BASE_SHARE)})"]
        if "shuffle_loss" in g:
            L += [f"- generated minus identity: {g['generated_minus_identity']:+.2f} dB (goal: at least "
                  f"{T.OVER_PHOTO_DB:+g}: {met(g['generated_minus_identity'] >= T.OVER_PHOTO_DB)})",
                  f"- generated minus retrieval: {g['generated_minus_retrieval']:+.2f} dB (goal: at least "
                  f"{T.OVER_RETRIEVAL_DB:+g}: {met(g['generated_minus_retrieval'] >= T.OVER_RETRIEVAL_DB)})",
                  f"- generated, own text minus shuffled: {g['shuffle_loss']:+.2f} dB (goal: at least "
                  f"{T.SHUFFLE_LOSS_DB:+g}: {met(g['shuffle_loss'] >= T.SHUFFLE_LOSS_DB)})"]
        L.append("")
    if r["rows"]:
        L += ["| concept | group | " + " | ".join(STARTS) + " |", "| --- | --- |" + " ---: |" * len(STARTS)]
    for c, row in r["rows"].items():
        L.append(f"| {c} | {row['group']} | " + " | ".join(f"{value(row[s]):.2f}" if s in row else "" for s in STARTS)
                 + " |")
    if "choice" in r:
        L += ["", f"Best start on these validation concepts (mean PSNR): **{r['choice']}**."]
    if "holdout" in r:
        L += leave_out_markdown(r["holdout"], fmt)
    return "\n".join(L) + "\n"


def leave_out_markdown(h: dict, fmt) -> list[str]:
    """The leave-out section: each start's PSNR and how often it beats the mean adapter, for all the left-out
    concepts (and, when both occur, apart for those new to the base and those in its training)."""
    drawn = {"new": "drawn from the weight dataset's concepts the base never trained on",
             "any": "drawn from all the weight dataset's concepts"}[h.get("from", "any")]
    drawn += {"test": "; the first test draw", "test-2": "; the second test draw (disjoint from the first)",
              "validation": "; the validation draw (disjoint from the test draws), to choose predictors on",
              "validation-2": "; the second validation draw (disjoint from the others), to choose predictors on",
              "+".join(POOLS["validation"]): "; both validation draws pooled, to choose predictors on",
              "+".join(TEST_DRAWS): "; both test draws pooled, each scored with the generator and starts trained "
                                    "without it"}.get(h.get("draw"), "")
    parts = h.get("by_part") or {"all": {"concepts": h["concepts"], "summary": h["summary"],
                                         "above_mean": h.get("above_mean", {"ridge": h.get("ridge_above_mean"),
                                                                          "generated": h["generated_above_mean"]})}}
    parts = {k: parts[k] for k in PARTS if k in parts}  # a fixed order (the results file sorts its keys)
    choosing = "validation" in h.get("draw", "")  # a validation draw or pool: figures to choose on, not goals
    goal = lambda n: ("a draw to choose on, not the goal's figure" if choosing else
                      f"goal: at least {T.CLOSER_SHARE:.0%}: {met(n >= T.CLOSER_SHARE * h['concepts'])}")
    closer = parts["all"].get("closer_than_mean", {}).get("generated")
    L = ["", f"## Leave-out over the weight dataset ({h['concepts']} concepts left out, {drawn}; a generator "
         f"trained on the other {h['trained_on']}"
         + (f" of the dataset's first {h['train_first']}" if h.get("train_first") else "")
         + f" for {h['steps']} steps, as many as the full one)", ""]
    if closer is not None:
        L += [f"The generated adapter's edits are closer to those of the concept's own adapter than the mean "
              f"adapter's are (PSNR against the own adapter's edits of the test photos, the issue's measure) on "
              f"{closer}/{h['concepts']} ({closer / h['concepts']:.1%}; {goal(closer)}). Against the teacher's test "
              f"pairs it is above the mean adapter on {h['generated_above_mean']}/{h['concepts']} "
              f"({h['share']:.1%}; {goal(h['generated_above_mean'])}).", ""]
    else:
        L += [f"Generated above the mean adapter on {h['generated_above_mean']}/{h['concepts']} ({h['share']:.1%}; "
              f"{goal(h['generated_above_mean'])}).", ""]
    g2 = parts["all"].get("generated_goal")
    if g2:
        mark = (lambda ok: "a draw to choose on") if choosing else met
        L += [f"The generated adapter against the teacher's test pairs, mean over the concepts: "
              f"{g2['minus_identity']:+.2f} dB over the unchanged photo (goal: at least {T.OVER_PHOTO_DB:+g}: "
              f"{mark(g2['minus_identity'] >= T.OVER_PHOTO_DB)}), {g2['minus_retrieval']:+.2f} dB over retrieval "
              f"(goal: at least {T.OVER_RETRIEVAL_DB:+g}: {mark(g2['minus_retrieval'] >= T.OVER_RETRIEVAL_DB)}); with "
              f"the next left-out concept's text (generated shuffled) it changes by {-g2['shuffle_loss']:+.2f} dB "
              f"(goal: a loss of at least {T.SHUFFLE_LOSS_DB:g} dB: {mark(g2['shuffle_loss'] >= T.SHUFFLE_LOSS_DB)}).",
              ""]
    L += ["Own = the concept's own trained adapter (the ceiling); ridge, "
         + ("recipe (ridge from the family ops the text names), " if "recipe" in h["summary"] else "")
         + "retrieval (nearest text) and the hypernetwork"
         + (f" (one per seed, {h['hyper_steps']} steps, trained on the same {h['trained_on']} concepts)"
            if h.get("hyper_steps") else "") + " are the other starts from the text. Cells: mean ± sd PSNR (dB) "
         "over the concepts; *n/N* = on how many of them the start is above the mean adapter."
         + (" Candidates: ridge rbf (Gaussian kernel on the text embedding), generated avg (the mean of "
            f"{GEN_AVERAGE} one-step samples), half-and-half blends of it with ridge and with recipe"
            + (", and recipe one-hot (the first recipe start: ridge from the (op, level) one-hot alone)."
               if "recipe one-hot" in h["summary"] else ".")
            if "generated avg" in h["summary"] else ""), ""]
    L += ["| start | " + " | ".join(f"{name} ({p['concepts']})" for name, p in parts.items()) + " |",
          "| --- |" + " ---: |" * len(parts)]
    for k in (k for k in HOLDOUT_STARTS if k in h["summary"]):
        cells = []
        for p in parts.values():
            n = p["above_mean"].get(k)
            cells.append(fmt(p["summary"][k]) + ("" if n is None else f", {n}/{p['concepts']}"))
        L.append(f"| {k} | " + " | ".join(cells) + " |")
    if all("to_own" in p for p in parts.values()):
        L += ["", "### Closeness to the own adapter's edits", "",
              "PSNR (dB) of each start's edits of the test photos against the concept's own adapter's edits (identity: "
              "the unchanged photos), mean ± sd over the concepts; *n/N* = on how many of them the start is closer "
              "than the mean adapter.", "",
              "| start | " + " | ".join(f"{name} ({p['concepts']})" for name, p in parts.items()) + " |",
              "| --- |" + " ---: |" * len(parts)]
        for k in (k for k in HOLDOUT_STARTS if k in parts["all"]["to_own"]):
            cells = []
            for p in parts.values():
                n = p["closer_than_mean"].get(k)
                cells.append(fmt(p["to_own"][k]) + ("" if n is None else f", {n}/{p['concepts']}"))
            L.append(f"| {k} | " + " | ".join(cells) + " |")
    if all("text_only_at_or_above_identity" in p for p in parts.values()):
        L += ["", "Base text only at or above the unchanged photo: " + ", ".join(
            f"{name} {p['text_only_at_or_above_identity']}/{p['concepts']}" for name, p in parts.items()) + "."]
    return L


if __name__ == "__main__":
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    main()
