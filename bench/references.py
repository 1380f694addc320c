"""Reference students trained to a plateau, each run once and kept as a reusable curve (issue 14).

For each reference concept and architecture: the concept's pairs (the protocol's photos), training from
random weights with a held-out (test-split) PSNR point every ``EVAL_SECONDS`` of training, until the
plateau rule holds (``factory.evaluation.protocol.PLATEAU``: PSNR gains less than 0.2 dB over the last
quarter of the run, after at least 10 minutes; with output curves, both the calibrated PSNR and the student's own)
or the cap:

* ``pix2pix``: ResNet-9 with the reference recipe (GAN + 100 x L1, Adam 2e-4, beta1 0.5, batch 1,
  constant learning rate), cap 2 hours;
* ``pix2pix-residual``: the same with our generator's global residual (the prior on its own), cap 1 hour;
* ``scratch``: our architecture (ngf 32) from random weights, lr 1e-3, batch 8, cap 30 minutes.

Writes ``bench/results/references/<arch>-<concept>.json`` (curve, plateau or "cap reached", settings,
identity baseline, the machine's throughput before and after: ``bench/throughput.py``) and ``.png``, and
``references.md``: one table of every finished run. ``--seed N`` trains
another seed of the same reference beside it (``<arch>-<concept>-seedN.json``; run_all's target is the seeds' mean).
Resumable: a run continues from its checkpoint and curve, and a finished one is kept, unless made with other output
curves than this run asks for (refused, naming both: a reference never mixes two recipes); one stopped on its
calibrated curve alone while the student climbed trains on from its checkpoint.

    python bench/references.py                                   # the protocol's reference runs
    python bench/references.py --archs scratch --concepts halftone
    python bench/references.py --archs scratch --concepts halftone --seed 1   # a second seed beside the first
    python bench/references.py --quick                           # a smoke run (tiny budgets, separate outputs)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

from base_gan.models import load_model, model_spec
from base_gan.train import Trainer, TrainSettings
from concepts.cards import find_card
from factory.core.atomic import atomic_write_json, atomic_write_png, atomic_write_text
from factory.core.errors import FactoryError
from factory.core.workspace import Workspace
from factory.data.card_pairs import make_pairs
from factory.data.photos import default_photos
from factory.evaluation.curves import plateau, read_curve, write_curve
from factory.evaluation.heldout import HeldOutPairs
from factory.evaluation.protocol import DATA_SEED, EVAL_SECONDS, PAIRS, PLATEAU, SIZE, check_photos, concept_split
from factory.lora.finetune import curve_row
from factory.lora.options import ADDED_LATER, SCRATCH_LR, curve_rule
from factory.pipeline.assets import pretrained_base

from common import (
    arms_curve_rule,
    log,
    plateau_keys,
    reference_curve_rule,
    reference_order,
    reference_stem,
    stopped_before_plateau,
)
from throughput import probe, probe_of

ARCHS = {  # in the order they run: the scratch plateaus set run_all's targets
    # exactly run_all's "scratch" arm (FinetuneOptions(init="scratch")): the shipped base's architecture
    "scratch": dict(generator="shipped base", disc_nf=32, lr=SCRATCH_LR, batch=8, cap=1800.0),
    "pix2pix": dict(generator={"arch": "pix2pix", "image_size": 128}, disc_nf=64, lr=2e-4, batch=1, cap=7200.0),
    "pix2pix-residual": dict(generator={"arch": "pix2pix", "image_size": 128, "residual": True}, disc_nf=64,
                             lr=2e-4, batch=1, cap=3600.0),
}
#: the reference concepts: every test concept for ``scratch`` (its plateau sets the time-to-quality target),
#: one colour and one structural test concept for the pix2pix references (hours each on two cores)
PIX2PIX_CONCEPTS = ("cross-process", "pencil-sketch")


def reference_concepts(arch: str) -> list[str]:
    split = concept_split()
    return list(split.test) if arch == "scratch" else [c for c in PIX2PIX_CONCEPTS if c in split.test]


def run_rule(folder: Path, curve: list[dict]) -> str | None:
    """The output curves' rule (``curve_rule``) a run folder's recorded points were evaluated with (None: none): as
    its ``curve-kinds.json`` records it (one written before the folds: its kinds, one quarter); for a run recorded
    before that file, the rule of then when its points carry a raw PSNR (they were calibrated), else none."""
    marker = folder / "curve-kinds.json"
    if marker.is_file():
        recorded = json.loads(marker.read_text())
        return recorded["curve_rule"] if "curve_rule" in recorded else recorded["curve_kinds"]
    calibrated = any("raw_psnr" in r for r in curve)
    return curve_rule(ADDED_LATER["curve_kinds"], ADDED_LATER["curve_folds"]) if calibrated else None


def check_same_rule(what: str, recorded: str | None, wanted: str | None) -> None:
    """Refuse to continue (or keep) a reference made with other output curves than this run's: its points would
    mix two recipes, and its plateau would set a target for another recipe than the arms'."""
    if recorded != wanted:
        raise FactoryError(f"{what} was made with output curves {recorded or 'off'}, this run asks for "
                           f"{wanted or 'off'}: use another --workspace and --out (or remove it) to train it again")


