"""Conditional 70x70 PatchGAN discriminator (pix2pix's ``NLayerDiscriminator`` with n_layers=3).

Input: concat(source, target-or-generated) on channels, [B, 6, H, W] in [-1, 1]. Output: a logits
map (one score per 70x70 receptive field; 30x30 at 256 px) and the activations after each hidden
layer, for discriminator feature matching.

``nf`` is the first layer's width (pix2pix: 64; a smaller one suits the E2GAN student). ``norm``:
"batch" (the reference pix2pix default), "instance" or "none"; ``spectral_norm=True`` wraps every
conv with ``torch.nn.utils.parametrizations.spectral_norm`` (usually with norm="none"). The
discriminator is used only in training, so norms that mobile delegates lack do not matter here.
"""

from __future__ import annotations

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _sn


class PatchDiscriminator(ModelMixin, ConfigMixin):
    """``forward(source, image) -> (logits [B, 1, h, w], [features of each hidden layer])``."""

    @register_to_config
    def __init__(self, nf: int = 64, n_layers: int = 3, norm: str = "batch", spectral_norm: bool = False) -> None:
        super().__init__()
        if norm not in ("batch", "instance", "none"):
            raise ValueError(f"discriminator norm must be batch, instance or none, got {norm!r}")
        use_bias = norm != "batch"  # as the reference: BatchNorm's shift replaces the bias

        def conv(cin: int, cout: int, stride: int, bias: bool = True) -> nn.Module:
            c = nn.Conv2d(cin, cout, 4, stride=stride, padding=1, bias=bias)
            return _sn(c) if spectral_norm else c

        def normalize(ch: int) -> nn.Module:
            if norm == "batch":
                return nn.BatchNorm2d(ch)
            if norm == "instance":
                return nn.InstanceNorm2d(ch, affine=False, track_running_stats=False)
            return nn.Identity()

        blocks = [nn.Sequential(conv(6, nf, 2), nn.LeakyReLU(0.2, True))]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2 ** n, 8)
            stride = 2 if n < n_layers else 1
            blocks.append(nn.Sequential(conv(nf * prev, nf * mult, stride, use_bias), normalize(nf * mult),
                                        nn.LeakyReLU(0.2, True)))
        self.blocks = nn.ModuleList(blocks)
        self.out = conv(nf * mult, 1, 1)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                w = m.parametrizations.weight.original if hasattr(m, "parametrizations") else m.weight
                nn.init.normal_(w, 0.0, 0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, source: torch.Tensor, image: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        h = torch.cat([source, image], dim=1)
        feats = []
        for block in self.blocks:
            h = block(h)
            feats.append(h)
        return self.out(h), feats


def build_discriminator(seed: int = 0, **config) -> PatchDiscriminator:
    """A discriminator (PatchDiscriminator's arguments) with deterministic initial weights for ``seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return PatchDiscriminator(**config)
