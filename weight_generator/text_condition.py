"""The text tokens a weight generator's denoiser attends to.

Always the text encoder's token embeddings. With ``recipe_tokens`` (``WeightGenSettings``), one more token per
family op the concept grammar reads in the text (``concepts.family.parse_instruction``): the op's one-hot and its
(op, level) one-hot, zero-padded to the encoder's width and scaled to about a MiniLM token's norm. A text outside the
grammar gets no recipe token, so the generator reads it from the encoder's tokens alone.
"""

from __future__ import annotations

from pathlib import Path

import torch

from factory.core.errors import FactoryError

#: the norm of a recipe token: about a MiniLM token embedding's (4-12 on family texts)
RECIPE_TOKEN_NORM = 8.0


def op_level_one_hot(ops: tuple[tuple[str, int], ...]) -> torch.Tensor:
    """The unit (op, level) one-hot of a parsed recipe (slot ``3 * op index + level - 1``, levels 1-3)."""
    from concepts.family import FAMILY_OPS

    slots = {(op, level): i for i, (op, level) in enumerate((o, lv) for o in FAMILY_OPS for lv in (1, 2, 3))}
    x = torch.zeros(len(slots), dtype=torch.float64)
    x[[slots[op] for op in ops]] = 1.0
    return x / x.norm()


def recipe_tokens(text: str, width: int) -> torch.Tensor:
    """[n, width]: one token per op the grammar reads in ``text`` (n = 0 outside the grammar)."""
    from concepts.family import FAMILY_OPS, parse_instruction

    order = list(FAMILY_OPS)
    slots = len(order) * 4  # op one-hot, then (op, level) one-hot over levels 1-3
    if width < slots:
        raise FactoryError(f"recipe tokens need a text width of at least {slots}, the encoder gives {width}")
    ops = parse_instruction(text).ops or ()
    out = torch.zeros(len(ops), width)
    for row, (op, level) in zip(out, ops, strict=True):
        row[order.index(op)] = 1.0
        row[len(order):slots] = op_level_one_hot(((op, level),))
    return out * (RECIPE_TOKEN_NORM / 2**0.5)


def condition_tokens(texts: list[str], encoder: str = "minilm", cache_dir: str | Path | None = None,
                     recipe: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens [B, L, D] float32, keep-mask [B, L] bool) for ``texts``: the encoder's token embeddings, followed with
    ``recipe`` by each text's recipe tokens; padded to the longest."""
    from factory.text.encoder import TextEncoder

    emb, mask = TextEncoder.from_name(encoder, cache_dir=cache_dir).tokens(texts)
    if not recipe:
        return emb, mask
    extra = [recipe_tokens(t, emb.shape[-1]) for t in texts]
    lengths = mask.sum(1).tolist()
    out = torch.zeros(len(texts), max(n + len(r) for n, r in zip(lengths, extra, strict=True)), emb.shape[-1])
    keep = torch.zeros(out.shape[:2], dtype=torch.bool)
    for i, (n, r) in enumerate(zip(lengths, extra, strict=True)):
        out[i, :n] = emb[i, :n]
        out[i, n:n + len(r)] = r
        keep[i, :n + len(r)] = True
    return out, keep
