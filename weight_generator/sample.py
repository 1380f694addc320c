"""Sampling adapters from a trained weight generator with diffusers' DDIMScheduler.

``timestep_spacing="trailing"`` makes the first step start at the last training timestep (pure
noise), so ``steps=1`` is one-step x0 prediction: the denoiser's estimate of the clean blocks from
noise and the text alone. More steps refine it with deterministic DDIM (eta 0). The result is
decoded by the tokenizer into a peft adapter folder (``adapter_config.json`` +
``adapter_model.safetensors``) plus ``weightgen.json`` (text, steps, seed, seconds, model).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from base_gan.models import load_model, read_training
from factory.core.atomic import atomic_write_json
from factory.core.errors import FactoryError
from weight_generator.tokenize import WeightTokenizer, write_adapter
from weight_generator.train import DENOISER_DIR, DENOISERS, SCHEDULER_DIR, is_weightgen

DEFAULT_STEPS = 1  # one-step x0 prediction: the denoiser's estimate of the adapter given the text
#: one-step samples averaged by ``mean_sample`` (an estimate of the posterior mean adapter for a text)
MEAN_SAMPLES = 8
SAMPLE_META = "weightgen.json"


class WeightGenerator:
    """A trained weight generator: text -> adapter blocks -> peft adapter."""

    def __init__(self, model: torch.nn.Module, tokenizer: WeightTokenizer, scheduler_config: dict[str, Any],
                 training: dict[str, Any], folder: Path | None = None, text_cache: str | Path | None = None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.scheduler_config = scheduler_config
        self.training = training
        self.folder = folder
        self.text_cache = text_cache

    @classmethod
    def load(cls, folder: str | Path, text_cache: str | Path | None = None) -> WeightGenerator:
        from diffusers import DDPMScheduler

        folder = Path(folder)
        if not is_weightgen(folder):
            raise FactoryError(f"{folder}: no trained weight generator here (expected {DENOISER_DIR}/ with a "
                               "diffusers model); run `factory weightgen train` first")
        model = load_model(folder / DENOISER_DIR, tuple(DENOISERS.values()))
        scheduler_config = dict(DDPMScheduler.load_config(str(folder / SCHEDULER_DIR)))
        return cls(model, WeightTokenizer.load(folder), scheduler_config, read_training(folder), folder, text_cache)

    @property
    def base(self) -> str | None:
        """The base generator the training adapters were fine-tuned on (its folder or name)."""
        return self.training.get("base")

    def scheduler(self, steps: int):
        """diffusers' DDIMScheduler from the training schedule, trailing spacing, no clipping."""
        from diffusers import DDIMScheduler

        sched = DDIMScheduler.from_config(self.scheduler_config, timestep_spacing="trailing", clip_sample=False,
                                          set_alpha_to_one=True, steps_offset=0)
        sched.set_timesteps(steps)
        return sched

    def encode_texts(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """The text tokens the denoiser was trained to attend to (``weight_generator.text_condition``)."""
        from weight_generator.text_condition import condition_tokens

        recipe = bool(self.training.get("settings", {}).get("recipe_tokens", False))
        return condition_tokens(texts, self.training.get("text_encoder", "minilm"), self.text_cache, recipe)

    @torch.no_grad()
    def sample_blocks(self, texts: list[str], steps: int = DEFAULT_STEPS, seed: int = 0) -> torch.Tensor:
        """Normalized blocks [N, K, S] for N texts: ``steps`` DDIM steps from seeded Gaussian noise."""
        if steps < 1:
            raise FactoryError(f"--steps must be at least 1, got {steps}")
        text, mask = self.encode_texts(texts)
        tok = self.tokenizer
        k, s = tok.n_blocks, tok.block_size
        out = []
        for i in range(len(texts)):  # one adapter at a time: same noise per (seed, text position)
            g = torch.Generator().manual_seed(seed + i)
            x = torch.randn((1, k, s), generator=g)
            index = torch.arange(k)[None]
            sched = self.scheduler(steps)
            for t in sched.timesteps:
                pred = self.model(x, t.reshape(1).long(), index, text[i : i + 1], mask[i : i + 1])
                x = sched.step(pred, t, x, eta=0.0).prev_sample
            out.append(x[0] * tok.valid_mask())
        return torch.stack(out)

    def mean_sample(self, text: str, samples: int = MEAN_SAMPLES, steps: int = DEFAULT_STEPS) -> torch.Tensor:
        """The mean of ``samples`` adapters generated for ``text`` (seeds 0 .. samples - 1), as a flat vector [P]."""
        return torch.stack([self.tokenizer.decode(self.sample_blocks([text], steps, s)[0])
                            for s in range(samples)]).mean(0)

    def sample(self, text: str, steps: int = DEFAULT_STEPS, seed: int = 0) -> dict[str, torch.Tensor]:
        """The adapter tensors (peft state-dict keys -> float32) generated for ``text``."""
        return self.tokenizer.to_tensors(self.sample_blocks([text], steps, seed)[0])

    def sample_to_folder(self, text: str, out_dir: str | Path, steps: int = DEFAULT_STEPS, seed: int = 0) -> Path:
        """Write the adapter generated for ``text`` as a peft adapter folder; returns the folder."""
        started = time.perf_counter()
        blocks = self.sample_blocks([text], steps, seed)[0]
        seconds = time.perf_counter() - started
        tensors = self.tokenizer.to_tensors(blocks)
        bad = [k for k, v in tensors.items() if not torch.isfinite(v).all()]
        if bad:
            raise FactoryError(
                f"{self.folder}: the generated adapter has non-finite values in {bad[0]}; "
                "the weight generator is broken (retrain it)"
            )
        out = Path(out_dir)
        write_adapter(out, tensors, self.tokenizer.adapter_config)
        atomic_write_json(
            out / SAMPLE_META,
            {
                "instruction": text,
                "steps": steps,
                "seed": seed,
                "seconds": round(seconds, 3),
                "weightgen": str(self.folder),
                "variant": self.model.variant,
                "base": self.base,
            },
        )
        return out
