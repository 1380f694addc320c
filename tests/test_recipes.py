"""The classic recipe language: every operation runs on a real photo, validation names the bad part."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import data

from factory.core.errors import FactoryError
from factory.teachers import make_teacher
from factory.teachers.classic import ClassicTeacher
from factory.teachers.recipes import OPS, apply_recipe, validate_recipe

# parameters that make an operation visibly act when its defaults are the identity
NON_IDENTITY = {
    "channel_mix": {"matrix": [[0, 1, 0], [0, 0, 1], [1, 0, 0]]},
    "levels": {"in_black": 0.1, "in_white": 0.8, "gamma": 1.4},
    "lift_gamma_gain": {"lift": [0.1, 0, -0.05], "gamma": [1.2, 1, 0.8], "gain": [1, 0.9, 1.1]},
    "blend_original": {"mode": "multiply", "amount": 1.0},
}


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A 64x64 crop of a real photo (the astronaut's face and suit)."""
    return cv2.resize(data.astronaut()[:256, 128:384], (64, 64), interpolation=cv2.INTER_AREA)


def _diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


@pytest.mark.parametrize("name", sorted(OPS))
def test_every_operation_changes_a_real_photo(name: str, photo: np.ndarray) -> None:
    out = apply_recipe(photo, [{"op": name, **NON_IDENTITY.get(name, {})}], seed=3)
    assert out.dtype == np.uint8 and out.shape == photo.shape
    assert _diff(out, photo) > 0.5, f"{name} left the photo unchanged"


def test_every_parameter_default_is_valid() -> None:
    for name, spec in OPS.items():
        for key, param in spec.params.items():
            assert param.validate(param.default, f"{name}.{key}") == param.default
        assert validate_recipe([{"op": name}])[0].keys() == {"op", *spec.params}


def test_validate_fills_defaults_and_is_idempotent() -> None:
    steps = validate_recipe([{"op": "vignette", "amount": 0.2}, {"op": "curve", "points": [[0, 0.1], [1, 1]]}])
    assert steps[0] == {"op": "vignette", "amount": 0.2, "radius": OPS["vignette"].params["radius"].default,
                        "softness": OPS["vignette"].params["softness"].default}
    assert steps[1]["channel"] == "rgb" and steps[1]["points"] == [[0.0, 0.1], [1.0, 1.0]]
    assert validate_recipe(steps) == steps


def test_same_seed_same_output_other_seed_other_grain(photo: np.ndarray) -> None:
    recipe = [{"op": "quantize", "colors": 6}, {"op": "grain", "amount": 0.1}]
    first = apply_recipe(photo, recipe, seed=7)
    assert np.array_equal(first, apply_recipe(photo, recipe, seed=7))
    assert not np.array_equal(first, apply_recipe(photo, recipe, seed=8))


def test_operations_do_what_they_say(photo: np.ndarray) -> None:
    gray = apply_recipe(photo, [{"op": "grayscale"}])
    assert np.array_equal(gray[..., 0], gray[..., 1]) and np.array_equal(gray[..., 1], gray[..., 2])
    twice = apply_recipe(photo, [{"op": "invert"}, {"op": "invert"}])
    assert np.abs(twice.astype(int) - photo).max() <= 1
    poster = apply_recipe(photo, [{"op": "posterize", "levels": 3}])
    assert all(len(np.unique(poster[..., c])) <= 3 for c in range(3))
    flat = apply_recipe(photo, [{"op": "quantize", "colors": 5}])
    assert len(np.unique(flat.reshape(-1, 3), axis=0)) <= 5
    blocks = apply_recipe(photo, [{"op": "pixelate", "block": 8}])
    assert (blocks[:8, :8] == blocks[0, 0]).all()
    warm = apply_recipe(photo, [{"op": "temperature", "amount": 0.8}]).astype(int)
    assert warm[..., 0].mean() > photo[..., 0].mean() and warm[..., 2].mean() < photo[..., 2].mean()
    back = apply_recipe(photo, [{"op": "colormap", "name": "jet"}, {"op": "blend_original", "amount": 1.0}])
    assert np.abs(back.astype(int) - photo).max() <= 1


