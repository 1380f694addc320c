"""Benchmark: does a generated LoRA make a new concept's fine-tune start almost finished? (issue 5)

On one E2GAN base at 128 px (classic concepts), this

1. picks held-out concepts (seeded random among the classic cards the base was NOT trained on, or
   ``--heldout-concepts``) and, with the shipped assets' recipe (``factory pretrain train``:
   ``factory.pipeline.pretrain``), training concepts (a seeded draw from the rest); pairs for all of them;
2. trains the base on K representative training concepts (k-means on text; the recipe's base stage),
   or reuses ``--base-from`` (refusing a base that saw a held-out concept);
3. fine-tunes one zero-init LoRA per training concept, all with one layout (``--layers``, ``--rank``,
   one seed, so every adapter shares peft's A init; the recipe's adapters stage);
4. collects them into a weight dataset and trains the recipe's weight-generator variant (``--variant``,
   the recipe's weight-generator stage) and the other variant (per-block 1-D U-Net / joint
   attention-across-blocks) on the same dataset for the same wall-clock budget;
5. for every held-out concept (never in the weight dataset, never in the base's training): fine-tunes
   from each initialization, recording held-out PSNR against fine-tuning wall time (evaluation
   excluded; the init's own cost, e.g. sampling, added to the time axis):
   zero-init LoRA on the base (E2GAN), retrieval (the training adapter whose text is nearest),
   average adapter, generated adapter (both variants); and trains pix2pix from scratch (ResNet-9, or
   ``--p2p-arch e2gan`` for the same architecture as the base from random weights) for its budget;
6. writes ``bench/results/weightgen.{json,md}``: quality at step 0, the curves, the wall time each
   init needs to reach pix2pix's final quality (and the speed-up over pix2pix's budget), the
   distance-to-nearest table (copy check), the block-vs-joint comparison and the sampling time.

Every stage reuses what the workspace already holds and resumes where it stopped (pairs, base
checkpoints, adapters, weight-generator checkpoints, fine-tune checkpoints and curves). Stages 1-4
are ``factory pretrain train``'s own (in the workspace: ``base/pretrain-base/``, ``loras/<concept>/``,
``weightgen/pretrain-weightgen/`` for ``--variant``, ``weightgen/bench-<other variant>/``); ``--install``
installs the base and the ``--variant`` weight generator as the shipped assets with that command as
their recipe.

    python bench/weightgen.py                       # full run (see --help for the budgets; ~4.5 h)
    python bench/weightgen.py --smoke               # tiny settings, a few minutes, separate workspace
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import random
import shutil
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

from concepts.cards import builtin_cards, find_card
from factory.core.atomic import atomic_write_json, atomic_write_png, atomic_write_text
from factory.core.errors import FactoryError
from factory.core.workspace import Workspace
from factory.pipeline.pretrain import WEIGHTGEN_NAME, PretrainOptions
from weight_generator.tokenize import DEFAULT_BLOCK_SIZE

SMOKE = dict(train_concepts=4, heldout=1, pairs=24, size=64, ngf=16, base_concepts=2, base_minutes=0.3, rank=2,
             lora_seconds=6.0, lora_steps=40, wg_minutes=0.3, wg_channels="16,32,32", joint_width=64, joint_depth=2,
             curve_seconds=6.0, eval_every=5, p2p_minutes=0.15, p2p_eval_every=5, sample_steps=1, compare_steps=4,
             workspace=Path("bench/work/weightgen-smoke"), out=Path("bench/results/smoke"))
VARIANTS = ("block", "joint")
INITS = ("zero", "retrieval", "average", "generated-block", "generated-joint")
INIT_LABELS = {"zero": "zero-init LoRA on base (E2GAN)", "retrieval": "retrieval (nearest text)",
               "average": "average adapter", "generated-block": "generated (per-block)",
               "generated-joint": "generated (joint)", "pix2pix": "pix2pix from scratch"}


def log(msg: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {msg}", flush=True)


# -- 1. concepts and pairs ---------------------------------------------------------------------------
def choose_heldout(args, base_concepts: list[str] | None) -> list[str]:
    """Held-out concepts: ``--heldout-concepts``, or a seeded draw of ``--heldout`` classic cards the reused
    base did not see. Same arguments, same choice."""
    if args.heldout_concepts:
        heldout = sorted(find_card(c).name for c in args.heldout_concepts.split(",") if c.strip())
    else:
        classic = sorted(c.name for c in builtin_cards() if c.teacher.kind == "classic")
        pool = [c for c in classic if c not in set(base_concepts or [])]
        heldout = sorted(random.Random(args.seed).sample(pool, args.heldout))
    clash = sorted(set(heldout) & set(base_concepts or []))
    if clash:
        raise FactoryError(f"held-out concept(s) {', '.join(clash)} are in the base's training concepts; "
                           "pick others or another base")
    return heldout


def pretrain_options(args, heldout: list[str]) -> PretrainOptions:
    """The ``factory pretrain train`` recipe these arguments stand for (stages 1-4 run it)."""
    return PretrainOptions(heldout=",".join(heldout), train_concepts=args.train_concepts, pairs=args.pairs,
                           size=args.size, ngf=args.ngf, base_concepts=args.base_concepts,
                           base_minutes=args.base_minutes, batch=args.batch, layers=args.layers, rank=args.rank,
                           lora_seconds=args.lora_seconds, lora_steps=args.lora_steps, variant=args.variant,
                           weightgen_minutes=args.wg_minutes, joint_width=args.joint_width,
                           joint_depth=args.joint_depth, seed=args.seed)


# -- 2. base -----------------------------------------------------------------------------------------
def base_concepts_of(folder: Path) -> list[str] | None:
    from base_gan.models import is_model_folder, read_training

    return read_training(folder).get("concepts") if is_model_folder(folder) else None


def reuse_base(ws: Workspace, source: Path) -> Path:
    """``--base-from``: the base copied into the workspace as the recipe's base (``base/pretrain-base/``), so the
    recipe's stages use it (a different base already there is refused)."""
    from base_gan.models import CONFIG, TRAINING, WEIGHTS, is_model_folder
    from factory.core.files import sha256_file
    from factory.pipeline.pretrain import BASE_NAME

    source, dest = Path(source), ws.base(BASE_NAME)
    if not is_model_folder(source):
        raise FactoryError(f"--base-from {source}: not a trained base (a diffusers model folder)")
    if is_model_folder(dest):
        if sha256_file(dest / WEIGHTS) != sha256_file(source / WEIGHTS):
            raise FactoryError(f"{dest} already holds another base than --base-from {source}; use a fresh --workspace")
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    for name in (TRAINING, WEIGHTS, CONFIG):  # config.json last: it marks the folder complete
        if (source / name).is_file():
            shutil.copyfile(source / name, dest / name)
    return dest


