"""The dots stage (base_gan.dots): a halftone's ink thresholded from the lattice at any scale, one pixel soft."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from base_gan.dots import GAIN, RADIUS_MAX, Dots, dot_plane
from base_gan.generator import build_generator, with_screen_waves
from base_gan.models import load_model, save_model
from factory.data.screen_fit import fit_lattice, fit_screen_waves
from factory.teachers.recipes import run_steps, validate_recipe
from factory.teachers.rescale import apply_recipe_at

HALFTONE = [{"op": "halftone", "cell": 5, "angle": 30.0}]


def _halftone_pairs(n: int = 24, size: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth random photos and the halftone recipe's outputs, [N, 3, H, W] in [-1, 1]."""
    import cv2

    rng = np.random.default_rng(0)
    steps = validate_recipe(HALFTONE, "recipe")
    sources, targets = [], []
    for _ in range(n):
        img = cv2.GaussianBlur(rng.random((size, size, 3)).astype(np.float32), (0, 0), rng.uniform(2, 8))
        img = ((img - img.min()) / (img.max() - img.min() + 1e-6) * 255).astype(np.uint8)
        sources.append(img)
        targets.append(run_steps(img, steps, 0))

    def tensor(images: list) -> torch.Tensor:
        return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 127.5 - 1

    return tensor(sources), tensor(targets)


@pytest.fixture(scope="module")
def fitted() -> tuple[list[list[float]], int]:
    source, target = _halftone_pairs()
    lattice = fit_lattice(source, target, fit_screen_waves(source, target))
    return lattice, dot_plane(source, target, lattice)


@pytest.mark.parametrize("scale", [1.0, 23.4])
@pytest.mark.parametrize("grey", [64, 128, 200])
def test_the_stage_draws_the_recipes_dots_with_one_pixel_edges_at_any_scale(fitted, scale, grey):
    """With the radius the recipe's tone asks for and the ink on, the stage over the fitted lattice and the plane
    ``dot_plane`` picked draws the recipe's halftone of a flat grey, run at the pairs' scale and at a 12 MP photo's
    (cells of 5 and 117 px): few pixels on the wrong side, and the edges about one pixel wide, as the recipe's."""
    lattice, plane = fitted
    size = 256
    photo = np.full((size, size, 3), grey, np.uint8)
    teacher = apply_recipe_at(photo, HALFTONE, scale).astype(np.float32) / 127.5 - 1  # the recipe at this scale
    stage = Dots(4, plane, lattice)
    radius = math.sqrt((1 - grey / 255) / math.pi)  # the recipe's: dot area follows the ink
    with torch.no_grad():
        stage.radius.bias.fill_(math.log(radius / (RADIUS_MAX - radius)) / GAIN)  # sigmoid^-1 of r / RADIUS_MAX
        stage.gate.bias.fill_(1.0 / GAIN)
    rows, cols = torch.meshgrid(torch.arange(size) / scale, torch.arange(size) / scale, indexing="ij")
    position = torch.stack([rows, cols])[None].float()  # in the pairs' pixels
    from base_gan.lattice import lattice_buffers, lattice_planes

    planes = lattice_planes(lattice_buffers(lattice), position)
    white = torch.ones(1, 3, size, size)
    with torch.no_grad():
        out = stage(white, torch.zeros(1, 4, size, size), planes, position)[0, 0].numpy()
    wrong = np.mean(np.abs(out - teacher[..., 0]) > 1.0)  # the other side of the edge
    assert wrong < 0.005, (scale, grey, wrong)
    soft = np.mean((out > -0.9) & (out < 0.9))  # pixels on an edge: as many as the recipe's
    assert soft < 1.5 * np.mean((teacher[..., 0] > -0.9) & (teacher[..., 0] < 0.9)) + 0.002, (scale, grey, soft)


def test_dot_plane_picks_the_plane_of_the_recipes_dot_centres(fitted):
    """The recipe's dots are centred at half cycles of both fitted waves (``fit_lattice``'s offsets), so their
    plane is hypot(0.5 - f1, 0.5 - f2): the second of the four; any other plane scores worse on the pairs."""
    lattice, plane = fitted
    assert plane == 1, (lattice, plane)


def test_the_stage_starts_unused_survives_save_load_and_refuses_what_it_cannot_draw(tmp_path):
    """A generator given the stage by ``with_screen_waves`` edits exactly as before (the gate's conv is zero) until
    the gate opens; ``screen_dots`` survives save/load; the stage needs a two-wave lattice, a plane 0-3 and the
    residual output."""
    a = 1 / 16 / np.sqrt(2)
    waves, lattice = [[a, a], [a, -a]], [[a, a, 0.0], [a, -a, 0.25]]
    plain = build_generator(seed=3, ngf=8, heads=2).eval()
    copy = with_screen_waves(plain, waves, 64, lattice, dots=2).eval()
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        assert torch.equal(copy(x), plain(x))
        copy.dots.gate.bias.fill_(0.1)
        assert (copy(x) - plain(x)).abs().max() > 0.1  # ink laid
    assert copy.config.screen_dots == 2
    save_model(copy, tmp_path / "g", {})
    again = load_model(tmp_path / "g").eval()
    assert again.config.screen_dots == 2
    with torch.no_grad():
        assert torch.allclose(again(x), copy(x), atol=1e-6)
    with pytest.raises(ValueError, match="two waves"):
        build_generator(seed=0, ngf=8, heads=2, screen_waves=waves, screen_dots=0)
    with pytest.raises(ValueError, match="two waves"):
        build_generator(seed=0, ngf=8, heads=2, screen_waves=waves, screen_lattice=lattice[:1], screen_dots=0)
    with pytest.raises(ValueError, match="0-3"):
        build_generator(seed=0, ngf=8, heads=2, screen_waves=waves, screen_lattice=lattice, screen_dots=4)
    with pytest.raises(ValueError, match="residual"):
        build_generator(seed=0, ngf=8, heads=2, screen_waves=waves, screen_lattice=lattice, screen_dots=0,
                        output="tanh_residual")
