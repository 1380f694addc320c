"""The benchmark table under the evaluation protocol (``factory.evaluation.protocol``), written to BENCHMARKS.md.

Every quality figure is on the protocol's test concepts (never used for a choice) and test photos
(>= 20, never used for training), as a mean with its spread over the protocol's seeds, reported for
colour and structural concepts apart. Uses the shipped base and weight generator (``factory pretrain
info``; none of the test concepts was in their training) and the plateau references of
``bench/references.py`` (run it first; their curves are committed in ``bench/results/references/``).

1. Protocol: the concept split, the photo split, seeds, evaluation cadence.
2. Equal budgets: for every test concept and seed, four arms fine-tuned for the same wall-clock budget
   with a held-out point every ``EVAL_SECONDS`` of training: our architecture from scratch, the base +
   a zero-init LoRA (E2GAN), the base + the retrieved LoRA of the nearest training text, the base + the
   generated LoRA (ours); with ``--arms ...,full``, also the base with every weight fine-tuned (no LoRA:
   does the pretrained base speed up full training?), with ``tuned`` the generated LoRA merged into the base
   and every weight fine-tuned (``--tune all``), with ``auto`` the start ``factory run`` takes. PSNR at 90 s
   and at the budget (default 90 s: the equal budget the accelerator goals are stated at), the structural
   metrics at the budget. Runs already finished in the workspace are read, not trained again, and named.
3. Time to quality: the first evaluation at or above a target, plus every cost charged to the arm
   (base and text-encoder loading, text encoding, retrieval, weight-generator loading and sampling).
   Targets: our architecture's plateau minus 0.5 dB (scratch reference) and pix2pix's plateau quality;
   a target below the unchanged photo is never used. Shared pretraining is its own line.
4. References: the plateau curves (pix2pix, pix2pix with a global residual, our architecture).
5. Sizes and editor latency at 256x256 on this CPU, next to pix2pix ResNet-9.
6. Weight generation: seconds per adapter, distance of each generated adapter to its nearest training
   adapter next to the typical distance between training adapters.

Published figures (E2GAN's 3.3x, denoised weights' 15.2x, iPhone latencies) stand in their own column:
another machine, another task, another baseline.

    python bench/run_all.py            # full: 4 test concepts x 3 seeds x 4 arms (~85 min) + sections 4-6
    python bench/run_all.py --arms scratch,generated,auto   # the arms of the accelerator goals and the start
                                                            # `factory run` takes (--init auto)
    python bench/run_all.py --quick    # smoke (a few minutes): same code, one concept, one seed, tiny budgets
    python bench/run_all.py --render   # rewrite run_all.md and BENCHMARKS.md from run_all.json (no measuring)
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

from concepts.cards import ConceptCard, find_card
from factory.core.atomic import atomic_write_json, atomic_write_png, atomic_write_text
from factory.core.errors import FactoryError
from factory.core.workspace import Workspace
from factory.evaluation.curves import check_cadence, read_curve, speedup, time_to_quality
from factory.evaluation.protocol import (
    DATA_SEED,
    EVAL_SECONDS,
    GROUPS,
    PAIRS,
    SEEDS,
    SIZE,
    check_photos,
    concept_split,
    mean_spread,
)

import accelerator_targets as T
from common import (
    arms_curve_rule,
    git_commit,
    log,
    reference_curve_rule,
    reference_order,
    reference_stem,
    stopped_before_plateau,
)
from throughput import probe, probe_of

FULL = dict(budget=90.0, eval_seconds=EVAL_SECONDS, equal_at=90.0, seeds=",".join(map(str, SEEDS)),
            concepts=None, latency_runs=30, workspace="bench/work/protocol", out="bench/results/all",
            references="bench/results/references", doc="BENCHMARKS.md")
QUICK = dict(
    budget=8.0,
    eval_seconds=2.0,
    equal_at=6.0,
    seeds="0",
    concepts="cross-process",
    latency_runs=5,
    workspace="bench/work/protocol-quick",
    out="bench/results/all-quick",
    references="bench/results/references",
    doc=None,
)
ALL_ARMS = ("scratch", "full", "zero", "retrieval", "generated", "tuned", "auto", "readout", "readout-tuned",
            "scratch-readout")
ARMS = ("scratch", "zero", "retrieval", "generated")  # the default: --arms adds "full"
LABELS = {
    "scratch": "our architecture from scratch",
    "full": "base, every weight fine-tuned (no LoRA)",
    "zero": "base + zero-init LoRA (E2GAN)",
    "retrieval": "base + retrieved LoRA (nearest text)",
    "generated": "base + generated LoRA (ours)",
    "tuned": "base + generated LoRA merged, every weight fine-tuned",
    "auto": "base + the default start (--init auto)",
    "readout": "base + generated LoRA + readout (head.conv3 solved first)",
    "readout-tuned": "base + generated LoRA + readout, every weight fine-tuned",
    "scratch-readout": "our architecture from scratch + readout (the solve without the base)",
    "pix2pix": "pix2pix ResNet-9 (reference recipe)",
    "pix2pix-residual": "pix2pix + global residual",
}
PUBLISHED = {
    "zero": "3.3x vs pix2pix (E2GAN, GPU, faces/scenes)",
    "generated": "15.2x vs pix2pix (denoised weights, GPU, faces/scenes)",
}
TARGET_BELOW_PLATEAU_DB = 0.5


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--quick", action="store_true", help="tiny budgets (a few minutes), outputs in bench/results/all-quick"
    )
    ap.add_argument("--render", action="store_true",
                    help="measure nothing: rewrite run_all.md (and --doc) from the --out folder's run_all.json (the "
                         "shared-pretraining line from the manifest in use only with --loras or if the file has none)")
    ap.add_argument("--loras", type=Path, default=None,
                    help="a family recipe's adapters folder (<workspace>/adapters/loras): times its adapter stage for "
                         "the shared-pretraining line")
    ap.add_argument("--train-pairs", type=int, default=None,
                    help="train every arm on K of the concept's training pairs (E2GAN's clustered subset, the same K "
                         "for every arm of a seed; default: all): how much teacher data each start needs")
    ap.add_argument("--family-test", type=int, default=0, metavar="N",
                    help="instead of the named test concepts: N concepts of the family's held-out region (op pairs and "
                         "levels no training concept has; none ever used for a choice), half colour, half structural: "
                         "the first of each group in `sample_concepts(200, --family-seed, 'held-out')`; no plateau "
                         "references exist for them, so only the equal-budget table")
    ap.add_argument("--family-seed", type=int, default=11,
                    help="the draw of --family-test (default 11: a draw no run had used)")
    ap.add_argument("--arms", default=",".join(ARMS),
                    help=f"comma-separated arms of {', '.join(ALL_ARMS)} (full: every weight of the base fine-tuned; "
                         "tuned: the generated start merged into the base, then every weight fine-tuned, --tune all; "
                         "auto: the start `factory run` takes, --init auto; readout, readout-tuned: generated and "
                         "tuned from the readout start, head.conv3 solved on the training pairs first, its seconds "
                         "in the budget)")
    ap.add_argument("--decay-over", choices=("steps", "budget"), default="steps",
                    help="every arm's learning-rate decay: over the steps (a 90 s run never reaches it) or over the "
                         "second half of the seconds budget (bench/results/tune_choice.md)")
    ap.add_argument("--batch", type=int, default=8,
                    help="pairs per step of every arm (8: every recorded run; bench/results/tune_choice-batch.md)")
    ap.add_argument("--no-augment", action="store_true",
                    help="every arm trains without the random flip and resized crop of its pairs (factory run's "
                         "default since bench/results/tune_choice-augment.md; every recorded run before it augments)")
    ap.add_argument("--screen", choices=("auto", "off"), default="off",
                    help="auto: every arm gets position channels when the concept's teacher draws a fixed screen "
                         "(factory run's default since bench/results/tune_choice-screen.md; every recorded run before "
                         "it trains without)")
    ap.add_argument("--screen-scale", type=float, default=1.0,
                    help="with --screen auto: also train on windows rescaled up to this factor (factory run's "
                         "--screen-scale; every recorded run trains at the pairs' size only, 1)")
    ap.add_argument("--screen-harmonics", action="store_true",
                    help="with --screen auto: position channels at the screen's second harmonics too (factory run's "
                         "default; every recorded run has the fundamentals only)")
    ap.add_argument("--window", action="store_true",
                    help="run each concept as long as its speed-up goals allow instead of --budget: the scratch "
                         "reference's time to its target / 5 and pix2pix's / 20 (goals 4b and 5 of issue 15), at least "
                         "--equal-at; a 90 s run cannot show a 5x speed-up on a concept scratch needs 30 min for")
    ap.add_argument("--ema", type=float, default=0.0,
                    help="every arm evaluated and kept as the moving average of its weights, this decay (factory "
                         "run's --ema; every recorded run before it evaluates the weights as they are, 0)")
    ap.add_argument("--colour-basis", type=int, default=0,
                    help="every arm with the colour basis of this degree (head.colour over the source pixel's colour "
                         "monomials, solved with the readout; factory run's --colour-basis; every recorded run before "
                         "it has none, 0)")
    ap.add_argument("--lens-basis", action="store_true",
                    help="every arm with the lens basis (head.lens over the photo's neighbours and radial gain planes, "
                         "solved with the readout); its scratch references must have it too")
    ap.add_argument("--output-curves", action="store_true",
                    help="every arm with output calibration (colour curves of its output, of its output and the "
                         "photo, or of the photo alone: a fine-tune's curve_kinds), fitted on the training pairs at "
                         "each evaluation, kept by the hold-out rule, their seconds charged to that evaluation; "
                         "factory run's --output-curves; every recorded run before it has none)")
    ap.add_argument("--screen-lattice", action="store_true",
                    help="with --screen auto: the screen lattice's distance planes too (factory run's "
                         "--screen-lattice; every recorded run trains without)")
    for k, v in FULL.items():
        ap.add_argument(f"--{k.replace('_', '-')}", type=type(v) if v is not None else str, default=None)
    args = ap.parse_args()
    for k, v in (QUICK if args.quick else FULL).items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    args.workspace, args.out, args.references = Path(args.workspace), Path(args.out), Path(args.references)
    args.seed_list = [int(s) for s in args.seeds.split(",")]
    args.arms = tuple(a.strip() for a in args.arms.split(","))
    if unknown := [a for a in args.arms if a not in ALL_ARMS]:
        ap.error(f"--arms: unknown {', '.join(unknown)} (expected some of {', '.join(ALL_ARMS)})")
    if not {"generated", "readout"} & set(args.arms) and not args.render:
        ap.error("--arms: include generated or readout (sections 5 and 6 export and time its editor)")
    return args


# -- inputs -------------------------------------------------------------------------------------------
def measured_concepts(args, ws: Workspace, split, m: dict) -> dict[str, str | None]:
    """The concepts measured (name -> colour/structural): the named test concepts (or ``--concepts``, test ones
    only), or with ``--family-test N`` N held-out family concepts, their cards written into the workspace."""
    from concepts.family import family_card, sample_concepts

    trained = set(m["base"]["concepts"]) | set(m["weightgen"]["concepts"])
    if not args.family_test:
        concepts = args.concepts.split(",") if args.concepts else list(split.test)
        not_test = [c for c in concepts if c not in split.test]
        if not_test and not args.quick:
            raise FactoryError(f"{', '.join(not_test)}: not test concepts (concepts/_splits.yaml); figures here are "
                               "on test concepts only")
        split.refuse_in_training(trained, "the shipped assets")
        return {c: split.group.get(c) for c in concepts}
    drawn = sample_concepts(200, args.family_seed, "held-out")
    half = args.family_test // 2
    picked = ([c for c in drawn if c.group == "colour"][: args.family_test - half]
              + [c for c in drawn if c.group == "structural"][:half])
    if seen := [c.name for c in picked if c.name in trained]:
        raise FactoryError(f"{', '.join(seen)}: in the shipped assets' training")
    return {family_card(ws, c).name: c.group for c in picked}


def shipped() -> tuple[Path, Path, dict]:
    from factory.pipeline.assets import manifest, pretrained_base, pretrained_weightgen

    m = manifest()
    if m is None or pretrained_base() is None or pretrained_weightgen() is None:
        raise FactoryError(
            "no shipped pretrained assets (factory/pretrained/); make them with `factory pretrain family --install`"
        )
    return pretrained_base(), pretrained_weightgen(), m


def cold_costs(card: ConceptCard, base_dir: str, wg_dir: str, out: dict) -> None:
    """In a fresh process: seconds to load the base, to load the text encoder and encode the text, to retrieve
    the nearest training adapter, to load the weight generator and sample, to make the ``--init auto`` start
    (what each arm pays first)."""
    import tempfile

    from base_gan.models import BaseGAN
    from factory.text.encoder import TextEncoder
    from weight_generator.baselines import retrieve_by_text
    from weight_generator.dataset import WeightDataset
    from weight_generator.sample import WeightGenerator

    instruction = card.instruction
    t0 = time.perf_counter()
    BaseGAN.load(base_dir)
    out["load_base"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    TextEncoder("minilm").tokens([instruction])
    out["text_encoding"] = time.perf_counter() - t0  # loading MiniLM and encoding the concept text
    t0 = time.perf_counter()
    retrieve_by_text(instruction, WeightDataset.load(wg_dir))
    out["retrieval"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    gen = WeightGenerator.load(wg_dir)
    gen.sample_blocks([instruction], steps=1, seed=0)
    out["weightgen_load_and_sample"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:  # a new workspace: no text embedding cached
        auto_start(card, Path(tmp), Path(base_dir), Path(wg_dir), Path(tmp) / "auto", seed=0)
    out["auto_start"] = time.perf_counter() - t0  # its own loading (dataset, generator) and solving


def measure_costs(card: ConceptCard, base_dir: Path, wg_dir: Path) -> dict[str, float]:
    with mp.get_context("spawn").Manager() as manager:
        out = manager.dict()
        proc = mp.get_context("spawn").Process(target=cold_costs, args=(card, str(base_dir), str(wg_dir), out))
        proc.start()
        proc.join()
        return {k: round(v, 3) for k, v in dict(out).items()}


def arm_costs(arm: str, costs: dict[str, float]) -> dict[str, float]:
    """The costs charged to an arm (every arm encodes its concept text; arms that start from the base load it)."""
    charged = {"text_encoding": costs["text_encoding"]}
    if arm not in ("scratch", "scratch-readout"):
        charged["load_base"] = costs["load_base"]
    if arm == "retrieval":
        charged["retrieval"] = costs["retrieval"]
    if arm in ("generated", "tuned", "readout", "readout-tuned"):  # the readout's own seconds are in the budget
        charged["weightgen_load_and_sample"] = costs["weightgen_load_and_sample"]
    if arm == "auto":
        charged["auto_start"] = costs["auto_start"]
    return charged


# -- 2. the arms ---------------------------------------------------------------------------------------
def auto_start(card: ConceptCard, workspace: Path, base_dir: Path, wg_dir: Path, out: Path, seed: int) -> Path:
    """The start ``factory run`` takes for ``card`` in ``workspace`` with ``--init auto`` (``run_stages.auto_init``);
    ``init.json`` in ``out`` names it."""
    from base_gan.models import BaseGAN
    from factory.pipeline.assets import find_weightgen
    from factory.pipeline.run_stages import auto_init
    from factory.pipeline.steps import initial_adapter

    ws = Workspace(workspace)
    if find_weightgen(ws).resolve() != wg_dir.resolve():
        raise FactoryError(f"{workspace}: `factory run` there would take the weight generator {find_weightgen(ws)}, "
                           f"not {wg_dir}")
    kind, _ = auto_init(wg_dir, BaseGAN.load(base_dir).sha256, card)
    return initial_adapter(kind, card.instruction, out, workspace=ws, base=base_dir, seed=seed)


def init_adapters(ws: Workspace, wg_dir: Path, concept: str, seed: int, run: Path, base_dir: Path,
                  auto: bool) -> dict[str, Path]:
    from weight_generator.baselines import retrieve_by_text, save_vector_adapter
    from weight_generator.dataset import WeightDataset
    from weight_generator.sample import WeightGenerator

    card = find_card(concept, ws)
    text = card.instruction
    dataset = WeightDataset.load(wg_dir)
    generated = run / "init-generated"
    if not (generated / "adapter_config.json").is_file():
        WeightGenerator.load(wg_dir, text_cache=ws.text_cache).sample_to_folder(text, generated, steps=1, seed=seed)
    i, sim = retrieve_by_text(text, dataset, cache_dir=ws.text_cache)
    retrieved = run / "init-retrieval"
    if not (retrieved / "adapter_config.json").is_file():
        save_vector_adapter(dataset.weights[i], dataset, retrieved)
        (retrieved / "retrieved.json").write_text(json.dumps({"concept": dataset.concepts[i], "similarity": sim}))
    inits = {"generated": generated, "retrieval": retrieved}
    if auto:
        inits["auto"] = run / "init-auto"
        if not (inits["auto"] / "adapter_config.json").is_file():
            auto_start(card, ws.root, base_dir, wg_dir, inits["auto"], seed)
    return inits


def window_budget(args, concept: str, costs: dict[str, float], identity: float) -> float:
    """With ``--window``, the seconds a concept's runs need for its speed-up goals to be measurable: the longest
    time an arm may take and still be 5x sooner than scratch's reference and 20x sooner than pix2pix's, rounded up
    to the evaluation cadence (at least ``--equal-at``); otherwise ``--budget``."""
    if not args.window:
        return args.budget
    allowed = [args.equal_at]
    factors = {"scratch plateau - 0.5 dB": T.SCRATCH_SPEEDUP, "pix2pix plateau": T.PIX2PIX_SPEEDUP}
    for name, (refs, target, ref_costs) in speedup_targets(args, concept, costs).items():
        t = reference_time(refs, target, ref_costs, identity)
        if t["status"] == "reached":
            allowed.append(math.ceil(t["seconds"] / factors[name] / args.eval_seconds) * args.eval_seconds)
    return float(max(allowed))


def run_arm(args, ws: Workspace, base, concept: str, seed: int, arm: str,
            inits: dict[str, Path], budget: float) -> tuple[dict, bool]:
    """(the metrics, read from an earlier run?) of one arm's fine-tune for one concept and seed."""
    from factory.lora.adapters import layout_of_adapter
    from factory.lora.finetune import finetune
    from factory.lora.options import FinetuneOptions

    out = args.workspace / "runs" / concept / f"seed{seed}" / arm
    layout = layout_of_adapter(inits["generated"])
    common = dict(
        steps=10**6, seconds=budget, eval_seconds=args.eval_seconds, batch=args.batch, seed=seed,
        checkpoint_every=10**6, pairs=args.train_pairs, decay_over=args.decay_over, augment=not args.no_augment,
        screen=args.screen,
        screen_scale=args.screen_scale, screen_harmonics=args.screen_harmonics, screen_lattice=args.screen_lattice,
        readout=arm in ("readout", "readout-tuned", "scratch-readout"),  # every other arm as recorded, without it
        ema=args.ema, colour_basis=args.colour_basis, lens_basis=args.lens_basis, output_curves=args.output_curves,
    )
    if arm in ("scratch", "full", "scratch-readout"):
        opts = FinetuneOptions(init=arm.removesuffix("-readout"), **common)
    elif arm == "zero":
        opts = FinetuneOptions(
            init="base", layers=",".join(layout.groups), rank=layout.max_rank, lora_bias=layout.bias, **common
        )
    elif arm in ("tuned", "readout-tuned"):
        opts = FinetuneOptions(init=str(inits["generated"]), tune="all", **common)
    elif arm == "readout":
        opts = FinetuneOptions(init=str(inits["generated"]), **common)
    else:
        opts = FinetuneOptions(init=str(inits[arm]), **common)
    if (done := finished_run(out, opts)) is not None:
        return done, True
    log(f"{concept} seed {seed}: {LABELS[arm]} ({budget:.0f} s)")
    return finetune(ws, concept, base, opts, out_dir=out, restart=True, quiet=True, log=lambda m: None), False