def run_reference(ws: Workspace, arch: str, concept: str, out: Path, cap: float | None, eval_seconds: float,
                  min_seconds: float, seed: int = 0, screen: bool = False, augment: bool = True,
                  colour_basis: int = 0, ema: float = 0.0, screen_options: dict | None = None, lens: bool = False,
                  output_curves: bool = False) -> dict:
    """Train ``arch`` on ``concept`` to its plateau (or the cap); returns the result written to ``out``.
    ``screen``: our architecture gets position channels at the concept's fixed screen, when it has one (as
    ``--screen auto`` gives run_all's scratch arm); ``augment``: the random flip and resized crop of the pairs;
    ``colour_basis``: our architecture with the colour basis of this degree (run_all's ``--colour-basis``);
    ``lens``: with the lens basis too (run_all's ``--lens-basis``);
    ``ema``: evaluated as the moving average of its weights, this decay (run_all's ``--ema``);
    ``screen_options``: with ``screen``, ``harmonics``, ``lattice`` and ``scale`` as run_all's ``--screen-harmonics``,
    ``--screen-lattice`` and ``--screen-scale`` give them (the last: also train on windows rescaled up to it);
    ``output_curves``: every point is the student with its output curves where the hold-out rule keeps them, their
    fit's seconds charged to the point (run_all's ``--output-curves``, ``factory.lora.finetune.curve_row``)."""
    spec = ARCHS[arch]
    generator, scaled = spec["generator"], None
    opts = {"harmonics": False, "lattice": False, "scale": 1.0, **(screen_options or {})}
    if generator == "shipped base":
        generator = model_spec(load_model(pretrained_base()))
        if screen:
            from factory.lora.finetune import fitted_screen
            from factory.lora.pair_selection import train_ids

            ids = train_ids(ws.data(concept))
            fitted = fitted_screen(ws.data(concept), ids, harmonics=opts["harmonics"], lattice=opts["lattice"])
            generator = {**generator, **(fitted or {})}
            if fitted and opts["scale"] > 1:
                from factory.data.multiscale import rescaled_pairs

                scaled, why = rescaled_pairs(ws.data(concept), ids, opts["scale"], augment, seed)
                if scaled is None:
                    log(f"{concept}: training at the pairs' size only: {why}")
        if colour_basis:
            generator = {**generator, "colour_basis": colour_basis}
        if lens:
            generator = {**generator, "lens_basis": True}
    stem = reference_stem(arch, concept, seed)
    folder = ws.root / "runs" / stem
    settings = TrainSettings(generator=generator, disc_nf=spec["disc_nf"], steps=10**9,
                             seconds=cap or spec["cap"], batch=spec["batch"], lr=spec["lr"], beta1=0.5,
                             decay_from=1.0, checkpoint_every=200, seed=seed, augment=augment,
                             ema=ema or None)
    trainer = Trainer(folder, [ws.data(concept)], settings, text_cache=ws.text_cache, data=scaled,
                      ids=None if scaled is None else {concept: ids})
    test = HeldOutPairs(ws.data(concept), "test")
    calibration = None
    if output_curves:
        from factory.lora.finetune import Calibration
        from factory.lora.pair_selection import train_ids

        calibration = Calibration(ws.data(concept), train_ids(ws.data(concept)))

    def edit(x: torch.Tensor) -> torch.Tensor:
        tokens, model = trainer.text_tokens, trainer.final_model()
        return model(x) if tokens is None else model(x, tokens[:1].expand(len(x), -1, -1),
                                                      trainer.text_mask[:1].expand(len(x), -1))

    curve, rule = [], calibration.rule if calibration else None
    if trainer.resume():
        curve = [r for r in read_curve(folder / "curve.csv") if r["step"] <= trainer.state.step]
        check_same_rule(f"{arch} {concept}'s run in {folder}", run_rule(folder, curve), rule)
        log(f"{arch} {concept}: resuming at step {trainer.state.step} ({trainer.state.seconds:.0f} s)")
    atomic_write_json(folder / "curve-kinds.json", {"curve_rule": rule})
    if not curve:
        curve = [curve_row(0, 0.0, test, edit, trainer.final_model(), calibration)]

    def at_plateau() -> dict | None:
        return plateau(curve, PLATEAU["min_gain_db"], PLATEAU["last_fraction"], min_seconds,
                       plateau_keys(output_curves))

    def record(state) -> bool:
        curve.append(curve_row(state.step, state.seconds, test, edit, trainer.final_model(), calibration))
        write_curve(folder / "curve.csv", curve)
        return at_plateau() is not None

    started, probes = time.perf_counter(), {"before": probe()}
    if at_plateau() is None:
        trainer.train(eval_seconds=eval_seconds, on_eval=record)
    probes["after"] = probe()
    reached = at_plateau()
    result = {
        "arch": arch, "concept": concept, "group": concept_split().group.get(concept),
        "instruction": find_card(concept).instruction,
        "settings": spec | {"generator": generator, "cap_seconds": cap or spec["cap"], "augment": augment,
                            "ema": ema, "screen_scale": opts["scale"] if scaled is not None else 1.0,
                            "output_curves": output_curves,
                            **({"curve_kinds": ",".join(calibration.kinds), "curve_folds": calibration.folds}
                               if calibration else {})},
        "seed": seed, "eval_seconds": eval_seconds, "plateau_rule": PLATEAU | {"min_seconds": min_seconds,
                                                                 "curves": list(plateau_keys(output_curves))},
        "plateau": reached, "stopped": "plateau" if reached else "cap reached (no plateau yet: said plainly)",
        "steps": trainer.state.step, "training_seconds": round(trainer.state.seconds, 1),
        "best_psnr": max(r["psnr"] for r in curve), "final": curve[-1], "identity": test.identity(),
        "test_pairs": len(test), "curve": curve, "wall_seconds_this_run": round(time.perf_counter() - started, 1),
        "throughput_probe": probes, "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": platform.machine(),
        "load_average_1min": round(os.getloadavg()[0], 2)}
    atomic_write_json(out / f"{stem}.json", result)
    atomic_write_png(out / f"{stem}.png", plot(result))
    return result


