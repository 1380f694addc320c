"""How much of a family adapter the text can predict, in weight space: leave-one-out R^2 of ridge regression
onto each adapter (weights standardized per value, as the weight generator's tokenizer scales them), against
the leave-one-out mean adapter (R^2 = 0: no better than the average adapter; 1: exact).

Two inputs per concept: the recipe the text names (the (op, level) pairs ``concepts.family.parse_instruction``
reads back from the instruction, one-hot: what a perfect reader of the text would know) and the pooled MiniLM
sentence embedding the weight generator is conditioned on. A gap between the two says how much the text
encoding loses; a low R^2 for the recipe says the adapters vary in ways their edit does not determine.
Numpy only, seconds. Writes ``bench/results/accelerators/predictability.{json,md}``.

    python bench/adapter_predictability.py --weightgen bench/work/pretrain-family/adapters/weightgen/family-weightgen
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from concepts.family import parse_instruction
from factory.core.atomic import atomic_write_json, atomic_write_text
from factory.text.encoder import TextEncoder
from weight_generator.dataset import WeightDataset

from common import log, provenance

LAMBDAS = (0.1, 1.0, 10.0, 100.0, 1000.0)


def loo_r2(x: np.ndarray, z: np.ndarray, lam: float) -> float:
    """Leave-one-out R^2 of ridge (features standardized, free intercept) from ``x`` [N, F] onto ``z`` [N, P]
    (closed form through the hat matrix), against the leave-one-out mean."""
    n = len(x)
    xs = np.hstack([np.ones((n, 1)), (x - x.mean(0)) / (x.std(0) + 1e-8)])
    penalty = lam * np.eye(xs.shape[1])
    penalty[0, 0] = 0.0
    hat = xs @ np.linalg.solve(xs.T @ xs + penalty, xs.T)
    h = np.diag(hat)[:, None]
    loo = (hat @ z - h * z) / (1 - h)
    mean_loo = (z.sum(0) - z) / (n - 1)
    return float(1 - ((z - loo) ** 2).sum() / ((z - mean_loo) ** 2).sum())


def recipe_features(instructions: list[str]) -> tuple[np.ndarray, list[str]]:
    """One-hot (op, level) of each instruction's parsed recipe; refuses a text outside the family grammar."""
    parsed = [parse_instruction(t) for t in instructions]
    bad = [t for t, p in zip(instructions, parsed, strict=True) if p.ops is None]
    if bad:
        raise SystemExit(f"{len(bad)} instructions outside the family grammar, e.g. {bad[0]!r}")
    names = sorted({f"{k}:{lv}" for p in parsed for k, lv in p.ops})
    x = np.zeros((len(parsed), len(names)))
    for i, p in enumerate(parsed):
        for k, lv in p.ops:
            x[i, names.index(f"{k}:{lv}")] = 1.0
    return x, names


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weightgen", type=Path, required=True, help="a weight generator folder with its dataset")
    ap.add_argument("--text-cache", type=Path, default=None, help="MiniLM cache folder (default: none)")
    ap.add_argument("--out", type=Path, default=Path("bench/results/accelerators"))
    args = ap.parse_args()
    data = WeightDataset.load(args.weightgen)
    w = data.weights.double().numpy()
    z = (w - w.mean(0)) / (w.std(0) + 1e-8)
    recipe, names = recipe_features(data.instructions)
    text = TextEncoder("minilm", args.text_cache).pooled(data.instructions).double().numpy()
    rows = {name: {f"{lam:g}": round(loo_r2(x, z, lam), 4) for lam in LAMBDAS}
            for name, x in (("recipe (op, level) one-hot", recipe), ("MiniLM pooled text", text))}
    r = {**provenance("adapter_predictability.py"), "weightgen": str(args.weightgen), "adapters": len(data),
         "values_per_adapter": int(w.shape[1]), "recipe_features": len(names), "text_dim": int(text.shape[1]),
         "loo_r2": rows, "best": {k: max(v.values()) for k, v in rows.items()}}
    atomic_write_json(args.out / "predictability.json", r)
    lines = ["# How much of a family adapter the text predicts (weight space)", "",
             f"Command: `{r['command']}` (commit `{r['commit']}`, {r['date']}). {r['adapters']} adapters of "
             f"{r['values_per_adapter']} values each, standardized per value. Leave-one-out R^2 of ridge regression "
             "against the leave-one-out mean adapter (0: no better than the average adapter), per penalty:", "",
             "| input | " + " | ".join(f"lambda {lam:g}" for lam in LAMBDAS) + " |",
             "| --- | " + " | ".join("---:" for _ in LAMBDAS) + " |"]
    lines += [f"| {k} | " + " | ".join(f"{v:.3f}" for v in row.values()) + " |" for k, row in rows.items()]
    lines += ["", "The best penalty is picked on the same leave-one-out figures, so each row's best is slightly "
              "optimistic.", ""]
    atomic_write_text(args.out / "predictability.md", "\n".join(lines))
    log(f"best LOO R^2: {r['best']} -> {args.out / 'predictability.md'}")


if __name__ == "__main__":
    main()