#: options that change how a run is evaluated or saved, not what it trains
NOT_TRAINING = {"eval_every", "eval_seconds", "checkpoint_every"}


def finished_run(out: Path, opts) -> dict | None:
    """The metrics of a run finished in ``out`` with the same training options (defaults of its time filled in),
    or None: a run made under another default is trained again, not reused."""
    from factory.core.configs import to_dict
    from factory.lora.options import ADDED_LATER

    path = out / "metrics.json"
    if not path.is_file():
        return None
    metrics = json.loads(path.read_text())
    before = {**ADDED_LATER, **metrics["options"]}
    now = json.loads(json.dumps(to_dict(opts)))  # as metrics.json holds it (tuples as lists)
    for k in opts.unused():  # e.g. the kinds of curves without the curves
        now.pop(k, None)
    return metrics if all(before.get(k) == v for k, v in now.items() if k not in NOT_TRAINING) else None


def curve_of(args, concept: str, seed: int, arm: str) -> list[dict]:
    folder = args.workspace / "runs" / concept / f"seed{seed}" / arm
    return read_curve(
        (folder / "scratch" if arm == "scratch" and (folder / "scratch").is_dir() else folder) / "curve.csv"
    )


def psnr_at(curve: list[dict], seconds: float) -> float:
    """The held-out PSNR of the last evaluation at or before ``seconds`` of training."""
    return [r["psnr"] for r in curve if r["seconds"] <= seconds + 1e-6][-1]


