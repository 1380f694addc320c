"""Short LoRA runs on the frozen base, scored on validation pairs: what the layer probe and the rank
search measure, and the base's own (zero-shot) quality they are compared with."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from base_gan.models import BaseGAN
from base_gan.train import Trainer, TrainSettings
from factory.evaluation.heldout import HeldOutPairs, text_conditioned
from factory.lora.adapters import (
    LoraLayout,
    count_adapter_params,
    layout_of_adapter,
    load_adapter,
    lora_parameters,
    with_extras,
    wrap,
)

EditFn = Callable[[torch.Tensor], torch.Tensor]


def adapted(base: BaseGAN, layout: LoraLayout | None, init_adapter: Path | None, seed: int,
            screen: dict[str, Any] | None = None, colour_basis: int = 0, lens: bool = False):
    """(peft model over a copy of the base, its layout): a new zero-init LoRA of ``layout``, or a saved adapter;
    with ``screen`` (``adapters.screen_of``'s form), the stem's ``waves`` conv (zero at the start) trains with it,
    with ``colour_basis`` (a degree) the colour basis's ``head.colour`` and with ``lens`` the lens basis's
    ``head.lens`` (each zero at the start)."""
    if init_adapter is not None:
        return (load_adapter(base.copy(), init_adapter, trainable=True, screen=screen, colour_basis=colour_basis,
                             lens=lens), layout_of_adapter(init_adapter))
    return wrap(with_extras(base.copy(), screen, colour_basis, lens), layout, seed=seed), layout


def merged(base: BaseGAN, init_adapter: Path, screen: dict[str, Any] | None = None,
           colour_basis: int = 0, lens: bool = False) -> tuple[nn.Module, LoraLayout]:
    """(a copy of the base with the saved adapter merged into its weights, every weight trainable; its layout);
    with ``screen``, plus the stem's ``waves`` conv, with ``colour_basis``, the colour basis and with ``lens`` the
    lens basis (each zero at the start when the adapter has none)."""
    model = with_extras(load_adapter(base.copy(), init_adapter).merge_and_unload(), screen, colour_basis, lens)
    return model.requires_grad_(True), layout_of_adapter(init_adapter)


def conditioned(model: nn.Module, trainer: Trainer) -> EditFn:
    """The model as image -> image, with the trainer's (single) concept text when it takes text."""
    if trainer.text_tokens is None:
        return lambda x: model(x)
    tok, mask = trainer.text_tokens[:1], trainer.text_mask[:1]
    return lambda x: model(x, tok.expand(len(x), -1, -1), mask.expand(len(x), -1))


def zero_shot(base: BaseGAN, instruction: str, held: HeldOutPairs, text_cache: Path | None) -> dict[str, float]:
    """The frozen base's quality on ``held`` with the concept's instruction (no fine-tuning)."""
    return held.score(text_conditioned(base.model, instruction, text_cache), base.model)


def short_run(base: BaseGAN, data_dir: Path, layout: LoraLayout, ids: list[str], val: HeldOutPairs,
              settings: TrainSettings, text_cache: Path | None) -> dict[str, float]:
    """Train a LoRA of ``layout`` for ``settings.steps`` on ``ids``; its validation quality and cost."""
    model, _ = adapted(base, layout, None, settings.seed)
    with tempfile.TemporaryDirectory(prefix="lora-search-") as tmp:
        trainer = Trainer(Path(tmp), [data_dir], replace(settings, checkpoint_every=10**9), text_cache,
                          generator=model, trainable=lora_parameters(model), ids={data_dir.name: ids})
        trainer.train()
    q = val.score(conditioned(model, trainer), model)
    return {"psnr": q["psnr"], "ssim": q["ssim"], "params": count_adapter_params(model),
            "steps": trainer.state.step, "seconds": round(trainer.state.seconds, 2)}
