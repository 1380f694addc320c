"""Per-concept fine-tuning: a peft LoRA on the frozen, text-conditioned base (or full training from scratch).

``finetune(workspace, concept, base, FinetuneOptions(...))`` (``base``: a ``BaseGAN`` loaded once) does,
in order:

1. plan (``factory.lora.plan``): the training pairs (all of the train split or K of them), the layer
   groups (``--layers auto``: the probe) and their ranks (``--rank auto``: the rank search), each scored
   on validation pairs held out of the train split; the test split is used only for the final figures
   and the curve. Every lora_B also gets a bias (peft ``lora_bias``, on by default);
2. with ``screen="auto"``, the fixed screen of the pairs, if their teacher draws one (``fitted_screen``: halftone
   dots, pixel blocks): the student gets the stem's ``waves`` conv (zero at the start, trained in full next to
   the LoRA) over sin/cos position channels at the screen's waves (and, with ``screen_harmonics``, their second
   harmonics, and with ``screen_lattice`` the distance planes of their lattice, ``base_gan.lattice``, for the dots'
   shape), so it can place the screen; with a classic
   teacher it also trains on windows of its pairs rescaled up to ``screen_scale`` times, the recipe run at each
   scale (``factory.data.multiscale``), so it draws the screen at the scale of a full-size photo;
3. the fine-tune itself with the concept's instruction tokens, the Trainer's LSGAN + 100 L1 loop,
   only the LoRA weights in the optimizer, held-out PSNR of the test split recorded against wall-clock
   training seconds (evaluation time excluded); with ``output_curves`` (the default) each evaluation and the end
   also fit the output curves on the training pairs (``factory.lora.output_calibration``): the figures are the
   editor with them where the hold-out rule keeps them, and each point's seconds include that fit's;
4. outputs in ``<workspace>/loras/<concept>/`` (written atomically): ``adapter_config.json`` +
   ``adapter_model.safetensors`` (peft's format; with a screen also ``screen.json``; with output curves kept
   ``output_curves.json``, ``factory.lora.output_calibration``), ``metrics.json`` (the
   plan and why, the search tables, the final figures), ``curve.csv``, ``curve.png``, ``samples.png``; ``run.json`` and
   ``checkpoints/`` make an interrupted run resume where it stopped.

``init``: ``base`` (a zero-init LoRA), ``scratch`` (the same architecture from random weights, a full
generator saved in ``loras/<concept>/scratch/``), ``full`` (every weight of the base fine-tuned, no LoRA:
what the pretrained base gives full training; saved in ``loras/<concept>/full/``), or a folder holding a
peft adapter to start from (its layout); ``factory.pipeline.steps.finetune`` turns ``weightgen`` into such a folder.
``tune="all"`` after an adapter start merges the adapter into a copy of the base and trains every weight
(``TUNE_LR``; saved as a model folder in ``loras/<concept>/tuned/``): the start's head start with the whole
student's capacity, at the cost of a whole-generator download per concept.

Fixed layout for the weight generator: ``--layers GROUPS --rank N`` (and the same ``--lora-bias``
setting) gives every concept the same target modules, ranks and tensors.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from base_gan.models import BaseGAN, build_model, model_spec
from base_gan.train import Trainer
from factory.core.atomic import atomic_write_json, atomic_write_png
from factory.core.configs import to_dict
from factory.core.progress import BudgetBar
from factory.core.resume import check_resumable
from factory.core.training_loop import CHECKPOINTS, latest_checkpoint
from factory.core.workspace import Workspace
from factory.data.dataset import concept_instruction
from factory.evaluation.curves import plot_curve, read_curve, write_curve
from factory.evaluation.heldout import HeldOutPairs, save_grid
from factory.lora.adapters import (
    LoraLayout,
    count_adapter_params,
    lora_parameters,
    save_adapter,
    screen_of,
    with_extras,
)
from factory.lora.options import (
    ADAPTER_LR,
    CURVE_FOLDS,
    CURVE_KINDS,
    LORA_BIAS,
    SCRATCH_LR,
    FinetuneOptions,
    curve_rule,
)
from factory.lora.trials import adapted, conditioned, merged, zero_shot

__all__ = ["ADAPTER_LR", "LORA_BIAS", "SCRATCH_LR", "FinetuneOptions", "default_out_dir", "finetune"]

RUN_FILE = "run.json"
METRICS = "metrics.json"
CURVE_CSV = "curve.csv"
CURVE_PNG = "curve.png"
READOUT_FILE = "readout.json"  # the readout start's record, read back when the run resumes
#: options a resumed run may change (a longer budget, another evaluation cadence)
RESUMABLE = {"steps", "seconds", "eval_every", "eval_seconds", "checkpoint_every"}

def default_out_dir(workspace: Workspace, concept: str, opts: FinetuneOptions) -> Path:
    return workspace.lora(concept) / opts.out_name if opts.trains_all else workspace.lora(concept)


def _fingerprint(concept: str, base: BaseGAN, opts: FinetuneOptions) -> dict[str, Any]:
    return {"concept": concept, "base": str(base.folder.resolve()), "base_sha256": base.sha256, **opts.as_record()}


def _plan_or_resume(workspace: Workspace, concept: str, base: BaseGAN, opts: FinetuneOptions, out_dir: Path,
                    quiet: bool) -> tuple[dict, bool]:
    """(the plan, resuming?): the saved plan when checkpoints of the same options are there, else a new one."""
    from factory.lora.plan import make_plan

    fingerprint = _fingerprint(concept, base, opts)
    run_file = out_dir / RUN_FILE
    if latest_checkpoint(out_dir) is not None and run_file.is_file():
        saved = json.loads(run_file.read_text(encoding="utf-8"))
        check_resumable(saved["options"], fingerprint, out_dir, RESUMABLE, retry="another --out")
        return saved["plan"], True
    plan = make_plan(workspace, concept, base, opts, out_dir, quiet)
    atomic_write_json(run_file, {"options": fingerprint, "plan": plan})
    return plan, False


def finetune(workspace: Workspace, concept: str, base: BaseGAN, opts: FinetuneOptions,
             out_dir: Path | None = None, restart: bool = False, quiet: bool = False,
             log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or resume) one fine-tune and write its outputs; returns the metrics dict."""
    base.require_e2gan()
    data_dir = workspace.data(concept)
    out_dir = Path(out_dir) if out_dir is not None else default_out_dir(workspace, concept, opts)
    instruction = concept_instruction(data_dir)
    if restart:
        shutil.rmtree(out_dir / CHECKPOINTS, ignore_errors=True)
        for name in (RUN_FILE, CURVE_CSV, READOUT_FILE):
            (out_dir / name).unlink(missing_ok=True)
    opts.validate()
    plan, resuming = _plan_or_resume(workspace, concept, base, opts, out_dir, quiet)

    settings = opts.train_settings(base, opts.steps, opts.seconds)
    screen = (fitted_screen(data_dir, plan["pairs"]["train"], opts.screen_harmonics, opts.screen_lattice)
              if opts.screen == "auto" else None)
    if screen:
        lattice = " and its lattice's distance planes" if screen.get("screen_lattice") else ""
        log(f"{concept}: a fixed screen in the teacher's outputs; position channels for its waves "
            f"{screen['screen_waves']} (cycles per pixel at {screen['screen_size']} px){lattice}")
    model, layout, trainable = _student(base, opts, plan, screen)
    use_readout = opts.readout
    if use_readout:
        from factory.lora.readout import readout_refusal

        if why := readout_refusal(model):
            log(f"{concept}: no readout start: {why}")
            use_readout = False
    scaled = None
    if screen:
        scaled, why = _scaled_pairs(data_dir, plan["pairs"]["train"], opts, settings.augment)
        log(f"{concept}: " + (f"also training on windows of the pairs rescaled up to {opts.screen_scale:g}x (the "
                              f"recipe run at each scale){_window_source(scaled, opts)}" if scaled
                              else f"training at the pairs' size only: {why}"))
    trainer = Trainer(out_dir, [data_dir], settings, workspace.text_cache, generator=model,
                      trainable=trainable, ids={concept: plan["pairs"]["train"]}, data=scaled)
    test = HeldOutPairs(data_dir, split="test")
    calibration = (Calibration(data_dir, plan["pairs"]["train"], opts.curve_kinds, opts.curve_folds)
                   if opts.output_curves else None)
    edit = conditioned(model, trainer)
    kept = trainer.final_model()  # what is evaluated and saved: the EMA of the weights when --ema, else the model
    scored = conditioned(kept, trainer)
    curve: list[dict[str, float]] = []
    start = None
    readout = None
    if resuming and trainer.resume():
        curve = [r for r in read_curve(out_dir / CURVE_CSV) if r["step"] <= trainer.state.step]
        log(f"resuming {out_dir} from step {trainer.state.step}")
        if (out_dir / READOUT_FILE).is_file():
            readout = json.loads((out_dir / READOUT_FILE).read_text(encoding="utf-8"))
    elif use_readout:
        before = test.score(edit, model)  # the start the init stage gave (the zero-shot editor), not charged
        readout = {**_readout(model, edit, data_dir, plan["pairs"]["train"], opts.seed), "before": before}
        trainer.state.seconds = readout["seconds"]  # charged to the budget
        atomic_write_json(out_dir / READOUT_FILE, readout)
        extras = [m for m, on in (("head.colour", readout["colour_basis"]), ("head.lens", readout.get("lens_basis")))
                  if on]
        log(f"{concept}: readout start, {' and '.join(['head.conv3', *extras])} solved on the training pairs in "
            f"{readout['seconds']:.1f} s")
    if not curve:
        start = test.score(edit, model)
        curve = [curve_row(0, trainer.state.seconds, test, edit, model, calibration)]

    def record(state) -> None:
        curve.append(curve_row(state.step, state.seconds, test, scored, kept, calibration))
        write_curve(out_dir / CURVE_CSV, curve)

    with BudgetBar(f"finetune {concept}", opts.steps, opts.seconds, trainer.state.step, trainer.state.seconds,
                   disable=quiet) as bar:
        state = trainer.train(progress=lambda e: bar.update(e["step"], e["seconds"], l1=f"{e['l1']:.3f}",
                                                             psnr=f"{curve[-1]['psnr']:.2f}"),
                              eval_every=opts.eval_every, on_eval=record, eval_seconds=opts.eval_seconds)
    if curve[-1]["step"] != state.step:
        curve.append(curve_row(state.step, state.seconds, test, scored, kept, calibration))
    write_curve(out_dir / CURVE_CSV, curve)
    return _finish(workspace, concept, instruction, base, opts, plan, trainer, kept, layout, curve, test, out_dir,
                   readout, calibration, start)