# -- 3. training adapters ----------------------------------------------------------------------------
def lora_options(args, init: str, seconds: float, steps: int, eval_every: int):
    from factory.lora.finetune import FinetuneOptions

    explicit = init == "base"
    return FinetuneOptions(init=init, layers=args.layers if explicit else None, rank=args.rank if explicit else None,
                           steps=steps, seconds=seconds, batch=args.batch, eval_every=eval_every,
                           checkpoint_every=200, seed=args.seed)


# -- 4. weight generators ----------------------------------------------------------------------------
def wg_folder(args, ws: Workspace, variant: str) -> Path:
    """The recipe's weight generator (``--variant``) or the other variant's, trained here for the comparison."""
    return ws.weightgen(WEIGHTGEN_NAME) if variant == args.variant else ws.weightgen(f"bench-{variant}")


def _loss_before(ws: Workspace, folder: Path):
    """The eval loss a weight-generator run starts (or resumes) from: its newest checkpoint's; "done" when it is
    finished (its final loss), "fresh" when it starts now (its seeded initial denoiser's)."""
    from factory.core.configs import from_dict
    from factory.core.training_loop import latest_checkpoint
    from weight_generator.dataset import WeightDataset
    from weight_generator.train import WeightGenSettings, WeightGenTrainer, is_weightgen

    if is_weightgen(folder):
        return "done"
    ckpt = latest_checkpoint(folder)
    if ckpt is None:
        return "fresh"
    settings = from_dict(WeightGenSettings, json.loads((ckpt / "state.json").read_text())["settings"])
    trainer = WeightGenTrainer(folder, WeightDataset.load(folder), settings, text_cache=ws.text_cache)
    trainer.resume()
    return trainer.eval_loss()


def _weightgen_info(ws: Workspace, folder: Path, variant: str, first) -> dict:
    """What a trained weight generator is (from its folder): steps, epochs, size, eval loss now and at the start."""
    from base_gan.models import load_model, read_training
    from factory.core.configs import from_dict, to_dict
    from weight_generator.dataset import WeightDataset
    from weight_generator.train import DENOISER_DIR, DENOISERS, WeightGenSettings, WeightGenTrainer

    training = read_training(folder)
    if training.get("variant") != variant:
        raise FactoryError(f"{folder} holds a {training.get('variant')} weight generator, not {variant}; "
                           "use another --workspace (or that --variant)")
    settings = from_dict(WeightGenSettings, training["settings"])
    trainer = WeightGenTrainer(folder, WeightDataset.load(folder), settings, text_cache=ws.text_cache)
    if first == "fresh":
        first = trainer.eval_loss()  # the seeded initial denoiser: where this run started
    trainer.model, trainer.ema = load_model(folder / DENOISER_DIR, tuple(DENOISERS.values())), None
    now = trainer.eval_loss()
    steps = training["steps_done"]
    info = {"variant": variant, "steps": steps, "seconds": training["seconds"],
            "epochs": round(steps / trainer.steps_per_epoch, 1),
            "params": sum(p.numel() for p in trainer.model.parameters()),
            "eval_loss_now": now, "eval_loss_at_resume": now if first == "done" else first, "folder": str(folder),
            "n_blocks": trainer.tokenizer.n_blocks, "block_size": settings.block_size, "settings": to_dict(settings)}
    log(f"weightgen {variant}: {info['steps']} steps ({info['epochs']} epochs) in {info['seconds']} s, "
        f"eval loss {info['eval_loss_now']:.4f}")
    return info


