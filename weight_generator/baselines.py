"""Honest baselines for a new concept, and the copy check for generated adapters.

Baselines for the starting adapter of a concept the weight generator never saw:

* zero-init LoRA on the base (E2GAN): peft's own init (B = 0, so the base's output) - that is
  ``factory finetune --init base``; nothing to compute here;
* ``retrieve_by_text``: the training adapter whose instruction's pooled text embedding is nearest
  (cosine) to the new instruction;
* ``average_adapter``: the element-wise mean of the training adapters;
* ``ridge_adapter``: ridge regression from the pooled text embedding to the adapter vector (kernel
  form, so P can be large), its penalty chosen by leave-one-out error over the training adapters;
* ``recipe_ridge_adapter``: the same regression from what the text asks for in the concept family's
  grammar (``concepts.family.parse_instruction``: which ops, at which levels, which pairs of ops) next to
  its sentence embedding, for texts the grammar reads; other texts fall back to ``ridge_adapter``.

``BASELINES`` names them for ``--init`` (next to ``weightgen`` and ``base``).

The memorization trap (DESIGN.md section 2): generated weights are often near-copies or averages
of training weights. ``distance_table`` reports, for each candidate adapter, the distance to its
nearest training adapter next to the typical distance between training adapters (each training
adapter to its nearest other one) and to the average adapter. Distances are RMS differences in
normalized units: each tensor divided by its dataset scale (the tokenizer's), so every tensor
weighs the same whatever its magnitude; 0 means identical.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from factory.core.errors import FactoryError
from weight_generator.dataset import WeightDataset
from weight_generator.text_condition import op_level_one_hot
from weight_generator.tokenize import unflatten, write_adapter

if TYPE_CHECKING:
    from weight_generator.sample import WeightGenerator


def average_adapter(dataset: WeightDataset) -> torch.Tensor:
    """The element-wise mean of the dataset's adapters, as a float32 vector [P]."""
    return dataset.weights.to(torch.float64).mean(0).to(torch.float32)


def text_similarities(text: str, dataset: WeightDataset, encoder_name: str = "minilm",
                      cache_dir: str | Path | None = None) -> torch.Tensor:
    """Cosine similarity [N] of ``text`` to each training instruction (pooled, L2-normalized embeddings)."""
    from factory.text.encoder import TextEncoder

    enc = TextEncoder.from_name(encoder_name, cache_dir=cache_dir)
    return dataset.instruction_embeddings(enc) @ enc.pooled([text])[0]


def retrieve_by_text(text: str, dataset: WeightDataset, encoder_name: str = "minilm",
                     cache_dir: str | Path | None = None) -> tuple[int, float]:
    """(index, cosine similarity) of the training adapter whose instruction is nearest to ``text``."""
    sims = text_similarities(text, dataset, encoder_name, cache_dir)
    i = int(sims.argmax())
    return i, float(sims[i])


#: the weight generator's baselines by their ``--init`` names
BASELINES = ("mean", "ridge", "retrieval", "recipe")
#: ridge penalties tried by leave-one-out (pooled MiniLM embeddings are unit vectors: kernel values in [-1, 1])
RIDGE_ALPHAS = (1e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0, 10.0, 100.0)


#: the intercept enters as a constant feature this large, so its penalty is alpha / 100: nearly free
INTERCEPT_FEATURE = 10.0