class Calibration:
    """Output calibration (``factory.lora.output_calibration``) on the concept's training pairs, held in memory."""

    def __init__(self, data_dir: Path, train_ids: list[str], kinds: str | None = None,
                 folds: int = CURVE_FOLDS) -> None:
        from factory.lora.output_calibration import photo_groups

        self.pairs = HeldOutPairs(data_dir, split=None, ids=train_ids)
        self.groups = photo_groups(data_dir, self.pairs.ids)
        self.kinds = tuple(k.strip() for k in (kinds or CURVE_KINDS).split(","))
        self.folds = folds

    @property
    def rule(self) -> str:
        """The rule as results name it (``options.curve_rule``)."""
        return curve_rule(",".join(self.kinds), self.folds)

    def solve(self, edit, model: nn.Module) -> dict[str, Any]:
        """``solve_output_curves`` for ``edit``; its seconds include the student's pass over the training pairs."""
        import time

        from factory.lora.output_calibration import solve_output_curves

        t0 = time.perf_counter()
        result = solve_output_curves(self.pairs.outputs(edit, model), self.pairs.target, self.groups,
                                     photos=self.pairs.source, inputs=self.kinds, folds=self.folds)
        return {**result, "seconds": round(time.perf_counter() - t0, 3)}


def curve_row(step: int, seconds: float, test: HeldOutPairs, edit, model: nn.Module,
              calibration: Calibration | None) -> dict[str, float]:
    """One evaluation of the curve: the held-out figures of the editor as it would ship if training stopped here,
    so with ``calibration`` the curves solved now (when kept) and their seconds charged (``raw_psnr``: without)."""
    outputs = test.outputs(edit, model)
    row = {"step": step, "seconds": round(seconds, 3), **test.score_outputs(outputs)}
    if calibration is None:
        return row
    from base_gan.output_curves import OutputCurves

    solved = calibration.solve(edit, model)
    final = test.score_outputs(OutputCurves(solved["knots"])(outputs, test.source)) if solved["kept"] else row
    return {**row, **final, "seconds": round(seconds + solved["seconds"], 3), "raw_psnr": row["psnr"],
            "curves_seconds": solved["seconds"]}