def plot(result: dict) -> object:
    from factory.core.plot import line_chart

    curve = result["curve"]
    refs = {"identity (source)": result["identity"]["psnr"]}
    if result["plateau"]:
        refs["plateau"] = result["plateau"]["psnr"]
    return line_chart({result["arch"]: ([r["seconds"] for r in curve], [r["psnr"] for r in curve])},
                      title=f"{result['concept']}: {result['arch']} (seed {result.get('seed', 0)}) to its plateau",
                      xlabel="training seconds",
                      ylabel="held-out PSNR dB", hlines=refs)


def training_of(settings: dict) -> str:
    """The options a reference trained with, in words (a run recorded before an option existed had it off)."""
    generator = settings.get("generator")
    spec = generator if isinstance(generator, dict) else {}
    words = ["augmented" if settings.get("augment", True) else "no augmentation"]
    if spec.get("screen_waves"):
        words.append("screen")
    if spec.get("colour_basis"):
        words.append(f"colour basis {spec['colour_basis']}")
    if spec.get("lens_basis"):
        words.append("lens basis")
    if settings.get("screen_scale", 1.0) > 1:
        words.append(f"windows to {settings['screen_scale']:g}x")
    if settings.get("ema"):
        words.append(f"EMA {settings['ema']:g}")
    if rule := reference_curve_rule(settings):
        kinds, _, folds = rule.partition("/")
        words.append(f"output curves ({kinds.replace(',', ', ')}{f'; {folds} folds' if folds else ''})")
    return ", ".join(words)


