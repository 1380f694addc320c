"""Paired training data as a torch Dataset, with the same random geometric augmentation on both images."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from factory.core.errors import FactoryError
from factory.core.files import read_json
from factory.core.images import read_image
from factory.data.pair_store import read_manifest


@dataclass(frozen=True)
class PairRef:
    concept: str
    pair_id: str
    source: Path
    target: Path


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 -> 3xHxW float in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float().div(127.5).sub(1.0)


def to_uint8(t: torch.Tensor) -> np.ndarray:
    """3xHxW float in [-1, 1] -> HxWx3 uint8."""
    return t.detach().clamp(-1, 1).add(1).mul(127.5).round().byte().permute(1, 2, 0).cpu().numpy()


def concept_instruction(data_dir: Path) -> str:
    """The instruction text a concept's pairs were made for (from its synth.json)."""
    meta = data_dir / "synth.json"
    if not meta.exists():
        raise FactoryError(f"{data_dir}: no synth.json; run `factory synth {data_dir.name}` first")
    return json.loads(meta.read_text(encoding="utf-8"))["instruction"]


def full_resolution_reference(data_dir: Path) -> tuple[list | None, int, str]:
    """(the classic recipe or None, the pairs' size, why there is no full-resolution reference)."""
    meta = read_json(Path(data_dir) / "synth.json")
    if not isinstance(meta, dict):
        return None, 0, f"no readable synth.json in {data_dir}: the concept has no teacher pairs"
    teacher = meta.get("teacher") or {}
    if teacher.get("kind") != "classic":
        return None, 0, f"the {teacher.get('kind', 'unknown')} teacher cannot be run at full resolution here"
    return teacher["recipe"], int(meta["size"]), ""


def pair_refs(data_dir: Path, split: str | None = None, ids: Sequence[str] | None = None) -> list[PairRef]:
    """The pairs of one concept folder, optionally one split and/or a chosen subset of ids, sorted by id."""
    records = read_manifest(data_dir)
    if not records:
        raise FactoryError(f"{data_dir}: no pairs; run `factory synth {data_dir.name}` first")
    wanted = set(ids) if ids is not None else None
    return [
        PairRef(data_dir.name, r["id"], data_dir / r["source"], data_dir / r["target"])
        for r in sorted(records, key=lambda r: r["id"])
        if (split is None or r["split"] == split) and (wanted is None or r["id"] in wanted)
    ]


def pair_augmentation(size: int, flip: bool = True, min_scale: float = 0.7):
    """Random flip and resized crop applied with identical parameters to source and target (kornia)."""
    import kornia.augmentation as K

    ops = [K.RandomResizedCrop((size, size), scale=(min_scale, 1.0), ratio=(0.9, 1.1), p=1.0)]
    if flip:
        ops.insert(0, K.RandomHorizontalFlip(p=0.5))
    return K.AugmentationSequential(*ops, data_keys=["input", "input"])


class PairedDataset(Dataset):
    """Pairs of one or more concepts, held in memory as uint8.

    Each item is a dict: ``source`` and ``target`` (3xHxW float in [-1, 1]), ``concept`` (index into
    ``self.concepts``), ``instruction`` (the concept's text) and ``pair_id``.
    """

    def __init__(self, data_dirs: Sequence[Path], split: str | None = "train", augment: bool = False,
                 ids: dict[str, Sequence[str]] | None = None, flip: bool = True):
        self.concepts = [Path(d).name for d in data_dirs]
        self.instructions = [concept_instruction(Path(d)) for d in data_dirs]
        self.refs: list[PairRef] = []
        for d in data_dirs:
            self.refs += pair_refs(Path(d), split, (ids or {}).get(Path(d).name))
        if not self.refs:
            raise FactoryError(f"no {split or ''} pairs in {', '.join(map(str, data_dirs))}")
        self._index = {c: i for i, c in enumerate(self.concepts)}
        self._images = [(read_image(r.source), read_image(r.target)) for r in self.refs]
        size = self._images[0][0].shape[0]
        self.augment = pair_augmentation(size, flip=flip) if augment else None

    def __len__(self) -> int:
        return len(self.refs)

    def members(self, concept: int) -> list[int]:
        """The item indices of concept ``concept`` (an index into ``self.concepts``)."""
        name = self.concepts[concept]
        return [i for i, r in enumerate(self.refs) if r.concept == name]

    def images(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(source, target) of pair ``i`` as HxWx3 uint8, unaugmented."""
        return self._images[i]

    def __getitem__(self, i: int) -> dict:
        src, tgt = (to_tensor(a) for a in self._images[i])
        if self.augment is not None:
            src, tgt = (t.squeeze(0) for t in self.augment(src.unsqueeze(0), tgt.unsqueeze(0)))
        ref = self.refs[i]
        c = self._index[ref.concept]
        return {"source": src, "target": tgt, "concept": c, "instruction": self.instructions[c], "pair_id": ref.pair_id}
