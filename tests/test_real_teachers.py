"""The real Stable Diffusion teachers, two pairs each: runs only where CUDA and the model are present (a GPU
machine with the model in its Hugging Face cache or a local folder named by EDITFACTORY_REAL_<KIND>), and
is skipped with its reason everywhere else (CI has neither)."""

from __future__ import annotations

import os

import numpy as np
import pytest

MODELS = {
    "sdedit": os.environ.get("EDITFACTORY_REAL_SDEDIT", "stabilityai/sd-turbo"),
    "instruct-pix2pix": os.environ.get("EDITFACTORY_REAL_INSTRUCT_PIX2PIX", "timbrooks/instruct-pix2pix"),
}


def missing(model: str) -> str | None:
    """Why the real-model test cannot run here (None when it can)."""
    import torch

    if not torch.cuda.is_available():
        return "no CUDA device on this machine"
    if os.path.isdir(os.path.expanduser(model)):
        return None
    from factory.teachers.diffusion import _in_hub_cache

    return None if _in_hub_cache(model) else f"{model} is not in the Hugging Face cache"


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_real_teacher_makes_finite_edited_pairs_stable_across_seeds(kind):
    reason = missing(MODELS[kind])
    if reason:
        pytest.skip(reason)
    from factory.teachers import make_teacher

    teacher = make_teacher(kind, {"model": MODELS[kind], "batch_size": 2})
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:256, 0:256]
    sources = [np.clip(np.stack([xx, yy, (xx + yy) / 2], -1) * s + rng.normal(0, 8, (256, 256, 3)), 0, 255)
               .astype(np.uint8) for s in (0.6, 0.9)]
    first = teacher.edit(sources, "make it look like a watercolor painting", [1, 2])
    again = teacher.edit(sources, "make it look like a watercolor painting", [1, 2])
    for src, a, b in zip(sources, first, again):
        assert a is not None, teacher.declined  # finite, not refused
        assert a.shape == src.shape and a.mean() > 10, "a black target"
        assert np.abs(a.astype(int) - src).mean() > 3, "the target is the source (barely noised?)"
        assert np.abs(a.astype(int) - b).max() <= 2, "the same seed gave another target"
