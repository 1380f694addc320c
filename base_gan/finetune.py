"""Per-concept fine-tuning: a peft LoRA on the frozen, text-conditioned base (or full training from scratch).

``finetune(workspace, concept, base_dir, FinetuneOptions(...))`` does, in order:

1. pairs: the concept's train split, or K of them (``--pairs K``, clustered or random); a
   validation subset of the train split (whole photos held out, ``pair_selection.validation_split``)
   scores every search run, so the test split is used only for the final figures and the curve;
2. layers (``--layers auto``): the groups chosen by the layer probe (``layer_probe``): the
   workspace's probe table for this base when there is one, else a probe on this concept;
3. ranks (``--rank auto``): ``rank_search`` on short runs (optionally within a size budget,
   ``max_fraction`` of the generator's parameters); every lora_B also gets a bias (peft ``lora_bias``,
   on by default) so an adapter can shift colours cheaply;
4. the fine-tune itself with the concept's instruction tokens (the base's text encoder), the
   Trainer's LSGAN + 100 L1 loop, only the LoRA weights in the optimizer, held-out PSNR of the test
   split recorded against wall-clock training seconds (evaluation time excluded);
5. outputs in ``<workspace>/loras/<concept>/`` (written atomically): ``adapter_config.json`` +
   ``adapter_model.safetensors`` (peft's format), ``metrics.json`` (the plan and why, the search
   tables, the final figures), ``curve.csv``, ``curve.png``, ``samples.png``; ``run.json`` and
   ``checkpoints/`` make an interrupted run resume where it stopped.

``--init scratch`` trains the same architecture from random weights (a full generator, saved as
``generator.safetensors`` + ``config.json`` in ``loras/<concept>/scratch/``); ``--init ADAPTER_DIR``
starts from a saved adapter (its layout); ``--init weightgen`` asks ``weightgen_adapter`` (the hook
the weight-generator stage fills) for an adapter predicted from the concept text.

Fixed layout for the weight generator: ``--layers GROUPS --rank N`` (and the same ``--lora-bias``
setting) gives every concept the same target modules, ranks and tensors (the automatic choices may
differ between concepts; ``--layers auto`` alone is shared once a probe table exists for the base).
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from base_gan.checkpoint import load_generator, generator_from_config
from base_gan.lora import (LoraLayout, count_adapter_params, is_adapter, layout_of_adapter, load_adapter,
                           lora_parameters, parse_groups, save_adapter, wrap)
from base_gan.rank_search import DEFAULT_CANDIDATES, DEFAULT_TOLERANCE_DB
from base_gan.train import CHECKPOINTS, Trainer, TrainSettings, latest_checkpoint
from factory.atomic import atomic_write_json, atomic_write_png, atomic_write_text
from factory.dataset import PairedDataset, concept_instruction
from factory.errors import FactoryError
from factory.workspace import Workspace

# Defaults measured on a small base (64 px, ngf 16), 400 steps, batch 8, held-out 'autumn' / 'watercolor'
# test PSNR: LoRA (res,xattn,head @ rank 4) lr 3e-3 with lora_bias 32.06 / 14.48 dB, without 29.37 / 13.93;
# lr 1e-2 unstable (27.56 / 14.21). Scratch lr 1e-3 30.86 / 16.43 dB vs pix2pix's 2e-4 28.68 / 15.35, so the
# from-scratch comparison gets the better of the two.
LORA_BIAS = True  # a bias on every lora_B (peft lora_bias): few parameters, lets an adapter shift colours
ADAPTER_LR = 3e-3  # LoRA B starts at zero and needs a larger step than full training
SCRATCH_LR = 1e-3  # full training of the same architecture from random weights
RUN_FILE = "run.json"
METRICS = "metrics.json"
CURVE_CSV = "curve.csv"
CURVE_PNG = "curve.png"
PROBE_DIR = "_probe"  # <workspace>/loras/_probe/<base name>/probe.json (not a concept)
#: options a resumed run may change (a longer budget, another evaluation cadence)
RESUMABLE = {"steps", "seconds", "eval_every", "checkpoint_every"}

EditFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class FinetuneOptions:
    """What ``factory finetune`` was asked for (``None`` = automatic or the init adapter's own)."""

    init: str = "base"                 # base | scratch | weightgen | a folder with a peft adapter
    layers: str | None = None          # None/"auto" or "group,group,..."
    rank: str | int | None = None      # None/"auto" or N
    lora_bias: bool | None = None      # None: LORA_BIAS for a new LoRA, the init adapter's own otherwise
    pairs: int | None = None           # K training pairs (None: all of the train split)
    select: str = "cluster"            # cluster | random
    steps: int = 1000
    seconds: float | None = None
    batch: int = 8
    lr: float | None = None            # None: ADAPTER_LR for LoRA, SCRATCH_LR for --init scratch
    disc_nf: int = 32
    eval_every: int = 50
    checkpoint_every: int = 200
    search_steps: int = 100            # steps of every probe / rank-search run
    probe_rank: int = 4
    auto_fraction: float = 0.9
    rank_candidates: tuple[int, ...] = DEFAULT_CANDIDATES
    rank_tolerance: float = DEFAULT_TOLERANCE_DB
    rank_mode: str = "global"          # global | group
    probe_table: str | None = None     # a probe.json to take --layers auto from (default: the base's)
    max_fraction: float | None = None  # --rank auto: skip ranks whose adapter exceeds this share of the generator
    seed: int = 0

    @property
    def kind(self) -> str:
        if self.init in ("base", "scratch", "weightgen"):
            return self.init
        return "adapter"

    def bias(self) -> bool:
        return LORA_BIAS if self.lora_bias is None else self.lora_bias

    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else (SCRATCH_LR if self.init == "scratch" else ADAPTER_LR)


# -- the weight-generator hook --------------------------------------------------------------------
def weightgen_adapter(workspace: Workspace, concept: str, instruction: str, base_dir: Path, out_dir: Path,
                      seed: int = 0) -> Path:
    """Write into ``out_dir`` a peft adapter predicted for ``instruction`` and return ``out_dir``.

    Filled in by the weight-generator stage (issue 5); the fine-tune then starts from that adapter
    exactly as from ``--init ADAPTER_DIR``.
    """
    # -- weight generator (issue 5): sample from <workspace>/weightgen/<default or the only one>/ --
    from weight_generator.sample import generate_init_adapter

    try:
        return generate_init_adapter(workspace, instruction, base_dir, out_dir, seed=seed)
    except FactoryError as exc:
        raise FactoryError(f"--init weightgen: {exc}") from None
    # -- end of the weight-generator hook --


# -- held-out scoring -----------------------------------------------------------------------------
class HeldOut:
    """Pairs of one concept kept in memory for repeated quality checks (no augmentation)."""

    def __init__(self, data_dir: Path, split: str | None = "test", ids: list[str] | None = None):
        data_dir = Path(data_dir)
        ds = PairedDataset([data_dir], split=split, ids={data_dir.name: ids} if ids is not None else None)
        items = [ds[i] for i in range(len(ds))]
        self.ids = [it["pair_id"] for it in items]
        self.source = torch.stack([it["source"] for it in items])
        self.target = torch.stack([it["target"] for it in items])

    def __len__(self) -> int:
        return len(self.ids)

    @torch.no_grad()
    def score(self, edit: EditFn, model: nn.Module | None = None, batch: int = 16) -> dict[str, float]:
        """Mean PSNR/SSIM/L1 of ``edit`` (``model`` is put in eval mode meanwhile)."""
        from factory.metrics import quality

        was = model.training if model is not None else None
        if model is not None:
            model.eval()
        try:
            out: dict[str, list[float]] = {}
            for s in range(0, len(self), batch):
                q = quality(edit(self.source[s:s + batch]), self.target[s:s + batch])
                for k, v in q.items():
                    out.setdefault(k, []).extend(v.tolist())
        finally:
            if model is not None:
                model.train(was)
        return {k: float(np.mean(v)) for k, v in out.items()}


def conditioned(model: nn.Module, trainer: Trainer) -> EditFn:
    """The model as image -> image, with the trainer's (single) concept text when it takes text."""
    if trainer.text_tokens is None:
        return lambda x: model(x)
    tok, mask = trainer.text_tokens[:1], trainer.text_mask[:1]
    return lambda x: model(x, tok.expand(len(x), -1, -1), mask.expand(len(x), -1))


def base_zero_shot(base_dir: Path, data_dir: Path, held: HeldOut, text_cache: Path | None) -> dict[str, float]:
    """The frozen base's quality on ``held`` with the concept's instruction (no fine-tuning)."""
    from factory.evaluate import text_conditioned

    base, meta = load_generator(base_dir)
    return held.score(text_conditioned(base, meta, concept_instruction(data_dir), text_cache), base)


# -- one training run ------------------------------------------------------------------------------
def load_base(base_dir: Path) -> tuple[nn.Module, dict[str, Any]]:
    base, meta = load_generator(base_dir)
    arch = meta.get("generator", {}).get("arch", "e2gan")
    if arch != "e2gan":
        raise FactoryError(f"{base_dir}: a {arch} generator; LoRA fine-tuning needs an e2gan base "
                           "(train one with `factory base train`)")
    return base, meta


def settings_for(meta: dict[str, Any], opts: FinetuneOptions, steps: int, seconds: float | None) -> TrainSettings:
    return TrainSettings(generator=meta["generator"], disc_nf=opts.disc_nf, steps=steps, seconds=seconds,
                         batch=opts.batch, lr=opts.learning_rate(), seed=opts.seed,
                         checkpoint_every=opts.checkpoint_every,
                         text_encoder=meta.get("text_encoder", "minilm"))


def adapted_base(base_dir: Path, layout: LoraLayout | None, init_adapter: Path | None, seed: int):
    """(peft model over a freshly loaded base, its layout): new zero-init LoRA or a saved adapter."""
    base, _ = load_base(base_dir)
    if init_adapter is not None:
        model = load_adapter(base, init_adapter, trainable=True)
        return model, layout_of_adapter(init_adapter)
    return wrap(base, layout, base_ref=str(base_dir), seed=seed), layout


def short_run(base_dir: Path, data_dir: Path, layout: LoraLayout, ids: list[str], val: HeldOut,
              settings: TrainSettings, text_cache: Path | None) -> dict[str, float]:
    """Train a LoRA of ``layout`` for ``settings.steps`` on ``ids``; its validation quality and cost."""
    model, _ = adapted_base(base_dir, layout, None, settings.seed)
    with tempfile.TemporaryDirectory(prefix="lora-search-") as tmp:
        trainer = Trainer(Path(tmp), [data_dir], replace(settings, checkpoint_every=10**9), text_cache,
                          generator=model, trainable=lora_parameters(model), ids={data_dir.name: ids})
        trainer.train()
    q = val.score(conditioned(model, trainer), model)
    return {"psnr": q["psnr"], "ssim": q["ssim"], "params": count_adapter_params(model),
            "steps": trainer.state.step, "seconds": round(trainer.state.seconds, 2)}


# -- planning: pairs, layers, ranks ---------------------------------------------------------------
def plan_pairs(data_dir: Path, base_dir: Path, opts: FinetuneOptions) -> dict[str, Any]:
    from base_gan.pair_selection import select_pairs, train_ids, validation_split

    all_ids = train_ids(data_dir)
    fit, val = validation_split(data_dir, seed=opts.seed)
    plan = {"available": len(all_ids), "k": opts.pairs, "method": opts.select if opts.pairs else "all",
            "validation": val, "validation_rule": "whole train photos held out (>= 15% of train pairs); "
            "used only to score probe and rank-search runs"}
    if opts.pairs is None:
        plan.update(train=all_ids, search=fit)
        return plan
    base = load_base(base_dir)[0] if opts.select == "cluster" else None
    plan["train"] = select_pairs(data_dir, opts.pairs, opts.select, base, all_ids, opts.seed)
    plan["search"] = select_pairs(data_dir, min(opts.pairs, len(fit)), opts.select, base, fit, opts.seed)
    return plan


def probe_path(workspace: Workspace, base_dir: Path) -> Path:
    return workspace.lora(PROBE_DIR) / Path(base_dir).name / "probe.json"


def plan_layers(workspace: Workspace, concept: str, base_dir: Path, opts: FinetuneOptions, pairs: dict,
                out_dir: Path, quiet: bool) -> dict[str, Any]:
    if opts.layers not in (None, "auto"):
        return {"groups": parse_groups(opts.layers), "source": "explicit (--layers)"}
    from base_gan.layer_probe import AUTO_RULE, probe_layers, write_probe  # late: it imports this module

    table = Path(opts.probe_table) if opts.probe_table else probe_path(workspace, base_dir)
    if table.is_file():
        from base_gan.layer_probe import base_fingerprint

        probe = json.loads(table.read_text(encoding="utf-8"))
        if probe.get("base_sha256") != base_fingerprint(base_dir):
            raise FactoryError(f"{table}: measured on another version of the base {base_dir}; rerun "
                               "`factory lora probe ...` for this base or pass --layers GROUPS")
        return {"groups": probe["chosen"], "source": f"auto: probe table {table} "
                f"(concepts {', '.join(probe['concepts'])})", "rule": probe["rule"], "probe": _probe_summary(probe)}
    if opts.probe_table:
        raise FactoryError(f"--probe-table {table}: no such file")
    data_dir = workspace.data(concept)
    probe = probe_layers(base_dir, [data_dir], _search_settings(base_dir, opts), workspace.text_cache,
                         rank=opts.probe_rank, fraction=opts.auto_fraction, seed=opts.seed,
                         ids={concept: pairs["search"]}, quiet=quiet, bias=opts.bias())
    write_probe(probe, out_dir / "probe")
    return {"groups": probe["chosen"], "source": f"auto: probed on this concept (no probe table at {table}; "
            f"run `factory lora probe` to share one across concepts)", "rule": AUTO_RULE.format(
                frac=opts.auto_fraction), "probe": _probe_summary(probe)}


def _probe_summary(probe: dict) -> dict:
    return {k: probe[k] for k in ("ranking", "prefix", "all_groups_gain", "e2gan", "chosen", "concepts") if k in probe}


def _search_settings(base_dir: Path, opts: FinetuneOptions) -> TrainSettings:
    _, meta = load_base(base_dir)
    return settings_for(meta, opts, opts.search_steps, None)


def plan_ranks(base_dir: Path, data_dir: Path, groups: list[str], opts: FinetuneOptions, pairs: dict,
               text_cache: Path | None, quiet: bool) -> dict[str, Any]:
    if opts.rank not in (None, "auto"):
        r = int(opts.rank)
        return {"mode": "explicit (--rank)", "ranks": {g: r for g in groups}, "bias": opts.bias()}
    from tqdm import tqdm

    from base_gan.rank_search import search_ranks

    val = HeldOut(data_dir, split="train", ids=pairs["validation"])
    settings = _search_settings(base_dir, opts)
    zero = base_zero_shot(base_dir, data_dir, val, text_cache)
    n = len(opts.rank_candidates) * (1 + (len(groups) if opts.rank_mode == "group" and len(groups) > 1 else 0))
    with tqdm(total=n, desc="rank search", unit="run", disable=quiet) as bar:
        def show(row: dict) -> None:
            bar.update(1)
            bar.set_postfix(rank=row["rank"], psnr=f"{row['psnr']:.2f}")

        result = search_ranks(lambda lay: short_run(base_dir, data_dir, lay, pairs["search"], val, settings,
                                                    text_cache),
                              groups, opts.rank_candidates, opts.rank_tolerance, opts.rank_mode, on_row=show,
                              bias=opts.bias(), fits=size_budget(base_dir, opts.max_fraction))
    result["max_fraction"] = opts.max_fraction
    result["validation_zero_shot_psnr"] = zero["psnr"]
    result["search_steps"] = opts.search_steps
    return result


def size_budget(base_dir: Path, max_fraction: float | None) -> Callable[[LoraLayout], bool] | None:
    """``fits(layout)``: the layout's adapter is at most ``max_fraction`` of the generator's parameters."""
    if not max_fraction:
        return None
    from base_gan.complexity import count_params

    total = count_params(load_base(base_dir)[0])

    def fits(layout: LoraLayout) -> bool:
        return count_adapter_params(wrap(load_base(base_dir)[0], layout)) <= max_fraction * total

    return fits


def make_plan(workspace: Workspace, concept: str, base_dir: Path, opts: FinetuneOptions, out_dir: Path,
              quiet: bool = False) -> dict[str, Any]:
    """Resolve pairs, layers and ranks (running the probe / rank search when asked to)."""
    data_dir = workspace.data(concept)
    started = time.perf_counter()
    plan: dict[str, Any] = {"pairs": plan_pairs(data_dir, base_dir, opts)}
    if opts.kind == "scratch":
        if opts.layers not in (None, "auto") or opts.rank not in (None, "auto"):
            raise FactoryError("--layers/--rank apply to LoRA fine-tunes, not to --init scratch (full training)")
        plan["search_seconds"] = round(time.perf_counter() - started, 1)
        return plan
    if opts.kind in ("adapter", "weightgen"):
        if opts.kind == "weightgen":
            init_dir = weightgen_adapter(workspace, concept, concept_instruction(data_dir), base_dir,
                                         out_dir / "init", opts.seed)
        else:
            init_dir = Path(opts.init)
            if not is_adapter(init_dir):
                raise FactoryError(f"--init {opts.init}: not a LoRA adapter folder (expected adapter_config.json "
                                   "and adapter_model.safetensors), nor base, scratch or weightgen")
        layout = layout_of_adapter(init_dir)
        _check_matches(layout, opts)
        plan.update(init_adapter=str(init_dir.resolve()), layout=layout.to_dict(),
                    layers={"groups": layout.groups, "source": f"the init adapter's ({init_dir})"},
                    rank={"mode": "the init adapter's", "ranks": layout.to_dict()["ranks"]})
        plan["search_seconds"] = round(time.perf_counter() - started, 1)
        return plan
    plan["layers"] = plan_layers(workspace, concept, base_dir, opts, plan["pairs"], out_dir, quiet)
    plan["rank"] = plan_ranks(base_dir, data_dir, plan["layers"]["groups"], opts, plan["pairs"],
                              workspace.text_cache, quiet)
    ranks = plan["rank"]["ranks"]
    plan["layout"] = LoraLayout(plan["layers"]["groups"], rank=max(ranks.values()), ranks=ranks,
                                bias=opts.bias()).to_dict()
    plan["search_seconds"] = round(time.perf_counter() - started, 1)
    return plan


def _check_matches(layout: LoraLayout, opts: FinetuneOptions) -> None:
    if opts.layers not in (None, "auto") and parse_groups(opts.layers) != layout.groups:
        raise FactoryError(f"--layers {opts.layers} differs from the init adapter's groups {','.join(layout.groups)}")
    if opts.rank not in (None, "auto") and any(layout.rank_of(g) != int(opts.rank) for g in layout.groups):
        raise FactoryError(f"--rank {opts.rank} differs from the init adapter's ranks {layout.to_dict()['ranks']}")
    if opts.lora_bias is not None and opts.lora_bias != layout.bias:
        raise FactoryError(f"--{'' if opts.lora_bias else 'no-'}lora-bias differs from the init adapter's "
                           f"(lora_bias {str(layout.bias).lower()})")


# -- the fine-tune ---------------------------------------------------------------------------------
def validate(opts: FinetuneOptions) -> None:
    """Refuse bad options before anything runs (FactoryError naming the option)."""
    from base_gan.pair_selection import SELECT_METHODS

    if opts.layers not in (None, "auto"):
        parse_groups(opts.layers)
    if opts.rank not in (None, "auto") and (not str(opts.rank).isdigit() or int(opts.rank) < 1):
        raise FactoryError(f"--rank {opts.rank}: expected auto or a whole number >= 1")
    if opts.select not in SELECT_METHODS:
        raise FactoryError(f"--select {opts.select}: expected one of {', '.join(SELECT_METHODS)}")
    if opts.rank_mode not in ("global", "group"):
        raise FactoryError(f"--rank-mode {opts.rank_mode}: expected global or group")
    if opts.kind == "adapter" and not is_adapter(Path(opts.init)):
        raise FactoryError(f"--init {opts.init}: not a LoRA adapter folder (expected adapter_config.json and "
                           "adapter_model.safetensors), nor base, scratch or weightgen")
    if opts.kind == "scratch" and (opts.layers not in (None, "auto") or opts.rank not in (None, "auto")):
        raise FactoryError("--layers/--rank apply to LoRA fine-tunes, not to --init scratch (full training)")


def default_out_dir(workspace: Workspace, concept: str, opts: FinetuneOptions) -> Path:
    return workspace.lora(concept) / "scratch" if opts.kind == "scratch" else workspace.lora(concept)


def _fingerprint(concept: str, base_dir: Path, opts: FinetuneOptions) -> dict[str, Any]:
    d = {k: v for k, v in asdict(opts).items() if k not in RESUMABLE}
    d["rank_candidates"] = list(d["rank_candidates"])
    return {"concept": concept, "base": str(Path(base_dir).resolve()), **d}


def finetune(workspace: Workspace, concept: str, base_dir: Path, opts: FinetuneOptions,
             out_dir: Path | None = None, restart: bool = False, quiet: bool = False,
             log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or resume) one fine-tune and write its outputs; returns the metrics dict."""
    from tqdm import tqdm

    base_dir = Path(base_dir)
    data_dir = workspace.data(concept)
    out_dir = Path(out_dir) if out_dir is not None else default_out_dir(workspace, concept, opts)
    base, meta = load_base(base_dir)
    instruction = concept_instruction(data_dir)
    if restart:
        shutil.rmtree(out_dir / CHECKPOINTS, ignore_errors=True)
        for name in (RUN_FILE, CURVE_CSV):
            (out_dir / name).unlink(missing_ok=True)
    validate(opts)
    fingerprint = _fingerprint(concept, base_dir, opts)
    run_file = out_dir / RUN_FILE
    resuming = latest_checkpoint(out_dir) is not None and run_file.is_file()
    if resuming:
        saved = json.loads(run_file.read_text(encoding="utf-8"))
        changed = sorted(k for k in set(fingerprint) | set(saved["options"])
                         if fingerprint.get(k) != saved["options"].get(k))
        if changed:
            raise FactoryError(f"{out_dir}: its checkpoints were made with different {', '.join(changed)}; "
                               "pass the same options to resume, --restart to start over, or another --out")
        plan = saved["plan"]
    else:
        plan = make_plan(workspace, concept, base_dir, opts, out_dir, quiet)
        atomic_write_json(run_file, {"options": fingerprint, "plan": plan})

    settings = settings_for(meta, opts, opts.steps, opts.seconds)
    ids = {concept: plan["pairs"]["train"]}
    if opts.kind == "scratch":
        model = generator_from_config(meta["generator"], seed=opts.seed)
        trainable, layout = None, None
    else:
        layout = LoraLayout.from_dict(plan["layout"])
        init = Path(plan["init_adapter"]) if plan.get("init_adapter") else None
        model, layout = adapted_base(base_dir, layout, init, opts.seed)
        trainable = lora_parameters(model)
    trainer = Trainer(out_dir, [data_dir], settings, workspace.text_cache, generator=model,
                      trainable=trainable, ids=ids)
    test = HeldOut(data_dir, split="test")
    edit = conditioned(model, trainer)
    curve: list[dict[str, float]] = []
    if resuming and trainer.resume():
        curve = [r for r in read_curve(out_dir / CURVE_CSV) if r["step"] <= trainer.state.step]
        log(f"resuming {out_dir} from step {trainer.state.step}")
    if not curve:
        curve = [{"step": 0, "seconds": 0.0, **test.score(edit, model)}]

    def record(state) -> None:
        curve.append({"step": state.step, "seconds": round(state.seconds, 3), **test.score(edit, model)})
        write_curve(out_dir / CURVE_CSV, curve)

    total = opts.steps
    with tqdm(total=total, initial=trainer.state.step, desc=f"finetune {concept}", unit="step", disable=quiet) as bar:
        def show(entry: dict) -> None:
            bar.update(1)
            bar.set_postfix(l1=f"{entry['l1']:.3f}", psnr=f"{curve[-1]['psnr']:.2f}")

        state = trainer.train(progress=show, eval_every=opts.eval_every, on_eval=record)
    if curve[-1]["step"] != state.step:
        curve.append({"step": state.step, "seconds": round(state.seconds, 3), **test.score(edit, model)})
    write_curve(out_dir / CURVE_CSV, curve)

    metrics = _finish(workspace, concept, instruction, base_dir, meta, opts, plan, trainer, model, layout,
                      curve, out_dir)
    return metrics


def _finish(workspace: Workspace, concept: str, instruction: str, base_dir: Path, meta: dict, opts: FinetuneOptions,
            plan: dict, trainer: Trainer, model: nn.Module, layout: LoraLayout | None, curve: list[dict],
            out_dir: Path) -> dict[str, Any]:
    from base_gan.complexity import count_params
    from factory.evaluate import evaluate, save_grid

    data_dir = workspace.data(concept)
    model.eval()
    result, triples = evaluate(conditioned(model, trainer), data_dir)
    base_q = base_zero_shot(base_dir, data_dir, HeldOut(data_dir, "test"), workspace.text_cache)
    save_grid(out_dir / "samples.png", triples)
    gen_params = count_params(load_base(base_dir)[0])
    metrics: dict[str, Any] = {
        "concept": concept, "instruction": instruction, "base": str(base_dir), "init": opts.init,
        "options": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(opts).items()},
        "pairs": {k: v for k, v in plan["pairs"].items() if k != "search"},
        "search_seconds": plan.get("search_seconds", 0.0),
        "training": {"steps": trainer.state.step, "seconds": round(trainer.state.seconds, 2),
                     "settings": asdict(trainer.s)},
        "test": {"student": result["student"], "identity": result["identity"], "base_zero_shot": base_q,
                 "test_pairs": result["test_pairs"], "lpips": result["lpips"]},
        "curve": {"csv": CURVE_CSV, "png": CURVE_PNG, "x": "training wall-clock seconds (evaluation excluded)",
                  "y": "held-out (test split) PSNR, dB"},
        "generator_params": gen_params,
    }
    if opts.kind == "scratch":
        trainer.save_final({"concepts": [concept], "instructions": [instruction],
                            "text_encoder": meta.get("text_encoder", "minilm")})
        metrics["saved"] = {"generator": "generator.safetensors", "config": "config.json"}
    else:
        save_adapter(model, out_dir)
        n = count_adapter_params(model)
        metrics.update(layers=plan.get("layers"), rank=plan.get("rank"), layout=layout.to_dict(),
                       layout_fixed_with=f"--layers {','.join(layout.groups)} --rank N "
                                         f"--{'' if layout.bias else 'no-'}lora-bias (same for every concept)",
                       adapter_params=n, adapter_fraction=n / gen_params,
                       saved={"adapter": ["adapter_config.json", "adapter_model.safetensors"], "format": "peft LoRA"})
        if plan.get("init_adapter"):
            metrics["init_adapter"] = plan["init_adapter"]
    atomic_write_png(out_dir / CURVE_PNG, plot_curve(curve, concept, base_q["psnr"], result["identity"]["psnr"]))
    atomic_write_json(out_dir / METRICS, metrics)
    return metrics


# -- curve files ------------------------------------------------------------------------------------
CURVE_FIELDS = ("step", "seconds", "psnr", "ssim", "l1")


def write_curve(path: Path, rows: list[dict[str, float]]) -> Path:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(CURVE_FIELDS), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (int(r[k]) if k == "step" else round(float(r[k]), 5)) for k in CURVE_FIELDS})
    return atomic_write_text(path, buf.getvalue())


def read_curve(path: Path) -> list[dict[str, float]]:
    if not Path(path).is_file():
        return []
    with open(path, encoding="utf-8") as fh:
        return [{k: (int(v) if k == "step" else float(v)) for k, v in row.items()} for row in csv.DictReader(fh)]


def plot_curve(curve: list[dict], concept: str, base_psnr: float | None = None,
               identity_psnr: float | None = None) -> np.ndarray:
    from factory.plot import line_chart

    refs = {}
    if identity_psnr is not None:
        refs["identity (source)"] = identity_psnr
    if base_psnr is not None:
        refs["base zero-shot"] = base_psnr
    return line_chart({"fine-tune": ([r["seconds"] for r in curve], [r["psnr"] for r in curve])},
                      title=f"{concept}: held-out PSNR vs training time", xlabel="seconds", ylabel="PSNR dB",
                      hlines=refs)