def ensure_weightgens(args, ws: Workspace, opts: PretrainOptions, train: list[str]) -> dict[str, dict]:
    """The recipe's weight-generator stage (dataset + ``--variant``), then the other variant on the same dataset
    with the same budget (each skipped when finished, resumed from its checkpoints otherwise)."""
    from factory.core.training_loop import latest_checkpoint
    from factory.pipeline.pretrain import weightgen_stage
    from factory.pipeline.steps import train_weightgen
    from weight_generator.dataset import WeightDataset
    from weight_generator.train import is_weightgen

    first = {v: _loss_before(ws, wg_folder(args, ws, v)) for v in VARIANTS}
    weightgen_stage(ws, opts, train, log)
    other = next(v for v in VARIANTS if v != opts.variant)
    out = wg_folder(args, ws, other)
    if not is_weightgen(out):
        WeightDataset.load(ws.weightgen(WEIGHTGEN_NAME)).save(out)
        log(f"weight generator: {other} on {len(train)} adapters for {opts.weightgen_minutes} min (comparison)")
        train_weightgen(workspace=ws, name=out.name, resume=latest_checkpoint(out) is not None, seed=opts.seed,
                        log=log, variant=other, block_size=args.block_size,
                        channels=tuple(int(c) for c in args.wg_channels.split(",")), width=opts.joint_width,
                        depth=opts.joint_depth, steps=10**9, seconds=opts.weightgen_minutes * 60,
                        checkpoint_every=500)
    return {v: _weightgen_info(ws, wg_folder(args, ws, v), v, first[v]) for v in VARIANTS}


# -- 5. held-out fine-tunes --------------------------------------------------------------------------
def prepare_inits(args, ws: Workspace, dataset, concept: str, run_dir: Path) -> dict[str, dict]:
    """Folders (or 'base') and the cost in seconds of every initialization for one held-out concept."""
    from weight_generator.baselines import average_adapter, retrieve_by_text, save_vector_adapter
    from weight_generator.sample import WeightGenerator

    text = find_card(concept).instruction
    inits: dict[str, dict] = {"zero": {"init": "base", "seconds": 0.0}}
    t0 = time.perf_counter()
    i, sim = retrieve_by_text(text, dataset, cache_dir=ws.text_cache)
    inits["retrieval"] = {"init": str(ws.lora(dataset.concepts[i])), "seconds": time.perf_counter() - t0,
                          "retrieved": dataset.concepts[i], "similarity": round(sim, 4)}
    t0 = time.perf_counter()
    folder = save_vector_adapter(average_adapter(dataset), dataset, run_dir / "init-average")
    inits["average"] = {"init": str(folder), "seconds": time.perf_counter() - t0}
    for variant in VARIANTS:
        gen = WeightGenerator.load(wg_folder(args, ws, variant), text_cache=ws.text_cache)
        gen.encode_texts([text])  # text encoding is cached; time the generation itself
        t0 = time.perf_counter()
        folder = gen.sample_to_folder(text, run_dir / f"init-generated-{variant}", steps=args.sample_steps,
                                      seed=args.seed)
        inits[f"generated-{variant}"] = {"init": str(folder), "seconds": time.perf_counter() - t0}
    return inits


def adapter_psnr(ws: Workspace, base_dir: Path, adapter: Path, concept: str) -> float:
    """Held-out (test split) PSNR of the base with ``adapter`` loaded, before any fine-tuning."""
    from base_gan.models import load_model
    from factory.evaluation.heldout import HeldOutPairs, text_conditioned
    from factory.lora.adapters import load_adapter

    model = load_adapter(load_model(base_dir), adapter).eval()
    edit = text_conditioned(model, find_card(concept).instruction, ws.text_cache)
    return HeldOutPairs(ws.data(concept), "test").score(edit, model)["psnr"]


def steps_check(args, ws: Workspace, base_dir: Path, concept: str, run_dir: Path) -> list[dict]:
    """Step-0 PSNR and sampling time of the generated adapter for --sample-steps and --compare-steps."""
    from weight_generator.sample import WeightGenerator

    text = find_card(concept).instruction
    rows = []
    for variant in VARIANTS:
        gen = WeightGenerator.load(wg_folder(args, ws, variant), text_cache=ws.text_cache)
        gen.encode_texts([text])
        for steps in sorted({args.sample_steps, args.compare_steps}):
            t0 = time.perf_counter()
            folder = gen.sample_to_folder(text, run_dir / f"steps-{variant}-{steps}", steps=steps, seed=args.seed)
            seconds = time.perf_counter() - t0
            rows.append({"variant": variant, "steps": steps, "seconds": round(seconds, 3),
                         "psnr": adapter_psnr(ws, base_dir, folder, concept)})
    return rows


def curve_run(args, ws: Workspace, base_dir: Path, concept: str, init: str, out_dir: Path) -> list[dict]:
    from factory.evaluation.curves import read_curve
    from factory.pipeline.steps import finetune

    if not (out_dir / "metrics.json").is_file():
        finetune(concept, workspace=ws, base=base_dir,
                 options=lora_options(args, init, args.curve_seconds, 10**6, args.eval_every), out_dir=out_dir,
                 quiet=True, log=log)
    return read_curve(out_dir / "curve.csv")


