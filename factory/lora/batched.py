"""Many LoRA adapters on one frozen base at once: each sample in a batch carries its concept's adapter.

What a weight dataset needs is hundreds of adapters of one layout, each trained to convergence. All of
them share one ``lora_A`` (peft's init at ``A_SEED``, frozen) and train only ``lora_B`` and its bias
(peft ``lora_bias``): the merged delta ``B·A`` is then a function of ``B`` alone (no factor symmetry),
and the weight generator generates ``B`` and the biases.

``BatchedAdapters`` is a copy of the base in which every adapted Conv2d/Linear is a ``BatchedLora``:
``y = base(x) + B[ids] · A(x) + bias[ids]`` (``A(x)`` computed once for the whole batch; LoRA scaling 1,
as ``LoraLayout`` sets alpha = rank). The B of a sample is either its concept's trained parameter
(``ids``) or a tensor given per sample (``weights``, e.g. a hypernetwork's output).

``train_adapters`` trains K concepts' adapters in one batch: every step draws ``per_concept`` pairs of
each concept with a generator seeded by (seed, concept, step), so a concept sees the same pairs
whichever concepts share its batch; the loss is the sum over concepts of each one's mean L1. The base
is frozen and the generator has no batch statistics, so each adapter's gradient is what it would get
trained alone, and Adam is per parameter: K adapters trained together equal K one-at-a-time runs
(``tests/test_batched_adapters.py``). No discriminator: a shared one would couple the adapters.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from factory.core.seeds import derive_seed
from factory.data.dataset import PairedDataset
from factory.lora.adapters import LoraLayout, save_adapter, wrap

#: the seed of the shared, frozen lora_A of every weight-dataset adapter
A_SEED = 0


class BatchedLora(nn.Module):
    """One adapted layer of K adapters: the frozen base layer, the shared frozen A, K B's and biases."""

    def __init__(self, base: nn.Conv2d | nn.Linear, a_weight: torch.Tensor, k: int, bias: bool) -> None:
        super().__init__()
        self.base = base
        self.conv = isinstance(base, nn.Conv2d)
        self.register_buffer("a", a_weight.detach().clone())
        out = base.out_channels if self.conv else base.out_features
        rank = a_weight.shape[0]
        self.b = nn.Parameter(torch.zeros(k, out, rank))
        self.b_bias = nn.Parameter(torch.zeros(k, out)) if bias else None
        self.ids: torch.Tensor | None = None
        self.weights: tuple[torch.Tensor, torch.Tensor | None] | None = None  # per-sample (B, bias) override

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        if self.conv:
            base = self.base
            a = F.conv2d(x, self.a, None, base.stride, base.padding, base.dilation, base.groups)
        else:
            a = F.linear(x, self.a)
        if self.weights is not None:
            b, bias = self.weights
        else:
            b = self.b[self.ids]
            bias = None if self.b_bias is None else self.b_bias[self.ids]
        n = b.shape[0]
        if a.shape[0] != n:
            a = a.expand(n, *a.shape[1:])
        if self.conv:
            delta = torch.einsum("nrhw,nor->nohw", a, b)
            if bias is not None:
                delta = delta + bias[:, :, None, None]
        else:
            delta = torch.einsum("n...r,nor->n...o", a, b)
            if bias is not None:
                delta = delta + bias.reshape(n, *([1] * (a.dim() - 2)), -1)
        return y + delta