def test_blend_original_mixes_by_amount(photo: np.ndarray) -> None:
    inverted = apply_recipe(photo, [{"op": "invert"}])
    half = apply_recipe(photo, [{"op": "invert"}, {"op": "blend_original", "amount": 0.25}])
    expected = 0.75 * inverted.astype(np.float32) + 0.25 * photo.astype(np.float32)
    assert np.abs(half - expected).max() <= 1.0


@pytest.mark.parametrize(
    "recipe, words",
    [
        ([{"op": "blurr"}], ["card.yaml", "step 1", "unknown operation 'blurr'", "gaussian_blur"]),
        (
            [{"op": "sepia"}, {"op": "vignette", "strength": 0.3}],
            ["card.yaml", "step 2", "vignette", "unknown parameter 'strength'", "amount"],
        ),
        ([{"op": "saturation", "amount": 9}], ["card.yaml", "saturation", "'amount' = 9", "out of range [0, 4]"]),
        ([{"op": "median", "ksize": 4}], ["median", "'ksize'", "must be odd"]),
        ([{"op": "pixelate", "block": 2.5}], ["pixelate", "'block'", "integer"]),
        ([{"op": "colormap", "name": "infernal"}], ["colormap", "'name'", "inferno"]),
        ([{"op": "curve", "points": [[0, 0], [0.6, 0.5], [0.4, 1]]}], ["curve", "'points'", "strictly increasing"]),
        ([{"op": "curve", "points": [[0, 0], [1, 1.5]]}], ["curve", "'points'", "out of range"]),
        ([{"op": "levels", "in_black": 0.8, "in_white": 0.2}], ["levels", "'in_black' must be below 'in_white'"]),
        ([{"op": "grain", "monochrome": "yes"}], ["grain", "'monochrome'", "true or false"]),
        ([{"op": "duotone", "shadows": [0, 0]}], ["duotone", "'shadows'", "3 numbers"]),
        ([{"amount": 1}], ["step 1", "missing 'op'"]),
        (["sepia"], ["step 1", "mapping"]),
        ([], ["card.yaml", "non-empty list"]),
    ],
)
def test_bad_recipes_are_refused_with_their_problem_named(recipe: list, words: list[str]) -> None:
    with pytest.raises(FactoryError) as err:
        validate_recipe(recipe, "card.yaml")
    for word in words:
        assert word in str(err.value)


def test_apply_refuses_non_rgb_uint8(photo: np.ndarray) -> None:
    with pytest.raises(ValueError):
        apply_recipe(photo.astype(np.float32), [{"op": "sepia"}])
    with pytest.raises(ValueError):
        apply_recipe(photo[..., 0], [{"op": "sepia"}])


def test_classic_teacher(photo: np.ndarray) -> None:
    teacher = make_teacher("classic", {"recipe": [{"op": "sepia", "amount": 0.5}]}, source="sepia.yaml")
    assert isinstance(teacher, ClassicTeacher) and teacher.kind == "classic"
    assert teacher.describe() == {"kind": "classic", "recipe": [{"op": "sepia", "amount": 0.5}]}
    outs = teacher.edit([photo, photo[:32, :48]], "give it a sepia tone", seeds=[1, 2])
    assert [o.shape for o in outs] == [photo.shape, (32, 48, 3)]
    assert np.array_equal(outs[0], apply_recipe(photo, teacher.recipe, 1))
    with pytest.raises(FactoryError, match=r"sepia\.yaml: unknown key 'steps'"):
        ClassicTeacher.from_params({"recipe": [{"op": "sepia"}], "steps": 3}, source="sepia.yaml")
    with pytest.raises(FactoryError, match="needs a 'recipe'"):
        ClassicTeacher.from_params({}, source="sepia.yaml")
