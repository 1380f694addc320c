"""A text-to-adapter hypernetwork, the Text-to-LoRA recipe (Charakorn et al., 2025) on our generator.

The concept text's pooled embedding goes through a shared MLP trunk; one linear head per adapted layer
writes that layer's LoRA ``B`` (and its bias), over the shared frozen ``lora_A`` of the weight dataset
(``factory.lora.batched``). It is trained end to end through the frozen base on the concepts' pairs
(T2L's "SFT" training: the edited images' L1, no target adapters needed), so it learns the map from
text to edit rather than to the adapters' incidental parameters. The heads start at zero: an untrained
hypernetwork gives the base's own output, like a zero-init LoRA.

``TextToLora`` is a diffusers model (``save_pretrained`` / ``from_pretrained``); ``train_hypernet``
trains it; ``hypernet_adapter`` writes its adapter for a text as a plain peft adapter folder. A weight
generator's folder may carry one in ``hypernet/`` (with the adapters' ``layout.json``): ``--init hypernet``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from factory.core.seeds import derive_seed
from factory.data.dataset import PairedDataset
from factory.lora.adapters import LoraLayout
from factory.lora.batched import BatchedAdapters, concept_batch

Weights = dict[str, tuple[torch.Tensor, torch.Tensor | None]]
#: the hypernetwork's folder inside a weight generator's folder, and its layout file
HYPERNET_DIR = "hypernet"
LAYOUT_FILE = "layout.json"


class TextToLora(ModelMixin, ConfigMixin):
    """Pooled text [N, text_dim] -> per layer (B [N, out, r], bias [N, out] or None)."""

    @register_to_config
    def __init__(self, names: Sequence[str] = (), outs: Sequence[int] = (), ranks: Sequence[int] = (),
                 bias: bool = True, text_dim: int = 384, hidden: int = 256, seed: int = 0) -> None:
        super().__init__()
        if not (len(names) == len(outs) == len(ranks)) or not names:
            raise ValueError("one out width and rank per adapted layer, and at least one layer")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.trunk = nn.Sequential(nn.Linear(text_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU())
            self.heads = nn.ModuleList(nn.Linear(hidden, o * r + (o if bias else 0)) for o, r in zip(outs, ranks))
        for head in self.heads:  # zero output: the base's own edit until trained
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

    def forward(self, text: torch.Tensor) -> Weights:
        h = self.trunk(text)
        out: Weights = {}
        for name, o, r, head in zip(self.config.names, self.config.outs, self.config.ranks, self.heads):
            flat = head(h)
            b = flat[:, : o * r].reshape(-1, o, r)
            out[name] = (b, flat[:, o * r:] if self.config.bias else None)
        return out

    @classmethod
    def for_adapters(cls, adapters: BatchedAdapters, text_dim: int, hidden: int = 256, seed: int = 0) -> TextToLora:
        shapes = adapters.shapes()
        return cls(names=list(shapes), outs=[o for o, _ in shapes.values()], ranks=[r for _, r in shapes.values()],
                   bias=adapters.layout.bias, text_dim=text_dim, hidden=hidden, seed=seed)


@dataclass
class HypernetTraining:
    """Settings of ``train_hypernet``."""

    steps: int = 2000
    concepts_per_step: int = 8
    per_concept: int = 2
    lr: float = 1e-3
    hidden: int = 256
    seed: int = 0


def train_hypernet(base_model: nn.Module, layout: LoraLayout, data_dirs: Sequence[Path], settings: HypernetTraining,
                   text_cache: Path | None = None, progress: Callable[[int, float], None] | None = None
                   ) -> tuple[TextToLora, list[dict[str, float]]]:
    """Train a hypernetwork for ``layout`` on the concepts in ``data_dirs`` (each step: a seeded draw of
    ``concepts_per_step`` concepts, ``per_concept`` training pairs each); returns it and the L1 per step."""
    from factory.text.encoder import TextEncoder

    data = PairedDataset(list(data_dirs), split="train")
    enc = TextEncoder.from_name(base_model.config.text_encoder, cache_dir=text_cache)
    tokens, mask = enc.tokens(data.instructions)
    pooled = enc.pooled(data.instructions)
    adapters = BatchedAdapters(base_model, layout, 1)
    net = TextToLora.for_adapters(adapters, pooled.shape[1], settings.hidden, settings.seed).train()
    opt = torch.optim.Adam(net.parameters(), lr=settings.lr)
    k = min(settings.concepts_per_step, len(data_dirs))
    history = []
    for step in range(settings.steps):
        g = torch.Generator().manual_seed(derive_seed(settings.seed, "hypernet-step", step))
        chosen = torch.randperm(len(data_dirs), generator=g)[:k].tolist()
        pairs = [concept_batch(data, c, data.concepts[c], step, settings.per_concept, settings.seed) for c in chosen]
        ids = torch.tensor(chosen).repeat_interleave(settings.per_concept)
        weights = net(pooled[chosen])
        per_sample = {n: (b.repeat_interleave(settings.per_concept, 0),
                          None if bias is None else bias.repeat_interleave(settings.per_concept, 0))
                      for n, (b, bias) in weights.items()}
        fake = adapters.forward_with(torch.cat([p[0] for p in pairs]), per_sample, tokens[ids], mask[ids])
        loss = (fake - torch.cat([p[1] for p in pairs])).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        history.append({"step": step + 1, "l1": float(loss.detach())})
        if progress:
            progress(step + 1, float(loss))
    return net.eval(), history


@torch.no_grad()
def hypernet_adapter(net: TextToLora, base_model: nn.Module, layout: LoraLayout, text: str, folder: Path,
                     text_cache: Path | None = None) -> Path:
    """The hypernetwork's adapter for ``text`` as a peft adapter folder (over the shared frozen A)."""
    from factory.text.encoder import TextEncoder

    pooled = TextEncoder.from_name(base_model.config.text_encoder, cache_dir=text_cache).pooled([text])
    weights = {n: (b[0], None if bias is None else bias[0]) for n, (b, bias) in net(pooled).items()}
    return BatchedAdapters(base_model, layout, 1).save_weights(weights, folder)


def save_hypernet(net: TextToLora, layout: LoraLayout, folder: Path, training: dict | None = None) -> Path:
    """The hypernetwork (diffusers folder) with the adapter layout it writes (``layout.json``) and how it was
    trained (``training.json``)."""
    from factory.core.atomic import atomic_write_json

    net.save_pretrained(folder)
    if training is not None:
        atomic_write_json(Path(folder) / "training.json", training)
    atomic_write_json(Path(folder) / LAYOUT_FILE, {"groups": layout.groups, "ranks": layout.ranks, "bias": layout.bias})
    return Path(folder)


def load_hypernet(folder: Path) -> tuple[TextToLora, LoraLayout]:
    """A hypernetwork saved by ``save_hypernet`` and its adapter layout."""
    import json

    from factory.core.errors import FactoryError

    folder = Path(folder)
    if not (folder / LAYOUT_FILE).is_file() or not (folder / "config.json").is_file():
        raise FactoryError(f"{folder}: no Text-to-LoRA hypernetwork here (`factory pretrain family` trains one "
                           "with the weight generator)")
    spec = json.loads((folder / LAYOUT_FILE).read_text(encoding="utf-8"))
    return TextToLora.from_pretrained(folder).eval(), LoraLayout(spec["groups"], ranks=spec["ranks"], bias=spec["bias"])