# -- 3. time to quality --------------------------------------------------------------------------------
def references_of(args, arch: str, concept: str) -> list[dict]:
    """Every seed of the reference recorded for ``concept`` (``common.reference_stem``: seed 0's file and any other
    seed's beside it; [] without one), each checked by ``checked_reference``."""
    paths = [args.references / f"{reference_stem(arch, concept)}.json",
             *sorted(args.references.glob(f"{reference_stem(arch, concept)}-seed*.json"))]
    refs = [checked_reference(args, arch, p) for p in paths if p.is_file()]
    seeds = [r.get("seed", 0) for r in refs]
    if len(set(seeds)) != len(seeds) or any(r.get("concept", concept) != concept for r in refs):
        raise FactoryError(f"{args.references}: the {arch} references of {concept} are not one concept's distinct "
                           f"seeds ({seeds})")
    return refs


def checked_reference(args, arch: str, path: Path) -> dict:
    """The reference run in ``path``; a scratch reference must have been trained with the arms' output curves
    (none, or the same rule: kinds and folds), else its target is not the arms' to reach, and under curves must have
    stopped on its student's plateau too (``common.stopped_before_plateau``)."""
    ref = json.loads(path.read_text())
    if arch == "scratch":
        arms = arms_curve_rule(getattr(args, "output_curves", False))
        if (own := reference_curve_rule(ref.get("settings", {}))) != arms:
            raise FactoryError(f"{path}: this scratch reference was trained with output curves {own or 'off'}, the "
                               f"arms run with {arms or 'off'}: pass --references of matching ones (train them with "
                               "bench/references.py" + (" --output-curves)" if arms else ")"))
        generator = ref.get("settings", {}).get("generator")
        lens = isinstance(generator, dict) and bool(generator.get("lens_basis"))
        if lens != bool(getattr(args, "lens_basis", False)):
            raise FactoryError(f"{path}: this scratch reference was trained {'with' if lens else 'without'} the lens "
                               f"basis, the arms run {'with' if args.lens_basis else 'without'} it: its architecture "
                               "is not theirs (bench/references.py --lens-basis trains one with it)")
        if stopped_before_plateau(ref, arms is not None):
            raise FactoryError(f"{path}: this scratch reference stopped on its calibrated curve alone while its "
                               "student still climbed, so its target is too low: train it on with "
                               "bench/references.py --output-curves (it resumes from its checkpoint)")
    return ref


