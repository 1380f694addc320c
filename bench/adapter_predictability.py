"""How much of a family adapter the text can predict, in weight space: leave-one-out R^2 of kernel ridge
regression (``weight_generator.baselines.Ridge``, the ``--init ridge`` baseline) onto each adapter (weights
standardized per value, as the weight generator's tokenizer scales them), against the leave-one-out mean
adapter (R^2 = 0: no better than the average adapter; 1: exact). Two kernels: linear, and Gaussian on the unit
sphere (a nonlinear map from the text to the adapter); penalty and width are picked by the same leave-one-out
error, so each figure is slightly optimistic.

Inputs per concept: the recipe the text names (the (op, level) pairs ``concepts.family.parse_instruction``
reads back from the instruction, one-hot scaled to unit length: what a perfect reader of the text would know)
and the pooled MiniLM sentence embedding the weight generator is conditioned on. A gap between the two says how
much the text encoding loses; a gap between the kernels, how nonlinear the map from the edit to its adapter is.
A third input is the ``--init recipe`` start's features: the one-hot, which ops and which pairs of ops the text
names, and its embedding (``weight_generator.baselines.recipe_features``).

``--retrain K`` measures that directly: the first K concepts' adapters trained again exactly as the dataset's
were (same base, shared lora_A, layout, steps and learning rate) but with another seed for the pairs each step
draws. The R^2 of the retrained adapter as a prediction of the dataset's says how much of an adapter is its
training run rather than its concept; since both runs are noisy, the ceiling for any predictor of a dataset
adapter from its concept is about 1 - (1 - that R^2) / 2. ``--curve`` repeats the leave-one-out R^2 on random
subsets of the dataset (``CURVE_DRAWS`` draws per size): how the predictability grows with the number of
adapters says whether a denser weight dataset would help. Numpy only, seconds (``--retrain 32``: about 3 min
of training). Writes ``bench/results/accelerators/predictability.{json,md}``.

    python bench/adapter_predictability.py --weightgen bench/work/pretrain-family/adapters/weightgen/family-weightgen \
        --text-cache bench/work/pretrain-family/adapters/cache/text --retrain 32
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from factory.core.atomic import atomic_write_json, atomic_write_text
from factory.text.encoder import TextEncoder
from weight_generator.baselines import Ridge, recipe_features, recipe_one_hot
from weight_generator.dataset import WeightDataset

from common import log, provenance

GAMMAS = (0.3, 1.0, 3.0, 10.0, 30.0)  # Gaussian kernel widths tried (unit inputs: |x - y|^2 in [0, 4])
#: random subsets per size for ``--curve``
CURVE_DRAWS = 3


def standardized(rows: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """``rows`` with each value standardized by the mean and spread of the dataset ``ref`` [N, P]."""
    return (rows - ref.mean(0)) / (ref.std(0) + 1e-8)


def loo_mean(z: np.ndarray) -> np.ndarray:
    """Row i: the mean of every row but i (the leave-one-out mean adapter)."""
    return (z.sum(0) - z) / (len(z) - 1)


def kernel_r2(x: np.ndarray, w: np.ndarray) -> dict[str, dict]:
    """Leave-one-out R^2 of linear and Gaussian kernel ridge from unit features ``x`` [N, F] onto adapters ``w``."""
    xt, wt = torch.from_numpy(x), torch.from_numpy(w)
    scale = wt.std(0).clamp_min(1e-8)
    out = {}
    for name, gammas in (("linear", (0.0,)), ("gaussian", GAMMAS)):
        fit = Ridge.fit(xt, wt, scale, gammas=gammas)
        out[name] = {"r2": round(fit.loo_r2, 4), "alpha": fit.alpha, "gamma": fit.gamma}
    return out


def r2_curve(inputs: dict[str, np.ndarray], w: np.ndarray, best: dict[str, float],
             seed: int = 0) -> dict[str, list[dict]]:
    """Best leave-one-out R^2 (over kernels) of each input on random subsets of 1/8, 1/4 and 1/2 of the adapters,
    then ``best`` (the whole dataset's, already fitted)."""
    rng = np.random.default_rng(seed)
    n = len(w)
    out: dict[str, list[dict]] = {name: [] for name in inputs}
    for size in sorted({max(8, n // d) for d in (8, 4, 2)} - {n}):
        draws = [rng.permutation(n)[:size] for _ in range(CURVE_DRAWS)]
        for name, x in inputs.items():
            r2 = [max(f["r2"] for f in kernel_r2(x[d], w[d]).values()) for d in draws]
            out[name].append({"adapters": size, "r2_mean": round(float(np.mean(r2)), 4),
                              "r2_sd": round(float(np.std(r2)), 4), "draws": len(draws)})
        log(f"curve: {size} adapters " + ", ".join(f"{k} {v[-1]['r2_mean']:.3f}" for k, v in out.items()))
    for name in inputs:
        out[name].append({"adapters": n, "r2_mean": best[name], "r2_sd": 0.0, "draws": 1})
    return out


def recipe_inputs(instructions: list[str], text: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Each instruction's (op, level) one-hot (``weight_generator.baselines.recipe_one_hot``) and the ``--init
    recipe`` start's features (``recipe_features``: that one-hot, the ops, the pairs of ops and the text embedding
    ``text``), and how many (op, level) pairs occur; refuses a text outside the family grammar."""
    hot = recipe_one_hot(instructions)
    bad = [t for t, f in zip(instructions, hot, strict=True) if f is None]
    if bad:
        raise SystemExit(f"{len(bad)} instructions outside the family grammar, e.g. {bad[0]!r}")
    x = torch.stack(hot).numpy()
    full = torch.stack(recipe_features(instructions, torch.from_numpy(text))).numpy()
    return x, full, int((x != 0).any(0).sum())


def retrained(data: WeightDataset, adapters_ws: Path, k: int, seed: int) -> np.ndarray:
    """The first ``k`` concepts' adapters trained again as the dataset's were, with another pair-drawing seed
    (rows in the dataset's order and layout)."""
    from base_gan.models import BaseGAN
    from factory.lora.adapters import LoraLayout
    from factory.lora.batched import AdapterTraining, train_adapters
    from weight_generator.tokenize import flatten, read_adapter

    concepts = data.concepts[:k]
    first = json.loads((adapters_ws / "loras" / concepts[0] / "metrics.json").read_text())
    settings = AdapterTraining(**{**first["settings"], "seed": seed})
    base = BaseGAN.load(data.base)
    log(f"retraining {k} adapters with seed {seed} ({settings.steps} steps)")
    model, _ = train_adapters(base.model, LoraLayout(**first["layout"]), [adapters_ws / "data" / c for c in concepts],
                              settings, text_cache=adapters_ws / "cache" / "text")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, c in enumerate(concepts):
            tensors, _ = read_adapter(model.save(i, Path(tmp) / c))
            rows.append(flatten(tensors, data.layout).double().numpy())
    return np.stack(rows)


def seed_noise(z: np.ndarray, again: np.ndarray) -> dict[str, float]:
    """R^2 of the retrained adapters ``again`` [K, P] as predictions of the dataset's first K rows (both
    standardized over the whole dataset ``z`` [N, P]), against the leave-one-out mean adapter, and the ceiling
    it implies for any predictor from the concept."""
    k = len(again)
    r2 = float(1 - ((z[:k] - again) ** 2).sum() / ((z[:k] - loo_mean(z)[:k]) ** 2).sum())
    return {"concepts": k, "r2_retrained": round(r2, 4), "ceiling": round(1 - (1 - r2) / 2, 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weightgen", type=Path, required=True, help="a weight generator folder with its dataset")
    ap.add_argument("--text-cache", type=Path, default=None, help="MiniLM cache folder (default: none)")
    ap.add_argument("--retrain", type=int, default=0, help="retrain the first K adapters with another seed")
    ap.add_argument("--retrain-seed", type=int, default=1)
    ap.add_argument("--curve", action="store_true", help="leave-one-out R^2 against the number of adapters")
    ap.add_argument("--adapters", type=Path, default=Path("bench/work/pretrain-family/adapters"),
                    help="the weight dataset's workspace (its loras/, data/, cache/) for --retrain")
    ap.add_argument("--out", type=Path, default=Path("bench/results/accelerators"))
    args = ap.parse_args()
    data = WeightDataset.load(args.weightgen)
    w = data.weights.double().numpy()
    z = standardized(w, w)
    text = TextEncoder("minilm", args.text_cache).pooled(data.instructions).double().numpy()
    recipe, full, used = recipe_inputs(data.instructions, text)
    inputs = {"recipe (op, level) one-hot": recipe, "MiniLM pooled text": text,
              "recipe start (one-hot, ops, pairs of ops, text)": full}
    rows = {name: kernel_r2(x, w) for name, x in inputs.items()}
    r = {**provenance("adapter_predictability.py"), "weightgen": str(args.weightgen), "adapters": len(data),
         "values_per_adapter": int(w.shape[1]), "recipe_features": used, "text_dim": int(text.shape[1]),
         "loo_r2": rows, "best": {k: max(f["r2"] for f in v.values()) for k, v in rows.items()}}
    if args.retrain:
        again = retrained(data, args.adapters, args.retrain, args.retrain_seed)
        r["seed_noise"] = {**seed_noise(z, standardized(again, w)), "seed": args.retrain_seed}
    if args.curve:
        r["curve"] = r2_curve(inputs, w, r["best"])
    atomic_write_json(args.out / "predictability.json", r)
    lines = ["# How much of a family adapter the text predicts (weight space)", "",
             f"Command: `{r['command']}` (commit `{r['commit']}`, {r['date']}). {r['adapters']} adapters of "
             f"{r['values_per_adapter']} values each, standardized per value. Leave-one-out R^2 of kernel ridge "
             "regression against the leave-one-out mean adapter (0: no better than the average adapter):", "",
             "| input | linear kernel | Gaussian kernel |", "| --- | ---: | ---: |"]
    lines += [f"| {k} | {row['linear']['r2']:.3f} (penalty {row['linear']['alpha']:g}) | {row['gaussian']['r2']:.3f} "
              f"(penalty {row['gaussian']['alpha']:g}, gamma {row['gaussian']['gamma']:g}) |"
              for k, row in rows.items()]
    lines += ["", "Penalty and kernel width are picked on the same leave-one-out figures, so each is slightly "
              "optimistic.", ""]
    if "seed_noise" in r:
        sn = r["seed_noise"]
        lines += [f"The first {sn['concepts']} adapters trained again with pair-drawing seed {sn['seed']} (all else "
                  f"as the dataset's): as predictions of the dataset's adapters they reach R^2 {sn['r2_retrained']:.3f}"
                  f"; the ceiling this implies for any predictor from the concept is about {sn['ceiling']:.3f}.", ""]
    if "curve" in r:
        lines += ["Leave-one-out R^2 (the better kernel) on random subsets of the adapters, mean +- sd over "
                  f"{CURVE_DRAWS} draws (one for the whole dataset):", "",
                  "| adapters | " + " | ".join(r["curve"]) + " |", "| ---: |" + " ---: |" * len(r["curve"])]
        for i, point in enumerate(next(iter(r["curve"].values()))):
            cells = [f"{v[i]['r2_mean']:.3f} +- {v[i]['r2_sd']:.3f}" for v in r["curve"].values()]
            lines.append(f"| {point['adapters']} | " + " | ".join(cells) + " |")
        lines.append("")
    atomic_write_text(args.out / "predictability.md", "\n".join(lines))
    log(f"best LOO R^2: {r['best']} -> {args.out / 'predictability.md'}")


if __name__ == "__main__":
    main()
