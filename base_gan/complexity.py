"""Parameters and multiply-accumulates (MACs) of a model, total and per top-level layer group.

MACs come from ``torch.utils.flop_counter.FlopCounterMode`` (MACs = FLOPs / 2): convolutions,
linear layers and attention matmuls; normalizations, activations, resizes and adds are not counted
(the usual convention for GAN MAC tables).

Transposed convolutions: FlopCounterMode counts the real work, input positions x kernel x Cin x
Cout. The published pix2pix/CycleGAN figure (56.8 GMACs for ResNet-9 at 256 px, from GAN
Compression's torchprofile counts) counts them over *output* positions, i.e. including the
multiplications by the inserted zeros, 4x more for stride 2. ``transposed_conv="output"`` reproduces
that convention so the published figure can be checked; ``"input"`` (default) is the real count.
Our generator has no transposed convolutions, so the two agree for it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from math import prod
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass
class Complexity:
    """Parameter and MAC counts, total and by top-level module (in definition order)."""

    params: int
    macs: int
    params_by_group: dict[str, int] = field(default_factory=dict)
    macs_by_group: dict[str, int] = field(default_factory=dict)

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9

    def rows(self) -> list[tuple[str, int, int]]:
        """(group, params, macs) per group, then ("total", params, macs)."""
        groups = list(self.params_by_group) + [g for g in self.macs_by_group if g not in self.params_by_group]
        out = [(g, self.params_by_group.get(g, 0), self.macs_by_group.get(g, 0)) for g in groups]
        return out + [("total", self.params, self.macs)]

    def table(self) -> str:
        lines = [f"{'group':<10} {'params':>12} {'GMACs':>9}"]
        for g, p, m in self.rows():
            if g == "total":
                lines.append("-" * len(lines[0]))
            lines.append(f"{g:<10} {p:>12,d} {m / 1e9:>9.3f}")
        return "\n".join(lines)


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def params_by_group(model: nn.Module) -> dict[str, int]:
    """Parameters of each direct child module, plus ``(own)`` for parameters held by the model itself."""
    out = {name: count_params(child) for name, child in model.named_children()}
    own = sum(p.numel() for p in model.parameters(recurse=False))
    if own:
        out["(own)"] = own
    return out


def count_macs(model: nn.Module, args: tuple, kwargs: dict[str, Any] | None = None,
               transposed_conv: str = "input") -> tuple[int, dict[str, int]]:
    """MACs of one ``model(*args, **kwargs)`` call: (total, by direct child module name)."""
    if transposed_conv not in ("input", "output"):
        raise ValueError(f"transposed_conv must be 'input' or 'output', got {transposed_conv!r}")
    root = type(model).__name__
    extra: dict[str, int] = {}
    hooks = []
    if transposed_conv == "output":
        for name, m in model.named_modules():
            if isinstance(m, nn.ConvTranspose2d):
                hooks.append(m.register_forward_hook(_transposed_extra(name.split(".")[0], extra)))
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(*args, **(kwargs or {}))
    finally:
        for h in hooks:
            h.remove()
    counts = counter.get_flop_counts()
    total = sum(counts["Global"].values()) // 2 + sum(extra.values())
    by_group = {}
    for name, _ in model.named_children():
        key = f"{root}.{name}"
        macs = sum(counts[key].values()) // 2 if key in counts else 0
        by_group[name] = macs + extra.get(name, 0)
    return total, by_group


def _transposed_extra(group: str, extra: dict[str, int]):
    """Forward hook adding the zero-insertion MACs a transposed conv has when counted over outputs."""

    def hook(mod: nn.ConvTranspose2d, inputs, output) -> None:
        per_pos = prod(mod.weight.shape)  # Cin x Cout/groups x kH x kW
        n = output.shape[0]
        extra[group] = extra.get(group, 0) + n * per_pos * (prod(output.shape[2:]) - prod(inputs[0].shape[2:]))

    return hook


def measure(model: nn.Module, size: int = 256, text_len: int | None = None, text_dim: int | None = None,
            transposed_conv: str = "input") -> Complexity:
    """Complexity of an image-to-image generator on one ``size`` x ``size`` RGB image.

    With ``text_len`` it is also given that many text tokens (``text_dim`` wide, by default the
    model's ``config.text_dim``); MACs of the text key/value projections grow with the text length
    (a few MMACs for a 16-token concept).
    """
    if text_len and text_dim is None:
        text_dim = model.config.text_dim
    probe = copy.deepcopy(model).eval()
    try:  # shapes are all the counter needs: run on the meta device, no arithmetic at all
        probe = probe.to("meta")
        device = torch.device("meta")
    except (NotImplementedError, RuntimeError):
        device = torch.device("cpu")
    x = torch.zeros(1, 3, size, size, device=device)
    kwargs = {}
    if text_len:
        kwargs["text_tokens"] = torch.zeros(1, text_len, text_dim, device=device)
    macs, by_group = count_macs(probe, (x,), kwargs, transposed_conv=transposed_conv)
    return Complexity(count_params(model), macs, params_by_group(model), by_group)


def describe_architecture(arch: str = "e2gan", size: int = 256, ngf: int | None = None,
                          text_len: int = 16) -> list[str]:
    """Lines of ``factory base info``: the architecture, its parameter/GMAC table per layer group, totals
    (for pix2pix also the published convention that counts transposed convs over output positions)."""
    from base_gan.models import build_model
    from factory.core.errors import FactoryError

    if size <= 0:
        raise FactoryError(f"--size must be positive, got {size}")
    stride = 16 if arch == "e2gan" else 4
    if size % stride:
        raise FactoryError(f"--size {size} is not a multiple of the {'generator' if arch == 'e2gan' else 'pix2pix'} "
                           f"stride {stride}")
    model = build_model(arch, image_size=size, **({} if ngf is None else {"ngf": ngf}))
    lines = []
    if arch == "e2gan":
        report = measure(model, size, text_len=text_len, text_dim=model.config.text_dim)
        lines.append(f"e2gan generator, ngf {model.config.ngf}, {size}x{size}, {text_len} text tokens")
        lines.append(report.table())
    else:
        report = measure(model, size)
        published = measure(model, size, transposed_conv="output")
        lines += [f"pix2pix ResNet-9, ngf {model.config.ngf}, {size}x{size}", report.table(),
                  f"(counting ConvTranspose over output positions, as the published 56.8 GMACs does: "
                  f"{published.gmacs:.3f} GMACs)"]
    lines.append(f"{report.params / 1e6:.3f}M parameters, {report.gmacs:.3f} GMACs")
    return lines
