"""Which training pairs a fine-tune uses: K representative pairs, and a validation subset for searches.

* ``cluster``: features of each pair's source image from the frozen base generator's encoder
  (the bottleneck after ``down2``, pooled to its per-channel mean and standard deviation; the
  encoder is what the whole base was trained to read scenes with, so pairs far apart in it are
  pairs the generator treats differently), standardized per dimension, k-means with K clusters,
  and the distinct pair nearest each centre (E2GAN's recipe).
* ``random``: K pairs drawn uniformly without replacement, the comparison.

``validation_split`` holds out whole source photos from the train split, a near-duplicate group (a
stereo pair, crops of one scene) at a time (falls back to single pairs when there are fewer than
three groups), so layer probes and rank searches select on pairs
that are neither in their training subset nor in the test split used for final figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from factory.core.errors import FactoryError
from factory.core.seeds import derive_seed
from factory.data.pair_store import photo_group, read_manifest

SELECT_METHODS = ("cluster", "random")
VALIDATION_FRACTION = 0.15


def train_ids(data_dir: Path) -> list[str]:
    ids = sorted(r["id"] for r in read_manifest(data_dir) if r.get("split") == "train")
    if not ids:
        raise FactoryError(f"{data_dir}: no training pairs; run `factory synth {Path(data_dir).name}` first")
    return ids


def validation_split(data_dir: Path, fraction: float = VALIDATION_FRACTION,
                     seed: int = 0) -> tuple[list[str], list[str]]:
    """(fit ids, validation ids) of the train split: whole photos held out until >= ``fraction``."""
    records = [r for r in read_manifest(data_dir) if r.get("split") == "train"]
    if len(records) < 4:
        raise FactoryError(f"{data_dir}: {len(records)} training pairs; need at least 4 to hold some out "
                           "for validation (synthesize more with --synth-pairs)")
    by_photo: dict[str, list[str]] = {}  # near-duplicate group (else photo) -> its pairs
    for r in records:
        by_photo.setdefault(photo_group(r), []).append(r["id"])
    want = max(1, int(round(fraction * len(records))))
    rng = np.random.default_rng(derive_seed(seed, "validation", Path(data_dir).name))
    val: list[str] = []
    if len(by_photo) >= 3:
        for photo in rng.permutation(sorted(by_photo)):
            if len(val) >= want:
                break
            if len(val) + len(by_photo[photo]) <= len(records) // 2:
                val += by_photo[photo]
    if not val:  # one or two photos (or one photo holds most pairs): hold out single pairs
        val = list(rng.choice(sorted(r["id"] for r in records), size=want, replace=False))
    val_set = set(val)
    return sorted(r["id"] for r in records if r["id"] not in val_set), sorted(val_set)


@torch.no_grad()
def encoder_features(model: nn.Module, images: torch.Tensor, batch: int = 16) -> np.ndarray:
    """[N, 3, H, W] in [-1, 1] -> [N, 2C] (mean and std over positions of the ``down2`` output)."""
    target = _find_module(model, "down2")
    captured: list[torch.Tensor] = []
    handle = target.register_forward_hook(lambda _m, _i, out: captured.append(out))
    was_training = model.training
    model.eval()
    try:
        feats = []
        for start in range(0, len(images), batch):
            captured.clear()
            model(images[start:start + batch])  # text-free: the encoder runs before cross-attention
            h = captured[-1].flatten(2)
            feats.append(torch.cat([h.mean(2), h.std(2)], dim=1))
    finally:
        handle.remove()
        model.train(was_training)
    return torch.cat(feats).numpy().astype(np.float64)


def _find_module(model: nn.Module, name: str) -> nn.Module:
    for full, m in model.named_modules():
        if full == name or full.endswith("." + name):
            return m
    raise FactoryError(f"the generator has no '{name}' module to take encoder features from")


def cluster_select(features: np.ndarray, ids: Sequence[str], k: int, seed: int = 0) -> list[str]:
    """K distinct ids: for each k-means centre (standardized features), the nearest pair not yet taken."""
    from sklearn.cluster import KMeans

    ids = list(ids)
    _check_k(k, len(ids))
    if k == len(ids):
        return sorted(ids)
    x = (features - features.mean(0)) / (features.std(0) + 1e-8)
    km = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(x)
    chosen: list[int] = []
    for centre in km.cluster_centers_:
        order = np.argsort(((x - centre) ** 2).sum(1), kind="stable")
        chosen.append(next(int(i) for i in order if int(i) not in chosen))
    return sorted(ids[i] for i in chosen)


def random_select(ids: Sequence[str], k: int, seed: int = 0) -> list[str]:
    ids = sorted(ids)
    _check_k(k, len(ids))
    rng = np.random.default_rng(derive_seed(seed, "random-pairs", k))
    return sorted(rng.choice(ids, size=k, replace=False).tolist())


def _check_k(k: int, n: int) -> None:
    if not 1 <= k <= n:
        raise FactoryError(f"--pairs {k}: need 1 <= K <= {n} (the training pairs available)")


def select_pairs(data_dir: Path, k: int, method: str = "cluster", base_model: nn.Module | None = None,
                 ids: Sequence[str] | None = None, seed: int = 0) -> list[str]:
    """K distinct pair ids among ``ids`` (default: the train split) of one concept folder."""
    from factory.core.images import read_image
    from factory.data.dataset import pair_refs, to_tensor

    if method not in SELECT_METHODS:
        raise FactoryError(f"unknown pair selection {method!r} (known: {', '.join(SELECT_METHODS)})")
    ids = sorted(ids) if ids is not None else train_ids(data_dir)
    _check_k(k, len(ids))
    if k == len(ids):
        return ids
    if method == "random":
        return random_select(ids, k, seed)
    if base_model is None:
        raise FactoryError("cluster selection needs the base generator (its encoder gives the features)")
    refs = pair_refs(Path(data_dir), "train", ids)
    images = torch.stack([to_tensor(read_image(r.source)) for r in refs])
    return cluster_select(encoder_features(base_model, images), [r.pair_id for r in refs], k, seed)
