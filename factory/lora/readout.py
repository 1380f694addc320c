"""The readout start: the head's last conv solved in closed form before a fine-tune trains anything.

The generator's ``head.conv3`` reads 16 full-resolution feature channels over 3x3 and writes the RGB delta
(``output = soft_bound(source + delta)``). With every other weight as the start left it, the best such conv for
a concept is a ridge regression of the training pairs' residuals (target - source) on those features: a forward
pass over the pairs and a 145 x 145 solve, seconds on a CPU. On the validation concepts it lifts the start before
any training from 21.62 to 32.67 dB on colour concepts and from 17.66 to 21.58 on structural ones
(``bench/results/readout_start.md``).

For a LoRA run the solved conv must live in the adapter: its change has rank at most 3 (three output channels),
so a LoRA of rank >= 3 on ``head.conv3`` holds it exactly (an SVD split into ``lora_B @ lora_A``; the LoRA's bias,
``lora_bias``, takes the bias change; without it the bias stays the base's and the solve fits around it). A run
whose LoRA does not adapt ``head``, or at a rank below 3, cannot hold it and trains without (``readout_refusal``
says why). Without a LoRA (``--tune all``, ``--init scratch``/``full``) the conv's weights are set directly.

A generator with a colour basis (``base_gan.generator.COLOUR_DEGREES``) also has ``head.colour``, a 1x1 conv over
the source pixel's colour monomials into the same delta; the solve then fits both convs at once (the monomials are
more columns of the same regression), so a per-pixel colour map is fitted exactly rather than through the features.
In a LoRA run that conv is trained whole (peft's ``modules_to_save``) and the solve writes its copy. The lens
basis's ``head.lens`` (``base_gan.generator.LENS_PLANES``: the source's neighbours and radial gain planes) is solved
the same way, its planes more columns after the monomials. The columns
then differ in scale (features against monomials in [-1, 1]), so each gets its own ridge penalty, ``COLUMN_RIDGE``
times its own diagonal entry; chosen on the validation colour concepts (an exploratory probe: step-0 PSNR of the
joint solve, cyanotype 41.5 dB with the mean-diagonal penalty against 54.9 with this one, the others within 0.4).
"""

from __future__ import annotations

import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from factory.core.errors import FactoryError

#: pixels sampled from the training pairs for the solve (enough for 145 unknowns per channel many times over)
SAMPLES = 200_000
#: ridge penalty, relative to the mean diagonal of the features' Gram matrix
RIDGE = 1e-3
#: with a colour basis: ridge penalty of each column, relative to its own diagonal entry of the Gram matrix
COLUMN_RIDGE = 1e-4
#: the conv the readout solves
MODULE = "head.conv3"


def _conv3(model: nn.Module) -> nn.Module:
    """The (possibly LoRA-wrapped) ``head.conv3`` of a generator or a peft model over one."""
    from base_gan.models import unwrap

    plain = unwrap(model)
    head = getattr(plain, "head", None)
    if head is None or not hasattr(head, "conv3"):
        raise FactoryError("the readout start needs a generator with a head.conv3 (our architecture)")
    return head.conv3


def _whole_conv(model: nn.Module, name: str) -> nn.Conv2d | None:
    """The writable ``head.<name>`` (``colour``: the colour basis's conv, ``lens``: the lens basis's) of a generator
    that has it (a peft model's own trained copy), else None."""
    from base_gan.models import unwrap

    conv = getattr(unwrap(model).head, name, None)
    if conv is not None and hasattr(conv, "modules_to_save"):  # peft's ModulesToSaveWrapper
        conv = conv.modules_to_save["default"]
    return conv