def pix2pix_run(args, ws: Workspace, base_dir: Path, concept: str, out_dir: Path) -> list[dict]:
    """pix2pix from scratch on the concept's train split for its budget, with the held-out PSNR curve."""
    from base_gan.train import Trainer, TrainSettings
    from factory.evaluation.curves import read_curve, write_curve
    from factory.evaluation.heldout import HeldOutPairs
    from factory.pipeline.steps import finetune

    done = out_dir / "done.json"
    if done.is_file():
        return read_curve(out_dir / "curve.csv")
    if args.p2p_arch == "e2gan":
        finetune(concept, workspace=ws, base=base_dir,
                 options=lora_options(args, "scratch", args.p2p_minutes * 60, 10**6, args.p2p_eval_every),
                 out_dir=out_dir, quiet=True, log=log)
        atomic_write_json(done, {"arch": "e2gan (scratch)"})
        return read_curve(out_dir / "curve.csv")
    settings = TrainSettings(generator={"arch": "pix2pix", "image_size": args.size}, disc_nf=64, steps=10**9,
                             seconds=args.p2p_minutes * 60, batch=args.p2p_batch, seed=args.seed, decay_from=1.0,
                             checkpoint_every=200)
    trainer = Trainer(out_dir, [ws.data(concept)], settings, text_cache=ws.text_cache)
    test = HeldOutPairs(ws.data(concept), "test")
    curve = []
    if trainer.resume():
        curve = [r for r in read_curve(out_dir / "curve.csv") if r["step"] <= trainer.state.step]
    if not curve:
        curve = [{"step": 0, "seconds": 0.0, **test.score(trainer.G, trainer.G)}]

    def record(state) -> None:
        curve.append({"step": state.step, "seconds": round(state.seconds, 3), **test.score(trainer.G, trainer.G)})
        write_curve(out_dir / "curve.csv", curve)

    state = trainer.train(eval_every=args.p2p_eval_every, on_eval=record)
    if curve[-1]["step"] != state.step:
        record(state)
    write_curve(out_dir / "curve.csv", curve)
    atomic_write_json(done, {"arch": "pix2pix ResNet-9", "steps": state.step, "seconds": state.seconds})
    return curve


# -- 6. report ---------------------------------------------------------------------------------------
def summarize(results: dict) -> dict:
    """Means over held-out concepts, the better generator variant, the speed-ups."""
    rows = results["heldout"]
    names = list(INITS)
    summary: dict = {"step0_psnr_mean": {}, "final_psnr_mean": {}, "speedup_median": {}, "reached": {}}
    for n in names + ["pix2pix"]:
        summary["step0_psnr_mean"][n] = round(statistics.mean(r["curves"][n][0]["psnr"] for r in rows), 3)
        summary["final_psnr_mean"][n] = round(statistics.mean(r["curves"][n][-1]["psnr"] for r in rows), 3)
    for n in names:  # reached with no training at all (and no init cost) counts as an infinite speed-up
        speed = [math.inf if r["time_to_reach"][n].get("at_step_0") and r["speedup"][n] is None else r["speedup"][n]
                 for r in rows if r["time_to_reach"][n]["reached"]]
        summary["reached"][n] = f"{len(speed)}/{len(rows)}"
        med = statistics.median(speed) if speed else None
        summary["speedup_median"][n] = None if med is None else ("at step 0" if math.isinf(med) else round(med, 1))
    summary["speedup_vs_e2gan_median"], summary["reached_e2gan"] = {}, {}
    for n in names:
        speed = [r["speedup_vs_e2gan"][n] for r in rows if r["time_to_reach_e2gan"][n]["reached"]
                 and r["speedup_vs_e2gan"][n] is not None]
        summary["reached_e2gan"][n] = f"{sum(r['time_to_reach_e2gan'][n]['reached'] for r in rows)}/{len(rows)}"
        summary["speedup_vs_e2gan_median"][n] = round(statistics.median(speed), 2) if speed else None
    s0 = summary["step0_psnr_mean"]
    better = "block" if s0["generated-block"] >= s0["generated-joint"] else "joint"
    dist = {v: statistics.mean(r["distances"][f"generated-{v}"]["distance_to_reference"] for r in rows)
            for v in ("block", "joint")}
    summary["variant_comparison"] = {
        "rule": "higher mean held-out PSNR of the generated adapter at step 0 (before any fine-tuning)",
        "step0_psnr_mean": {"block": s0["generated-block"], "joint": s0["generated-joint"]},
        "final_psnr_mean": {v: summary["final_psnr_mean"][f"generated-{v}"] for v in ("block", "joint")},
        "distance_to_own_adapter_mean": {v: round(d, 4) for v, d in dist.items()},
        "better": better}
    return summary


def _fmt_time(t: dict) -> str:
    if t["reached"] and t["at_step_0"]:
        return f"at step 0 ({t['interpolated']:.2f} s init)"
    if t["reached"]:
        return f"{t['interpolated']:.1f} (by {t['by_evaluation']:.1f})"
    return f"not in {t['budget']:.0f}"


def _fmt_speed(v) -> str:
    return v if isinstance(v, str) else f"{v}x"