def speedup_targets(args, concept: str, costs: dict[str, float]) -> dict[str, tuple[list[dict], float, dict]]:
    """{target name: (its reference runs, one per seed; the target PSNR; the costs charged to the reference)} for
    the references recorded for ``concept``: scratch's plateau - 0.5 dB (charged its text encoding) and pix2pix's
    plateau, each plateau the mean of the seeds' best PSNR."""
    targets = {}
    if scratch := references_of(args, "scratch", concept):
        targets["scratch plateau - 0.5 dB"] = (scratch, best_of(scratch) - TARGET_BELOW_PLATEAU_DB,
                                               {"text_encoding": costs["text_encoding"]})
    if p2p := references_of(args, "pix2pix", concept):
        targets["pix2pix plateau"] = (p2p, best_of(p2p), {})
    return targets


def best_of(refs: list[dict]) -> float:
    """A reference's plateau quality: the mean over its seeds of each seed's best held-out PSNR."""
    return statistics.fmean(r["best_psnr"] for r in refs)


def reference_time(refs: list[dict], target: float, costs: dict[str, float], identity: float) -> dict:
    """The references' time to ``target`` (``time_to_quality`` of each seed's curve): the mean over the seeds of
    each seed's time, its spread and every seed's beside it; not claimed when a seed never reaches the target (the
    first such seed's status, "not reached" or "target below identity", is the reference's)."""
    each = [time_to_quality(r["curve"], target, costs, identity) for r in refs]
    pooled = next((t for t in each if t["status"] != "reached"), None)
    if pooled is None:
        pooled = {**each[0], "seconds": statistics.fmean(t["seconds"] for t in each),
                  "training_seconds": statistics.fmean(t["training_seconds"] for t in each)}
        pooled["seconds_sd"] = statistics.stdev(t["seconds"] for t in each) if len(each) > 1 else 0.0
        if len(each) > 1:
            pooled.pop("step")  # one seed's step is no mean's
    return {**pooled, "seeds": [r.get("seed", 0) for r in refs], "per_seed": each}


def time_rows(args, concept: str, costs: dict[str, float], identity: float) -> dict:
    """Per target (scratch plateau - 0.5 dB, pix2pix's plateau quality): each arm's time per seed and its
    speed-up over the reference's own time to that target."""
    rows: dict = {}
    for name, (refs, target, ref_costs) in speedup_targets(args, concept, costs).items():
        ref_time = reference_time(refs, target, ref_costs, identity)
        per_arm = {}
        for arm in args.arms:
            times = [
                time_to_quality(curve_of(args, concept, s, arm), target, arm_costs(arm, costs), identity)
                for s in args.seed_list
            ]
            speeds = [speedup(ref_time, t) for t in times]
            per_arm[arm] = {"times": times, "speedups": speeds, "reached": sum(t["status"] == "reached" for t in times)}
        rows[name] = {"target_psnr": target, "reference": refs[0]["arch"], "reference_time": ref_time,
                      "reference_best_psnr": mean_spread(r["best_psnr"] for r in refs), "arms": per_arm}
    return rows


# -- 5 + 6. sizes, latency, weight generation ----------------------------------------------------------
def export_and_time(args, ws: Workspace, base, concept: str) -> dict:
    from base_gan.complexity import count_params
    from base_gan.pix2pix import build_pix2pix
    from factory.export.editor import ExportRequest, export_editor, pix2pix_reference
    from factory.runtime.latency import benchmark

    arm = "generated" if "generated" in args.arms else "readout"
    adapter = args.workspace / "runs" / concept / f"seed{args.seed_list[0]}" / arm
    out = ws.editor(concept)
    if not (out / "card.json").is_file():
        export_editor(
            ExportRequest(
                concept=concept,
                base=base,
                adapter_dir=adapter,
                adapter_note="generated + tuned" if arm == "generated" else "generated + readout + tuned",
                instruction=find_card(concept, ws).instruction,
                data_dir=ws.data(concept),
                out_dir=out,
                size=256,
                int8=True,
                text_cache=ws.text_cache,
                full_size=False,  # sizes and latency at 256 px only (full-size photos: bench/fullsize.py)
            ),
            log=lambda m: None,
        )
    card = json.loads((out / "card.json").read_text())
    # latency does not depend on weights or calibration; the quick smoke calibrates on 2 images to save time
    p2p = pix2pix_reference(args.workspace / "pix2pix-latency", 256, calibration_images=2 if args.quick else 16)
    models = {
        "editor_fp32": out / "editor.onnx",
        "editor_int8": out / "editor.int8.onnx",
        "pix2pix_fp32": p2p["fp32"],
        "pix2pix_int8": p2p["int8"],
    }
    timings = benchmark(models, 256, threads=None, runs=args.latency_runs, warmup=3)
    metrics = json.loads((adapter / "metrics.json").read_text())
    return {
        "latency_ms_256": {k: round(v["per_image_ms"], 2) for k, v in timings.items()},
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "params": {
            "generator": count_params(base.model),
            "pix2pix": count_params(build_pix2pix()),
            "adapter": metrics["adapter_params"],
        },
        "bytes": {
            "adapter_model.safetensors": (adapter / "adapter_model.safetensors").stat().st_size,
            **card["files"],
            "pix2pix.onnx": p2p["fp32"].stat().st_size,
            "pix2pix.int8.onnx": p2p["int8"].stat().st_size,
        },
        "int8_vs_fp32_db": card["checks"]["quality"]["int8_vs_fp32"]["mean_db"],
    }


