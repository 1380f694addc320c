"""The denoiser: a 1-D U-Net over one weight block, conditioned on timestep, block index and text.

Every denoiser (this per-block one and ``weight_generator.joint``'s) is a diffusers model
(``save_pretrained``/``from_pretrained``) with one interface::

    model(x [B, K, S], t [B], index [B, K], text [B, L, D], mask [B, L] bool) -> prediction [B, K, S]

with K blocks of S values per sample (the per-block model treats the K blocks independently; the
joint model attends across them).

``BlockUNet`` layout (three levels, ``c = channels``; Transformer blocks where ``attn_levels`` says,
by default only at the lowest level, where a block is S/4 = 64 tokens: attention over positions of
a flattened weight block is costly and the convolutions already mix neighbours)::

    in      conv1d 1 -> c0 (k3) + learned position-in-block embedding [c0, S]
    down    level 0: ResBlock(c0)                           at S      -> skip0, stride-2 conv
            level 1: ResBlock(c1) [+ Transformer(c1)]       at S/2    -> skip1, stride-2 conv
            level 2: ResBlock(c2) + Transformer(c2)         at S/4    -> skip2
    mid     ResBlock(c2) + Transformer(c2) + ResBlock(c2)
    up      level 2: concat skip2, ResBlock(c2) + Transformer(c2), nearest x2 + conv
            level 1: concat skip1, ResBlock(c1) [+ Transformer(c1)], nearest x2 + conv
            level 0: concat skip0, ResBlock(c0)
    out     GroupNorm, SiLU, conv1d c0 -> 1 (zero init: the first prediction is 0)

The conditioning vector ``emb = TimestepEmbedding(Timesteps(t)) + Embedding(index)`` (diffusers'
sinusoidal timestep embedding + MLP, plus a learned block-index embedding) is fed to every ResBlock
as a scale and shift after its first convolution. The text tokens enter in every Transformer block
through cross-attention (diffusers' ``BasicTransformerBlock``: self-attention over the positions of
the block, cross-attention on the text, GEGLU feed-forward).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from weight_generator.conditioning import ConditionEmbedding, group_count, text_bias


class ResBlock1d(nn.Module):
    """GroupNorm-SiLU-conv, scale/shift from the conditioning vector, GroupNorm-SiLU-conv, residual."""

    def __init__(self, cin: int, cout: int, emb_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(group_count(cin), cin)
        self.conv1 = nn.Conv1d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * cout)
        self.norm2 = nn.GroupNorm(group_count(cout), cout)
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

    def __init__(self, ch: int, heads: int, text_dim: int, ff_mult: int = 2) -> None:
        super().__init__()
        from diffusers.models.attention import BasicTransformerBlock

        self.norm = nn.GroupNorm(group_count(ch), ch)
        self.proj_in = nn.Linear(ch, ch)
        self.block = BasicTransformerBlock(ch, heads, ch // heads, cross_attention_dim=text_dim,
                                           ff_inner_dim=ff_mult * ch)
        self.proj_out = nn.Linear(ch, ch)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, x: torch.Tensor, text: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        h = self.proj_in(self.norm(x).transpose(1, 2))
        h = self.block(h, encoder_hidden_states=text, encoder_attention_mask=bias)
        return x + self.proj_out(h).transpose(1, 2)


class BlockUNet(ModelMixin, ConfigMixin):
    """The per-block denoiser (see the module docstring)."""

    variant = "block"

    @register_to_config
    def __init__(self, block_size: int = 256, n_blocks: int = 1, text_dim: int = 384, heads: int = 4,
                 emb_dim: int = 128, channels: tuple[int, int, int] = (32, 64, 64),
                 attn_levels: tuple[bool, bool, bool] = (False, False, True), ff_mult: int = 2) -> None:
        super().__init__()
        ch = tuple(int(c) for c in channels)
        if len(ch) != 3 or len(attn_levels) != 3:
            raise ValueError(f"channels and attn_levels must give 3 levels, got {channels} / {attn_levels}")
        if block_size % 4:
            raise ValueError(f"block_size must be a multiple of 4 (two downsamplings), got {block_size}")
        if any(c % heads for c in ch[1:]):
            raise ValueError(f"widths {ch[1:]} must be divisible by heads={heads}")
        e = emb_dim
        self.cond = ConditionEmbedding(e, n_blocks)
        self.conv_in = nn.Conv1d(1, ch[0], 3, padding=1)
        self.pos = nn.Parameter(torch.zeros(1, ch[0], block_size))
        nn.init.normal_(self.pos, std=0.02)

        def attn(level: int) -> nn.Module | None:
            if not attn_levels[level]:
                return None
            return Transformer1d(ch[level], heads, text_dim, ff_mult)

        self.down = nn.ModuleList(ResBlock1d(ch[max(i - 1, 0)], ch[i], e) for i in range(3))
        self.down_attn = nn.ModuleList(attn(i) or nn.Identity() for i in range(3))
        self.pool = nn.ModuleList(nn.Conv1d(ch[i], ch[i], 3, stride=2, padding=1) for i in range(2))
        self.mid1 = ResBlock1d(ch[2], ch[2], e)
        self.mid_attn = Transformer1d(ch[2], heads, text_dim, ff_mult)
        self.mid2 = ResBlock1d(ch[2], ch[2], e)
        self.up = nn.ModuleList(ResBlock1d(2 * ch[i], ch[i], e) for i in range(3))
        self.up_attn = nn.ModuleList(attn(i) or nn.Identity() for i in range(3))
        self.unpool = nn.ModuleList(nn.Conv1d(ch[i + 1], ch[i], 3, padding=1) for i in range(2))
        self.norm_out = nn.GroupNorm(group_count(ch[0]), ch[0])
        self.conv_out = nn.Conv1d(ch[0], 1, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    @staticmethod
    def _attend(layer: nn.Module, h: torch.Tensor, text: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        return layer(h, text, bias) if isinstance(layer, Transformer1d) else h

    def forward(self, x: torch.Tensor, t: torch.Tensor, index: torch.Tensor, text: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        b, k, s = x.shape
        emb = self.cond(t, index).reshape(b * k, -1)
        text = text.repeat_interleave(k, dim=0)
        bias = text_bias(mask.repeat_interleave(k, dim=0), x.dtype) if mask is not None else None
        h = self.conv_in(x.reshape(b * k, 1, s)) + self.pos
        skips = []
        for i in range(3):
            h = self._attend(self.down_attn[i], self.down[i](h, emb), text, bias)
            skips.append(h)
            if i < 2:
                h = self.pool[i](h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb), text, bias), emb)
        for i in (2, 1, 0):
            h = self._attend(self.up_attn[i], self.up[i](torch.cat([h, skips[i]], 1), emb), text, bias)
            if i > 0:
                h = self.unpool[i - 1](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h))).reshape(b, k, s)