def _readout(model, edit, data_dir: Path, train_ids: list[str], seed: int) -> dict[str, Any]:
    """``factory.lora.readout.solve_readout`` on the concept's training pairs."""
    from factory.lora.readout import solve_readout

    pairs = HeldOutPairs(data_dir, split=None, ids=train_ids)
    return solve_readout(model, edit, pairs.source, pairs.target, seed=seed)


def fitted_screen(data_dir: Path, train_ids: list[str], harmonics: bool = False,
                  lattice: bool = False) -> dict[str, Any] | None:
    """The fixed screen in the concept's training pairs as ``adapters.screen_of`` gives it (None without one), its
    fitted waves followed, with ``harmonics``, by their second harmonics; with ``lattice``, also the lattice of the
    fitted waves (``factory.data.screen_fit.fit_lattice``)."""
    from factory.data.screen_fit import fit_lattice, fit_screen_waves, with_harmonics

    pairs = HeldOutPairs(data_dir, split=None, ids=train_ids)
    fundamentals = fit_screen_waves(pairs.source, pairs.target) if len(pairs) >= 2 else []
    if not fundamentals:
        return None
    screen = {"screen_waves": with_harmonics(fundamentals) if harmonics else fundamentals,
              "screen_size": int(min(pairs.source.shape[-2:]))}
    if lattice:
        screen["screen_lattice"] = fit_lattice(pairs.source, pairs.target, fundamentals)
    return screen