def markdown(r: dict) -> str:
    s = r["summary"]
    L = [f"# Weight generator benchmark ({r['size']} px, {r['date']}, commit {r['commit']}, {r['machine']})", "",
         f"Command: `{r['command']}` ({r.get('computed_seconds', r['total_seconds']) / 60:.1f} min in all"
         + (f"; this invocation {r['total_seconds']:.0f} s, resuming finished stages"
            if r.get("computed_seconds", 0) > r["total_seconds"] + 60 else "") + ")", "",
         f"- base: `{r['base']['folder']}` trained on {', '.join(r['base']['concepts'] or [])}",
         f"- weight dataset: {len(r['train_concepts'])} training concepts, adapters of "
         f"{r['dataset']['numel']} values ({r['dataset']['layout']}), {r['dataset']['n_blocks']} blocks of "
         f"{r['args']['block_size']}",
         "- held-out concepts (not in the weight dataset, not in the base's training): "
         f"{', '.join(r['heldout_concepts'])}",
         f"- budgets: training adapters {r['args']['lora_seconds']} s each; held-out fine-tunes "
         f"{r['args']['curve_seconds']} s per init; pix2pix ({r['args']['p2p_arch']}) {r['args']['p2p_minutes']} min; "
         f"weight generators {r['args']['wg_minutes']} min each", ""]
    for v, info in r["weightgen"].items():
        L.append(f"- weightgen {v}: {info['params'] / 1e6:.2f}M params, {info['steps']} steps "
                 f"({info['epochs']} epochs) in {info['seconds']} s, eval loss {info['eval_loss_now']:.4f}")
    L += ["", "## Held-out PSNR at step 0 (dB; before any fine-tuning)", "",
          "| concept | identity | " + " | ".join(INIT_LABELS[n] for n in INITS) + " | pix2pix final |",
          "| --- | ---: | " + " | ".join("---:" for _ in INITS) + " | ---: |"]
    for h in r["heldout"]:
        L.append(f"| {h['concept']} | {h['identity_psnr']:.2f} | "
                 + " | ".join(f"{h['curves'][n][0]['psnr']:.2f}" for n in INITS)
                 + f" | {h['curves']['pix2pix'][-1]['psnr']:.2f} |")
    L.append("| **mean** | | " + " | ".join(f"**{s['step0_psnr_mean'][n]:.2f}**" for n in INITS)
             + f" | **{s['final_psnr_mean']['pix2pix']:.2f}** |")
    L += ["", "## Wall time to reach pix2pix's final quality (s; init cost included; interpolated, (by the first "
          "evaluation at or above it)); speed-up = pix2pix's training time / that time", "",
          "| concept | pix2pix target PSNR | pix2pix seconds | " + " | ".join(INIT_LABELS[n] for n in INITS) + " |",
          "| --- | ---: | ---: | " + " | ".join("---" for _ in INITS) + " |"]
    for h in r["heldout"]:
        cells = []
        for n in INITS:
            t = h["time_to_reach"][n]
            sp = h["speedup"][n]
            cells.append(_fmt_time(t) + (f", {sp:.1f}x" if sp is not None else ""))
        L.append(f"| {h['concept']} | {h['target_psnr']:.2f} | {h['pix2pix_seconds']:.0f} | "
                 + " | ".join(cells) + " |")
    L.append("| **median speed-up (reached)** | | | " + " | ".join(
        f"**{_fmt_speed(s['speedup_median'][n])}** ({s['reached'][n]})" if s['speedup_median'][n]
        else f"- ({s['reached'][n]})" for n in INITS) + " |")
    easy = [h["concept"] for h in r["heldout"] if h["time_to_reach"]["zero"].get("at_step_0")]
    if easy:
        L += ["", f"Note: for {', '.join(easy)} pix2pix's final quality is below the base's zero-shot quality "
              "(the zero-init LoRA at step 0), so every init reaches it before training and its time is only "
              "the init's own cost; the table below (against the zero-init fine-tune's final quality) is the "
              "informative comparison there. A longer --p2p-minutes gives pix2pix more room."]
    L += ["", "## Wall time to reach the zero-init LoRA's (E2GAN's) final quality (s; init cost included); "
          "speed-up = the zero-init run's training time / that time", "",
          "| concept | E2GAN final PSNR | E2GAN seconds | " + " | ".join(INIT_LABELS[n] for n in INITS) + " |",
          "| --- | ---: | ---: | " + " | ".join("---" for _ in INITS) + " |"]
    for h in r["heldout"]:
        cells = []
        for n in INITS:
            t, sp = h["time_to_reach_e2gan"][n], h["speedup_vs_e2gan"][n]
            cells.append(_fmt_time(t) + (f", {sp:.2f}x" if sp is not None else ""))
        L.append(f"| {h['concept']} | {h['e2gan_target_psnr']:.2f} | {h['e2gan_seconds']:.0f} | "
                 + " | ".join(cells) + " |")
    L.append("| **median speed-up (reached)** | | | " + " | ".join(
        f"**{s['speedup_vs_e2gan_median'][n]}x** ({s['reached_e2gan'][n]})" if s['speedup_vs_e2gan_median'][n]
        else f"- ({s['reached_e2gan'][n]})" for n in INITS) + " |")
    L += ["", "## Final held-out PSNR after the fine-tune budget (dB, mean over held-out concepts)", "",
          "| " + " | ".join(INIT_LABELS[n] for n in INITS) + " | pix2pix |",
          "| " + " | ".join("---:" for _ in INITS) + " | ---: |",
          "| " + " | ".join(f"{s['final_psnr_mean'][n]:.2f}" for n in INITS)
          + f" | {s['final_psnr_mean']['pix2pix']:.2f} |"]
    L += ["", "## Copy check: distance to the nearest training adapter", "",
          "RMS difference in normalized units (each tensor divided by its dataset scale). Typical distances "
          f"between training adapters: nearest-neighbour median {r['typical']['train_nearest_median']:.4f} "
          f"(min {r['typical']['train_nearest_min']:.4f}), pairwise median "
          f"{r['typical']['train_pairwise_median']:.4f}, "
          f"to the average adapter median {r['typical']['train_to_average_median']:.4f}. 'own' = the held-out "
          "concept's own adapter (zero-init fine-tune at the end of its budget).", "",
          "| concept | candidate | nearest training adapter | distance | / typical | to average | to own adapter |",
          "| --- | --- | --- | ---: | ---: | ---: | ---: |"]
    for h in r["heldout"]:
        for name, row in h["distances"].items():
            L.append(f"| {h['concept']} | {name} | {row['nearest_training']} | {row['distance_to_nearest']:.4f} | "
                     f"{row['nearest_over_typical']:.2f} | {row['distance_to_average']:.4f} | "
                     f"{row.get('distance_to_reference', float('nan')):.4f} |")
    vc = s["variant_comparison"]
    L += ["", "## Per-block vs joint denoising (held-out concepts)", "",
          f"Rule: {vc['rule']}.", "",
          "| variant | step-0 PSNR | final PSNR | distance to own adapter |", "| --- | ---: | ---: | ---: |"]
    for v in ("block", "joint"):
        L.append(f"| {v} | {vc['step0_psnr_mean'][v]:.3f} | {vc['final_psnr_mean'][v]:.3f} | "
                 f"{vc['distance_to_own_adapter_mean'][v]:.4f} |")
    L += ["", f"Better: **{vc['better']}**.", "",
          "## Sampling time per adapter (this CPU; the paper: 1.19 s on a GPU)", "",
          "| variant | DDIM steps | seconds per adapter (median) | min | max | runs |",
          "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for row in r["sampling"]:
        L.append(f"| {row['variant']} | {row['steps']} | {row['seconds']:.3f} | {row['min']:.3f} | {row['max']:.3f} | "
                 f"{row['runs']} |")
    L += ["", "Generated adapter at step 0 by DDIM steps (held-out PSNR, dB; sampling seconds of that one run):", "",
          "| concept | " + " | ".join(f"{row['variant']} {row['steps']} step(s)"
                                     for row in r["heldout"][0]["generated_by_steps"]) + " |",
          "| --- | " + " | ".join("---:" for _ in r["heldout"][0]["generated_by_steps"]) + " |"]
    for h in r["heldout"]:
        L.append(f"| {h['concept']} | " + " | ".join(f"{row['psnr']:.2f} ({row['seconds']:.2f} s)"
                                                     for row in h["generated_by_steps"]) + " |")
    L += ["", "Retrieval for the held-out concepts: " + ", ".join(
        f"{h['concept']} -> {h['retrieved']} (cos {h['similarity']:.2f})" for h in r["heldout"]), ""]
    return "\n".join(L) + "\n"


def plot(out: Path, h: dict) -> None:
    try:
        from factory.core.plot import line_chart
    except ImportError:
        return
    series = {INIT_LABELS[n]: ([p["seconds"] + h["init_seconds"].get(n, 0.0) for p in h["curves"][n]],
                               [p["psnr"] for p in h["curves"][n]]) for n in (*INITS, "pix2pix")}
    img = line_chart(series, title=f"{h['concept']}: held-out PSNR vs fine-tuning time", xlabel="seconds",
                     ylabel="PSNR dB", hlines={"pix2pix final": h["target_psnr"], "identity": h["identity_psnr"]})
    atomic_write_png(out / f"{h['concept']}.png", img)


def sampling_times(args, ws: Workspace, texts: list[str], repeats: int = 3) -> list[dict]:
    """Seconds to generate one adapter (blocks only; text encodings cached): one warm-up, then the median
    over ``repeats`` x held-out texts."""
    from weight_generator.sample import WeightGenerator

    rows = []
    for variant in VARIANTS:
        gen = WeightGenerator.load(wg_folder(args, ws, variant), text_cache=ws.text_cache)
        gen.encode_texts(texts)
        for steps in sorted({args.sample_steps, args.compare_steps}):
            gen.sample_blocks(texts[:1], steps=steps, seed=args.seed)
            times = []
            for r in range(repeats):
                for i, t in enumerate(texts):
                    t0 = time.perf_counter()
                    gen.sample_blocks([t], steps=steps, seed=args.seed + i + r)
                    times.append(time.perf_counter() - t0)
            rows.append({"variant": variant, "steps": steps, "seconds": statistics.median(times),
                         "min": min(times), "max": max(times), "runs": len(times)})
    return rows


# -- main --------------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny settings (a few minutes) in a separate workspace")
    ap.add_argument("--install", action="store_true",
                    help="afterwards, install the base and the --variant weight generator as the package's shipped "
                         "pretrained assets (factory/pretrained/; the recipe recorded is the equivalent "
                         "`factory pretrain train` command)")
    ap.add_argument("--workspace", type=Path, default=Path("bench/work/weightgen"))
    ap.add_argument("--out", type=Path, default=Path("bench/results"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--pairs", type=int, default=120, help="pairs per concept (train + test split)")
    ap.add_argument("--train-concepts", type=int, default=30, help="concepts in the weight dataset")
    ap.add_argument("--heldout", type=int, default=5, help="held-out concepts (seeded random)")
    ap.add_argument("--heldout-concepts", help="comma-separated held-out concepts instead of a random pick")
    ap.add_argument("--base-from", help="reuse this base folder (must not have seen a held-out concept; copied into "
                                        "the workspace as the recipe's base)")
    ap.add_argument("--base-concepts", type=int, default=8, help="K representative concepts to train the base on")
    ap.add_argument("--base-minutes", type=float, default=20.0)
    ap.add_argument("--ngf", type=int, default=32)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--layers", default="down1,down2,attn,xattn,ff,up1,up2", help="LoRA layer groups (one layout)")
    ap.add_argument("--rank", type=int, default=4)
    ap.add_argument("--lora-seconds", type=float, default=120.0, help="training budget of each dataset adapter")
    ap.add_argument("--lora-steps", type=int, default=2000, help="step cap of each dataset adapter")
    ap.add_argument("--variant", choices=VARIANTS, default=PretrainOptions.variant,
                    help="the weight-generator variant of the recipe (the one --install installs); the other is "
                         "trained on the same dataset for the comparison")
    ap.add_argument("--block-size", type=int, default=DEFAULT_BLOCK_SIZE,
                    help="weight block size (the recipe's stage uses the default; other values are refused)")
    ap.add_argument("--wg-minutes", type=float, default=10.0, help="training budget of EACH weight-generator variant")
    ap.add_argument("--wg-channels", default="32,64,64",
                    help="per-block U-Net widths (of the comparison variant; the recipe's stage uses the default)")
    ap.add_argument("--joint-width", type=int, default=128)
    ap.add_argument("--joint-depth", type=int, default=4)
    ap.add_argument("--sample-steps", type=int, default=1, help="DDIM steps of the generated inits (1 = one-step x0)")
    ap.add_argument("--compare-steps", type=int, default=10, help="DDIM steps compared with --sample-steps at step 0")
    ap.add_argument("--curve-seconds", type=float, default=120.0, help="fine-tune budget per held-out init")
    ap.add_argument("--eval-every", type=int, default=20, help="steps between held-out evaluations (LoRA)")
    ap.add_argument("--p2p-arch", choices=["pix2pix", "e2gan"], default="pix2pix")
    ap.add_argument("--p2p-minutes", type=float, default=20.0)
    ap.add_argument("--p2p-batch", type=int, default=4)
    ap.add_argument("--p2p-eval-every", type=int, default=100)
    args = ap.parse_args()
    if args.smoke:
        for k, v in SMOKE.items():
            if getattr(args, k) == ap.get_default(k):
                setattr(args, k, v)
    if args.block_size != DEFAULT_BLOCK_SIZE:
        ap.error(f"--block-size {args.block_size}: the pretrain recipe's weight generator uses blocks of "
                 f"{DEFAULT_BLOCK_SIZE}, and both variants must share one")
    if args.variant == "block" and args.wg_channels != ap.get_default("wg_channels"):
        ap.error("--wg-channels: the pretrain recipe trains --variant block with the default widths")
    if args.install and args.base_from:
        ap.error("--install records the `factory pretrain train` command as the recipe, which does not make "
                 "a --base-from base")

    from base_gan.models import read_training
    from factory.data.card_pairs import ensure_pairs
    from factory.evaluation.curves import time_to_reach
    from factory.evaluation.heldout import HeldOutPairs
    from factory.pipeline.pretrain import adapters_stage, choose_concepts, train_base_stage
    from weight_generator.baselines import distance_table
    from weight_generator.dataset import WeightDataset
    from weight_generator.tokenize import WeightTokenizer, flatten, read_adapter

    started = time.perf_counter()
    ws = Workspace(args.workspace)
    phases: dict[str, float] = {}
    base_known = base_concepts_of(Path(args.base_from)) if args.base_from else None
    opts = pretrain_options(args, choose_heldout(args, base_known))
    train, heldout = choose_concepts(opts)
    log(f"held out: {', '.join(heldout)}; weight dataset: {len(train)} concepts")
    t0 = time.perf_counter()
    ensure_pairs(ws, train + heldout, opts.pairs, opts.size, opts.seed, log)
    phases["synth"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    if args.base_from:
        reuse_base(ws, Path(args.base_from))
    base_dir = train_base_stage(ws, opts, train, log)
    base_seen = base_concepts_of(base_dir) or []
    if set(base_seen) & set(heldout):
        raise FactoryError(f"{base_dir} was trained on held-out concept(s) {sorted(set(base_seen) & set(heldout))}; "
                           "use a fresh --workspace or other --heldout-concepts")
    phases["base"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    adapters_stage(ws, opts, train, log)
    phases["adapters"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    wg = ensure_weightgens(args, ws, opts, train)
    phases["weightgen"] = time.perf_counter() - t0
    dataset = WeightDataset.load(ws.weightgen(WEIGHTGEN_NAME))

    scale = WeightTokenizer.load(wg_folder(args, ws, "block")).scale_vector()
    t0 = time.perf_counter()
    rows = []
    for c in heldout:
        run_dir = args.workspace / "heldout" / c
        inits = prepare_inits(args, ws, dataset, c, run_dir)
        by_steps = steps_check(args, ws, base_dir, c, run_dir)
        curves = {}
        for name in INITS:
            log(f"{c}: fine-tune from {name}")
            curves[name] = curve_run(args, ws, base_dir, c, inits[name]["init"], run_dir / name)
        log(f"{c}: pix2pix from scratch ({args.p2p_arch})")
        curves["pix2pix"] = pix2pix_run(args, ws, base_dir, c, run_dir / "pix2pix")
        target = curves["pix2pix"][-1]["psnr"]
        p2p_seconds = curves["pix2pix"][-1]["seconds"]
        reach = {n: time_to_reach(curves[n], target, inits[n]["seconds"]) for n in INITS}
        e2gan_target, e2gan_seconds = curves["zero"][-1]["psnr"], curves["zero"][-1]["seconds"]
        reach_e2gan = {n: time_to_reach(curves[n], e2gan_target, inits[n]["seconds"]) for n in INITS}
        speed_e2gan = {n: (e2gan_seconds / reach_e2gan[n]["interpolated"]
                           if reach_e2gan[n]["reached"] and reach_e2gan[n]["interpolated"] > 0 else None)
                       for n in INITS}
        speed = {n: (p2p_seconds / reach[n]["interpolated"] if reach[n]["reached"] and reach[n]["interpolated"] > 0
                     else None) for n in INITS}
        own_tensors, _ = read_adapter(run_dir / "zero")
        own = flatten(own_tensors, dataset.layout).to(torch.float32)
        cands = {}
        for n in ("generated-block", "generated-joint", "average"):
            t, _ = read_adapter(inits[n]["init"])
            cands[n] = flatten(t, dataset.layout).to(torch.float32)
        cands["own (zero-init fine-tuned)"] = own
        table = distance_table(cands, dataset, scale, reference=own)
        id_psnr = HeldOutPairs(ws.data(c), "test").identity()["psnr"]
        h = {"concept": c, "instruction": find_card(c).instruction, "identity_psnr": id_psnr,
             "retrieved": inits["retrieval"]["retrieved"], "similarity": inits["retrieval"]["similarity"],
             "init_seconds": {n: round(inits[n]["seconds"], 3) for n in INITS},
             "curves": curves, "target_psnr": target, "pix2pix_seconds": p2p_seconds,
             "pix2pix_first_reached_own_final": time_to_reach(curves["pix2pix"], target, 0.0),
             "time_to_reach": reach, "speedup": speed, "e2gan_target_psnr": e2gan_target,
             "e2gan_seconds": e2gan_seconds, "time_to_reach_e2gan": reach_e2gan, "speedup_vs_e2gan": speed_e2gan,
             "generated_by_steps": by_steps, "distances": {row["candidate"]: row for row in table["rows"]}}
        rows.append(h)
        plot(args.out / "weightgen", h)
    phases["heldout"] = time.perf_counter() - t0
    typical = table["typical"]
    sampling = sampling_times(args, ws, [find_card(c).instruction for c in heldout])

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    results = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"), "commit": commit,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, CPU",
        "command": "python bench/weightgen.py " + " ".join(sys.argv[1:]),
        "recipe": opts.command(),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "size": args.size, "train_concepts": train, "heldout_concepts": heldout,
        "base": {"folder": str(base_dir), "concepts": base_seen,
                 **({"reused": str(args.base_from)} if args.base_from else {})},
        "dataset": {"numel": dataset.layout.numel, "n_blocks": wg["block"]["n_blocks"],
                    "layout": f"{args.layers} @ rank {args.rank}", "fingerprint": dataset.fingerprint()},
        "weightgen": wg, "heldout": rows, "typical": typical, "sampling": sampling,
        "phase_seconds": {k: round(v, 1) for k, v in phases.items()},
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    results["summary"] = summarize(results)
    # a resumed invocation reuses finished stages: keep the wall time of the invocation that computed them
    prev_file = args.out / "weightgen.json"
    previous = json.loads(prev_file.read_text()) if prev_file.is_file() else {}
    same = previous.get("command", "").replace(" --install", "") == results["command"].replace(" --install", "")
    results["computed_seconds"] = max(results["total_seconds"], previous.get("computed_seconds", 0.0) if same else 0.0)
    atomic_write_json(args.out / "weightgen.json", results)
    atomic_write_text(args.out / "weightgen.md", markdown(results))
    print(markdown(results))
    log(f"done in {results['total_seconds']:.0f} s -> {args.out / 'weightgen.md'}")
    if args.install:
        from factory.pipeline.assets import PRETRAINED_DIR, install

        better = results["summary"]["variant_comparison"]["better"]
        if better != opts.variant:
            log(f"note: the {better} variant did better at step 0 here; installing the recipe's {opts.variant} "
                f"variant (rerun with --variant {better} in a fresh --workspace to install that one)")
        folder = wg_folder(args, ws, opts.variant)
        if read_training(folder).get("variant") != opts.variant:
            raise FactoryError(f"{folder} is not a {opts.variant} weight generator")
        m = install(base_dir, folder, opts.command(), heldout, PRETRAINED_DIR,
                    extra={"benchmark": str(args.out / "weightgen.md"), "commit": commit})
        log(f"installed the base and the {opts.variant} weight generator as the shipped pretrained assets "
            f"({m['total_bytes'] / 1e6:.1f} MB) -> {PRETRAINED_DIR}; recipe: {opts.command()}")


if __name__ == "__main__":
    main()
