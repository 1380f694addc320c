"""The generator's transformer block, split into three residual sub-layers on tokens [B, N, C].

* ``SelfAttention``  (``attn``):  norm -> q, k, v, out (``nn.Linear``) over the image tokens.
* ``CrossAttention`` (``xattn``): norm -> q from the image tokens, k, v from the concept's text
  token embeddings (``text_dim`` wide, normed by ``norm_ctx``) -> out. A learned ``null_token`` is
  always an extra key: with text it gives every query something to attend to even when the mask is
  all false; without text it is the only key, so the update is the learned constant
  ``out(v(null))`` (computed directly; the graph then has no attention at all).
* ``FeedForward``    (``ff``):    norm -> fc1 -> activation -> fc2.

The generator owns them as three top-level modules so LoRA targets read ``attn.q``, ``xattn.v``,
``ff.fc1``; the projections are ``nn.Linear`` because peft LoRA wraps those directly.

Export choices (measured with ``torch.onnx.export(..., opset_version=17, dynamo=False)`` and
onnxruntime's mobile usability checker):

* Attention is explicit matmul + softmax with heads as constant channel slices (see ``attend``).
  ``F.scaled_dot_product_attention`` also exports at opset 17, but as Shape/Mod/Reshape chains
  plus Expand/Where for the null token and mask (10 Shape and 2 Where nodes in the default
  generator; NNAPI lacks Where), and a training step with it was slower here (0.72 s vs 0.28 s,
  batch 8 at 128 px, measured back to back on this 2-core CPU).
* ``TokenNorm`` is LayerNorm written with ReduceMean/Sub/Mul/Sqrt/Div: ``nn.LayerNorm`` exports to
  ``LayerNormalization``, which NNAPI lacks.
* The text mask becomes an additive bias (Cast/Sub/Mul), not ``Where`` (NNAPI lacks it); with the
  text baked in as a constant at export it folds away. The null token is never expanded to the
  batch (``Expand`` + ``Where`` in the graph); it enters the softmax as a broadcast key.
* Dropout is 0 everywhere (DESIGN.md section 3: dropout masks cost 19% of a CPU training step).
"""

from __future__ import annotations

import torch
from torch import nn

MASK_BIAS = -1.0e4  # additive logit bias for masked-out keys (finite: stays exact in fp16 too)


class TokenNorm(nn.Module):
    """LayerNorm over the last dimension, written in elementwise ops that mobile delegates support."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centred = x - x.mean(dim=-1, keepdim=True)
        var = (centred * centred).mean(dim=-1, keepdim=True)
        return centred / torch.sqrt(var + self.eps) * self.weight + self.bias


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int,
           bias: torch.Tensor | None = None,
           k0: torch.Tensor | None = None, v0: torch.Tensor | None = None) -> torch.Tensor:
    """Multi-head attention. q [B, N, C]; k, v [B or 1, M, C]; bias [B or 1, 1, M] added to the logits.

    ``k0``/``v0`` [1, 1, C] are an extra key/value shared by the whole batch (the null token); it
    joins the softmax without being expanded to the batch. Heads are channel slices with constant
    bounds and batches broadcast inside MatMul, so the exported graph has no Shape/Expand/Where
    nodes: only Slice, MatMul, Mul, Add, Concat, Softmax.
    """
    d = q.shape[-1] // heads
    scale = float(d) ** -0.5
    outs = []
    for i in range(heads):
        sl = slice(i * d, (i + 1) * d)
        qh = q[..., sl] * scale
        scores = torch.matmul(qh, k[..., sl].transpose(-1, -2))  # [B, N, M]
        if bias is not None:
            scores = scores + bias
        if k0 is None:
            outs.append(torch.matmul(scores.softmax(dim=-1), v[..., sl]))
            continue
        s0 = torch.matmul(qh, k0[..., sl].transpose(-1, -2))  # [B, N, 1]
        p = torch.cat([s0, scores], dim=-1).softmax(dim=-1)
        outs.append(p[..., :1] * v0[..., sl] + torch.matmul(p[..., 1:], v[..., sl]))
    return outs[0] if heads == 1 else torch.cat(outs, dim=-1)


class SelfAttention(nn.Module):
    """Pre-norm multi-head self-attention over image tokens; returns the residual update."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention width {dim} is not divisible by heads={heads}")
        self.heads = heads
        self.norm = TokenNorm(dim)
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        return self.out(attend(self.q(h), self.k(h), self.v(h), self.heads))


class CrossAttention(nn.Module):
    """Pre-norm cross-attention from image tokens to [learned null token; text tokens].

    Without text the null token is the only key, so the softmax is 1 and the update is the
    constant ``out(v(norm_ctx(null)))`` for every token (computed as such: no attention at all).
    A text batch of 1 is shared by the whole image batch (broadcast, not copied).
    """

    def __init__(self, dim: int, context_dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention width {dim} is not divisible by heads={heads}")
        self.heads = heads
        self.context_dim = context_dim
        self.norm = TokenNorm(dim)
        self.norm_ctx = TokenNorm(context_dim)
        self.null_token = nn.Parameter(torch.randn(1, 1, context_dim))
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(context_dim, dim)
        self.v = nn.Linear(context_dim, dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, text_tokens: torch.Tensor | None = None,
                text_mask: torch.Tensor | None = None) -> torch.Tensor:
        null = self.norm_ctx(self.null_token)
        v0 = self.v(null)
        if text_tokens is None:
            return self.out(v0)  # [1, 1, C], broadcast over batch and tokens
        if text_tokens.dim() != 3 or text_tokens.shape[-1] != self.context_dim:
            raise ValueError(f"text_tokens must be [B, L, {self.context_dim}], got {tuple(text_tokens.shape)}")
        ctx = self.norm_ctx(text_tokens.to(x.dtype))
        bias = None
        if text_mask is not None:
            bias = ((1.0 - text_mask.to(x.dtype)) * MASK_BIAS)[:, None, :]  # [B or 1, 1, L]
        return self.out(attend(self.q(self.norm(x)), self.k(ctx), self.v(ctx), self.heads, bias,
                               k0=self.k(null), v0=v0))


class FeedForward(nn.Module):
    """Pre-norm two-layer MLP on tokens; returns the residual update."""

    def __init__(self, dim: int, mult: int, act: nn.Module) -> None:
        super().__init__()
        self.norm = TokenNorm(dim)
        self.fc1 = nn.Linear(dim, dim * mult)
        self.act = act
        self.fc2 = nn.Linear(dim * mult, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(self.norm(x))))
