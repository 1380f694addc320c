"""Honest baselines for a new concept, and the copy check for generated adapters.

Baselines for the starting adapter of a concept the weight generator never saw:

* zero-init LoRA on the base (E2GAN): peft's own init (B = 0, so the base's output) - that is
  ``factory finetune --init base``; nothing to compute here;
* ``retrieve_by_text``: the training adapter whose instruction's pooled text embedding is nearest
  (cosine) to the new instruction;
* ``average_adapter``: the element-wise mean of the training adapters.

The memorization trap (DESIGN.md section 2): generated weights are often near-copies or averages
of training weights. ``distance_table`` reports, for each candidate adapter, the distance to its
nearest training adapter next to the typical distance between training adapters (each training
adapter to its nearest other one) and to the average adapter. Distances are RMS differences in
normalized units: each tensor divided by its dataset scale (the tokenizer's), so every tensor
weighs the same whatever its magnitude; 0 means identical.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from weight_generator.dataset import WeightDataset
from weight_generator.tokenize import unflatten, write_adapter


def average_adapter(dataset: WeightDataset) -> torch.Tensor:
    """The element-wise mean of the dataset's adapters, as a float32 vector [P]."""
    return dataset.weights.to(torch.float64).mean(0).to(torch.float32)


def text_similarities(text: str, dataset: WeightDataset, encoder_name: str = "minilm",
                      cache_dir: str | Path | None = None) -> torch.Tensor:
    """Cosine similarity [N] of ``text`` to each training instruction (pooled, L2-normalized embeddings)."""
    from factory.text.encoder import TextEncoder

    enc = TextEncoder.from_name(encoder_name, cache_dir=cache_dir)
    return enc.pooled(dataset.instructions) @ enc.pooled([text])[0]


def retrieve_by_text(text: str, dataset: WeightDataset, encoder_name: str = "minilm",
                     cache_dir: str | Path | None = None) -> tuple[int, float]:
    """(index, cosine similarity) of the training adapter whose instruction is nearest to ``text``."""
    sims = text_similarities(text, dataset, encoder_name, cache_dir)
    i = int(sims.argmax())
    return i, float(sims[i])


def save_vector_adapter(vector: torch.Tensor, dataset: WeightDataset, folder: str | Path) -> Path:
    """Write an adapter vector of the dataset's layout as a peft adapter folder."""
    return write_adapter(folder, unflatten(vector.to(torch.float64), dataset.layout), dataset.adapter_config)


def rms_distances(a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """[M, N] RMS distances between adapter vectors a [M, P] and b [N, P], each value divided by ``scale`` [P]."""
    x = a.to(torch.float64) / scale
    y = b.to(torch.float64) / scale
    return torch.cdist(x, y) / x.shape[1] ** 0.5


def typical_distances(dataset: WeightDataset, scale: torch.Tensor) -> dict[str, float]:
    """How far apart training adapters are: median distance to the nearest other one, median pairwise."""
    d = rms_distances(dataset.weights, dataset.weights, scale)
    n = len(dataset)
    off = d[~torch.eye(n, dtype=torch.bool)].reshape(n, n - 1)
    avg = rms_distances(dataset.weights, average_adapter(dataset)[None], scale)[:, 0]
    return {"train_nearest_median": float(off.min(1).values.median()),
            "train_nearest_min": float(off.min()),
            "train_pairwise_median": float(off.median()),
            "train_to_average_median": float(avg.median())}


def distance_table(candidates: dict[str, torch.Tensor], dataset: WeightDataset, scale: torch.Tensor,
                   reference: torch.Tensor | None = None) -> dict[str, Any]:
    """For each named candidate vector [P]: its nearest training adapter and distance, the ratio of that
    distance to the typical nearest-neighbour distance between training adapters, its distance to the
    average adapter, and (when ``reference`` is given, e.g. the concept's own trained adapter) to it."""
    typical = typical_distances(dataset, scale)
    avg = average_adapter(dataset)
    rows = []
    for name, vec in candidates.items():
        d = rms_distances(vec[None], dataset.weights, scale)[0]
        i = int(d.argmin())
        row = {"candidate": name, "nearest_training": dataset.concepts[i], "distance_to_nearest": float(d[i]),
               "nearest_over_typical": float(d[i]) / max(typical["train_nearest_median"], 1e-12),
               "distance_to_average": float(rms_distances(vec[None], avg[None], scale)[0, 0])}
        if reference is not None:
            row["distance_to_reference"] = float(rms_distances(vec[None], reference[None], scale)[0, 0])
        rows.append(row)
    return {"typical": typical, "rows": rows}
