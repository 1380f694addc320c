"""The weight dataset: (concept instruction text, trained LoRA adapter) pairs gathered from a workspace.

``factory weightgen collect`` reads every ``<workspace>/loras/<concept>/`` adapter (peft format), checks
that all share one layout (same tensors, shapes, ranks, alphas, target modules) and the same base
generator, and writes ``<workspace>/weightgen/<name>/dataset.safetensors`` (``weights`` [N, P] float32,
each row an adapter flattened in canonical order) plus ``dataset.json`` (concepts, instructions, the
layout, the adapter_config template, the base and a sha256 per source adapter). ``dataset_texts.safetensors``,
when present, holds the instructions' pooled text embeddings per encoder (``embed_instructions``), so the
text baselines (retrieval, ridge) of a new workspace need not encode a thousand training texts first.

A concept's instruction comes from its adapter's ``metrics.json`` (``instruction``), else its concept
card, else its pairs' ``synth.json``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from factory.core.atomic import atomic_save_file, atomic_write_json
from factory.core.errors import FactoryError
from factory.core.workspace import Workspace
from weight_generator.tokenize import ADAPTER_CONFIG, ADAPTER_WEIGHTS, AdapterLayout, flatten, read_adapter

DATASET_WEIGHTS = "dataset.safetensors"
DATASET_TEXTS = "dataset_texts.safetensors"
DATASET_META = "dataset.json"
METRICS = "metrics.json"


@dataclass
class WeightDataset:
    """N adapters of one layout, as rows of ``weights`` [N, P] (float32, canonical order)."""

    concepts: list[str]
    instructions: list[str]
    weights: torch.Tensor
    layout: AdapterLayout
    adapter_config: dict[str, Any]
    base: str | None = None
    sources: list[dict[str, Any]] = field(default_factory=list)
    #: encoder name -> pooled embeddings [N, D] of ``instructions`` (saved with the dataset, or encoded once)
    text_embeddings: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.concepts)

    def index(self, concept: str) -> int:
        try:
            return self.concepts.index(concept)
        except ValueError:
            raise FactoryError(f"concept '{concept}' is not in the weight dataset "
                               f"(it has {', '.join(self.concepts)})") from None

    def subset(self, keep: Iterable[str]) -> WeightDataset:
        idx = [self.index(c) for c in keep]
        return WeightDataset([self.concepts[i] for i in idx], [self.instructions[i] for i in idx],
                             self.weights[idx].clone(), self.layout, self.adapter_config, self.base,
                             [self.sources[i] for i in idx] if self.sources else [],
                             {k: v[idx].clone() for k, v in self.text_embeddings.items()})

    def instruction_embeddings(self, encoder) -> torch.Tensor:
        """[N, D] pooled embeddings of the instructions by ``encoder`` (a ``TextEncoder``): the saved ones for its
        name, else encoded now (and kept for this dataset)."""
        if encoder.name not in self.text_embeddings:
            self.text_embeddings[encoder.name] = encoder.pooled(self.instructions)
        return self.text_embeddings[encoder.name]

    def fingerprint(self) -> str:
        """sha256 over the texts and the weights: what a trained weight generator was trained on."""
        h = hashlib.sha256(json.dumps([self.concepts, self.instructions]).encode())
        h.update(self.weights.contiguous().numpy().tobytes())
        return h.hexdigest()[:16]

    def save(self, folder: str | Path) -> Path:
        from safetensors.torch import save_file

        folder = Path(folder)
        w = self.weights.to(torch.float32).contiguous()
        atomic_save_file(folder / DATASET_WEIGHTS, lambda tmp: save_file({"weights": w}, tmp))
        atomic_write_json(folder / DATASET_META, {
            "concepts": self.concepts, "instructions": self.instructions, "base": self.base,
            "numel": self.layout.numel, "layout": self.layout.to_dict(), "adapter_config": self.adapter_config,
            "sources": self.sources, "fingerprint": self.fingerprint()})
        if self.text_embeddings:
            self.save_embeddings(folder)
        return folder

    def save_embeddings(self, folder: str | Path) -> Path:
        """``<folder>/dataset_texts.safetensors``: the instruction embeddings, tagged with the instructions' hash."""
        from safetensors.torch import save_file

        texts = {k: v.to(torch.float32).contiguous() for k, v in self.text_embeddings.items()}
        path = Path(folder) / DATASET_TEXTS
        atomic_save_file(path, lambda tmp: save_file(texts, tmp,
                                                     metadata={"instructions_sha256": _texts_sha(self.instructions)}))
        return path

    @classmethod
    def load(cls, folder: str | Path) -> WeightDataset:
        from safetensors.torch import load_file

        folder = Path(folder)
        if not (folder / DATASET_WEIGHTS).is_file() or not (folder / DATASET_META).is_file():
            raise FactoryError(f"{folder}: no weight dataset here; run `factory weightgen collect` first")
        meta = json.loads((folder / DATASET_META).read_text(encoding="utf-8"))
        weights = load_file(str(folder / DATASET_WEIGHTS))["weights"].to(torch.float32)  # shipped copies: fp16
        return cls(meta["concepts"], meta["instructions"], weights, AdapterLayout.from_dict(meta["layout"]),
                   meta["adapter_config"], meta.get("base"), meta.get("sources", []),
                   _saved_embeddings(folder / DATASET_TEXTS, meta["instructions"]))