def _window_source(scaled: Any, opts: FinetuneOptions) -> str:
    """With ``--screen-windows photo``: how many pairs' windows are cut from their photos (the rest are upscaled)."""
    if opts.screen_windows != "photo":
        return ""
    return f", cut from their photos for {len(scaled.photos)} of {len(scaled.pairs)} pairs (the rest upscaled)"


def _scaled_pairs(data_dir: Path, train_ids: list[str], opts: FinetuneOptions, augment: bool) -> tuple[Any, str]:
    """(the training pairs with rescaled windows, ``factory.data.multiscale.ScaledPairs``, or None; why not)."""
    from factory.data.multiscale import rescaled_pairs

    if opts.screen_scale <= 1:
        return None, "--screen-scale 1"
    return rescaled_pairs(data_dir, train_ids, opts.screen_scale, augment, opts.seed, opts.screen_windows)


def _student(base: BaseGAN, opts: FinetuneOptions, plan: dict, screen: dict[str, Any] | None
             ) -> tuple[nn.Module, LoraLayout | None, list | None]:
    """(the model to train, its LoRA layout or None, its trainable parameters or None for all of them)."""
    colour, lens = opts.colour_basis, opts.lens_basis
    if opts.kind == "scratch":
        spec = {**model_spec(base.model), **(screen or {}), **({"colour_basis": colour} if colour else {}),
                **({"lens_basis": True} if lens else {})}
        return build_model(seed=opts.seed, **spec), None, None
    if opts.kind == "full":
        return with_extras(base.copy(), screen, colour, lens), None, None
    if opts.tune == "all":
        model, layout = merged(base, Path(plan["init_adapter"]), screen, colour, lens)
        return model, layout, None
    init = Path(plan["init_adapter"]) if plan.get("init_adapter") else None
    model, layout = adapted(base, LoraLayout(**plan["layout"]), init, opts.seed, screen, colour, lens)
    return model, layout, lora_parameters(model)