@torch.no_grad()
def solve_readout(model: nn.Module, edit, source: torch.Tensor, target: torch.Tensor, seed: int = 0,
                  batch: int = 16) -> dict[str, Any]:
    """Set ``head.conv3`` of ``model`` (through its LoRA when it has one) to the ridge regression of
    ``target - source`` ([N, 3, H, W] in [-1, 1]) on its input features, computed by ``edit`` (the model as image ->
    image with the concept's text), and ``head.colour`` too when the model has a colour basis, ``head.lens`` when it
    has the lens basis. Returns what was done: seconds, pixels, the LoRA rank used, the colour basis's degree (0
    without) and whether the lens basis was solved."""
    from base_gan.generator import colour_monomials, lens_planes
    from base_gan.models import unwrap

    start = time.perf_counter()
    conv = _conv3(model)
    colour, lens = _whole_conv(model, "colour"), _whole_conv(model, "lens")
    degree = unwrap(model).config.colour_basis if colour is not None else 0
    lora = hasattr(conv, "lora_A")
    layer = conv.base_layer if lora else conv
    captured: list[torch.Tensor] = []
    hook = conv.register_forward_hook(lambda _m, args, _out: captured.append(args[0].detach()))
    was = model.training
    model.eval()
    try:
        for i in range(0, len(source), batch):
            edit(source[i:i + batch])
    finally:
        hook.remove()
        model.train(was)
    patches = F.unfold(torch.cat(captured), layer.kernel_size, padding=layer.padding)  # [N, C*k*k, H*W]
    extra = []  # (conv, its planes' columns), solved beside conv3's
    if colour is not None:
        extra.append((colour, colour_monomials(source, degree).flatten(2)))
    if lens is not None:
        extra.append((lens, lens_planes(source, unwrap(model).lens_shift).flatten(2)))
    if extra:
        patches = torch.cat([patches, *(planes for _, planes in extra)], 1)
    residual = (target - source).flatten(2)  # [N, 3, H*W]
    n, d, p = patches.shape
    pick = torch.randint(0, n * p, (min(SAMPLES, n * p),), generator=torch.Generator().manual_seed(seed))
    x = patches.permute(0, 2, 1).reshape(-1, d)[pick].double()
    y = residual.permute(0, 2, 1).reshape(-1, residual.shape[1])[pick].double()
    free_bias = not lora or conv.lora_B["default"].bias is not None
    if free_bias:
        x = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)
    else:  # the LoRA has no bias: the base's stays, the solve fits around it
        y = y - layer.bias.double()
    gram = x.T @ x
    if not extra:
        gram += RIDGE * gram.diagonal().mean() * torch.eye(len(gram), dtype=x.dtype)
    else:
        gram += COLUMN_RIDGE * torch.diag(gram.diagonal().clamp(min=1e-12))
    w = torch.linalg.solve(gram, x.T @ y)  # [d (+1), 3]
    k = layer.weight[0].numel()  # conv3's columns come first, then the colour monomials', then the lens planes'
    weight = w[:k].T.reshape(layer.weight.shape)
    bias = w[d] if free_bias else None
    rank = _write_lora(conv, weight, bias) if lora else _write_conv(conv, weight, bias)
    for extra_conv, planes in extra:
        width = planes.shape[1]
        extra_conv.weight.copy_(w[k:k + width].T.reshape(extra_conv.weight.shape).to(extra_conv.weight.dtype))
        k += width
    return {"seconds": round(time.perf_counter() - start, 3), "pixels": len(x), "lora_rank": rank,
            "colour_basis": degree, "lens_basis": lens is not None}


def _write_conv(conv: nn.Conv2d, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
    conv.weight.copy_(weight.to(conv.weight.dtype))
    if bias is not None:
        conv.bias.copy_(bias.to(conv.bias.dtype))


def _write_lora(conv: nn.Module, weight: torch.Tensor, bias: torch.Tensor | None) -> int:
    """Put ``weight`` - the base's into the LoRA factors (SVD; rows of lora_A past the change's rank keep their
    init, their lora_B columns zero) and ``bias`` - the base's into lora_B's bias; returns the rank used."""
    a, b = conv.lora_A["default"], conv.lora_B["default"]
    scaling = conv.scaling["default"]
    r = a.weight.shape[0]
    change = (weight - conv.base_layer.weight.double()).reshape(weight.shape[0], -1) / scaling
    u, s, vh = torch.linalg.svd(change, full_matrices=False)
    k = min(r, len(s))
    if k < len(s):
        raise FactoryError(f"the readout needs a LoRA of rank >= {len(s)} on {MODULE}, this one has rank {r}")
    root = s[:k].sqrt()
    new_b = torch.zeros(b.weight.shape, dtype=torch.float64)
    new_b[:, :k, 0, 0] = u[:, :k] * root
    new_a = a.weight.detach().double().clone()
    new_a[:k] = (root[:, None] * vh[:k]).reshape(k, *a.weight.shape[1:])
    a.weight.copy_(new_a.to(a.weight.dtype))
    b.weight.copy_(new_b.to(b.weight.dtype))
    if bias is not None:
        b.bias.copy_(((bias - conv.base_layer.bias.double()) / scaling).to(b.bias.dtype))
    return k


def readout_refusal(model: nn.Module) -> str | None:
    """Why the readout cannot be written into ``model`` (a peft model whose LoRA does not adapt head.conv3, or at a
    rank below its output channels), or None when it can."""
    from base_gan.models import unwrap

    conv = _conv3(model)
    if unwrap(model) is not model and not hasattr(conv, "lora_A"):
        return f"the LoRA does not adapt {MODULE} (the 'head' layer group)"
    if hasattr(conv, "lora_A") and conv.lora_A["default"].weight.shape[0] < conv.base_layer.out_channels:
        return (f"the LoRA's rank on {MODULE} is {conv.lora_A['default'].weight.shape[0]}, below the "
                f"{conv.base_layer.out_channels} its change needs")
    return None
