"""The guided path's global colour curves: a separable colour look is fitted back, noise is averaged out."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from factory.core.images import psnr_u8
from factory.runtime.colour_curves import apply_curves, fit_curves
from factory.runtime.guided import guided_edit


def _photo(h: int = 96, w: int = 128, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = cv2.resize(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(base.astype(np.int16) + rng.integers(-20, 21, (h, w, 3)), 0, 255).astype(np.uint8)


def _look(img: np.ndarray) -> np.ndarray:
    """Tone curves per channel, then a saturation boost: the kind of look the curves are for."""
    x = img.astype(np.float32) / 255
    x = np.stack([x[..., 0] ** 0.6, x[..., 1] ** 1.4, 0.2 + 0.6 * x[..., 2]], -1)
    grey = x.mean(-1, keepdims=True)
    return (np.clip(grey + 1.3 * (x - grey), 0, 1) * 255 + 0.5).astype(np.uint8)


def test_curves_fit_a_separable_look_back():
    src = _photo()
    tables = fit_curves(src, _look(src))
    assert tables.shape == (3, 3, 256)
    other = _photo(seed=1)  # a photo the fit never saw
    out = np.clip(cv2.merge(apply_curves(cv2.split(other), tables)) + 0.5, 0, 255).astype(np.uint8)
    assert psnr_u8(out, _look(other)) > 38


def test_curves_of_a_flat_grey_photo_stay_finite():
    flat = np.full((32, 48, 3), 90, np.uint8)  # one colour, the three channels equal: the fit leans on its priors
    tables = fit_curves(flat, np.full_like(flat, 150))
    assert np.isfinite(tables).all()
    out = cv2.merge(apply_curves(cv2.split(flat), tables))
    assert np.abs(out - 150).max() < 1  # the one colour it saw is mapped where the editor put it
    edited = guided_edit(lambda small: np.full_like(small, 150), np.full((96, 128, 3), 90, np.uint8), 32, 16,
                         curves=True)[0]
    assert np.abs(edited.astype(int) - 150).max() <= 1


def test_curves_refuse_images_of_two_sizes():
    with pytest.raises(ValueError, match="one size"):
        fit_curves(_photo(), _photo(48, 64))


def test_guided_with_curves_averages_an_editors_noise_out():
    photo = _photo(384, 512, seed=2)
    truth = _look(photo)
    rng = np.random.default_rng(3)

    def noisy_editor(small: np.ndarray) -> np.ndarray:  # the look with an editor's per-pixel error
        return np.clip(_look(small).astype(np.int16) + rng.integers(-12, 13, small.shape), 0, 255).astype(np.uint8)

    plain = guided_edit(noisy_editor, photo, 128, 16)[0]
    curved = guided_edit(noisy_editor, photo, 128, 16, curves=True)[0]  # the local fit's own ridge, as exported
    assert psnr_u8(curved, truth) > psnr_u8(plain, truth) + 3