def _finish(workspace: Workspace, concept: str, instruction: str, base: BaseGAN, opts: FinetuneOptions,
            plan: dict, trainer: Trainer, model: nn.Module, layout: LoraLayout | None, curve: list[dict],
            test: HeldOutPairs, out_dir: Path, readout: dict[str, Any] | None = None,
            calibration: Calibration | None = None, start: dict[str, float] | None = None) -> dict[str, Any]:
    from base_gan.complexity import count_params
    from factory.lora.output_calibration import calibrated, save_output_curves

    model.eval()
    edit = conditioned(model, trainer)
    curves = calibration.solve(edit, model) if calibration is not None else None
    raw = test.score(edit, model) if curves and curves["kept"] else None
    result, triples = test.evaluate(calibrated(edit, curves["knots"]) if raw else edit, model)
    base_q = zero_shot(base, instruction, test, workspace.text_cache)
    save_grid(out_dir / "samples.png", triples)
    gen_params = count_params(base.model)
    metrics: dict[str, Any] = {
        "concept": concept, "instruction": instruction, "base": str(base.folder), "init": opts.init,
        "options": to_dict(opts),
        "pairs": {k: v for k, v in plan["pairs"].items() if k != "search"},
        "screen": screen_of(model),
        "screen_training_scale": getattr(trainer.data, "max_scale", 1.0) if screen_of(model) else None,
        "search_seconds": plan.get("search_seconds", 0.0),
        "readout": readout,  # the readout start (factory.lora.readout), its seconds in the training seconds
        "output_curves": ({k: curves[k] for k in ("kept", "inputs", "held_out", "pairs", "seconds")} if curves
                          else "off (--no-output-curves)"),
        "training": {"steps": trainer.state.step, "seconds": round(trainer.state.seconds, 2),
                     "settings": to_dict(trainer.s), "rollbacks": trainer.state.rollbacks},
        "test": {"student": result["student"], "identity": result["identity"], "base_zero_shot": base_q,
                 "learned": result["learned"], "test_pairs": result["test_pairs"], "lpips": result["lpips"],
                 **({"uncalibrated": raw} if raw else {})},
        "curve": {"csv": CURVE_CSV, "png": CURVE_PNG, "x": "training wall-clock seconds (evaluation excluded)",
                  "y": "held-out (test split) PSNR, dB"},
        "generator_params": gen_params,
        "out_dir": str(out_dir),
    }
    save_output_curves(out_dir, curves)
    if opts.trains_all:
        trainer.save_final({"concepts": [concept], "instructions": [instruction]})
        metrics["saved"] = {"model": "diffusers model folder (config.json + diffusion_pytorch_model.safetensors)"}
    else:
        save_adapter(model, out_dir)
        n = count_adapter_params(model)
        metrics.update(layers=plan.get("layers"), rank=plan.get("rank"), layout=to_dict(layout),
                       layout_fixed_with=f"--layers {','.join(layout.groups)} --rank N "
                                         f"--{'' if layout.bias else 'no-'}lora-bias (same for every concept)",
                       adapter_params=n, adapter_fraction=n / gen_params,
                       saved={"adapter": ["adapter_config.json", "adapter_model.safetensors"], "format": "peft LoRA"})
    if plan.get("init_adapter"):
        metrics["init_adapter"] = plan["init_adapter"]
        if curve[0]["step"] == 0:  # the zero-shot editor: the starting adapter before any training
            meta = Path(plan["init_adapter"]) / "init.json"
            kind = json.loads(meta.read_text())["init"] if meta.is_file() else "adapter"
            # before the readout and the output curves: they use the teacher's pairs
            start = readout["before"] if readout else (start or curve[0])
            metrics["test"]["init_adapter"] = {**{k: start[k] for k in ("psnr", "ssim", "l1")},
                                               "init": kind, "size": int(test.source.shape[-1])}
            if readout:
                metrics["test"]["readout_start"] = {k: curve[0][k] for k in ("psnr", "ssim", "l1")}
    refs = {"identity (source)": result["identity"]["psnr"], "base zero-shot": base_q["psnr"]}
    atomic_write_png(out_dir / CURVE_PNG, plot_curve(curve, concept, refs))
    atomic_write_json(out_dir / METRICS, metrics)
    return metrics
