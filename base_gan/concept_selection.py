"""Choosing the base GAN's training concepts: E2GAN's k-means over the concepts' text embeddings."""

from __future__ import annotations

import numpy as np

from factory.core.errors import FactoryError


def representative_concepts(names: list[str], embeddings: np.ndarray, k: int, seed: int = 0) -> list[str]:
    """The ``k`` concepts nearest the centres of a k-means clustering of their text embeddings."""
    from sklearn.cluster import KMeans

    if not 1 <= k <= len(names):
        raise FactoryError(f"auto:{k}: need 1 <= K <= {len(names)} (the number of concepts available)")
    emb = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    km = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(emb)
    chosen: list[str] = []
    for centre in km.cluster_centers_:
        order = np.argsort(((emb - centre) ** 2).sum(1))
        chosen.append(next(names[i] for i in order if names[i] not in chosen))
    return chosen
