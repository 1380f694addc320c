"""Generators by architecture name, and every model here saved and loaded as a diffusers model folder.

A model folder holds diffusers' ``config.json`` (the class's ``__init__`` arguments plus
``_class_name``) and ``diffusion_pytorch_model.safetensors``, written by ``save_pretrained``;
``training.json`` beside them records how it was trained (concepts, instructions, settings, steps).
``load_model`` reads ``_class_name`` and rebuilds the class it names among those it is given: the
one architecture dispatch for the generators here and the weight generator's denoisers.
"""

from __future__ import annotations

import copy
import functools
import inspect
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from diffusers import ModelMixin
from torch import nn

from base_gan.generator import Generator
from base_gan.pix2pix import Pix2PixGenerator
from factory.core.atomic import atomic_save_pretrained, atomic_write_json
from factory.core.errors import FactoryError
from factory.core.files import read_json, sha256_file

CONFIG = "config.json"
WEIGHTS = "diffusion_pytorch_model.safetensors"
TRAINING = "training.json"
ARCHS: dict[str, type[ModelMixin]] = {"e2gan": Generator, "pix2pix": Pix2PixGenerator}
GENERATORS: tuple[type[ModelMixin], ...] = tuple(ARCHS.values())


def generator_class(arch: str) -> type[ModelMixin]:
    if arch not in ARCHS:
        raise FactoryError(f"unknown generator architecture '{arch}' (known: {', '.join(ARCHS)})")
    return ARCHS[arch]


def build_model(arch: str = "e2gan", seed: int = 0, **config: Any) -> ModelMixin:
    """An untrained generator of ``arch`` with ``config`` (its class's arguments), weights fixed by ``seed``
    (the global RNG is left untouched)."""
    cls = generator_class(arch)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            return cls(**config)
        except (TypeError, ValueError) as exc:
            raise FactoryError(f"{arch} generator: {exc}") from None


def model_spec(model: ModelMixin) -> dict[str, Any]:
    """``{"arch": ..., **config}``: what ``build_model`` needs to build this model again."""
    config = {k: v for k, v in model.config.items() if not k.startswith("_")}
    return {"arch": model.arch, **config}


def is_model_folder(folder: str | os.PathLike) -> bool:
    folder = Path(folder)
    return (folder / CONFIG).is_file() and (folder / WEIGHTS).is_file()


def load_model(folder: str | os.PathLike, classes: Sequence[type[ModelMixin]] = GENERATORS) -> ModelMixin:
    """The model saved in ``folder`` (float32, eval mode), of whichever of ``classes`` its config names."""
    folder = Path(folder)
    if not is_model_folder(folder):
        raise FactoryError(f"{folder}: no saved model here (expected {CONFIG} and {WEIGHTS})")
    config = read_json(folder / CONFIG) or {}
    name = config.get("_class_name")
    by_name = {cls.__name__: cls for cls in classes}
    if name not in by_name:
        raise FactoryError(f"{folder}: holds a {name or 'unknown'} model, expected one of {', '.join(by_name)}")
    cls = by_name[name]
    known = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = sorted(k for k in config if not k.startswith("_") and k not in known)
    if unknown:
        raise FactoryError(f"{folder / CONFIG}: unknown {name} setting(s) {', '.join(unknown)} "
                           f"(known: {', '.join(sorted(known))})")
    return cls.from_pretrained(str(folder), torch_dtype=torch.float32).eval()


def save_model(model: ModelMixin, folder: str | os.PathLike, training: dict[str, Any] | None = None) -> Path:
    """``model.save_pretrained(folder)`` file by file atomically, and ``training.json`` when given. The config
    leaves out the ``_name_or_path`` that ``from_pretrained`` records (the folder a model was loaded from): a
    saved folder names no path of the machine that wrote it."""

    def save(tmp: str) -> None:
        model.save_pretrained(tmp)
        config = Path(tmp) / CONFIG
        saved = json.loads(config.read_text(encoding="utf-8"))
        if saved.pop("_name_or_path", None) is not None:
            config.write_text(json.dumps(saved, indent=2, sort_keys=True) + "\n", encoding="utf-8")

    folder = Path(folder)
    atomic_save_pretrained(save, folder, last=CONFIG)
    if training is not None:
        atomic_write_json(folder / TRAINING, training)
    return folder


@torch.no_grad()
def round_to_float16_(model: nn.Module) -> nn.Module:
    """Round every float32 parameter and buffer of ``model`` to its nearest float16 value, in place (the
    tensors stay float32). A saved generator is kept this way: a filter pack then stores it in float16 with
    no loss, so the pack's outputs equal the standalone editor's (``factory.export.pack``); the change to
    the outputs is float16 rounding (a relative 2^-11 per weight)."""
    for t in (*model.parameters(), *model.buffers()):
        if t.dtype == torch.float32:
            t.copy_(t.half().float())
    return model


def is_float16_exact(tensors) -> bool:
    """Whether every float32 tensor in ``tensors`` holds float16 values only."""
    return all(t.dtype != torch.float32 or torch.equal(t, t.half().float()) for t in tensors)


def read_training(folder: str | os.PathLike) -> dict[str, Any]:
    """A model folder's ``training.json`` ({} when it has none)."""
    return read_json(Path(folder) / TRAINING) or {}


def state_dict_for_save(model: nn.Module) -> dict[str, torch.Tensor]:
    """Contiguous CPU copies of a state dict (safetensors refuses shared or strided storage)."""
    return {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}


def config_json(folder: str | os.PathLike) -> dict[str, Any]:
    """A model folder's config.json as a dict ({} when missing)."""
    path = Path(folder) / CONFIG
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model under a peft wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


class BaseGAN:
    """A trained base generator, loaded once and passed around: its model, folder and fingerprint.

    ``copy()`` gives a private copy to wrap with a LoRA (peft modifies the model it wraps).
    """

    def __init__(self, model: ModelMixin, folder: str | os.PathLike) -> None:
        self.model = model.eval().requires_grad_(False)
        self.folder = Path(folder)

    @classmethod
    def load(cls, folder: str | os.PathLike) -> BaseGAN:
        return cls(load_model(folder), folder)

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def arch(self) -> str:
        return self.model.arch

    @property
    def image_size(self) -> int:
        return int(self.model.config.image_size)

    @functools.cached_property
    def sha256(self) -> str:
        """sha256 of the weights file: results measured on a base are valid for this base only."""
        return sha256_file(self.folder / WEIGHTS)

    @functools.cached_property
    def training(self) -> dict[str, Any]:
        return read_training(self.folder)

    def copy(self) -> ModelMixin:
        return copy.deepcopy(self.model).requires_grad_(True)

    def require_e2gan(self) -> BaseGAN:
        if self.arch != "e2gan":
            raise FactoryError(f"{self.folder}: a {self.arch} generator; LoRA fine-tuning needs an e2gan base "
                               "(train one with `factory base train`)")
        return self
