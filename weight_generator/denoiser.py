"""The denoiser: a 1-D U-Net over one weight block, conditioned on timestep, block index and text.

Every denoiser (this per-block one and ``weight_generator.joint``'s) has one interface::

    model(x [B, K, S], t [B], index [B, K], text [B, L, D], mask [B, L] bool) -> prediction [B, K, S]

with K blocks of S values per sample (the per-block model treats the K blocks independently; the
joint model attends across them).

``BlockUNet`` layout (three levels, ``c = channels``)::

    in      conv1d 1 -> c0 (k3) + learned position-in-block embedding [c0, S]
    down    level 0: ResBlock(c0)                           at S      -> skip0, stride-2 conv
            level 1: ResBlock(c1) + Transformer(c1)         at S/2    -> skip1, stride-2 conv
            level 2: ResBlock(c2) + Transformer(c2)         at S/4    -> skip2
    mid     ResBlock(c2) + Transformer(c2) + ResBlock(c2)
    up      level 2: concat skip2, ResBlock(c2) + Transformer(c2), nearest x2 + conv
            level 1: concat skip1, ResBlock(c1) + Transformer(c1), nearest x2 + conv
            level 0: concat skip0, ResBlock(c0)
    out     GroupNorm, SiLU, conv1d c0 -> 1 (zero init: the first prediction is 0)

The conditioning vector ``emb = TimestepEmbedding(Timesteps(t)) + Embedding(index)`` (diffusers'
sinusoidal timestep embedding + MLP, plus a learned block-index embedding) is fed to every ResBlock
as a scale and shift after its first convolution. The text tokens enter in every Transformer block
through cross-attention (diffusers' ``BasicTransformerBlock``: self-attention over the positions of
the block, cross-attention on the text, GEGLU feed-forward).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

VARIANTS = ("block", "joint")


@dataclass
class DenoiserConfig:
    """Everything needed to rebuild a denoiser (saved in the weight generator's config.json)."""

    variant: str = "block"           # "block": BlockUNet; "joint": JointTransformer (weight_generator.joint)
    block_size: int = 256
    n_blocks: int = 1
    text_dim: int = 384
    heads: int = 4
    emb_dim: int = 128               # timestep + block-index embedding width
    channels: tuple[int, int, int] = (32, 64, 128)   # BlockUNet: width per level
    width: int = 256                 # JointTransformer: token width
    depth: int = 6                   # JointTransformer: transformer blocks (even: U-ViT skips pair them)

    def __post_init__(self) -> None:
        self.channels = tuple(int(c) for c in self.channels)
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        if len(self.channels) != 3:
            raise ValueError(f"channels must give 3 levels, got {self.channels}")
        if self.block_size % 4:
            raise ValueError(f"block_size must be a multiple of 4 (two downsamplings), got {self.block_size}")
        if any(c % self.heads for c in self.channels[1:]) or self.width % self.heads:
            raise ValueError(f"widths {self.channels[1:]} / {self.width} must be divisible by heads={self.heads}")
        if self.depth % 2:
            raise ValueError(f"depth must be even, got {self.depth}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DenoiserConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown denoiser config keys: {', '.join(unknown)}")
        return cls(**d)


def _groups(ch: int) -> int:
    return next(g for g in (8, 4, 2, 1) if ch % g == 0)


def text_bias(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """A bool [B, L] keep-mask -> diffusers' additive attention bias [B, 1, L]."""
    if mask is None:
        return None
    return ((1.0 - mask.to(dtype)) * -10000.0).unsqueeze(1)


class ConditionEmbedding(nn.Module):
    """emb = MLP(sinusoidal(t)) + Embedding(block index) (diffusers' Timesteps + TimestepEmbedding)."""

    def __init__(self, emb_dim: int, n_blocks: int) -> None:
        super().__init__()
        from diffusers.models.embeddings import TimestepEmbedding, Timesteps

        self.time_proj = Timesteps(emb_dim, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_mlp = TimestepEmbedding(emb_dim, emb_dim)
        self.index = nn.Embedding(n_blocks, emb_dim)

    def forward(self, t: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """t [B] (int) and index [B, K] -> [B, K, emb_dim]."""
        temb = self.time_mlp(self.time_proj(t).to(self.index.weight.dtype))
        return temb[:, None, :] + self.index(index)


class ResBlock1d(nn.Module):
    """GroupNorm-SiLU-conv, scale/shift from the conditioning vector, GroupNorm-SiLU-conv, residual."""

    def __init__(self, cin: int, cout: int, emb_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(cin), cin)
        self.conv1 = nn.Conv1d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * cout)
        self.norm2 = nn.GroupNorm(_groups(cout), cout)
        self.conv2 = nn.Conv1d(cout, cout, 3, padding=1)
        self.skip = nn.Conv1d(cin, cout, 1) if cin != cout else nn.Identity()
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(F.silu(emb))[:, :, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        return self.skip(x) + self.conv2(F.silu(h))


class Transformer1d(nn.Module):
    """GroupNorm, projection, diffusers' BasicTransformerBlock (self-attn, cross-attn on text, FF), residual."""

    def __init__(self, ch: int, heads: int, text_dim: int) -> None:
        super().__init__()
        from diffusers.models.attention import BasicTransformerBlock

        self.norm = nn.GroupNorm(_groups(ch), ch)
        self.proj_in = nn.Linear(ch, ch)
        self.block = BasicTransformerBlock(ch, heads, ch // heads, cross_attention_dim=text_dim)
        self.proj_out = nn.Linear(ch, ch)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, x: torch.Tensor, text: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        h = self.proj_in(self.norm(x).transpose(1, 2))
        h = self.block(h, encoder_hidden_states=text, encoder_attention_mask=bias)
        return x + self.proj_out(h).transpose(1, 2)


class BlockUNet(nn.Module):
    """The per-block denoiser (see the module docstring)."""

    def __init__(self, config: DenoiserConfig) -> None:
        super().__init__()
        self.config = config
        c0, c1, c2 = config.channels
        e, s = config.emb_dim, config.block_size
        self.cond = ConditionEmbedding(e, config.n_blocks)
        self.conv_in = nn.Conv1d(1, c0, 3, padding=1)
        self.pos = nn.Parameter(torch.zeros(1, c0, s))
        nn.init.normal_(self.pos, std=0.02)
        self.down0 = ResBlock1d(c0, c0, e)
        self.pool0 = nn.Conv1d(c0, c0, 3, stride=2, padding=1)
        self.down1 = ResBlock1d(c0, c1, e)
        self.attn_down1 = Transformer1d(c1, config.heads, config.text_dim)
        self.pool1 = nn.Conv1d(c1, c1, 3, stride=2, padding=1)
        self.down2 = ResBlock1d(c1, c2, e)
        self.attn_down2 = Transformer1d(c2, config.heads, config.text_dim)
        self.mid1 = ResBlock1d(c2, c2, e)
        self.attn_mid = Transformer1d(c2, config.heads, config.text_dim)
        self.mid2 = ResBlock1d(c2, c2, e)
        self.up2 = ResBlock1d(2 * c2, c2, e)
        self.attn_up2 = Transformer1d(c2, config.heads, config.text_dim)
        self.unpool2 = nn.Conv1d(c2, c1, 3, padding=1)
        self.up1 = ResBlock1d(2 * c1, c1, e)
        self.attn_up1 = Transformer1d(c1, config.heads, config.text_dim)
        self.unpool1 = nn.Conv1d(c1, c0, 3, padding=1)
        self.up0 = ResBlock1d(2 * c0, c0, e)
        self.norm_out = nn.GroupNorm(_groups(c0), c0)
        self.conv_out = nn.Conv1d(c0, 1, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, index: torch.Tensor, text: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        b, k, s = x.shape
        emb = self.cond(t, index).reshape(b * k, -1)
        text = text.repeat_interleave(k, dim=0)
        bias = text_bias(mask.repeat_interleave(k, dim=0), x.dtype) if mask is not None else None
        h = self.conv_in(x.reshape(b * k, 1, s)) + self.pos
        h0 = self.down0(h, emb)
        h = self.pool0(h0)
        h1 = self.attn_down1(self.down1(h, emb), text, bias)
        h = self.pool1(h1)
        h2 = self.attn_down2(self.down2(h, emb), text, bias)
        h = self.mid2(self.attn_mid(self.mid1(h2, emb), text, bias), emb)
        h = self.attn_up2(self.up2(torch.cat([h, h2], 1), emb), text, bias)
        h = self.unpool2(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        h = self.attn_up1(self.up1(torch.cat([h, h1], 1), emb), text, bias)
        h = self.unpool1(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        h = self.up0(torch.cat([h, h0], 1), emb)
        return self.conv_out(F.silu(self.norm_out(h))).reshape(b, k, s)


def build_denoiser(config: DenoiserConfig, seed: int = 0) -> nn.Module:
    """A denoiser of ``config.variant`` with deterministic initial weights (global RNG untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if config.variant == "joint":
            from weight_generator.joint import JointTransformer

            return JointTransformer(config)
        return BlockUNet(config)
