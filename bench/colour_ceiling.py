"""How far a per-pixel colour model fitted in closed form gets on a colour concept's held-out pairs.

Issue 15's colour runs flatten near 36-37 dB on cross-process while scratch climbs past 40; the editor's colour basis
(``--colour-basis 3``: the source pixel's monomials up to degree 3, solved by the readout) is a per-pixel model, and
this asks how much of a concept's edit such a model can hold at all, with no network: each model below is fitted by
least squares on the concept's training pairs (every pixel) and scored (PSNR, dB) on its test pairs, next to the
unchanged photo. Models: ``monomials-N``, the colour basis's monomials up to degree N with a constant;
``curves``, nine curves (one per input and output channel, ``factory.runtime.colour_curves``); ``curves+monomials-2``,
the curves, then degree-2 monomials of their output. Run it on validation concepts: what it says is for choosing.

    python bench/colour_ceiling.py --workspaces bench/work/fullsize-curves-validation/ws-autumn,...
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np

from common import REPO, log, provenance, provenance_line, read_pairs, write_results

MODELS = ("identity", "monomials-1", "monomials-2", "monomials-3", "curves", "curves+monomials-2")


def _pixels(data: Path, split: str) -> tuple[np.ndarray, np.ndarray, int]:
    """All pixels of a split's pairs (N x 3 uint8 sources, targets) and the number of pairs."""
    src, dst, _ = read_pairs(data, split)
    return (np.concatenate([s.reshape(-1, 3) for s in src]), np.concatenate([d.reshape(-1, 3) for d in dst]),
            len(src))


def _monomials(x: np.ndarray, degree: int) -> np.ndarray:
    """A constant and every monomial of the colours (N x 3, [0, 1]) up to ``degree``."""
    from itertools import combinations_with_replacement

    terms = [np.ones(len(x))] + [np.prod(x[:, list(t)], 1) for d in range(1, degree + 1)
                                 for t in combinations_with_replacement(range(3), d)]
    return np.stack(terms, 1)


def _linear(features_train: np.ndarray, y: np.ndarray, features_test: np.ndarray) -> np.ndarray:
    w = np.linalg.solve(features_train.T @ features_train + 1e-6 * len(y) * np.eye(features_train.shape[1]),
                        features_train.T @ y)
    return features_test @ w


def _psnr(pred: np.ndarray, target: np.ndarray) -> float:
    """PSNR of predictions in [0, 1] (clipped and rounded to 8 bits, as an editor's output is) against uint8."""
    out = np.clip(np.rint(pred * 255), 0, 255)
    mse = float(np.mean((out - target.astype(np.float64)) ** 2))
    return 10 * np.log10(255 ** 2 / max(mse, 1e-10))


def measure(ws: Path, concept: str) -> dict:
    from factory.runtime.colour_curves import fit_curves

    data = ws / "data" / concept
    xs, ys, n_train = _pixels(data, "train")
    xt, yt, n_test = _pixels(data, "test")
    ftr, fte = xs / 255.0, xt / 255.0
    scores = {"identity": _psnr(fte, yt)}
    for degree in (1, 2, 3):
        scores[f"monomials-{degree}"] = _psnr(_linear(_monomials(ftr, degree), ys / 255.0, _monomials(fte, degree)), yt)
    tables = fit_curves(xs.reshape(-1, 1, 3), ys.reshape(-1, 1, 3)).astype(np.float64) / 255

    def curved(x: np.ndarray) -> np.ndarray:
        return np.stack([sum(tables[c, i][x[:, i]] for i in range(3)) for c in range(3)], 1)

    scores["curves"] = _psnr(curved(xt), yt)
    scores["curves+monomials-2"] = _psnr(_linear(_monomials(curved(xs), 2), ys / 255.0,
                                                 _monomials(curved(xt), 2)), yt)
    log(f"{concept}: " + ", ".join(f"{k} {v:.2f}" for k, v in scores.items()))
    return {"concept": concept, "train_pairs": n_train, "test_pairs": n_test,
            "psnr_db": {k: round(v, 2) for k, v in scores.items()}}


def render(result: dict) -> str:
    lines = ["# Per-pixel colour models' ceiling on held-out pairs (colour-ceiling)", "",
             f"{provenance_line(result)}. Each model fitted by least squares on the concept's training pairs, PSNR "
             "(dB) on its test pairs (8-bit output); no network. `monomials-N`: the colour basis's monomials up to "
             "degree N and a constant; `curves`: nine per-channel curves (17 knots); `curves+monomials-2`: degree-2 "
             "monomials of the curves' output.", "",
             "| concept | pairs (train / test) | " + " | ".join(MODELS) + " |",
             "| --- | --- | " + " | ".join("---:" for _ in MODELS) + " |"]
    for r in result["concepts"]:
        lines.append(f"| {r['concept']} | {r['train_pairs']} / {r['test_pairs']} | "
                     + " | ".join(f"{r['psnr_db'][m]:.2f}" for m in MODELS) + " |")
    mean = {m: statistics.fmean(r["psnr_db"][m] for r in result["concepts"]) for m in MODELS}
    lines += ["", "Mean: " + ", ".join(f"{m} {v:.2f}" for m, v in mean.items()) + "."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workspaces", required=True, help="comma-separated workspaces with data/<concept>/")
    ap.add_argument("--name", default="colour-ceiling-validation")
    args = ap.parse_args()
    rows = [measure(ws, c.name) for ws in (Path(w).resolve() for w in args.workspaces.split(","))
            for c in sorted((ws / "data").iterdir()) if (c / "manifest.jsonl").is_file()]
    result = {**provenance("colour_ceiling.py"), "concepts": rows}
    log(f"wrote {write_results(REPO / 'bench' / 'results', args.name, False, result, render(result))}")


if __name__ == "__main__":
    main()
