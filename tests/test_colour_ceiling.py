"""bench/colour_ceiling.py's lens models: they hold a blur and a vignette that no per-pixel colour model can."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from factory.teachers.recipes import apply_recipe

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import colour_ceiling


def pairs(recipe: list[dict], n: int, seed: int) -> tuple[list, list]:
    rng = np.random.default_rng(seed)
    # smooth random photos (a blur of them differs from them, but not by noise alone)
    photos = [np.kron(rng.integers(0, 256, (8, 8, 3)), np.ones((4, 4, 1))).astype(np.uint8) for _ in range(n)]
    return photos, [apply_recipe(p, recipe) for p in photos]


def test_the_radial_columns_hold_a_vignette_and_the_taps_a_blur_where_the_monomials_cannot():
    vignette, blur = [{"op": "vignette", "amount": 0.6}], [{"op": "gaussian_blur", "sigma": 1.0}]
    scores = {}
    for name, recipe in (("vignette", vignette), ("blur", blur)):
        train, test = pairs(recipe, 6, 0), pairs(recipe, 3, 1)
        scores[name] = {(t, r): colour_ceiling._lens_fit(train, test, t, r) for t in (False, True)
                        for r in (False, True)}
    v, b = scores["vignette"], scores["blur"]
    assert v[False, True] > v[False, False] + 8 and v[False, True] > 35
    assert b[True, False] > b[False, False] + 8
    assert v[True, True] >= v[False, True] - 0.5 and b[True, True] >= b[True, False] - 0.5