def summary(out: Path) -> str:
    """A markdown table of every finished reference run in ``out`` (the figures the README may quote)."""
    rows = sorted((json.loads(p.read_text()) for p in out.glob("*.json")),
                  key=reference_order)
    lines = ["# Plateau references", "",
             "Held-out (test-split pairs, test photos) PSNR in dB of each reference student trained from random",
             f"weights, each seed its own row, evaluated every {EVAL_SECONDS:g} s of training; written by",
             "`python bench/references.py` (`--seed N` for another seed).",
             "", "| arch | concept | seed | group | training | stopped | training s | steps | best PSNR | final PSNR "
             "| identity PSNR | load avg | steps/s | probe steps/s |",
             "| --- | --- | ---: | --- | --- | --- " + "| ---: " * 8 + "|"]
    for r in rows:
        lines.append(f"| {r['arch']} | {r['concept']} | {r.get('seed', 0)} | {r['group']} "
                     f"| {training_of(r['settings'])} | {r['stopped']} "
                     f"| {r['training_seconds']:.0f} | {r['steps']} | {r['best_psnr']:.2f} | {r['final']['psnr']:.2f} "
                     f"| {r['identity']['psnr']:.2f} | {r['load_average_1min']:.2f} "
                     f"| {r['steps'] / r['training_seconds']:.2f} | {probe_of(r)} |")
    return "\n".join(lines + pooled_lines(rows)) + "\n"