def _texts_sha(texts: list[str]) -> str:
    return hashlib.sha256(json.dumps(texts).encode()).hexdigest()[:16]


def _saved_embeddings(path: Path, instructions: list[str]) -> dict[str, torch.Tensor]:
    """The embeddings saved with a dataset, {} when there are none or they were made for other instructions."""
    from safetensors import safe_open

    if not path.is_file():
        return {}
    with safe_open(str(path), "pt") as f:
        if (f.metadata() or {}).get("instructions_sha256") != _texts_sha(instructions):
            return {}
        return {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not iterable)


def embed_instructions(folder: str | Path, encoder_name: str = "minilm", cache_dir: str | Path | None = None) -> Path:
    """Encode a saved dataset's instructions with ``encoder_name`` and save them beside it (``DATASET_TEXTS``)."""
    from factory.text.encoder import TextEncoder

    dataset = WeightDataset.load(folder)
    dataset.instruction_embeddings(TextEncoder.from_name(encoder_name, cache_dir=cache_dir))
    return dataset.save_embeddings(folder)


def dataset_base(folder: str | Path) -> str | None:
    """The base a saved weight dataset's adapters were trained on, read from its metadata alone (no weights)."""
    meta = Path(folder) / DATASET_META
    return json.loads(meta.read_text(encoding="utf-8")).get("base") if meta.is_file() else None


def is_adapter_dir(folder: Path) -> bool:
    return (folder / ADAPTER_CONFIG).is_file() and (folder / ADAPTER_WEIGHTS).is_file()


def adapter_metrics(folder: Path) -> dict[str, Any]:
    path = Path(folder) / METRICS
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def same_base(recorded: str | None, base_dir: str | Path) -> bool:
    """Whether the base an adapter or a weight generator's adapters were trained on is ``base_dir`` (path or, if
    moved or copied with its workspace, folder name); an unrecorded base matches any."""
    if recorded is None:
        return True
    rec, cur = Path(recorded), Path(base_dir)
    return rec.resolve() == cur.resolve() or rec.name == cur.name


def adapter_base(folder: Path) -> str | None:
    """The base generator an adapter was fine-tuned on, when its metrics.json records it."""
    m = adapter_metrics(folder)
    base = m.get("base")
    if isinstance(base, dict):
        base = base.get("name") or base.get("path")
    if base is None:
        return None
    path = Path(str(base))
    return str(path.resolve()) if path.exists() else str(base)