def weight_generation(args, ws: Workspace, wg_dir: Path, concepts: list[str]) -> dict:
    from weight_generator.baselines import distance_table
    from weight_generator.dataset import WeightDataset
    from weight_generator.sample import WeightGenerator
    from weight_generator.tokenize import WeightTokenizer, flatten, read_adapter

    gen = WeightGenerator.load(wg_dir, text_cache=ws.text_cache)
    dataset = WeightDataset.load(wg_dir)
    texts = [find_card(c, ws).instruction for c in concepts]
    gen.encode_texts(texts)
    gen.sample_blocks(texts[:1], steps=1, seed=0)
    times = []
    for rep in range(3):
        for i, t in enumerate(texts):
            t0 = time.perf_counter()
            gen.sample_blocks([t], steps=1, seed=rep * 100 + i)
            times.append(time.perf_counter() - t0)
    cands = {}
    for c in concepts:
        tensors, _ = read_adapter(args.workspace / "runs" / c / f"seed{args.seed_list[0]}" / "init-generated")
        cands[c] = flatten(tensors, dataset.layout).to(torch.float32)
    table = distance_table(cands, dataset, WeightTokenizer.load(wg_dir).scale_vector())
    return {
        "seconds_per_adapter": round(statistics.median(times), 4),
        "runs": len(times),
        "threads": torch.get_num_threads(),
        "typical": table["typical"],
        "rows": table["rows"],
    }


def adapter_stage_seconds(loras: Path) -> tuple[float, str]:
    """The family recipe's adapter stage (it has step budgets, not a time budget): its chunks' median
    wall-clock, from the adapters' ``metrics.json`` write times (a chunk writes its adapters together),
    times the number of chunks, so a resumed or shared run's gaps are not charged."""
    stamps = sorted(p.stat().st_mtime for p in loras.glob("*/metrics.json"))
    ends, last = [], None
    for t in stamps:
        if last is not None and t - last > 5:
            ends.append(last)
        last = t
    ends.append(last)
    gaps = [b - a for a, b in itertools.pairwise(ends)]
    if not gaps:
        return 0.0, f"not timed: {len(stamps)} adapters in one chunk"
    median = statistics.median(gaps)
    return median * len(ends), f"{len(ends)} chunks x {median:.0f} s, the median chunk (adapters' write times)"


def shared_pretraining(m: dict, served: int, loras: Path | None = None) -> dict:
    """The recipe's budgets of the shipped assets (base, training adapters, weight generator), in all and per
    concept when shared by ``served`` concepts. A family recipe's adapter stage is timed from ``loras``
    (its adapters' folder) when given, else left out and said so."""
    import re

    recipe = m.get("recipe_now") or m["recipe"]

    def arg(name: str, default: float) -> float:
        found = re.search(rf"--{name} ([0-9.]+)", recipe)
        return float(found.group(1)) if found else default

    base = arg("base-minutes", 18) * 60
    source = "the recipe's wall-clock budgets (recorded in the manifest), not a timing"
    if "pretrain family" in recipe:
        adapters, how = adapter_stage_seconds(loras) if loras else (0.0, "not timed: pass --loras")
        source += f"; the adapter stage: {how}"
    else:
        adapters = arg("train-concepts", 30) * arg("lora-seconds", 40)
    wg = arg("weightgen-minutes", arg("wg-minutes", 4)) * 60
    total = base + adapters + wg
    return {
        "base_seconds": base,
        "adapters_seconds": adapters,
        "weightgen_seconds": wg,
        "total_seconds": total,
        "served": served,
        "per_concept_seconds": total / served,
        "per_concept_at_100": total / 100,
        "source": source,
    }


def assets_of(m: dict) -> dict:
    """Which pretrained assets the LoRA arms start from (the shipped ones or ``$FACTORY_PRETRAINED``'s)."""
    from factory.pipeline.assets import PRETRAINED_DIR, pretrained_dir

    folder = pretrained_dir()
    return {"shipped": folder is not None and folder.resolve() == PRETRAINED_DIR.resolve(),
            "recipe": m.get("recipe_now") or m["recipe"], "total_bytes": m.get("total_bytes")}


# -- the table -------------------------------------------------------------------------------------------
def fmt(s: dict, digits: int = 2) -> str:
    return f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f}"


#: the speed-up targets, in the order the tables list them
TARGETS = ("scratch plateau - 0.5 dB", "pix2pix plateau")


def target_lines(r: dict) -> list[str]:
    """Section 3's table of each concept's targets: the reference's seeds, their best PSNR (the plateau: their mean)
    and the reference's time to the target (the mean of its seeds' times)."""
    L = ["| concept | target | reference seeds | reference best PSNR | target PSNR | reference time s |",
         "| --- | --- | --- | ---: | ---: | ---: |"]
    for c in r["concepts"]:
        for name in TARGETS:  # in this order (the results file keeps its keys sorted)
            if name not in c["time"]:
                continue
            t = c["time"][name]
            rt, best = t["reference_time"], t.get("reference_best_psnr")
            when = (f"{rt['seconds']:.0f} ± {rt.get('seconds_sd', 0.0):.0f}" if rt["status"] == "reached"
                    else rt["status"])
            L.append(f"| {c['concept']} | {name} | {', '.join(map(str, rt.get('seeds', [0])))} | "
                     f"{fmt(best) if best else ''} | {t['target_psnr']:.2f} | {when} |")
    return L + [""] if len(L) > 2 else []


def arms_of(r: dict) -> list[str]:
    """The arms a results file measured (older files: the four default arms)."""
    first = r["concepts"][0]["seeds"][0]
    return [a for a in ALL_ARMS if a in first]


