"""Training the weight generator: DDPM on normalized weight blocks, conditioned on the concept text.

Each step draws its adapters, blocks, timesteps and noise from seeds derived from (seed, step), adds
noise with diffusers' ``DDPMScheduler.add_noise`` and regresses the scheduler's target (``epsilon``:
the noise; ``sample``: the clean blocks (x0); ``v_prediction``: ``get_velocity``) with an MSE over
the real (unpadded) values. A run resumed from a checkpoint therefore takes exactly the steps an
uninterrupted run takes. Checkpoints are whole folders written under a temp name and renamed in.

Data-parallel (``factory weightgen train --processes N``, ``accelerate launch``, ``torchrun``): every process
draws the same global batch, takes its slice (``base_gan.distributed.Parallel``) and the gradients are
averaged, each slice's loss being its share of the global batch's masked mean; N processes train what one
trains with the same batch, and process 0 writes the checkpoints (any number of processes resumes them).

Output folder (``<workspace>/weightgen/<name>/``), laid out like a diffusers pipeline::

    denoiser/              the denoiser as a diffusers model (config.json + weights; EMA weights when --ema)
    scheduler/             the DDPM scheduler's scheduler_config.json (sampling builds its DDIM from it)
    tokenizer.json/.safetensors   layout, block size, adapter_config template, normalization statistics
    training.json          settings, training texts, base, dataset fingerprint, steps, final loss
    dataset.json/.safetensors     the weight dataset it was trained on (``weightgen collect``)
    checkpoints/step-XXXXXXX/     model/ema.safetensors, optim.pt, state.json
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from diffusers import ModelMixin
from safetensors.torch import load_file, save_file

from base_gan.distributed import parallel
from base_gan.models import TRAINING, is_model_folder, save_model, state_dict_for_save
from factory.core.atomic import atomic_write_json
from factory.core.configs import to_dict
from factory.core.errors import FactoryError
from factory.core.resume import check_resumable
from factory.core.seeds import derive_seed
from factory.core.training_loop import TrainState, latest_checkpoint, run_budgeted, write_checkpoint
from weight_generator.dataset import WeightDataset
from weight_generator.denoiser import BlockUNet
from weight_generator.joint import JointTransformer
from weight_generator.tokenize import DEFAULT_BLOCK_SIZE, WeightTokenizer

DENOISER_DIR = "denoiser"
SCHEDULER_DIR = "scheduler"
CHECKPOINT_WEIGHTS = "model.safetensors"
DENOISERS: dict[str, type[ModelMixin]] = {"block": BlockUNet, "joint": JointTransformer}
PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")
#: settings a resumed run may change (a longer budget, checkpoint cadence); any other change is refused
RESUMABLE_CHANGES = {"steps", "seconds", "checkpoint_every", "keep_checkpoints"}


@dataclass
class WeightGenSettings:
    """Hyper-parameters of one weight-generator run (saved in training.json and every checkpoint).

    Default variant ``joint``: on a 12-adapter dataset (64 px, rank 4, 59 blocks of 256) with 300 steps
    each, the per-block U-Net's one-step samples for held-out texts were the average adapter (distance
    to it 0.065; to a training text's own adapter 0.91), while the joint model (width 128, depth 4)
    fitted training adapters (0.58) and for one of two held-out concepts landed nearer its own adapter
    than the average does (0.40 vs 0.57), training 6x faster per step; bench/weightgen.py repeats the
    comparison at full scale.
    """

    variant: str = "joint"               # "joint" (attention across blocks; default, see below) or "block" (1-D U-Net)
    block_size: int = DEFAULT_BLOCK_SIZE
    stats: str = "element"               # normalization: "tensor" (mean/scale per tensor) or "element"
    channels: tuple[int, int, int] = (32, 64, 64)
    attn_levels: tuple[bool, bool, bool] = (False, False, True)
    ff_mult: int = 2
    width: int = 128
    depth: int = 4
    emb_dim: int = 128
    heads: int = 4
    prediction_type: str = "sample"      # "sample" (x0), "epsilon" or "v_prediction"
    beta_schedule: str = "squaredcos_cap_v2"
    num_train_timesteps: int = 1000
    steps: int = 2000
    seconds: float | None = None         # wall-clock budget; stops at whichever of steps/seconds comes first
    batch: int | None = None             # blocks per step ("block", default 64) or adapters per step ("joint", 4)
    lr: float = 3e-4
    weight_decay: float = 0.0
    warmup: int = 50
    ema: float | None = None
    checkpoint_every: int = 200
    keep_checkpoints: int = 2
    seed: int = 0
    text_encoder: str = "minilm"
    recipe_tokens: bool = False          # also attend to one token per family op the grammar reads in the text

    def __post_init__(self) -> None:
        self.channels = tuple(int(c) for c in self.channels)
        self.attn_levels = tuple(bool(a) for a in self.attn_levels)
        if self.prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {self.prediction_type!r}")
        if self.variant not in DENOISERS:
            raise ValueError(f"variant must be one of {', '.join(DENOISERS)}, got {self.variant!r}")
        if self.batch is None:
            self.batch = 64 if self.variant == "block" else 4

    def denoiser(self, n_blocks: int, text_dim: int) -> ModelMixin:
        """A fresh denoiser of ``variant`` for ``n_blocks`` blocks and ``text_dim``-wide text, seeded."""
        common = dict(block_size=self.block_size, n_blocks=n_blocks, text_dim=text_dim, heads=self.heads,
                      ff_mult=self.ff_mult)
        extra = (dict(emb_dim=self.emb_dim, channels=self.channels, attn_levels=self.attn_levels)
                 if self.variant == "block" else dict(width=self.width, depth=self.depth))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            try:
                return DENOISERS[self.variant](**common, **extra)
            except ValueError as exc:
                raise FactoryError(f"weight generator: {exc}") from None


def is_weightgen(folder: str | Path) -> bool:
    """Whether ``folder`` holds a trained weight generator."""
    return is_model_folder(Path(folder) / DENOISER_DIR)


def make_scheduler(settings: WeightGenSettings):
    """diffusers' DDPMScheduler for training (no clipping: normalized weights are not images in [-1, 1])."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=settings.num_train_timesteps, beta_schedule=settings.beta_schedule,
                         prediction_type=settings.prediction_type, clip_sample=False)


