"""How far a per-pixel colour model fitted in closed form gets on a colour concept's held-out pairs.

Issue 15's colour runs flatten near 36-37 dB on cross-process while scratch climbs past 40; the editor's colour basis
(``--colour-basis 3``: the source pixel's monomials up to degree 3, solved by the readout) is a per-pixel model, and
this asks how much of a concept's edit such a model can hold at all, with no network: each model below is fitted by
least squares on the concept's training pairs (every pixel) and scored (PSNR, dB) on its test pairs, next to the
unchanged photo. Models: ``monomials-N``, the colour basis's monomials up to degree N with a constant;
``curves``, nine curves (one per input and output channel, ``factory.runtime.colour_curves``); ``curves+monomials-2``,
the curves, then degree-2 monomials of their output. Run it on validation concepts: what it says is for choosing.

Beside them, with ``--lens``, models that also see where a pixel is and what is around it (a lens basis: what a
per-pixel model cannot hold, a blur's neighbourhood and a vignette's place in the frame): ``monomials-3+taps``, the
degree-3 monomials and the photo's 3x3 neighbourhood per channel (27 columns); ``monomials-3+radial``, the monomials
and the photo's colour and a constant times d^2, d^4 and d^6 (d: the distance from the centre, 1 at the corners, as
the classic ``vignette`` measures it; 12 columns); ``monomials-3+taps+radial``, both. These are fitted over every
training pixel one photo at a time (their Gram matrix summed).

``--make NAMES --workspace W`` first makes the protocol's pairs (160 at 128 px, data seed 0) of those concepts in
``W``: named ones by name, family ones (``fam-...``) from ``sample_concepts(200, --family-draw, 'train')``.

    python bench/colour_ceiling.py --workspaces bench/work/fullsize-curves-validation/ws-autumn,...
    python bench/colour_ceiling.py --lens --make day-to-night,fam-0ed7d6d780 --workspace bench/work/lens-validation \
        --workspaces bench/work/lens-validation --name lens-ceiling-validation
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np

from common import REPO, log, provenance, provenance_line, read_pairs, write_results

MODELS = ("identity", "monomials-1", "monomials-2", "monomials-3", "curves", "curves+monomials-2")
LENS = ("monomials-3+taps", "monomials-3+radial", "monomials-3+taps+radial")


def _pixels(pairs: tuple[list, list]) -> tuple[np.ndarray, np.ndarray, int]:
    """All pixels of a split's pairs (``read_pairs``' sources and targets) as N x 3 uint8 sources and targets, and
    the number of pairs."""
    src, dst = pairs
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


def _lens_features(img: np.ndarray, taps: bool, radial: bool) -> np.ndarray:
    """Per pixel (H*W rows): a constant, the colour monomials up to degree 3, and with ``taps`` the photo's 3x3
    neighbourhood per channel (reflected at the border), with ``radial`` the colour and a constant times d^2, d^4,
    d^6 (``img``: H x W x 3 in [0, 1])."""
    h, w, _ = img.shape
    cols = [_monomials(img.reshape(-1, 3), 3)]
    if taps:
        padded = np.pad(img, ((1, 1), (1, 1), (0, 0)), mode="reflect")
        cols += [padded[dy:dy + h, dx:dx + w].reshape(-1, 3) for dy in range(3) for dx in range(3)]
    if radial:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
        d2 = (((xx + 0.5 - w / 2) / (w / 2)) ** 2 + ((yy + 0.5 - h / 2) / (h / 2)) ** 2).reshape(-1, 1) / 2
        colour = np.concatenate([np.ones((h * w, 1)), img.reshape(-1, 3)], 1)
        cols += [colour * d2 ** k for k in (1, 2, 3)]
    return np.concatenate(cols, 1)


def _lens_fit(train: tuple[list, list], test: tuple[list, list], taps: bool, radial: bool) -> float:
    """Held-out PSNR of the lens model fitted by least squares over every training pixel (the Gram matrix summed
    photo by photo; the same ridge as ``_linear``)."""
    gram, cross, n = 0.0, 0.0, 0
    for src, dst in zip(*train, strict=True):
        x = _lens_features(src / 255.0, taps, radial)
        gram, cross, n = gram + x.T @ x, cross + x.T @ (dst.reshape(-1, 3) / 255.0), n + len(x)
    w = np.linalg.solve(gram + 1e-6 * n * np.eye(len(gram)), cross)
    pred = np.concatenate([_lens_features(src / 255.0, taps, radial) @ w for src in test[0]])
    return _psnr(pred, np.concatenate([d.reshape(-1, 3) for d in test[1]]))


def _psnr(pred: np.ndarray, target: np.ndarray) -> float:
    """PSNR of predictions in [0, 1] (clipped and rounded to 8 bits, as an editor's output is) against uint8."""
    out = np.clip(np.rint(pred * 255), 0, 255)
    mse = float(np.mean((out - target.astype(np.float64)) ** 2))
    return 10 * np.log10(255 ** 2 / max(mse, 1e-10))


def measure(ws: Path, concept: str, lens: bool = False) -> dict:
    from factory.runtime.colour_curves import fit_curves

    data = ws / "data" / concept
    train, test = read_pairs(data, "train")[:2], read_pairs(data, "test")[:2]  # read once for every model
    xs, ys, n_train = _pixels(train)
    xt, yt, n_test = _pixels(test)
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
    if lens:
        for name in LENS:
            scores[name] = _lens_fit(train, test, "taps" in name, "radial" in name)
    log(f"{concept}: " + ", ".join(f"{k} {v:.2f}" for k, v in scores.items()))
    return {"concept": concept, "train_pairs": n_train, "test_pairs": n_test,
            "psnr_db": {k: round(v, 2) for k, v in scores.items()}}


def render(result: dict) -> str:
    models = MODELS + (LENS if result.get("lens") else ())
    lines = ["# Per-pixel colour models' ceiling on held-out pairs (colour-ceiling)", "",
             f"{provenance_line(result)}. Each model fitted by least squares on the concept's training pairs, PSNR "
             "(dB) on its test pairs (8-bit output); no network. `monomials-N`: the colour basis's monomials up to "
             "degree N and a constant; `curves`: nine per-channel curves (17 knots); `curves+monomials-2`: degree-2 "
             "monomials of the curves' output."
             + (" The lens models (`+taps`: the photo's 3x3 neighbourhood per channel; `+radial`: the colour and a "
                "constant times d^2, d^4, d^6 of the distance from the centre) are described in the script's doc."
                if result.get("lens") else ""), "",
             "| concept | pairs (train / test) | " + " | ".join(models) + " |",
             "| --- | --- | " + " | ".join("---:" for _ in models) + " |"]
    for r in result["concepts"]:
        lines.append(f"| {r['concept']} | {r['train_pairs']} / {r['test_pairs']} | "
                     + " | ".join(f"{r['psnr_db'][m]:.2f}" for m in models) + " |")
    mean = {m: statistics.fmean(r["psnr_db"][m] for r in result["concepts"]) for m in models}
    lines += ["", "Mean: " + ", ".join(f"{m} {v:.2f}" for m, v in mean.items()) + "."]
    return "\n".join(lines) + "\n"


def make(workspace: Path | None, names: list[str], draw: int) -> None:
    """The protocol's pairs of ``names`` in ``workspace`` (family concepts from draw ``draw``)."""
    from concepts.cards import find_card
    from concepts.family import family_card, sample_concepts
    from factory.core.errors import FactoryError
    from factory.core.workspace import Workspace
    from factory.data.card_pairs import make_pairs
    from factory.evaluation.protocol import DATA_SEED, PAIRS, SIZE

    if workspace is None:
        raise FactoryError("--make needs --workspace (where the pairs go)")
    ws, family = Workspace(workspace), {c.name: c for c in sample_concepts(200, draw, "train")}
    for name in names:
        if name.startswith("fam-") and name not in family:
            raise FactoryError(f"{name} is not in sample_concepts(200, {draw}, 'train')")
        card = family_card(ws, family[name]) if name.startswith("fam-") else find_card(name)
        make_pairs(ws, card, PAIRS, SIZE, DATA_SEED)
        log(f"{name}: pairs in {ws.data(name)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workspaces", required=True, help="comma-separated workspaces with data/<concept>/")
    ap.add_argument("--name", default="colour-ceiling-validation")
    ap.add_argument("--lens", action="store_true", help="also the lens models (the photo's neighbourhood, the place "
                    "in the frame)")
    ap.add_argument("--make", help="comma-separated concepts whose protocol pairs to make in --workspace first")
    ap.add_argument("--workspace", type=Path, help="with --make: where")
    ap.add_argument("--family-draw", type=int, default=12, help="with --make: the family draw fam-... names are of "
                    "(sample_concepts(200, N, 'train'); 12: bench/tune_choice.py's validation draw)")
    args = ap.parse_args()
    if args.make:
        make(args.workspace, args.make.split(","), args.family_draw)
    rows = [measure(ws, c.name, args.lens) for ws in (Path(w).resolve() for w in args.workspaces.split(","))
            for c in sorted((ws / "data").iterdir()) if (c / "manifest.jsonl").is_file()]
    result = {**provenance("colour_ceiling.py"), "lens": args.lens, "concepts": rows}
    log(f"wrote {write_results(REPO / 'bench' / 'results', args.name, False, result, render(result))}")


if __name__ == "__main__":
    main()