def summarize(r: dict) -> dict:
    """Means ± spread over seeds, per group and per concept, of the equal-budget figures and the speed-ups."""
    split = concept_split()
    out: dict = {"equal": {}, "time": {}}
    for group in (*GROUPS, "all"):
        rows = [c for c in r["concepts"] if group == "all" or c.get("group", split.group.get(c["concept"])) == group]
        if not rows:
            continue
        eq = {}
        for arm in arms_of(r):
            cell = {}
            for key in ("step0_psnr", "psnr_at_equal", "psnr_final", "haarpsi", "fsim", "gmsd"):
                vals = [s[arm][key] for c in rows for s in c["seeds"]]
                cell[key] = mean_spread(vals)
            cell["learned"] = (
                f"{sum(s[arm]['learned'] for c in rows for s in c['seeds'])}/{sum(len(c['seeds']) for c in rows)}"
            )
            eq[arm] = cell
        eq["identity"] = {k: mean_spread([c["identity"][k] for c in rows]) for k in ("psnr", "haarpsi", "fsim", "gmsd")}
        out["equal"][group] = eq
        times: dict = {}
        for target in TARGETS:
            with_t = [c for c in rows if target in c["time"]]
            unused = [c for c in with_t if c["time"][target]["reference_time"]["status"] != "reached"]
            with_t = [c for c in with_t if c not in unused]
            if unused:  # no reference time to divide by: said instead of a ratio, never counted as "not reached"
                times[f"{target}: not used"] = {"not_used": [
                    {"concept": c["concept"], "why": unused_reason(c["time"][target])} for c in unused]}
            if not with_t:
                continue
            per_arm = {}
            for arm in arms_of(r):
                speeds = [s for c in with_t for s in c["time"][target]["arms"][arm]["speedups"]]
                numeric = [s for s in speeds if isinstance(s, float)]
                per_arm[arm] = {
                    "reached": f"{len(numeric)}/{len(speeds)}",
                    "speedup": mean_spread(numeric) if numeric else None,
                    "median": statistics.median(numeric) if numeric else None,
                }
            times[target] = {"concepts": [c["concept"] for c in with_t], "arms": per_arm}
        out["time"][group] = times
    return out


def unused_reason(rows: dict) -> str:
    """Why a concept's target gives no speed-up: the target under the unchanged photo, or a seed of the reference
    that never reaches it (the pooled time is then not claimed)."""
    rt, target = rows["reference_time"], rows["target_psnr"]
    if rt["status"] == "target below identity":
        return f"the reference's {target:.2f} dB is below the unchanged photo's {rt['identity']:.2f} dB"
    missing = [seed for seed, t in zip(rt.get("seeds", [0]), rt.get("per_seed", [rt])) if t["status"] != "reached"]
    return (f"the reference's seed {', '.join(map(str, missing))} never reaches its {target:.2f} dB: "
            "no reference time is claimed")


def reused_line(r: dict) -> str:
    """The runs this run found finished in its workspace and read instead of training again (by arm)."""
    if not r.get("reused_runs"):
        return ""
    arms: dict[str, int] = {}
    for run in r["reused_runs"]:
        arms[run.rsplit("/", 1)[1]] = arms.get(run.rsplit("/", 1)[1], 0) + 1
    return (" Runs read from an earlier run in this workspace (same pairs, seeds and budget; not trained again): "
            + ", ".join(f"{LABELS[a]} ({n})" for a, n in arms.items()) + ".")


