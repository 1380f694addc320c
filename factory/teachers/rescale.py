"""A classic recipe at another resolution: the look of the training pairs on a full-size photo.

Training pairs are the recipe applied to a photo's square crop resized to the pair size (e.g. 256
px), so every size in pixels (a blur radius, a halftone cell, a kernel) was meant at that scale. On
the photo at ``factor`` times that resolution the same look needs those sizes times ``factor``;
colour and tone operations, and those sized relative to the image (vignette, CLAHE tiles), need no
change. A few operations have pixel sizes fixed in their code, so no recipe parameter reproduces
them at another scale: a recipe using one cannot be rescaled (``RescaleError``).
"""

from __future__ import annotations

import numpy as np

from factory.core.errors import FactoryError
from factory.teachers.recipes import OPS, run_steps, validate_recipe

#: operation -> its parameters that are sizes in pixels (the ones marked odd stay odd, ints stay ints)
PIXEL_PARAMS: dict[str, tuple[str, ...]] = {
    "stylization": ("sigma_s",), "pencil_sketch": ("sigma_s",), "detail_enhance": ("sigma_s",),
    "edge_preserving": ("sigma_s",), "halftone": ("cell",), "pixelate": ("block",), "gaussian_blur": ("sigma",),
    "bilateral": ("diameter", "sigma_space"), "median": ("ksize",), "motion_blur": ("length",),
    "tilt_shift": ("sigma",), "sharpen": ("sigma",), "morphology": ("size",), "grain": ("size",),
    "glow": ("radius",), "chromatic_aberration": ("shift",), "scanlines": ("period",),
}
#: integer pixel sizes that may become fractional (the operation uses them as real numbers)
FRACTIONAL = {("halftone", "cell"), ("pixelate", "block"), ("scanlines", "period")}
#: operations with no pixel size (colour, tone, or sized relative to the image)
SCALE_FREE = frozenset({
    "blend_original", "brightness", "channel_mix", "clahe", "colormap", "contrast", "curve", "duotone", "equalize",
    "exposure", "fade", "gamma", "grayscale", "hue_shift", "invert", "levels", "lift_gamma_gain", "posterize",
    "quantize", "saturation", "sepia", "solarize", "split_tone", "temperature", "threshold", "tint", "vibrance",
    "vignette",
})
#: operations whose pixel sizes are fixed in code, and why
FIXED_SIZE = {
    "cartoon": "its smoothing (bilateral 7 px) and median (5 px) sizes are fixed",
    "edges": "Canny's 3x3 gradient and thresholds are fixed in pixels",
    "emboss": "its 3x3 Sobel relief is fixed in pixels",
}
#: the bilateral filter costs diameter^2 per pixel: beyond this the full-resolution teacher is too slow
MAX_BILATERAL_DIAMETER = 31


class RescaleError(FactoryError):
    """The recipe cannot be reproduced at the asked resolution (the message says why)."""


def rescale_recipe(recipe: list, factor: float) -> list[dict]:
    """The validated steps of ``recipe`` with every pixel size multiplied by ``factor``."""
    steps = validate_recipe(recipe, "recipe")
    out = []
    for i, step in enumerate(steps):
        name = step["op"]
        if name in FIXED_SIZE:
            raise RescaleError(f"recipe step {i + 1} ({name}): {FIXED_SIZE[name]}")
        if name not in SCALE_FREE and name not in PIXEL_PARAMS:
            raise RescaleError(f"recipe step {i + 1} ({name}): no rule for this operation at another resolution")
        step = dict(step)
        for key in PIXEL_PARAMS.get(name, ()):
            param = OPS[name].params[key]
            value = step[key] * factor
            if param.kind == "int" and (name, key) not in FRACTIONAL:
                value = max(1, int(round(value)))
                if param.odd and value % 2 == 0:
                    value += 1
                value = max(value, int(param.lo or 1))
            step[key] = value
        if name == "bilateral" and step["diameter"] > MAX_BILATERAL_DIAMETER:
            raise RescaleError(f"recipe step {i + 1} (bilateral): a {step['diameter']} px diameter at "
                               f"{factor:.1f}x is too slow to run (at most {MAX_BILATERAL_DIAMETER})")
        out.append(step)
    return out


def apply_recipe_at(rgb: np.ndarray, recipe: list, factor: float, seed: int = 0) -> np.ndarray:
    """``recipe`` on an HxWx3 uint8 image whose scene is ``factor`` times larger than the pairs' (raises
    ``RescaleError`` when it cannot be rescaled)."""
    return run_steps(rgb, rescale_recipe(recipe, factor), seed)