def pooled_lines(rows: list[dict]) -> list[str]:
    """The pooled target of every scratch reference with several seeds under run_all's rule (``run_all.best_of``,
    ``run_all.reference_time``): the seeds' mean best PSNR less ``TARGET_BELOW_PLATEAU_DB``, and the mean of the
    seeds' training seconds to it (no cost charged here; run_all adds the text encoding), or why it is not claimed."""
    from run_all import TARGET_BELOW_PLATEAU_DB, best_of, reference_time

    by_concept: dict[tuple, list[dict]] = {}
    for r in rows:
        by_concept.setdefault((r["arch"], r["concept"]), []).append(r)
    pooled = {k: refs for k, refs in by_concept.items() if k[0] == "scratch" and len(refs) > 1}
    if not pooled:
        return []
    lines = ["", f"Pooled over seeds (run_all's target: the seeds' mean best PSNR - {TARGET_BELOW_PLATEAU_DB:g} dB; "
             "its time: the mean of the seeds' training seconds to it, no cost charged; not claimed when a seed never "
             "reaches it):", "", "| concept | seeds | best PSNR, mean ± sd | target | training s to it |",
             "| --- | ---: | ---: | ---: | --- |"]
    for (_, concept), refs in pooled.items():
        best = [r["best_psnr"] for r in refs]
        target = best_of(refs) - TARGET_BELOW_PLATEAU_DB
        t = reference_time(refs, target, {}, refs[0]["identity"]["psnr"])
        missing = [r.get("seed", 0) for r, s in zip(refs, t["per_seed"], strict=True) if s["status"] != "reached"]
        when = (f"{t['seconds']:.0f} ± {t['seconds_sd']:.0f} (seeds: "
                + ", ".join(f"{s['training_seconds']:.0f}" for s in t["per_seed"]) + ")" if not missing else
                "not claimed: the target is under the unchanged photo" if t["status"] == "target below identity"
                else f"not claimed: seed {', '.join(map(str, missing))} never reaches it")
        lines.append(f"| {concept} | {len(refs)} | {statistics.fmean(best):.2f} ± {statistics.stdev(best):.2f} "
                     f"| {target:.2f} | {when} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--archs", default=",".join(ARCHS))
    ap.add_argument("--concepts", help="comma-separated (default: the protocol's reference concepts per arch)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 20 s caps, 5 s cadence, separate outputs")
    ap.add_argument("--workspace", type=Path, default=Path("bench/work/protocol"))
    ap.add_argument("--out", type=Path, default=Path("bench/results/references"))
    ap.add_argument("--screen", action="store_true", help="our architecture gets position channels at the concept's "
                    "fixed screen, when it has one (run_all's scratch arm under --screen auto)")
    ap.add_argument("--screen-harmonics", action="store_true", help="with --screen: the waves' second harmonics too "
                    "(run_all's --screen-harmonics)")
    ap.add_argument("--screen-lattice", action="store_true", help="with --screen: the lattice's distance planes too "
                    "(run_all's --screen-lattice)")
    ap.add_argument("--screen-scale", type=float, default=1.0, help="with --screen: also train on windows rescaled "
                    "up to this factor (run_all's --screen-scale)")
    ap.add_argument("--colour-basis", type=int, default=0, help="our architecture with the colour basis of this "
                    "degree (run_all's arms under --colour-basis; factory run's default is 3)")
    ap.add_argument("--lens-basis", action="store_true", help="our architecture with the lens basis (run_all's arms "
                    "under --lens-basis)")
    ap.add_argument("--ema", type=float, default=0.0, help="evaluate the moving average of the weights, this decay "
                    "(run_all's arms under --ema)")
    ap.add_argument("--no-augment", action="store_true", help="no random flip and resized crop of the pairs "
                    "(run_all's arms under --no-augment)")
    ap.add_argument("--output-curves", action="store_true", help="every point with the output curves fitted on the "
                    "training pairs where the hold-out rule keeps them, their seconds charged (run_all's arms under "
                    "--output-curves; factory run's default)")
    ap.add_argument("--seed", type=int, default=0, help="the training seed (0: <arch>-<concept>.json; another: "
                    "<arch>-<concept>-seedN.json beside it, so a target can be the mean of several seeds)")
    args = ap.parse_args()
    if args.quick:
        args.workspace, args.out = Path("bench/work/references-quick"), Path("bench/results/smoke/references")
    ws = Workspace(args.workspace)
    photos = default_photos()
    if not args.quick:
        check_photos(photos)
    for arch in args.archs.split(","):
        concepts = args.concepts.split(",") if args.concepts else reference_concepts(arch)
        for concept in concepts:
            make_pairs(ws, find_card(concept), 40 if args.quick else PAIRS, 64 if args.quick else SIZE, DATA_SEED)
            done = args.out / f"{reference_stem(arch, concept, args.seed)}.json"
            if done.is_file() and (before := json.loads(done.read_text())).get("stopped") and not args.quick:
                if arch == "scratch":
                    check_same_rule(str(done), reference_curve_rule(before["settings"]),
                                    arms_curve_rule(args.output_curves))
                if not stopped_before_plateau(before, args.output_curves):
                    log(f"{arch} {concept}: done before ({done})")
                    continue
                log(f"{arch} {concept}: its plateau was of the calibrated curve alone, the student still climbing: "
                    "training on (from its run folder's checkpoint, if it has one)")
            log(f"{arch} {concept} seed {args.seed}: training to its plateau")
            r = run_reference(ws, arch, concept, args.out, 20.0 if args.quick else None,
                              5.0 if args.quick else EVAL_SECONDS, 10.0 if args.quick else PLATEAU["min_seconds"],
                              seed=args.seed, screen=args.screen, augment=not args.no_augment,
                              colour_basis=args.colour_basis, ema=args.ema, lens=args.lens_basis,
                              screen_options={"harmonics": args.screen_harmonics, "lattice": args.screen_lattice,
                                              "scale": args.screen_scale},
                              output_curves=args.output_curves)
            atomic_write_text(args.out / "references.md", summary(args.out))
            log(f"{arch} {concept}: {r['stopped']} after {r['training_seconds']:.0f} s, best PSNR {r['best_psnr']:.2f} "
                f"dB (identity {r['identity']['psnr']:.2f})")


if __name__ == "__main__":
    main()