def markdown(r: dict) -> str:
    q, s, split = r["quick"], r["summary"], r["split"]
    times = [r["equal_at"]] if r["equal_at"] == r["budget"] else [r["equal_at"], r["budget"]]
    window = r["budget"] == "window"  # each concept its own budget (--window)
    costs = ", ".join(f"{k} {v:.2f} s" for k, v in sorted(r["costs_example"].items()))  # as the JSON file keeps it
    budgets = " and ".join(f"{t:g} s" if t != "window" else "each concept's speed-up window" for t in times)
    a, at = r.get("assets"), r["commit"].split("+")[0]
    assets = (f"base and weight generator shipped at commit `{at}` (`factory pretrain info` there)" if a is None else
              f"base and weight generator shipped at commit `{at}` (made by `{a['recipe']}`)" if a["shipped"] else
              f"base and weight generator of `{a['recipe']}` (not the shipped assets; its settings fixed beforehand)")
    L = [
        f"# editfactory benchmarks{' (QUICK smoke run: budgets too small to mean anything)' if q else ''}",
        "",
        f"Machine: {r['machine']}. Date: {r['date']}. Commit: `{r['commit']}`. Command: `{r['command']}` "
        f"({r['total_minutes']:.1f} min). Every figure below is in `{r['results_file']}`.",
        "",
        "## 1. Protocol",
        "",
        "Concepts (`concepts/_splits.yaml`): **test** concepts are reported here and used for nothing else; every "
        "choice (learning rates, layouts, variants, probes) was made on **validation** concepts; the "
        f"{assets} were trained on **train** concepts only.",
        "",
        "| split | colour | structural |",
        "| --- | --- | --- |",
    ]
    for name in ("test", "validation"):
        L.append(f"| {name} | {', '.join(split[name]['colour'])} | {', '.join(split[name]['structural'])} |")
    if fam := r.get("family"):
        rows = {c["concept"]: c for c in r["concepts"]}
        L += ["", f"Measured here instead of the named test concepts: {len(fam['concepts'])} concepts of the family's "
              f"held-out region (op pairs and levels no training concept has; `sample_concepts(200, {fam['seed']}, "
              "'held-out')`, the first of each group), never used for a choice:", ""]
        L += [f"- `{c}` ({g}): \"{rows[c]['instruction']}\"" for c, g in fam["concepts"].items()]
    L += [
        "",
        f"Photos: {r['photos']['test']} test photos never used for training ({', '.join(r['photos']['test_ids'])}); "
        f"{r['photos']['train']} train photos; near-duplicates (the stereo pair) on one side. "
        f"{r['pairs']} pairs per concept at {r['size']} px, the same pairs for every arm and seed"
        + (f"; every arm trains on {r['train_pairs']} of the training pairs (clustered on the base encoder's "
           "features, the same for every arm of a seed)." if r.get("train_pairs") else "."),
        "",
        f"Seeds: {', '.join(map(str, r['seeds']))}; every cell is the mean ± standard deviation over seeds (and "
        f"concepts for a group). Every arm is evaluated every {r['eval_seconds']:g} s of training (evaluation time "
        "excluded) on all test pairs." + (" Every arm's learning rate decays linearly to 0 over the second half of "
                                           "its seconds budget (`--decay-over budget`)."
                                           if r.get("decay_over") == "budget" else "")
        + (f" Every arm trains on {r['batch']} pairs per step (`--batch`; 8 elsewhere)." if r.get("batch", 8) != 8
           else "")
        + (" Every arm trains without the random flip and resized crop of its pairs (`--no-augment`)."
           if r.get("augment") is False else "")
        + (" Every arm gets position channels at the waves of a fixed screen in the concept's pairs, when there is "
           "one (`--screen auto`)." if r.get("screen") == "auto" else "")
        + (" Every arm's editor ends with its output curves where the hold-out rule keeps them (`--output-curves`): "
           "at each evaluation colour curves are fitted from its output (or its output and the photo, or the photo: "
           "the kinds of the fine-tunes' `curve_kinds`; the first colour run, `all-colour-curves`, had the output's "
           "only, the runs before `curve_kinds` the first two) on "
           "the training pairs to their targets, "
           "and the seconds that takes (the student over the training pairs and the fit) are added to that "
           "evaluation's time. The rule scores each kind "
           + (f"on {r['curve_rule'].partition('/')[2]} quarters of the training photos held out in turn."
              if "/" in r.get("curve_rule", "") else "on one held-out quarter of the training photos.")
           if r.get("output_curves") else "")
        + (" Each concept's runs last as long as its speed-up goals allow (`--window`: the scratch reference's time "
           "to its target / 5 and pix2pix's / 20, at least the equal budget): "
           + ", ".join(f"{c['concept']} {c['budget']:g} s" for c in r["concepts"]) + "." if window else "")
        + reused_line(r),
        "",
        f"## 2. Quality at equal budgets ({budgets} of training)",
        "",
        "PSNR in dB on the test pairs; *at 0 s* is the start before any training (the base with the starting "
        "adapter; for scratch, random weights). HaarPSI, FSIM, GMSD at the end of the budget: HaarPSI and FSIM "
        "higher is better, GMSD lower is better. *Learned* = beats the unchanged photo on PSNR and on every "
        "structural metric.",
        "",
    ]
    for group, eq in s["equal"].items():
        at = [f"PSNR at {t:g} s" if t != "window" else "PSNR at the window's end" for t in times]
        L += [
            f"**{group}** concepts",
            "",
            f"| start | PSNR at 0 s | {' | '.join(at)} | HaarPSI | FSIM | GMSD | learned |",
            "| --- | ---: | " + "---: | " * len(at) + "---: | ---: | ---: | ---: |",
        ]
        ident = eq["identity"]
        same = " | ".join([fmt(ident["psnr"])] * (len(at) + 1))
        L.append(
            f"| unchanged photo (identity) | {same} | {fmt(ident['haarpsi'], 3)} "
            f"| {fmt(ident['fsim'], 3)} | {fmt(ident['gmsd'], 3)} | |"
        )
        for arm in arms_of(r):
            c = eq[arm]
            cells = " | ".join(fmt(c[k]) for k in (["psnr_at_equal", "psnr_final"][: len(at)]))
            L.append(
                f"| {LABELS[arm]} | {fmt(c['step0_psnr'])} | {cells} | {fmt(c['haarpsi'], 3)} | "
                f"{fmt(c['fsim'], 3)} | {fmt(c['gmsd'], 3)} | {c['learned']} |"
            )
        L.append("")
    L += [
        "## 3. Time to quality",
        "",
        "Time = the first evaluation at or above the target, plus every cost charged to the arm "
        f"(per concept: {costs}). Speed-up = the "
        "reference's own time to the target / the arm's (same cadence, same costs rule), per seed. Target *scratch "
        f"plateau - {TARGET_BELOW_PLATEAU_DB} dB*: our architecture trained from scratch to its plateau; target "
        "*pix2pix plateau*: pix2pix ResNet-9's plateau quality. A target below the unchanged photo, or one a seed of "
        "its reference never reaches, is not used.",
        "",
        *target_lines(r),
    ]
    for group, times in s["time"].items():
        for target, t in times.items():
            if "not_used" in t:
                L += [f"**{group}**, target {target.removesuffix(': not used')}: not used for "
                      + "; ".join(f"{b['concept']} ({b['why']})" for b in t["not_used"]), ""]
                continue
            L += [
                f"**{group}**, target {target} ({', '.join(t['concepts'])})",
                "",
                "| start | reached | speed-up (mean ± sd) | median | published (another machine, task, baseline) |",
                "| --- | ---: | ---: | ---: | --- |",
            ]
            for arm in arms_of(r):
                a = t["arms"][arm]
                sp = f"{fmt(a['speedup'], 1)}x" if a["speedup"] else "not reached"
                med = f"{a['median']:.1f}x" if a["median"] else ""
                L.append(f"| {LABELS[arm]} | {a['reached']} | {sp} | {med} | {PUBLISHED.get(arm, '')} |")
            L.append("")
    if not any(s["time"].values()):
        L += ["No plateau references for these concepts (`python bench/references.py`): no time-to-quality figures.",
              ""]
    sp = r["shared_pretraining"]
    L += [
        f"Shared pretraining (not in the per-concept times above): {sp['total_seconds'] / 60:.0f} min in all (base "
        f"{sp['base_seconds'] / 60:.0f} min, {sp['adapters_seconds'] / 60:.0f} min of training adapters, weight "
        f"generator {sp['weightgen_seconds'] / 60:.0f} min; {sp['source']}): {sp['per_concept_seconds']:.0f} s per "
        f"concept shared by the {sp['served']} concepts measured here, {sp['per_concept_at_100']:.0f} s per concept "
        "at 100.",
        "",
        "## 4. References trained to a plateau",
        "",
        "| reference | concept | seed | stopped | training s | best PSNR | identity PSNR | steps/s | probe steps/s "
        "| curve |",
        "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for ref in r["references"]:
        L.append(
            f"| {LABELS.get(ref['arch'], ref['arch'])} | {ref['concept']} | {ref.get('seed', 0)} | {ref['stopped']} | "
            f"{ref['training_seconds']:.0f} | {ref['best_psnr']:.2f} | {ref['identity']['psnr']:.2f} | "
            f"{ref['steps'] / ref['training_seconds']:.2f} | {probe_of(ref)} | `{ref['png']}` |"
        )
    if not r["references"]:
        L.append("| (none yet: run `python bench/references.py`) | | | | | | | | | |")
    reused_at = " (its reused runs trained earlier, at the throughput of then)" if r["reused_runs"] else ""
    L += ["", f"The machine's throughput (`bench/throughput.py`: one fixed generator step, steps per second, before / "
          f"after): this run's arms {probe_of(r)}{reused_at}; each reference's beside its own training steps per "
          "second above. "
          "Times in seconds compare only at one throughput: a reference trained when the machine was slower takes "
          "longer to its target, and every speed-up over it is larger by as much."]
    sz = r["sizes"]
    mb, ms = (lambda k: sz["bytes"][k] / 1e6), (lambda k: sz["latency_ms_256"][k])
    L += [
        "",
        "## 5. Sizes and editor latency (256x256, onnxruntime, this CPU, batch 1)",
        "",
        "| what | ours | pix2pix ResNet-9 | published (iPhone 14, E2GAN) |",
        "| --- | ---: | ---: | --- |",
        f"| generator parameters | {sz['params']['generator'] / 1e6:.2f} M | "
        f"{sz['params']['pix2pix'] / 1e6:.2f} M | |",
        f"| LoRA adapter parameters | {sz['params']['adapter']:,} | | ~0.09 M |",
        f"| editor fp32 / int8 file | {mb('editor.onnx'):.2f} / {mb('editor.int8.onnx'):.2f} MB | "
        f"{mb('pix2pix.onnx'):.1f} / {mb('pix2pix.int8.onnx'):.1f} MB | |",
        f"| latency fp32 | {ms('editor_fp32'):.1f} ms | {ms('pix2pix_fp32'):.1f} ms | "
        "15.5 ms (E2GAN) / 21.0 ms (pix2pix) |",
        f"| latency int8 | {ms('editor_int8'):.1f} ms | {ms('pix2pix_int8'):.1f} ms | |",
        "",
        "## 6. Weight generation",
        "",
        f"{r['weightgen']['seconds_per_adapter']:.4f} s per adapter (one-step x0, median of {r['weightgen']['runs']}, "
        f"{r['weightgen']['threads']} threads; published: 1.19 s on a GPU). Distance of each generated adapter to its "
        f"nearest training adapter (typical between training adapters: "
        f"{r['weightgen']['typical']['train_nearest_median']:.3f}; 0 = a copy):",
        "",
        "| concept | nearest training adapter | distance | / typical | distance to the average adapter |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for row in r["weightgen"]["rows"]:
        L.append(
            f"| {row['candidate']} | {row['nearest_training']} | {row['distance_to_nearest']:.3f} | "
            f"{row['nearest_over_typical']:.2f} | {row['distance_to_average']:.3f} |"
        )
    return "\n".join(L) + "\n"


def main() -> None:
    from base_gan.models import BaseGAN
    from factory.data.card_pairs import PhotoCache, TeacherCache, make_pairs
    from factory.data.photos import default_photos
    from factory.evaluation.heldout import HeldOutPairs

    args = parse_args()
    if args.render:
        r = json.loads((args.out / "run_all.json").read_text())
        if "shared_pretraining" not in r or args.loras:  # else what the run recorded: the assets may have changed
            r["shared_pretraining"] = shared_pretraining(shipped()[2], len(r["concepts"]), args.loras)
        r["summary"] = summarize(r)
        atomic_write_json(args.out / "run_all.json", r)
        md = markdown(r)
        atomic_write_text(args.out / "run_all.md", md)
        if args.doc:
            atomic_write_text(Path(args.doc), md)
        log(f"rendered {args.out / 'run_all.md'}" + (f" and {args.doc}" if args.doc else ""))
        return
    started = time.perf_counter()
    commit = git_commit()  # the code this run starts with, as bench/common.provenance records it
    ws = Workspace(args.workspace)
    base_dir, wg_dir, m = shipped()
    split = concept_split()
    groups = measured_concepts(args, ws, split, m)
    concepts = list(groups)
    photos = default_photos()
    if not args.quick:
        check_photos(photos)
    base = BaseGAN.load(base_dir)
    teachers, photo_cache = TeacherCache(), PhotoCache()
    size = 64 if args.quick else SIZE
    rows, reused = [], []
    probe_size = {"steps": 5, "size": 64} if args.quick else {}
    probes = {"before": probe(**probe_size)}
    for concept in concepts:
        make_pairs(
            ws, find_card(concept, ws), 24 if args.quick else PAIRS, size, DATA_SEED, teachers=teachers,
            photos=photo_cache
        )
        costs = measure_costs(find_card(concept, ws), base_dir, wg_dir)
        held = HeldOutPairs(ws.data(concept), "test")
        identity = held.identity()
        budget = window_budget(args, concept, costs, identity["psnr"])
        seeds = []
        for seed in args.seed_list:
            run = args.workspace / "runs" / concept / f"seed{seed}"
            inits = init_adapters(ws, wg_dir, concept, seed, run, base_dir, "auto" in args.arms)
            per_arm = {}
            for arm in args.arms:
                metrics, was_reused = run_arm(args, ws, base, concept, seed, arm, inits, budget)
                if was_reused:
                    reused.append(f"{concept}/seed{seed}/{arm}")
                curve = curve_of(args, concept, seed, arm)
                student = metrics["test"]["student"]
                per_arm[arm] = {
                    "psnr_at_equal": psnr_at(curve, args.equal_at),
                    "psnr_final": curve[-1]["psnr"],
                    "haarpsi": student["haarpsi"],
                    "fsim": student["fsim"],
                    "gmsd": student["gmsd"],
                    "psnr_quarter": student["psnr_quarter"],
                    "steps": metrics["training"]["steps"],
                    "learned": bool(metrics["test"].get("learned")),
                    "step0_psnr": curve[0]["psnr"],
                }
            check_cadence({a: curve_of(args, concept, seed, a) for a in args.arms}, args.eval_seconds)
            seeds.append({"seed": seed, **per_arm})
        rows.append(
            {
                "concept": concept,
                "group": groups[concept],
                "instruction": find_card(concept, ws).instruction,
                "identity": identity,
                "test_pairs": len(held),
                "costs": costs,
                "budget": budget,
                "seeds": seeds,
                "time": time_rows(args, concept, costs, identity["psnr"]),
            }
        )
    probes["after"] = probe(**probe_size)
    refs = []
    for path in sorted(args.references.glob("*.json")):
        ref = json.loads(path.read_text())
        ref["png"] = str(path.with_suffix(".png"))
        refs.append({k: v for k, v in ref.items() if k != "curve"})
    refs.sort(key=reference_order)
    log("sizes and latency")
    sizes = export_and_time(args, ws, base, concepts[0])
    log("weight generation")
    wgen = weight_generation(args, ws, wg_dir, concepts)
    r = {
        "quick": args.quick,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, CPU",
        "command": " ".join(["python", "bench/run_all.py", *sys.argv[1:]]),
        "results_file": str(args.out / "run_all.json"),
        "split": {s: {g: split.of(s, g) for g in GROUPS} for s in ("test", "validation")},
        "family": {"seed": args.family_seed, "region": "held-out", "concepts": {c: groups[c] for c in concepts}}
        if args.family_test else None,
        "photos": {
            "test": len(photos.split("test")),
            "train": len(photos.split("train")),
            "test_ids": [p.name for p in photos.split("test")],
        },
        "pairs": 24 if args.quick else PAIRS,
        "train_pairs": args.train_pairs,
        "size": size,
        "seeds": args.seed_list,
        "eval_seconds": args.eval_seconds,
        "budget": "window" if args.window else args.budget,
        "decay_over": args.decay_over,
        "augment": not args.no_augment,
        "batch": args.batch,
        "screen": args.screen,
        "screen_scale": args.screen_scale,
        "screen_harmonics": args.screen_harmonics,
        "screen_lattice": args.screen_lattice,
        "output_curves": args.output_curves,
        **({"curve_rule": arms_curve_rule(True)} if args.output_curves else {}),
        "equal_at": args.equal_at,
        "concepts": rows,
        "reused_runs": reused,
        "throughput_probe": probes,
        "references": refs,
        "sizes": sizes,
        "weightgen": wgen,
        "costs_example": rows[0]["costs"],
        "assets": assets_of(m),
        "shared_pretraining": shared_pretraining(m, len(rows), args.loras),
    }
    r["summary"] = summarize(r)
    r["total_minutes"] = round((time.perf_counter() - started) / 60, 1)
    atomic_write_json(args.out / "run_all.json", r)
    md = markdown(r)
    atomic_write_text(args.out / "run_all.md", md)
    if args.doc:
        atomic_write_text(Path(args.doc), md)
    plot_curves(args, rows)
    log(f"done in {r['total_minutes']:.1f} min -> {args.out / 'run_all.md'}" + (f" and {args.doc}" if args.doc else ""))


def plot_curves(args, rows: list[dict]) -> None:
    """One chart per concept: every arm's held-out PSNR against training seconds (seed 0)."""
    from factory.core.plot import line_chart

    for row in rows:
        c, seed = row["concept"], args.seed_list[0]
        series = {
            LABELS[a]: ([p["seconds"] for p in curve], [p["psnr"] for p in curve])
            for a in args.arms
            for curve in [curve_of(args, c, seed, a)]
        }
        img = line_chart(
            series,
            title=f"{c}: held-out PSNR vs training seconds (seed {seed})",
            xlabel="seconds",
            ylabel="PSNR dB",
            hlines={"identity (source)": row["identity"]["psnr"]},
        )
        atomic_write_png(args.out / f"curves-{c}.png", img)


if __name__ == "__main__":
    sys.exit(main())
