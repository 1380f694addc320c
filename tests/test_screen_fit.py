"""The fit of a concept's fixed screen from its pairs (factory.data.screen_fit), on the classic recipes."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from factory.data.screen_fit import fit_lattice, fit_screen_waves, with_harmonics
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


def test_the_harmonics_let_a_linear_read_of_the_waves_draw_a_round_dot_at_a_large_scale():
    """A halftone dot (cell 4 at 15 degrees, 23x larger as on a 12 MP photo) thresholded from a least-squares fit of
    the screen's sin/cos planes: from the fundamentals alone the mid-tone dots come out the wrong shape; with the
    second harmonics far fewer pixels are on the wrong side. Harmonics beyond +-0.5 cycles per pixel are left out."""
    a = np.radians(15.0)
    fundamentals = [[np.sin(a) / 4, np.cos(a) / 4], [np.cos(a) / 4, -np.sin(a) / 4]]
    waves = with_harmonics(fundamentals)
    assert waves[:2] == fundamentals and len(waves) == 6
    assert all(any(_same_wave(w, [k * x for x in f]) for w in waves) for f in fundamentals for k in (1, 2))
    assert all(any(_same_wave(w, t) for w in waves) for t in ([x + y for x, y in zip(*fundamentals)],
                                                               [x - y for x, y in zip(*fundamentals)]))
    assert len(with_harmonics([[0.0, 1 / 3]])) == 1  # its double would alias
    assert with_harmonics([]) == []

    scale = 23.4
    yy, xx = np.mgrid[0:400, 0:400] / scale  # pixels of the big photo in the pairs' pixels
    u = (xx * np.cos(a) + yy * np.sin(a)) / 4
    v = (-xx * np.sin(a) + yy * np.cos(a)) / 4
    d = np.hypot(u - np.floor(u) - 0.5, v - np.floor(v) - 0.5)

    def wrong_side(ws: list[list[float]], ink: float) -> float:
        phases = [2 * np.pi * (fy * yy + fx * xx) for fy, fx in ws]
        planes = np.stack([np.ones_like(d)] + [f(p) for p in phases for f in (np.sin, np.cos)], -1)
        planes = planes.reshape(-1, planes.shape[-1])
        r = np.sqrt(ink / np.pi)
        coef = np.linalg.lstsq(planes, (r - d).ravel(), rcond=None)[0]
        return float(np.mean((planes @ coef > 0) != (d < r).ravel()))

    for ink in (0.5, 0.7):
        assert wrong_side(waves, ink) < 0.6 * wrong_side(fundamentals, ink), ink


def _shifted_halftone_pairs(shift: tuple[int, int], n: int = 24, size: int = 128):
    """Halftone pairs (cell 5 at 30 degrees) cut from bigger outputs ``shift`` (rows, cols) pixels in, so the screen
    sits off the pairs' corner; and the teacher's two waves, whose dot centres are at their half cycles."""
    rng = np.random.default_rng(1)
    steps = validate_recipe([{"op": "halftone", "cell": 5, "angle": 30.0}], "recipe")
    dy, dx = shift
    sources, targets = [], []
    for _ in range(n):
        img = cv2.GaussianBlur(rng.random((size + dy, size + dx, 3)).astype(np.float32), (0, 0), rng.uniform(2, 8))
        img = ((img - img.min()) / (img.max() - img.min() + 1e-6) * 255).astype(np.uint8)
        sources.append(img[dy:, dx:])
        targets.append(run_steps(img, steps, 0)[dy:, dx:])

    def tensor(images: list) -> torch.Tensor:
        return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 127.5 - 1

    a = np.radians(30.0)
    return tensor(sources), tensor(targets), [[np.sin(a) / 5, np.cos(a) / 5], [np.cos(a) / 5, -np.sin(a) / 5]]


@pytest.mark.parametrize("shift", [(0, 0), (2, 1)])
def test_the_lattice_offsets_put_the_dot_centres_at_whole_or_half_cycles(shift):
    source, target, truth = _shifted_halftone_pairs(shift)
    waves = fit_screen_waves(source, target)
    lattice = fit_lattice(source, target, waves)
    assert [w[:2] for w in lattice] == waves[:2] and len(lattice) == 2
    dy, dx = shift
    for fy, fx, offset in lattice:
        # a dot centre of the bigger output (the teacher's phase 0.5 on both waves), in the pairs' pixels
        (ty, tx), (sy, sx) = truth
        centre = np.linalg.solve(np.array([[ty, tx], [sy, sx]]), np.array([0.5, 0.5])) - np.array([dy, dx])
        phase = fy * centre[0] + fx * centre[1] + offset
        assert abs(2 * phase - round(2 * phase)) < 0.06, (lattice, shift, phase)
    assert fit_lattice(source, target, []) == []
    assert len(fit_lattice(source, target, [waves[0], [2 * x for x in waves[0]]])) == 1  # parallel: one wave


def test_the_lattice_planes_give_the_dot_its_shape_at_a_large_scale():
    """The distance planes of the screen's lattice (base_gan.lattice) at a 12 MP photo's scale: thresholded at the
    tone's radius one of them draws the teacher's round dot with almost no pixel on the wrong side, where the best
    linear read of the sin/cos planes with their second harmonics misplaces several percent."""
    from base_gan.lattice import SCALE, lattice_buffers, lattice_planes

    a = np.radians(15.0)
    lattice = [[np.sin(a) / 4, np.cos(a) / 4, 0.0], [np.cos(a) / 4, -np.sin(a) / 4, 0.0]]
    yy, xx = np.mgrid[0:400, 0:400] / 23.4
    u = (xx * np.cos(a) + yy * np.sin(a)) / 4
    v = (-xx * np.sin(a) + yy * np.cos(a)) / 4
    d = np.hypot(u - np.floor(u) - 0.5, v - np.floor(v) - 0.5)  # the recipe's distance to the dot's centre
    position = torch.from_numpy(np.stack([yy, xx])[None]).float()
    planes = lattice_planes(lattice_buffers(lattice), position)[0].numpy()
    assert planes.shape[0] == 8 and planes.min() >= -1.05 and planes.max() <= 1.05
    f = np.abs(u - np.round(u))
    assert np.abs((planes[0] + 1) / 4 - f).max() < 0.007  # f of the first wave, to the series' accuracy
    for ink in (0.2, 0.5, 0.7):
        r = np.sqrt(ink / np.pi)
        wrong = min(float(np.mean(((planes[k] + 1) / SCALE < r) != (d < r))) for k in range(4, 8))
        assert wrong < 0.005, (ink, wrong)