@dataclass(frozen=True)
class Ridge:
    """Kernel ridge regression with an intercept from text features X [N, D] (unit text embeddings, or recipe
    features) to adapter vectors [N, P].

    ``gamma`` 0 is the linear kernel (x . y); above 0 exp(gamma (x . y - 1)), on unit vectors the Gaussian kernel
    exp(-gamma |x - y|^2 / 2), which can follow a nonlinear text-to-adapter map."""

    x: torch.Tensor       # [N, D] float64
    coef: torch.Tensor    # [N, P] float64: (K + alpha I)^-1 Y, K = kernel(X, X) + INTERCEPT_FEATURE^2
    alpha: float
    loo_error: float      # mean squared leave-one-out error at ``alpha``, per varying value, in ``scale`` units
    mean_loo_error: float  # the same for the leave-one-out mean adapter: what ridge must beat
    gamma: float = 0.0

    @staticmethod
    def gram(a: torch.Tensor, b: torch.Tensor, gamma: float = 0.0) -> torch.Tensor:
        """The kernel matrix [len(a), len(b)] with the intercept's constant."""
        dot = a.to(torch.float64) @ b.to(torch.float64).T
        return (dot if gamma == 0 else torch.exp(gamma * (dot - 1))) + INTERCEPT_FEATURE**2

    @property
    def loo_r2(self) -> float:
        """Leave-one-out R^2 against the leave-one-out mean adapter (0: no better than the mean)."""
        return 1 - self.loo_error / self.mean_loo_error

    @classmethod
    def fit(cls, x: torch.Tensor, y: torch.Tensor, scale: torch.Tensor | None = None,
            alphas: tuple[float, ...] = RIDGE_ALPHAS, gammas: tuple[float, ...] = (0.0,)) -> Ridge:
        """Fit with the (penalty, kernel width) whose exact leave-one-out error (residual / (1 - H_ii)) is least."""
        x, y = x.to(torch.float64), y.to(torch.float64)
        n = len(x)
        if n < 3:
            raise FactoryError(f"ridge needs at least 3 training adapters, got {n}")
        scale = torch.ones(y.shape[1], dtype=torch.float64) if scale is None else scale.to(torch.float64)
        # values every adapter shares (a frozen shared lora_A) are predicted exactly; their rounding noise divided
        # by a near-zero scale would swamp the error and pick the penalty, so the error is over varying values
        live = (y.std(0) > 1e-9 * float(y.abs().max().clamp_min(1e-30))) & (scale > 0)
        if not bool(live.any()):
            raise FactoryError("every training adapter is the same: nothing for ridge to fit")
        best = None
        for gamma in gammas:
            k = cls.gram(x, x, gamma)
            for alpha in alphas:
                inv = torch.linalg.inv(k + alpha * torch.eye(n, dtype=torch.float64))
                h = k @ inv
                loo = (y - h @ y) / (1 - torch.diagonal(h))[:, None]
                err = float(((loo[:, live] / scale[live]) ** 2).mean())
                if best is None or err < best[0]:
                    best = (err, alpha, gamma, inv @ y)
        dev = (y - y.mean(0))[:, live] * n / (n - 1) / scale[live]  # y_i - the mean of the others
        mean_loo = float((dev**2).mean())
        err, alpha, gamma, coef = best
        return cls(x, coef, alpha, err, mean_loo, gamma)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Adapter vectors [M, P] (float32) for unit text embeddings x [M, D]."""
        return (self.gram(x, self.x, self.gamma) @ self.coef).to(torch.float32)


#: kernel widths tried by leave-one-out for the recipe features (0: linear, one additive effect per feature; above
#: 0 exp(gamma (x . y - 1)), which lets ops interact)
RECIPE_GAMMAS = (0.0, 1.0, 2.0, 4.0)
#: ridge fits by (input, kernel widths, weight-dataset fingerprint): the penalty and width search inverts an N x N
#: matrix per setting, and every text's start from one dataset uses the same fit
_FITS: dict[tuple, Ridge | None] = {}


def _fit_once(key: tuple, fit: Callable[[], Ridge | None]) -> Ridge | None:
    """``fit()``, made once per ``key`` and process."""
    if key not in _FITS:
        _FITS[key] = fit()
    return _FITS[key]


def recipe_one_hot(texts: list[str]) -> list[torch.Tensor | None]:
    """Per text, a unit vector with one equal entry per (family op, level) it asks for, or None for a text the
    family's grammar does not read. (Unit rather than 0/1 entries: the leave-one-out error of the fit on the
    family's weight dataset is a little lower.)"""
    from concepts.family import parse_instruction

    return [None if (ops := parse_instruction(t).ops) is None else op_level_one_hot(ops) for t in texts]


def recipe_features(texts: list[str], embeddings: torch.Tensor) -> list[torch.Tensor | None]:
    """Per text the grammar reads, a unit vector of four equal-weight parts: its (op, level) one-hot
    (``recipe_one_hot``), which ops it names, which pairs of ops, and its text embedding (``embeddings`` [N, D]);
    None for a text the grammar does not read. Chosen by the leave-one-out error of the kernel ridge on the family's
    1024-adapter weight dataset without the leave-out's test draws: ops share an effect across levels and pairs of
    ops interact (``bench/results/accelerators/remade-1024/predictability.md``)."""
    from concepts.family import FAMILY_OPS, parse_instruction

    order = list(FAMILY_OPS)
    pairs = {p: i for i, p in enumerate(itertools.combinations(order, 2))}
    unit = lambda v: v / v.norm().clamp_min(1e-12)
    out: list[torch.Tensor | None] = []
    for text, emb in zip(texts, embeddings.to(torch.float64), strict=True):
        parsed = parse_instruction(text).ops
        if parsed is None:
            out.append(None)
            continue
        names = sorted({op for op, _ in parsed}, key=order.index)
        ops, both = torch.zeros(len(order), dtype=torch.float64), torch.zeros(len(pairs), dtype=torch.float64)
        ops[[order.index(op) for op in names]] = 1.0
        both[[pairs[p] for p in itertools.combinations(names, 2)]] = 1.0
        out.append(unit(torch.cat([op_level_one_hot(parsed), unit(ops), unit(both), unit(emb)])))
    return out


