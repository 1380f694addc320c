"""The baseline: pix2pix's ResNet-9 generator exactly as in the reference PyTorch implementation.

Reference: junyanz/pytorch-CycleGAN-and-pix2pix ``ResnetGenerator(input_nc=3, output_nc=3, ngf=64,
norm_layer=InstanceNorm2d(affine=False), n_blocks=9, padding_type="reflect")``: reflection pad + 7x7
conv, two stride-2 convs (64 -> 256 channels), nine ResBlocks (reflect pad, 3x3 conv, norm, ReLU,
[dropout 0.5], reflect pad, 3x3 conv, norm), two ConvTranspose2d upsamplings, reflection pad + 7x7
conv, tanh. Conv biases are on (the reference uses them with InstanceNorm); weights N(0, 0.02) as
in its ``init_weights(init_type="normal")``. 11,378,179 parameters at ngf 64.

Layers are the reference's, only named by group (stem, down1, down2, res1..res9, up1, up2, head)
instead of ``model.<index>``, so ``factory base info`` can print the same table for both
architectures. ``dropout`` defaults to 0.5 like the reference pix2pix (its ``--no_dropout`` is off);
set 0 to drop it. This model is for training comparisons and CPU latency; it is not mobile-friendly
by design (InstanceNorm, ConvTranspose, reflect Pad) and is not a LoRA target. ``residual=True`` is the
same network with our generator's global residual (output = soft_bound(source + head)), to measure
that prior on its own.
"""

from __future__ import annotations

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from base_gan.generator import soft_bound


def _norm(ch: int) -> nn.InstanceNorm2d:
    return nn.InstanceNorm2d(ch, affine=False, track_running_stats=False)


class ResnetBlock(nn.Module):
    """Reference ResnetBlock with reflection padding."""

    def __init__(self, dim: int, dropout: float) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), _norm(dim), nn.ReLU(True)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), _norm(dim)]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class Pix2PixGenerator(ModelMixin, ConfigMixin):
    """pix2pix ResNet-9 (ngf 64). ``forward(x, text_tokens=None, text_mask=None)``: text is ignored,
    so it drops into the same training and evaluation code as the text-conditioned generator.
    A diffusers model like ``Generator`` (``save_pretrained`` / ``from_pretrained``)."""

    arch = "pix2pix"
    stride = 4
    takes_text = False

    @register_to_config
    def __init__(self, ngf: int = 64, n_blocks: int = 9, dropout: float = 0.5, image_size: int = 256,
                 residual: bool = False) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(3, ngf, 7), _norm(ngf), nn.ReLU(True))
        self.down1 = nn.Sequential(nn.Conv2d(ngf, ngf * 2, 3, stride=2, padding=1), _norm(ngf * 2), nn.ReLU(True))
        self.down2 = nn.Sequential(nn.Conv2d(ngf * 2, ngf * 4, 3, stride=2, padding=1), _norm(ngf * 4), nn.ReLU(True))
        for i in range(1, n_blocks + 1):
            self.add_module(f"res{i}", ResnetBlock(ngf * 4, dropout))
        self.up1 = nn.Sequential(
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 3, stride=2, padding=1, output_padding=1),
            _norm(ngf * 2), nn.ReLU(True))
        self.up2 = nn.Sequential(
            nn.ConvTranspose2d(ngf * 2, ngf, 3, stride=2, padding=1, output_padding=1),
            _norm(ngf), nn.ReLU(True))
        head = [nn.ReflectionPad2d(3), nn.Conv2d(ngf, 3, 7)]
        # residual: the head predicts a change added to the source (our generator's global residual,
        # ``soft_bound(source + delta)``) instead of the image through a tanh: the prior measured on its own
        self.head = nn.Sequential(*head) if residual else nn.Sequential(*head, nn.Tanh())
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.normal_(m.weight, 0.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor, text_tokens: torch.Tensor | None = None,
                text_mask: torch.Tensor | None = None) -> torch.Tensor:
        h, w = x.shape[-2:]
        if not torch.jit.is_tracing() and (h % self.stride or w % self.stride):
            raise ValueError(f"image size {h}x{w} is not a multiple of the pix2pix stride {self.stride}")
        h = self.down2(self.down1(self.stem(x)))
        for i in range(1, self.config.n_blocks + 1):
            h = getattr(self, f"res{i}")(h)
        out = self.head(self.up2(self.up1(h)))
        return soft_bound(x + out) if self.config.residual else out


def build_pix2pix(seed: int = 0, **config) -> Pix2PixGenerator:
    """The baseline (Pix2PixGenerator's arguments) with deterministic weights for ``seed`` (global RNG untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Pix2PixGenerator(**config)