def concept_text(concept: str, folder: Path, workspace: Workspace | None) -> str:
    """The instruction a concept's adapter was trained for (metrics.json, else its card, else synth.json)."""
    text = adapter_metrics(folder).get("instruction")
    if isinstance(text, str) and text.strip():
        return text
    try:
        from concepts.cards import find_card

        return find_card(concept, workspace).instruction
    except FactoryError:
        pass
    if workspace is not None:
        synth = workspace.data(concept) / "synth.json"
        if synth.is_file():
            return json.loads(synth.read_text(encoding="utf-8"))["instruction"]
    raise FactoryError(f"{folder}: cannot tell the instruction text of concept '{concept}' "
                       "(no 'instruction' in metrics.json, no concept card, no data/<concept>/synth.json)")


def collect_adapters(folders: list[Path], instructions: list[str], concepts: list[str] | None = None) -> WeightDataset:
    """A weight dataset from adapter folders (one per concept); refuses any adapter whose layout or base
    differs from the first one's, naming it and the difference."""
    if not folders:
        raise FactoryError("no adapters to collect")
    if len(instructions) != len(folders):
        raise ValueError("one instruction per adapter folder")
    concepts = concepts or [Path(f).name for f in folders]
    first_tensors, first_config = read_adapter(folders[0])
    first_config = dict(first_config, base_model_name_or_path=None)  # no build path in a shipped template
    layout = AdapterLayout.of(first_tensors, first_config)
    base = adapter_base(folders[0])
    rows, sources = [], []
    for folder, concept in zip(folders, concepts):
        tensors, config = (first_tensors, first_config) if folder == folders[0] else read_adapter(folder)
        diff = layout.difference(AdapterLayout.of(tensors, config))
        if diff:
            raise FactoryError(f"{folder}: adapter layout differs from {folders[0]}'s: {diff}; "
                               "a weight dataset needs one layout (same layer groups and ranks)")
        their_base = adapter_base(folder)
        if base is not None and not same_base(their_base, base):
            raise FactoryError(f"{folder}: fine-tuned on base '{their_base}', but {folders[0]} on '{base}'; "
                               "a weight dataset needs adapters of one base generator")
        base = base or their_base
        vec = flatten(tensors, layout).to(torch.float32)
        if not torch.isfinite(vec).all():
            raise FactoryError(f"{folder}: adapter has non-finite values")
        rows.append(vec)
        digest = hashlib.sha256((Path(folder) / ADAPTER_WEIGHTS).read_bytes()).hexdigest()
        sources.append({"concept": concept, "folder": str(folder), "sha256": digest})
    return WeightDataset(list(concepts), list(instructions), torch.stack(rows), layout, first_config, base, sources)


def workspace_adapters(workspace: Workspace) -> list[str]:
    """Concept names with a saved adapter under ``<workspace>/loras/``, sorted."""
    root = workspace.root / "loras"
    return sorted(p.name for p in root.iterdir() if p.is_dir() and is_adapter_dir(p)) if root.is_dir() else []


def collect_workspace(workspace: Workspace, concepts: list[str] | None = None,
                      exclude: Iterable[str] = ()) -> WeightDataset:
    """The weight dataset of the workspace's adapters (all, or ``concepts``), minus ``exclude``."""
    available = workspace_adapters(workspace)
    if concepts:
        missing = [c for c in concepts if c not in available]
        if missing:
            raise FactoryError(f"no adapter for {', '.join(missing)} under {workspace.root / 'loras'} "
                               f"(run `factory finetune {missing[0]} --base NAME` first)")
        names = list(concepts)
    else:
        names = available
    skip = set(exclude)
    names = [c for c in names if c not in skip]
    if len(names) < 2:
        raise FactoryError(f"{workspace.root / 'loras'}: a weight dataset needs at least 2 adapters, found "
                           f"{len(names)}; fine-tune more concepts with `factory finetune`")
    folders = [workspace.lora(c) for c in names]
    texts = [concept_text(c, f, workspace) for c, f in zip(names, folders)]
    return collect_adapters(folders, texts, names)