def fit_recipe_ridge(dataset: WeightDataset, encoder_name: str = "minilm",
                     cache_dir: str | Path | None = None) -> Ridge | None:
    """Ridge from the recipe features (``recipe_features``) of the dataset's instructions the grammar reads to their
    adapters, or None when it reads fewer than 3 of them (fitted once per dataset, encoder and process)."""
    from factory.text.encoder import TextEncoder

    def fit() -> Ridge | None:
        emb = dataset.instruction_embeddings(TextEncoder.from_name(encoder_name, cache_dir=cache_dir))
        feats = recipe_features(dataset.instructions, emb)
        rows = [i for i, f in enumerate(feats) if f is not None]
        if len(rows) < 3:
            return None
        y = dataset.weights[rows]
        scale = y.to(torch.float64).std(0).clamp_min(1e-8)
        return Ridge.fit(torch.stack([feats[i] for i in rows]), y, scale, gammas=RECIPE_GAMMAS)

    return _fit_once(("recipe", encoder_name, RECIPE_GAMMAS, dataset.fingerprint()), fit)


def recipe_ridge_adapter(text: str, dataset: WeightDataset, encoder_name: str = "minilm",
                         cache_dir: str | Path | None = None) -> tuple[torch.Tensor, dict[str, Any]]:
    """The recipe ridge's prediction [P] for ``text``; the text-embedding ridge's when the family's grammar does
    not read the text or reads fewer than 3 of the training instructions; and what it was made from."""
    from concepts.family import parse_instruction
    from factory.text.encoder import TextEncoder

    x = recipe_features([text], TextEncoder.from_name(encoder_name, cache_dir=cache_dir).pooled([text]))[0]
    fit = fit_recipe_ridge(dataset, encoder_name, cache_dir) if x is not None else None
    if fit is None:
        why = (parse_instruction(text).reason if x is None else
               f"the family's grammar reads fewer than 3 of the {len(dataset)} training instructions")
        vec, emb = ridge_adapter(text, dataset, encoder_name, cache_dir)
        return vec, {"fallback": f"text-embedding ridge: {why}", "alpha": emb.alpha, "adapters": len(dataset)}
    return fit.predict(x[None])[0], {"alpha": fit.alpha, "gamma": fit.gamma, "loo_r2": round(fit.loo_r2, 4),
                                     "adapters": len(fit.x)}


def recipe_weightgen_adapter(text: str, dataset: WeightDataset, gen: WeightGenerator, encoder_name: str = "minilm",
                             cache_dir: str | Path | None = None) -> tuple[torch.Tensor, dict[str, Any]]:
    """The ``--init recipe+weightgen`` start [P] for ``text``: half the recipe ridge's adapter, half the weight
    generator's mean sample (``WeightGenerator.mean_sample``); and what it was made from."""
    from weight_generator.sample import MEAN_SAMPLES

    recipe, info = recipe_ridge_adapter(text, dataset, encoder_name, cache_dir)
    return (recipe.double() + gen.mean_sample(text).double()) / 2, {"recipe": info, "generator_samples": MEAN_SAMPLES}


def ridge_adapter(text: str, dataset: WeightDataset, encoder_name: str = "minilm",
                  cache_dir: str | Path | None = None, gammas: tuple[float, ...] = (0.0,),
                  ) -> tuple[torch.Tensor, Ridge]:
    """The ridge prediction [P] for ``text`` from the dataset's (instruction, adapter) pairs, and the fit (kernel
    widths ``gammas``, 0 linear; fitted once per dataset, encoder, widths and process)."""
    from factory.text.encoder import TextEncoder

    enc = TextEncoder.from_name(encoder_name, cache_dir=cache_dir)

    def fit() -> Ridge:
        scale = dataset.weights.to(torch.float64).std(0).clamp_min(1e-8)
        return Ridge.fit(dataset.instruction_embeddings(enc), dataset.weights, scale, gammas=gammas)

    fit = _fit_once(("text", encoder_name, gammas, dataset.fingerprint()), fit)
    return fit.predict(enc.pooled([text]))[0], fit


def baseline_vector(kind: str, text: str, dataset: WeightDataset, encoder_name: str = "minilm",
                    cache_dir: str | Path | None = None) -> tuple[torch.Tensor, dict[str, Any]]:
    """The ``kind`` baseline's adapter vector [P] for ``text`` and what it was made from."""
    if kind == "mean":
        return average_adapter(dataset), {"adapters": len(dataset)}
    if kind == "retrieval":
        i, sim = retrieve_by_text(text, dataset, encoder_name, cache_dir)
        return dataset.weights[i].clone(), {"concept": dataset.concepts[i], "similarity": round(sim, 4)}
    if kind == "ridge":
        vec, fit = ridge_adapter(text, dataset, encoder_name, cache_dir)
        return vec, {"alpha": fit.alpha, "loo_error": round(fit.loo_error, 6),
                     "mean_loo_error": round(fit.mean_loo_error, 6), "adapters": len(dataset)}
    if kind == "recipe":
        return recipe_ridge_adapter(text, dataset, encoder_name, cache_dir)
    raise FactoryError(f"unknown baseline '{kind}': expected one of {', '.join(BASELINES)}")


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