class WeightGenTrainer:
    """Owns the tokenizer, the denoiser, its optimizer and the data of one run in ``out_dir``."""

    def __init__(self, out_dir: str | Path, dataset: WeightDataset, settings: WeightGenSettings,
                 text_cache: str | Path | None = None):
        from weight_generator.text_condition import condition_tokens

        self.out_dir = Path(out_dir)
        self.s = settings
        self.dataset = dataset
        self.tokenizer = WeightTokenizer.fit(dataset.weights, dataset.layout, dataset.adapter_config,
                                             settings.block_size, settings.stats)
        self.blocks = self.tokenizer.encode(dataset.weights).to(torch.float32)      # [N, K, S]
        self.valid = self.tokenizer.valid_mask().to(torch.float32)                  # [K, S]
        self.text, self.text_mask = condition_tokens(dataset.instructions, settings.text_encoder, text_cache,
                                                     settings.recipe_tokens)        # [N, L, D], [N, L]
        self.model = settings.denoiser(self.tokenizer.n_blocks, self.text.shape[-1]).train()
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
        self.ema = None
        if settings.ema:
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

            self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(settings.ema))
        self.scheduler = make_scheduler(settings)
        self.state = TrainState()
        self.par = parallel()  # one process, or this one's place in a data-parallel group
        if settings.batch % self.par.world:
            raise FactoryError(f"--batch {settings.batch} does not split over {self.par.world} processes")

    # -- sizes ----------------------------------------------------------------------------------
    @property
    def steps_per_epoch(self) -> int:
        """Steps for one pass over the data: every block once (block) or every adapter once (joint)."""
        n = len(self.dataset) * (self.tokenizer.n_blocks if self.s.variant == "block" else 1)
        return max(1, math.ceil(n / self.s.batch))

    # -- one step ---------------------------------------------------------------------------------
    def batch(self, step: int) -> dict[str, torch.Tensor]:
        """The (deterministic) batch of ``step``: clean blocks, their indices, texts, timesteps, noise."""
        g = torch.Generator().manual_seed(derive_seed(self.s.seed, "weightgen-batch", step))
        n, k, _ = self.blocks.shape
        adapters = torch.randint(n, (self.s.batch,), generator=g)
        if self.s.variant == "block":
            index = torch.randint(k, (self.s.batch, 1), generator=g)
            x0 = self.blocks[adapters[:, None], index]                               # [B, 1, S]
        else:
            index = torch.arange(k).expand(self.s.batch, k)
            x0 = self.blocks[adapters]                                               # [B, K, S]
        t = torch.randint(self.s.num_train_timesteps, (self.s.batch,), generator=g)
        noise = torch.randn(x0.shape, generator=g)
        return {"x0": x0, "index": index, "adapters": adapters, "t": t, "noise": noise,
                "valid": self.valid[index]}

    def loss(self, model: torch.nn.Module, b: dict[str, torch.Tensor], total: torch.Tensor | None = None
             ) -> torch.Tensor:
        """The masked MSE of ``b``; with ``total``, the sum over ``b`` divided by ``total`` (a slice's share of
        the global batch's mean, whose valid count is ``total``)."""
        xt = self.scheduler.add_noise(b["x0"], b["noise"], b["t"])
        if self.s.prediction_type == "epsilon":
            target = b["noise"]
        elif self.s.prediction_type == "sample":
            target = b["x0"]
        else:
            target = self.scheduler.get_velocity(b["x0"], b["noise"], b["t"])
        pred = model(xt, b["t"], b["index"], self.text[b["adapters"]], self.text_mask[b["adapters"]])
        return ((pred - target).pow(2) * b["valid"]).sum() / (b["valid"].sum() if total is None else total)

    def train_step(self, step: int) -> dict[str, float]:
        for group in self.opt.param_groups:
            group["lr"] = self.s.lr * min(1.0, (step + 1) / max(1, self.s.warmup))
        b = self.batch(step)
        if self.par.world == 1:
            loss = self.loss(self.model, b)
        else:  # this process's slice; x world because average_gradients divides the summed gradients by world
            mine = torch.tensor(self.par.shard(range(self.s.batch)))
            loss = self.loss(self.model, {k: v[mine] for k, v in b.items()}, b["valid"].sum()) * self.par.world
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.par.average_gradients(self.model.parameters())
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        return {"step": step + 1, "loss": self.par.mean([loss.item()])[0]}

    @torch.no_grad()
    def eval_loss(self, steps: list[int] | None = None, use_final: bool = True) -> float:
        """Mean loss over fixed batches (those of steps 10**6 + i): comparable across checkpoints."""
        model = self.final_model() if use_final else self.model
        was = model.training
        model.eval()
        steps = steps or [10**6 + i for i in range(8)]
        value = sum(self.loss(model, self.batch(s)).item() for s in steps) / len(steps)
        model.train(was)
        return value

    # -- loop -------------------------------------------------------------------------------------
    def train(self, progress: Callable[[dict[str, float]], None] | None = None) -> TrainState:
        """Train until ``steps`` (or the seconds budget); checkpoint every ``checkpoint_every`` steps."""
        return run_budgeted(self.state, steps=self.s.steps, seconds=self.s.seconds,
                            checkpoint_every=self.s.checkpoint_every, train_step=self.train_step,
                            save_checkpoint=self.save_checkpoint, progress=progress, agree=self.par.any)

    def final_model(self) -> torch.nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def training(self) -> dict[str, Any]:
        """What ``training.json`` records: settings, texts, base, dataset fingerprint, steps and loss."""
        return {"kind": "weightgen", "settings": to_dict(self.s), "variant": self.s.variant,
                "text_encoder": self.s.text_encoder, "concepts": self.dataset.concepts,
                "instructions": self.dataset.instructions, "base": self.dataset.base,
                "dataset_fingerprint": self.dataset.fingerprint(), "steps_done": self.state.step,
                "seconds": round(self.state.seconds, 1), "processes": self.par.world,
                "final_loss": self.state.history[-1]["loss"] if self.state.history else None}

    def save_final(self) -> Path:
        """The trained denoiser (EMA weights when enabled), its scheduler, tokenizer and training.json (last);
        written by process 0 of a data-parallel group."""
        if self.par.main:
            self.tokenizer.save(self.out_dir)
            self.scheduler.save_pretrained(str(self.out_dir / SCHEDULER_DIR))
            save_model(self.final_model(), self.out_dir / DENOISER_DIR)
            atomic_write_json(self.out_dir / TRAINING, self.training())
        self.par.barrier()
        return self.out_dir

    # -- checkpoints ------------------------------------------------------------------------------
    def save_checkpoint(self) -> Path | None:
        """Every process holds the same weights: process 0 writes them."""
        if not self.par.main:
            return None

        def write(folder: Path) -> None:
            save_file(state_dict_for_save(self.model), folder / CHECKPOINT_WEIGHTS)
            if self.ema is not None:
                save_file(state_dict_for_save(self.ema), folder / "ema.safetensors")
            torch.save({"opt": self.opt.state_dict()}, folder / "optim.pt")
            atomic_write_json(folder / "state.json", {"settings": to_dict(self.s),
                                                      "dataset_fingerprint": self.dataset.fingerprint(),
                                                      **to_dict(self.state)})

        return write_checkpoint(self.out_dir, self.state.step, write, self.s.keep_checkpoints)

    def check_resumable(self) -> None:
        """FactoryError when the newest checkpoint was made with other settings or another dataset."""
        ckpt = latest_checkpoint(self.out_dir)
        if ckpt is None:
            return
        saved = json.loads((ckpt / "state.json").read_text())
        # a setting added after a checkpoint was written had its default there (new settings keep old behaviour)
        made_with = {f.name: f.default for f in fields(WeightGenSettings) if f.default is not MISSING}
        made_with.update(saved["settings"])
        check_resumable(made_with, to_dict(self.s), self.out_dir, RESUMABLE_CHANGES, retry="another --name")
        if saved.get("dataset_fingerprint") != self.dataset.fingerprint():
            raise FactoryError(f"{self.out_dir}: the weight dataset changed since its checkpoints were made; "
                               "--restart to train on the new dataset, or another --name")

    def resume(self) -> bool:
        """Load the newest complete checkpoint; False when there is none."""
        ckpt = latest_checkpoint(self.out_dir)
        if ckpt is None:
            return False
        self.check_resumable()
        self.model.load_state_dict(load_file(ckpt / CHECKPOINT_WEIGHTS))
        if self.ema is not None and (ckpt / "ema.safetensors").exists():
            self.ema.load_state_dict(load_file(ckpt / "ema.safetensors"))
        self.opt.load_state_dict(torch.load(ckpt / "optim.pt", weights_only=True)["opt"])
        state = json.loads((ckpt / "state.json").read_text())
        self.state = TrainState(step=state["step"], seconds=state["seconds"], history=state["history"])
        return True

