"""The fit of a concept's fixed screen from its pairs (factory.data.screen_fit), on the classic recipes."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from factory.data.screen_fit import fit_screen_waves
from factory.teachers.recipes import run_steps, validate_recipe


def _pairs(recipe: list, n: int = 32, size: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth random photos and the recipe's outputs, as [N, 3, H, W] in [-1, 1]."""
    rng = np.random.default_rng(0)
    steps = validate_recipe(recipe, "recipe")
    sources, targets = [], []
    for _ in range(n):
        img = cv2.GaussianBlur(rng.random((size, size, 3)).astype(np.float32), (0, 0), rng.uniform(2, 8))
        img = ((img - img.min()) / (img.max() - img.min() + 1e-6) * 255).astype(np.uint8)
        sources.append(img)
        targets.append(run_steps(img, steps, 0))

    def tensor(images: list) -> torch.Tensor:
        return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 127.5 - 1

    return tensor(sources), tensor(targets)


def _same_wave(a: list[float], b: list[float], tol: float = 1e-3) -> bool:
    """Equal up to sign (a wave and its conjugate give the same sin/cos pair)."""
    return max(abs(x - y) for x, y in zip(a, b)) < tol or max(abs(x + y) for x, y in zip(a, b)) < tol


@pytest.mark.parametrize("cell, angle", [(5, 45.0), (4, 15.0)])
def test_a_halftone_screen_gives_its_two_fundamentals(cell, angle):
    waves = fit_screen_waves(*_pairs([{"op": "halftone", "cell": cell, "angle": angle}]))
    a = np.radians(angle)
    truth = [[np.sin(a) / cell, np.cos(a) / cell], [np.cos(a) / cell, -np.sin(a) / cell]]
    assert len(waves) == 2
    assert all(any(_same_wave(w, t) for w in waves) for t in truth), (waves, truth)


def test_pixel_blocks_give_the_block_period_on_each_axis_not_a_harmonic():
    waves = fit_screen_waves(*_pairs([{"op": "pixelate", "block": 8}]))
    assert len(waves) == 2
    assert all(any(_same_wave(w, t) for w in waves) for t in ([0.125, 0.0], [0.0, 0.125])), waves


def test_a_colour_map_or_random_grain_gives_no_waves():
    assert fit_screen_waves(*_pairs([{"op": "sepia"}])) == []
    assert fit_screen_waves(*_pairs([{"op": "grain"}])) == []


def test_bad_input_is_refused():
    x = torch.zeros(1, 3, 16, 16)
    with pytest.raises(ValueError, match="at least 2 pairs"):
        fit_screen_waves(x, x)
