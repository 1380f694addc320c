"""Training a generator (the multi-concept base, or the pix2pix baseline) with a conditional PatchGAN.

Every step draws its batch and its augmentation from seeds derived from (seed, step), so a run
resumed from a checkpoint takes exactly the steps an uninterrupted run takes. Checkpoints are whole
folders written under a temp name and renamed into place.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import Dataset

from base_gan.distributed import parallel
from base_gan.models import build_model, round_to_float16_, save_model, state_dict_for_save, unwrap
from base_gan.rollback import DEFAULT_LIMIT, Rollback
from factory.core.atomic import atomic_write_json
from factory.core.configs import to_dict
from factory.core.errors import FactoryError
from factory.core.resume import check_resumable
from factory.core.seeds import derive_seed
from factory.core.training_loop import TrainState, latest_checkpoint, run_budgeted, write_checkpoint
from factory.data.dataset import PairedDataset

#: settings a resumed run may change (a longer budget, another checkpoint cadence); any other change is refused
RESUMABLE = frozenset({"steps", "seconds", "checkpoint_every", "keep_checkpoints"})


@dataclass
class TrainSettings:
    """Hyper-parameters of one training run (saved in training.json and in every checkpoint).

    ``generator`` is ``{"arch": "e2gan" | "pix2pix", **the architecture's arguments}`` (``base_gan.models``).
    """

    generator: dict[str, Any] = field(default_factory=lambda: {"arch": "e2gan"})
    disc_nf: int = 32
    disc_norm: str = "batch"  # the discriminator's norm: batch (the pix2pix reference), instance or none
    steps: int = 2000
    seconds: float | None = None  # wall-clock budget; stops at whichever of steps/seconds comes first
    batch: int = 8
    lr: float = 2e-4
    beta1: float = 0.5
    decay_from: float = 0.5  # linear LR decay to 0 over the last (1 - decay_from) of the steps
    decay_over: str = "steps"  # budget: of the steps or of the seconds budget, whichever is further along
    warmup: int = 0  # linear LR warm-up over the first N steps (0: none): a fine-tune from a trained start
    l1_weight: float = 100.0
    gan_weight: float = 1.0
    gan_loss: str = "lsgan"
    lpips_weight: float = 0.0
    fm_weight: float = 0.0
    ema: float | None = None
    augment: bool = True
    text_dropout: float = 0.0  # share of samples trained as the identity under an empty or unrelated text
    rollback_l1: float | None = DEFAULT_LIMIT  # a step's L1 above this: back to a snapshot at half the LR (None: off)
    checkpoint_every: int = 200
    keep_checkpoints: int = 2
    seed: int = 0


#: texts a base trained with ``text_dropout`` maps to the unchanged photo: no text, and texts that name no edit
NULL_TEXTS = ("", "a photo", "a photo of a cat on a sofa", "people walking down a city street",
              "my holiday pictures", "leave the photo unchanged", "no edit", "keep it exactly as it is",
              "a landscape with mountains and a lake",
              "the quick brown fox jumps over the lazy dog", "table chair window door", "hello")


class Trainer:
    """Owns the models, optimizers and data of one run in ``out_dir``.

    By default it trains a fresh generator built from ``settings.generator``. For fine-tuning, pass a
    prepared ``generator`` (e.g. a peft-wrapped base) and the ``trainable`` parameters: only those
    are optimized and only those go into checkpoints (the frozen rest is the caller's to rebuild).
    ``ids`` restricts the training pairs per concept (``{concept: [pair ids]}``); ``data`` replaces the pairs
    with another dataset of the same items (e.g. ``factory.data.multiscale.ScaledPairs``, whose items also carry
    the ``position`` the generator gets).
    """

    def __init__(self, out_dir: Path, data_dirs: list[Path], settings: TrainSettings,
                 text_cache: Path | None = None, *, generator: nn.Module | None = None,
                 trainable: Iterable[nn.Parameter] | None = None,
                 ids: dict[str, Sequence[str]] | None = None, data: Dataset | None = None):
        from base_gan.discriminator import build_discriminator
        from base_gan.losses import gan_loss

        self.out_dir = Path(out_dir)
        self.s = settings
        self.data = data if data is not None else PairedDataset(data_dirs, split="train", augment=settings.augment,
                                                                 ids=ids)
        if generator is None:
            generator = build_model(seed=settings.seed, **settings.generator)
        self.G = generator.train()
        self.D = build_discriminator(seed=settings.seed + 1, nf=settings.disc_nf, norm=settings.disc_norm).train()
        params = list(self.G.parameters()) if trainable is None else list(trainable)
        if not params:
            raise ValueError("no trainable generator parameters")
        # names of the parameters checkpoints hold (None: the whole state dict)
        self._saved_names: set[str] | None = None
        if trainable is not None:
            ids_ = {id(p) for p in params}
            self._saved_names = {n for n, p in self.G.named_parameters() if id(p) in ids_}
        self.opt_g = torch.optim.Adam(params, lr=settings.lr, betas=(settings.beta1, 0.999))
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=settings.lr, betas=(settings.beta1, 0.999))
        self.ema = None
        if settings.ema:
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

            self.ema = AveragedModel(self.G, multi_avg_fn=get_ema_multi_avg_fn(settings.ema))
        self.gan = gan_loss(settings.gan_loss)
        self.lpips = None
        if settings.lpips_weight > 0:
            from base_gan.losses import LPIPSLoss

            self.lpips = LPIPSLoss()  # raises FactoryError when its weights are not available
        self._params_g = params
        self.par = parallel()  # one process, or this one's place in a data-parallel group
        if settings.batch % self.par.world:
            raise FactoryError(f"--batch {settings.batch} does not split over {self.par.world} processes")
        if self.par.world > 1 and settings.disc_norm == "batch" and torch.cuda.is_available():
            # BatchNorm over the global batch, as one process computes it (SyncBatchNorm needs GPUs; on CPUs
            # each process normalizes its slice, as plain DDP does: --disc-norm instance trains what one does)
            self.D = nn.SyncBatchNorm.convert_sync_batchnorm(self.D)
        self.state = TrainState()
        self.text_tokens, self.text_mask = self._encode_texts(text_cache)

    # -- text ---------------------------------------------------------------------------------
    def uses_text(self) -> bool:
        return bool(getattr(unwrap(self.G), "takes_text", False))

    def _encode_texts(self, cache: Path | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        if not self.uses_text():
            return None, None
        from factory.text.encoder import TextEncoder

        enc = TextEncoder.from_name(unwrap(self.G).config.text_encoder, cache_dir=cache)
        if not self.s.text_dropout:
            return enc.tokens(self.data.instructions)
        tokens, mask = enc.tokens(list(self.data.instructions) + [t or "-" for t in NULL_TEXTS])
        mask[len(self.data.instructions) + NULL_TEXTS.index("")] = False  # no text at all: every token masked
        return tokens, mask

    # -- one step -----------------------------------------------------------------------------
    def _batch(self, step: int) -> dict[str, torch.Tensor]:
        """This process's slice of step ``step``'s global batch: the samples, their augmentation (seeded per
        sample) and text dropout depend on (seed, step, position) only, so any number of processes draws the
        same global batch."""
        g = torch.Generator().manual_seed(derive_seed(self.s.seed, "batch", step))
        idx = torch.randint(len(self.data), (self.s.batch,), generator=g).tolist()
        mine = self.par.shard(range(self.s.batch))
        items = []
        for k in mine:
            torch.manual_seed(derive_seed(self.s.seed, "augment", step, k))  # kornia augmentation
            items.append(self.data[idx[k]])
        torch.manual_seed(derive_seed(self.s.seed, "forward", step, self.par.rank))  # dropout, if any
        batch = {k: torch.stack([it[k] for it in items]) for k in ("source", "target", "position") if k in items[0]}
        batch["concept"] = torch.tensor([it["concept"] for it in items])
        if self.s.text_dropout:  # these samples learn "no known edit -> the photo unchanged"
            drop = (torch.rand(self.s.batch, generator=g) < self.s.text_dropout)[mine]
            null = (len(self.data.instructions) + torch.randint(len(NULL_TEXTS), (self.s.batch,), generator=g))[mine]
            batch["target"] = torch.where(drop[:, None, None, None], batch["source"], batch["target"])
            batch["concept"] = torch.where(drop, null, batch["concept"])
        return batch

    def generate(self, model: nn.Module, source: torch.Tensor, concept: torch.Tensor,
                 position: torch.Tensor | None = None) -> torch.Tensor:
        where = {} if position is None else {"position": position}
        if self.text_tokens is None:
            return model(source, **where)
        return model(source, self.text_tokens[concept], self.text_mask[concept], **where)

    def _lr_scale(self, step: int) -> float:
        warm = min(1.0, (step + 1) / self.s.warmup) if self.s.warmup > 0 else 1.0
        return warm * self._decay_scale(step)

    def _decay_scale(self, step: int) -> float:
        start = int(self.s.steps * self.s.decay_from)
        by_steps = 1.0 if step < start else max(0.0, 1.0 - (step - start) / max(1, self.s.steps - start))
        if self.s.decay_over != "budget" or not self.s.seconds or self.s.decay_from >= 1:
            return by_steps
        # the processes of a data-parallel group take one rate (their clocks differ)
        done = self.par.mean([self.state.seconds])[0] / self.s.seconds
        by_time = 1.0 if done < self.s.decay_from else max(0.0, (1.0 - done) / (1.0 - self.s.decay_from))
        return min(by_steps, by_time)

    def train_step(self, step: int) -> dict[str, float]:
        b = self._batch(step)
        for opt in (self.opt_g, self.opt_d):
            for group in opt.param_groups:
                group["lr"] = self.s.lr * self._lr_scale(step) * 0.5 ** len(self.state.rollbacks)
        src, tgt = b["source"], b["target"]
        fake = self.generate(self.G, src, b["concept"], b.get("position"))

        self.opt_d.zero_grad(set_to_none=True)
        real_logits, _ = self.D(src, tgt)
        fake_logits, _ = self.D(src, fake.detach())
        loss_d = self.gan.d_loss(real_logits, fake_logits)
        loss_d.backward()
        self.par.average_gradients(self.D.parameters())
        self.opt_d.step()

        self.opt_g.zero_grad(set_to_none=True)
        fake_logits, fake_feats = self.D(src, fake)
        l1 = (fake - tgt).abs().mean()
        loss_g = self.s.gan_weight * self.gan.g_loss(fake_logits) + self.s.l1_weight * l1
        if self.s.fm_weight > 0:
            from base_gan.losses import feature_matching_loss

            with torch.no_grad():
                _, real_feats = self.D(src, tgt)
            loss_g = loss_g + self.s.fm_weight * feature_matching_loss(real_feats, fake_feats)
        if self.lpips is not None:
            loss_g = loss_g + self.s.lpips_weight * self.lpips(fake, tgt)
        loss_g.backward()
        self.par.average_gradients(self._params_g)
        self.opt_g.step()
        if self.ema is not None:
            self.ema.update_parameters(self.G)
        loss_g_, loss_d_, l1_ = self.par.mean([loss_g.item(), loss_d.item(), l1.item()])
        return {"step": step + 1, "loss_g": loss_g_, "loss_d": loss_d_, "l1": l1_}

    # -- loop ---------------------------------------------------------------------------------
    def train(self, progress: Callable[[dict[str, float]], None] | None = None,
              eval_every: int | None = None, on_eval: Callable[[TrainState], None] | None = None,
              eval_seconds: float | None = None) -> TrainState:
        """Train until ``steps`` (or the seconds budget); checkpoint every ``checkpoint_every`` steps.

        With ``on_eval``, it is called every ``eval_every`` steps or every ``eval_seconds`` of training (its
        time is not counted in ``state.seconds`` nor against the seconds budget), e.g. to record a held-out
        quality curve.
        """
        return run_budgeted(self.state, steps=self.s.steps, seconds=self.s.seconds,
                            checkpoint_every=self.s.checkpoint_every, train_step=self._guarded_steps(),
                            save_checkpoint=self.save_checkpoint, progress=progress,
                            pause_every=eval_every, on_pause=on_eval, pause_seconds=eval_seconds,
                            agree=self.par.any)

    def _guarded_steps(self) -> Callable[[int], dict[str, float]]:
        """``train_step`` behind the divergence guard (``settings.rollback_l1``): a step whose L1 is above the limit
        puts the models and optimizers back to a snapshot and halves the learning rate for the rest of the run."""
        if self.s.rollback_l1 is None:
            return self.train_step
        guard = Rollback(self._snapshot, self._restore, limit=self.s.rollback_l1)

        def step(step: int) -> dict[str, float]:
            log = self.train_step(step)
            if guard.after_step(step + 1, log["l1"]):
                self.state.rollbacks.append({"step": step + 1, "l1": log["l1"]})
                log["rollback"] = 1.0
            return log

        return step

    def _snapshot(self) -> dict[str, Any]:
        snap = {"g": self._generator_state(), "d": state_dict_for_save(self.D),
                "opt": copy.deepcopy({"g": self.opt_g.state_dict(), "d": self.opt_d.state_dict()})}
        if self.ema is not None:
            snap["ema"] = state_dict_for_save(self.ema)
        return snap

    def _restore(self, snap: dict[str, Any]) -> None:
        self._load_generator_state(snap["g"])
        self.D.load_state_dict(snap["d"])
        opt = copy.deepcopy(snap["opt"])  # the optimizers update their state in place: the snapshot stays as taken
        self.opt_g.load_state_dict(opt["g"])
        self.opt_d.load_state_dict(opt["d"])
        if self.ema is not None:
            self.ema.load_state_dict(snap["ema"])

    def final_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.G

    def save_final(self, training: dict[str, Any]) -> Path:
        """The trained generator (EMA weights when enabled) as the run's model, float16-exact
        (``round_to_float16_``; checkpoints keep full precision), with ``training.json`` (``training`` plus
        the settings and the steps done); written by process 0 of a data-parallel group."""
        if not self.par.main:
            self.par.barrier()
            return self.out_dir
        out = save_model(round_to_float16_(copy.deepcopy(self.final_model())), self.out_dir,
                         dict(training, settings=to_dict(self.s), steps_done=self.state.step,
                              seconds=round(self.state.seconds, 1), processes=self.par.world))
        self.par.barrier()
        return out

    # -- checkpoints --------------------------------------------------------------------------
    def save_checkpoint(self) -> Path | None:
        """Every process holds the same weights and optimizer state: process 0 writes them (any number of
        processes resumes from them)."""
        if not self.par.main:
            return None

        def write(folder: Path) -> None:
            save_file(self._generator_state(), folder / "generator.safetensors")
            save_file(state_dict_for_save(self.D), folder / "discriminator.safetensors")
            if self.ema is not None:
                save_file(state_dict_for_save(self.ema), folder / "ema.safetensors")
            torch.save({"opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict()}, folder / "optim.pt")
            atomic_write_json(folder / "state.json", {"settings": to_dict(self.s), **to_dict(self.state)})

        return write_checkpoint(self.out_dir, self.state.step, write, self.s.keep_checkpoints)

    def _generator_state(self) -> dict[str, torch.Tensor]:
        state = state_dict_for_save(self.G)
        if self._saved_names is None:
            return state
        return {k: v for k, v in state.items() if k in self._saved_names}

    def _load_generator_state(self, state: dict[str, torch.Tensor]) -> None:
        if self._saved_names is None:
            self.G.load_state_dict(state)
            return
        if set(state) != self._saved_names:
            raise ValueError("checkpoint does not hold the same trainable parameters as this run")
        self.G.load_state_dict(state, strict=False)

    def resume(self) -> bool:
        """Load the newest complete checkpoint in ``out_dir``; False when there is none. Refuses (FactoryError)
        a checkpoint made with other settings than ``RESUMABLE`` allows."""
        ckpt = latest_checkpoint(self.out_dir)
        if ckpt is None:
            return False
        saved = json.loads((ckpt / "state.json").read_text())
        before = {**to_dict(TrainSettings()), **saved["settings"]}  # a setting added since: its default then
        check_resumable(before, to_dict(self.s), self.out_dir, RESUMABLE, retry="another --name")
        self._load_generator_state(load_file(ckpt / "generator.safetensors"))
        self.D.load_state_dict(load_file(ckpt / "discriminator.safetensors"))
        if self.ema is not None and (ckpt / "ema.safetensors").exists():
            self.ema.load_state_dict(load_file(ckpt / "ema.safetensors"))
        optim = torch.load(ckpt / "optim.pt", weights_only=True)
        self.opt_g.load_state_dict(optim["opt_g"])
        self.opt_d.load_state_dict(optim["opt_d"])
        self.state = TrainState(step=saved["step"], seconds=saved["seconds"], history=saved["history"],
                                rollbacks=saved.get("rollbacks", []))
        return True