class BatchedAdapters(nn.Module):
    """A frozen copy of ``base_model`` with K adapters of ``layout`` (A shared from peft's init at ``seed``)."""

    def __init__(self, base_model: nn.Module, layout: LoraLayout, k: int, seed: int = A_SEED) -> None:
        super().__init__()
        self.layout = layout
        self.peft = wrap(copy.deepcopy(base_model), layout, seed=seed)  # the A's, and the saving format
        self.model = copy.deepcopy(base_model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.names = list(layout.module_ranks(self.model))
        self.layers: dict[str, BatchedLora] = {}
        for name in self.names:
            lora = self.peft.get_submodule(f"base_model.model.{name}")
            layer = BatchedLora(self.model.get_submodule(name), lora.lora_A["default"].weight, k, layout.bias)
            parent, _, child = name.rpartition(".")
            setattr(self.model.get_submodule(parent) if parent else self.model, child, layer)
            self.layers[name] = layer

    def trainable(self) -> list[nn.Parameter]:
        return [p for layer in self.layers.values() for p in (layer.b, layer.b_bias) if p is not None]

    def forward(self, x: torch.Tensor, ids: torch.Tensor, text_tokens: torch.Tensor | None = None,
                text_mask: torch.Tensor | None = None) -> torch.Tensor:
        for layer in self.layers.values():
            layer.ids, layer.weights = ids, None
        return self.model(x, text_tokens, text_mask)

    def forward_with(self, x: torch.Tensor, weights: dict[str, tuple[torch.Tensor, torch.Tensor | None]],
                     text_tokens: torch.Tensor | None = None, text_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The base with per-sample adapters given as tensors: ``weights[name]`` = (B [N, out, r], bias [N, out])."""
        for name, layer in self.layers.items():
            layer.ids, layer.weights = None, weights[name]
        return self.model(x, text_tokens, text_mask)

    def shapes(self) -> dict[str, tuple[int, int]]:
        """(out, rank) of each adapted layer's B."""
        return {n: tuple(layer.b.shape[1:]) for n, layer in self.layers.items()}

    def save(self, k: int, folder: Path) -> Path:
        """Adapter ``k`` as a peft adapter folder (the shared A, its B and bias): plain peft loads it."""
        return self.save_weights({name: (layer.b[k], None if layer.b_bias is None else layer.b_bias[k])
                                  for name, layer in self.layers.items()}, folder)

    @torch.no_grad()
    def save_weights(self, weights: dict[str, tuple[torch.Tensor, torch.Tensor | None]], folder: Path) -> Path:
        """One adapter given as tensors (``weights[name]`` = (B [out, r], bias [out] or None)) as a peft
        adapter folder over the shared A."""
        for name, layer in self.layers.items():
            b, bias = weights[name]
            lora_b = self.peft.get_submodule(f"base_model.model.{name}").lora_B["default"]
            lora_b.weight.copy_(b.reshape(lora_b.weight.shape))
            if layer.b_bias is not None:
                lora_b.bias.copy_(bias)
        return save_adapter(self.peft, folder)


@dataclass
class AdapterTraining:
    """Settings of ``train_adapters``."""

    steps: int = 300
    per_concept: int = 4
    lr: float = 3e-3
    seed: int = 0


def concept_batch(data: PairedDataset, concept: int, name: str, step: int, n: int, seed: int
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` training pairs of one concept for ``step`` (sources, targets), randomly flipped; drawn with a
    generator of (seed, concept name, step) only, so the same whatever else is in the batch."""
    g = torch.Generator().manual_seed(derive_seed(seed, "adapter-batch", name, step))
    members = data.members(concept)
    idx = torch.randint(len(members), (n,), generator=g).tolist()
    flip = (torch.rand(n, generator=g) < 0.5).tolist()
    src, tgt = [], []
    for i, f in zip(idx, flip):
        item = data[members[i]]
        s, t = item["source"], item["target"]
        if f:
            s, t = s.flip(-1), t.flip(-1)
        src.append(s)
        tgt.append(t)
    return torch.stack(src), torch.stack(tgt)


def train_adapters(base_model: nn.Module, layout: LoraLayout, data_dirs: Sequence[Path], settings: AdapterTraining,
                   text_cache: Path | None = None, progress: Callable[[int, float], None] | None = None
                   ) -> tuple[BatchedAdapters, list[dict[str, float]]]:
    """Train one adapter per concept folder in ``data_dirs``, all in one batch; returns the model (adapter k =
    ``data_dirs[k]``) and the per-step history (summed loss, and each concept's L1)."""
    from factory.text.encoder import TextEncoder

    data = PairedDataset(list(data_dirs), split="train")
    model = BatchedAdapters(base_model, layout, len(data_dirs))
    tokens, mask = TextEncoder.from_name(base_model.config.text_encoder, cache_dir=text_cache).tokens(
        data.instructions)
    opt = torch.optim.Adam(model.trainable(), lr=settings.lr, betas=(0.9, 0.999))
    k = len(data_dirs)
    ids = torch.arange(k).repeat_interleave(settings.per_concept)
    history = []
    for step in range(settings.steps):
        pairs = [concept_batch(data, c, data.concepts[c], step, settings.per_concept, settings.seed) for c in range(k)]
        src = torch.cat([p[0] for p in pairs])
        tgt = torch.cat([p[1] for p in pairs])
        fake = model(src, ids, tokens[ids], mask[ids])
        per = (fake - tgt).abs().reshape(k, -1).mean(1)  # each concept's mean L1
        loss = per.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        l1 = per.detach().numpy().astype(np.float64).tolist()
        history.append({"step": step + 1, "loss": float(loss.detach()), "l1": l1})
        if progress:
            progress(step + 1, float(per.mean()))
    return model, history
