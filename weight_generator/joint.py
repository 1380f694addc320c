"""The joint variant: all blocks of an adapter denoised together, with attention across blocks.

Each block of S values becomes one token (``Linear(S -> width)``); the conditioning vector of the
per-block model (sinusoidal timestep MLP + learned block-index embedding) is added to every token,
and the timestep embedding is also prepended as an extra token. ``depth`` diffusers
``BasicTransformerBlock``s follow (self-attention across the K blocks of the adapter, cross-attention
on the text tokens, GEGLU feed-forward) with U-ViT long skips: the output of block ``i`` of the first
half is concatenated to the input of block ``depth - 1 - i`` and projected back. A LayerNorm and a
zero-initialised ``Linear(width -> S)`` map each token back to its block.

A diffusers model like ``BlockUNet``, with the same interface:
``model(x [B, K, S], t [B], index [B, K], text, mask) -> [B, K, S]``;
it must see all K blocks of an adapter at once (training batches are whole adapters).
"""

from __future__ import annotations

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from weight_generator.conditioning import ConditionEmbedding, text_bias


class JointTransformer(ModelMixin, ConfigMixin):
    """All K blocks of an adapter as K tokens of one transformer (see the module docstring)."""

    variant = "joint"

    @register_to_config
    def __init__(
        self,
        block_size: int = 256,
        n_blocks: int = 1,
        text_dim: int = 384,
        heads: int = 4,
        width: int = 128,
        depth: int = 4,
        ff_mult: int = 2,
    ) -> None:
        super().__init__()
        from diffusers.models.attention import BasicTransformerBlock

        if depth % 2:
            raise ValueError(f"depth must be even, got {depth}")
        if width % heads:
            raise ValueError(f"width {width} must be divisible by heads={heads}")
        d, s = width, block_size
        self.cond = ConditionEmbedding(d, n_blocks)
        self.proj_in = nn.Linear(s, d)
        half = depth // 2

        def block() -> nn.Module:
            return BasicTransformerBlock(d, heads, d // heads, cross_attention_dim=text_dim, ff_inner_dim=ff_mult * d)

        self.in_blocks = nn.ModuleList(block() for _ in range(half))
        self.mid = block()
        self.out_blocks = nn.ModuleList(block() for _ in range(half))
        self.skips = nn.ModuleList(nn.Linear(2 * d, d) for _ in range(half))
        self.norm_out = nn.LayerNorm(d)
        self.proj_out = nn.Linear(d, s)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        index: torch.Tensor,
        text: torch.Tensor,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        emb = self.cond(t, index)  # [B, K, d]
        time_token = self.cond.time_mlp(self.cond.time_proj(t).to(x.dtype))[:, None, :]
        h = torch.cat([time_token, self.proj_in(x) + emb], dim=1)  # [B, 1 + K, d]
        bias = text_bias(mask, x.dtype)
        skips = []
        for blk in self.in_blocks:
            h = blk(h, encoder_hidden_states=text, encoder_attention_mask=bias)
            skips.append(h)
        h = self.mid(h, encoder_hidden_states=text, encoder_attention_mask=bias)
        for blk, skip in zip(self.out_blocks, self.skips):
            h = skip(torch.cat([h, skips.pop()], dim=-1))
            h = blk(h, encoder_hidden_states=text, encoder_attention_mask=bias)
        return self.proj_out(self.norm_out(h[:, 1:]))
