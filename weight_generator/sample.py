"""Sampling adapters from a trained weight generator with diffusers' DDIMScheduler.

``timestep_spacing="trailing"`` makes the first step start at the last training timestep (pure
noise), so ``steps=1`` is one-step x0 prediction: the denoiser's estimate of the clean blocks from
noise and the text alone. More steps refine it with deterministic DDIM (eta 0). The result is
decoded by the tokenizer into a peft adapter folder (``adapter_config.json`` +
``adapter_model.safetensors``) plus ``weightgen.json`` (text, steps, seed, seconds, model).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from factory.atomic import atomic_write_json
from factory.errors import FactoryError
from weight_generator.denoiser import DenoiserConfig, build_denoiser
from weight_generator.tokenize import WeightTokenizer
from weight_generator.train import MODEL_CONFIG, MODEL_WEIGHTS

DEFAULT_STEPS = 1  # one-step x0 prediction: the denoiser's estimate of the adapter given the text
SAMPLE_META = "weightgen.json"


class WeightGenerator:
    """A trained weight generator: text -> adapter blocks -> peft adapter."""

    def __init__(self, model: torch.nn.Module, tokenizer: WeightTokenizer, meta: dict[str, Any],
                 folder: Path | None = None, text_cache: str | Path | None = None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.meta = meta
        self.folder = folder
        self.text_cache = text_cache

    @classmethod
    def load(cls, folder: str | Path, text_cache: str | Path | None = None) -> "WeightGenerator":
        folder = Path(folder)
        if not (folder / MODEL_WEIGHTS).is_file() or not (folder / MODEL_CONFIG).is_file():
            raise FactoryError(f"{folder}: no trained weight generator here (expected {MODEL_WEIGHTS} and "
                               f"{MODEL_CONFIG}); run `factory weightgen train` first")
        meta = json.loads((folder / MODEL_CONFIG).read_text(encoding="utf-8"))
        model = build_denoiser(DenoiserConfig.from_dict(meta["denoiser"]))
        model.load_state_dict(load_file(str(folder / MODEL_WEIGHTS)))
        return cls(model, WeightTokenizer.load(folder), meta, folder, text_cache)

    def scheduler(self, steps: int):
        """diffusers' DDIMScheduler from the training schedule, trailing spacing, no clipping."""
        from diffusers import DDIMScheduler

        sched = DDIMScheduler.from_config(self.meta["scheduler"], timestep_spacing="trailing", clip_sample=False,
                                          set_alpha_to_one=True, steps_offset=0)
        sched.set_timesteps(steps)
        return sched

    def encode_texts(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        from factory.text_encoder import TextEncoder

        return TextEncoder.from_name(self.meta.get("text_encoder", "minilm"), cache_dir=self.text_cache).tokens(texts)

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
                pred = self.model(x, t.reshape(1).long(), index, text[i:i + 1], mask[i:i + 1])
                x = sched.step(pred, t, x, eta=0.0).prev_sample
            out.append(x[0] * tok.valid_mask())
        return torch.stack(out)

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
            raise FactoryError(f"{self.folder}: the generated adapter has non-finite values in {bad[0]}; "
                               "the weight generator is broken (retrain it)")
        out = Path(out_dir)
        from weight_generator.tokenize import write_adapter

        write_adapter(out, tensors, self.tokenizer.adapter_config)
        atomic_write_json(out / SAMPLE_META, {"instruction": text, "steps": steps, "seed": seed,
                                              "seconds": round(seconds, 3), "weightgen": str(self.folder),
                                              "variant": self.meta["denoiser"]["variant"],
                                              "base": self.meta.get("base")})
        return out


# -- the starting adapter of `factory finetune --init weightgen` ----------------------------------
DEFAULT_NAME = "default"


def find_weightgen(workspace, name: str | None = None) -> Path:
    """``<workspace>/weightgen/<name>/``; without a name, ``default`` or else the only trained one, or else
    the shipped pretrained weight generator."""
    if name:
        folder = workspace.weightgen(name)
        if not (folder / MODEL_WEIGHTS).is_file():
            raise FactoryError(f"weight generator '{name}' not found ({folder} has no {MODEL_WEIGHTS}); "
                               "train it with `factory weightgen train --name NAME`")
        return folder
    root = workspace.root / "weightgen"
    trained = sorted(p for p in root.iterdir() if (p / MODEL_WEIGHTS).is_file()) if root.is_dir() else []
    default = workspace.weightgen(DEFAULT_NAME)
    if (default / MODEL_WEIGHTS).is_file():
        return default
    if len(trained) == 1:
        return trained[0]
    if not trained:
        from factory.pretrained import pretrained_weightgen

        shipped = pretrained_weightgen()
        if shipped is not None:
            return shipped
        raise FactoryError(f"no trained weight generator under {root}; run `factory weightgen collect` and "
                           "`factory weightgen train` first")
    raise FactoryError(f"several weight generators under {root} ({', '.join(p.name for p in trained)}) and none "
                       f"named '{DEFAULT_NAME}'; train one with --name {DEFAULT_NAME}")


def same_base(recorded: str | None, base_dir: Path) -> bool:
    """Whether the base a weight generator's adapters were trained on is ``base_dir`` (path or, if moved, name)."""
    if recorded is None:
        return True
    rec, cur = Path(recorded), Path(base_dir)
    return rec.resolve() == cur.resolve() or rec.name == cur.name


def generate_init_adapter(workspace, instruction: str, base_dir: Path, out_dir: Path, seed: int = 0,
                          name: str | None = None, steps: int = DEFAULT_STEPS) -> Path:
    """Sample the adapter for ``instruction`` from the workspace's weight generator into ``out_dir``,
    refusing a generator trained on adapters of another base."""
    folder = find_weightgen(workspace, name)
    gen = WeightGenerator.load(folder, text_cache=workspace.text_cache)
    if not same_base(gen.meta.get("base"), base_dir):
        raise FactoryError(f"{folder}: this weight generator was trained on adapters of base "
                           f"'{gen.meta.get('base')}', not {base_dir}; fine-tune with that base or retrain it")
    return gen.sample_to_folder(instruction, out_dir, steps=steps, seed=seed)
