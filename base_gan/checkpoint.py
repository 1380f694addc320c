"""Saving and loading a trained generator: ``generator.safetensors`` + ``config.json`` in one folder.

``config.json`` holds ``arch``, the generator's config, the text encoder's name and the concepts the
model was trained on, so ``load_generator(folder)`` rebuilds it with nothing else.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from factory.atomic import atomic_save_file, atomic_write_json
from factory.errors import FactoryError

WEIGHTS = "generator.safetensors"
CONFIG = "config.json"


def generator_from_config(gen: dict[str, Any], seed: int = 0) -> nn.Module:
    """Build an untrained generator of the architecture named in ``gen['arch']``."""
    arch = gen.get("arch", "e2gan")
    if arch == "e2gan":
        from base_gan.generator import GeneratorConfig, build_generator

        return build_generator(GeneratorConfig.from_dict(gen), seed=seed)
    if arch == "pix2pix":
        from base_gan.pix2pix import Pix2PixConfig, build_pix2pix

        return build_pix2pix(Pix2PixConfig.from_dict(gen), seed=seed)
    raise FactoryError(f"unknown generator architecture '{arch}' (known: e2gan, pix2pix)")


def state_dict_for_save(model: nn.Module) -> dict[str, torch.Tensor]:
    """Contiguous CPU copies (safetensors refuses shared or strided storage)."""
    return {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}


def save_generator(folder: Path, model: nn.Module, meta: dict[str, Any]) -> Path:
    """Write the weights and ``config.json`` (``meta`` must hold ``generator``: the config dict)."""
    folder = Path(folder)
    atomic_save_file(folder / WEIGHTS, lambda tmp: save_file(state_dict_for_save(model), tmp))
    atomic_write_json(folder / CONFIG, meta)
    return folder


def load_generator(folder: Path) -> tuple[nn.Module, dict[str, Any]]:
    """The generator saved in ``folder`` (eval mode) and its ``config.json``."""
    folder = Path(folder)
    if not (folder / WEIGHTS).is_file() or not (folder / CONFIG).is_file():
        raise FactoryError(f"{folder}: no trained generator here (expected {WEIGHTS} and {CONFIG})")
    meta = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
    model = generator_from_config(meta["generator"])
    model.load_state_dict(load_file(folder / WEIGHTS))
    return model.eval(), meta
