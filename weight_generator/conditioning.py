"""What every denoiser is conditioned on: the diffusion timestep and the block index (one embedding),
and the concept text's attention mask as diffusers' additive bias."""

from __future__ import annotations

import torch
from torch import nn


def group_count(ch: int) -> int:
    """GroupNorm groups for ``ch`` channels (8, or the largest of 4, 2, 1 that divides it)."""
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
