"""The ``classic`` recipe language: a list of parameterized image operations applied in order.

A recipe is a list of steps, each a mapping ``{op: NAME, param: value, ...}``::

    - op: temperature
      amount: 0.35
    - op: curve
      points: [[0, 0], [0.5, 0.56], [1, 1]]

Every operation declares its parameters (type, default, range) in ``OPS`` so a card is validated
before any image is touched and a bad one is refused with the step, operation and parameter named.
Images travel between steps as float32 RGB in [0, 1]; operations that need OpenCV's uint8 BGR
convert at their edges. Intensities are in [0, 1] units, sizes in pixels, angles in degrees.
Operations with randomness (grain, colour quantization) draw it from the recipe seed only.
"""

from __future__ import annotations

import difflib
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from factory.core.errors import FactoryError

LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)

# ---------------------------------------------------------------------------------------------
# parameter schema


@dataclass(frozen=True)
class Param:
    """One operation parameter: its kind, default and allowed values.

    kinds: ``float``, ``int`` (``odd`` for kernel sizes), ``bool``, ``choice`` (one of ``choices``),
    ``rgb`` (three numbers in [lo, hi]), ``matrix`` (3x3 numbers in [lo, hi]), ``points``
    (curve control points ``[[x, y], ...]`` in [0, 1], x strictly increasing).
    """

    kind: str
    default: Any
    help: str
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] = ()
    odd: bool = False

    def describe(self) -> str:
        """Human-readable type and range, e.g. ``float in [0, 1], default 0.5``."""
        if self.kind in ("float", "int", "rgb", "matrix"):
            what = {"rgb": "3 numbers", "matrix": "3x3 numbers"}.get(
                self.kind, ("odd " if self.odd else "") + self.kind
            )
            rng = f" in [{_fmt(self.lo)}, {_fmt(self.hi)}]"
        elif self.kind == "choice":
            what, rng = "one of", " " + ", ".join(self.choices)
        elif self.kind == "points":
            what, rng = "curve points [[x, y], ...]", " in [0, 1]"
        else:
            what, rng = self.kind, ""
        return f"{what}{rng}, default {self.default!r}"

    def validate(self, value: Any, where: str) -> Any:
        """Return ``value`` normalized (floats as float, lists as lists) or raise FactoryError."""
        if self.kind == "float":
            return self._number(value, where)
        if self.kind == "int":
            if not isinstance(value, int) or isinstance(value, bool):
                raise FactoryError(f"{where} must be an integer, got {value!r}")
            self._check_range(value, where)
            if self.odd and value % 2 == 0:
                raise FactoryError(f"{where} must be odd, got {value}")
            return int(value)
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise FactoryError(f"{where} must be true or false, got {value!r}")
            return value
        if self.kind == "choice":
            if value not in self.choices:
                close = difflib.get_close_matches(str(value), self.choices, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise FactoryError(f"{where} must be one of {', '.join(self.choices)}, got {value!r}{hint}")
            return value
        if self.kind == "rgb":
            return self._vector(value, 3, where)
        if self.kind == "matrix":
            if not isinstance(value, (list, tuple)) or len(value) != 3:
                raise FactoryError(f"{where} must be a 3x3 matrix (3 rows of 3 numbers), got {value!r}")
            return [self._vector(row, 3, f"{where} row {i + 1}") for i, row in enumerate(value)]
        if self.kind == "points":
            return _validate_points(value, where)
        raise AssertionError(f"unknown parameter kind {self.kind}")

    def _number(self, value: Any, where: str) -> float:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise FactoryError(f"{where} must be a number, got {value!r}")
        self._check_range(value, where)
        return float(value)

    def _vector(self, value: Any, n: int, where: str) -> list[float]:
        if not isinstance(value, (list, tuple)) or len(value) != n:
            raise FactoryError(f"{where} must be a list of {n} numbers, got {value!r}")
        return [self._number(v, where) for v in value]

    def _check_range(self, value: float, where: str) -> None:
        if (self.lo is not None and value < self.lo) or (self.hi is not None and value > self.hi):
            raise FactoryError(f"{where} = {value!r} is out of range [{_fmt(self.lo)}, {_fmt(self.hi)}]")


def _fmt(x: float | None) -> str:
    return "-inf" if x is None else f"{x:g}"


def _validate_points(value: Any, where: str) -> list[list[float]]:
    if not isinstance(value, (list, tuple)) or len(value) < 2:
        raise FactoryError(f"{where} must be a list of at least 2 points [x, y], got {value!r}")
    points = []
    for pt in value:
        ok = isinstance(pt, (list, tuple)) and len(pt) == 2
        ok = ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in pt)
        if not ok:
            raise FactoryError(f"{where}: each point must be [x, y], got {pt!r}")
        if not all(0.0 <= v <= 1.0 for v in pt):
            raise FactoryError(f"{where}: point {list(pt)!r} is out of range [0, 1]")
        points.append([float(pt[0]), float(pt[1])])
    xs = [p[0] for p in points]
    if any(b <= a for a, b in itertools.pairwise(xs)):
        raise FactoryError(f"{where}: x values must be strictly increasing, got {xs}")
    return points


def Float(default: float, lo: float, hi: float, help: str) -> Param:
    return Param("float", float(default), help, lo, hi)


def Int(default: int, lo: int, hi: int, help: str, odd: bool = False) -> Param:
    return Param("int", default, help, lo, hi, odd=odd)


def Bool(default: bool, help: str) -> Param:
    return Param("bool", default, help)


def Choice(default: str, choices: tuple[str, ...], help: str) -> Param:
    return Param("choice", default, help, choices=choices)


def RGB(default: list[float], lo: float, hi: float, help: str) -> Param:
    return Param("rgb", [float(v) for v in default], help, lo, hi)


# ---------------------------------------------------------------------------------------------
# operation registry


@dataclass
class StepContext:
    """What an operation may use besides its input: the recipe's original input and a seeded RNG."""

    original: np.ndarray
    rng: np.random.Generator


OpFn = Callable[[np.ndarray, dict, StepContext], np.ndarray]


@dataclass(frozen=True)
class Op:
    """A registered operation: its function, parameter schema, family and one-line help."""

    name: str
    fn: OpFn
    params: dict[str, Param]
    help: str
    family: str
    check: Callable[[dict], str | None] | None = field(default=None)


OPS: dict[str, Op] = {}


def op(op_name: str, family: str, help: str, /, *, check: Callable[[dict], str | None] | None = None, **params: Param):
    """Register ``fn(img, params, ctx) -> img`` as the operation ``op_name`` with the given parameters."""

    def register(fn: OpFn) -> OpFn:
        OPS[op_name] = Op(op_name, fn, params, help, family, check)
        return fn

    return register


# ---------------------------------------------------------------------------------------------
# conversions and small helpers


def to_uint8(img: np.ndarray) -> np.ndarray:
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def to_float(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float32) * np.float32(1.0 / 255.0)


def _bgr8(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(to_uint8(img), cv2.COLOR_RGB2BGR)


def _from_bgr8(bgr: np.ndarray) -> np.ndarray:
    return to_float(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def luma(img: np.ndarray) -> np.ndarray:
    """Rec. 601 luma, HxW float32."""
    return img @ LUMA


def _lerp(a: np.ndarray, b: np.ndarray, t: float | np.ndarray) -> np.ndarray:
    return a + (b - a) * t


def _gray3(y: np.ndarray) -> np.ndarray:
    return np.repeat(y[..., None], 3, axis=2)


def _smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / max(e1 - e0, 1e-6), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _hue_rgb(hue_deg: float) -> np.ndarray:
    """The fully saturated colour of ``hue_deg`` as float32 RGB."""
    hsv = np.array([[[hue_deg % 360.0, 1.0, 1.0]]], dtype=np.float32)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0]


def _kmeans_palette(pixels: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """OpenCV k-means (k-means++ init) on a pixel sample, seeded from ``rng``; returns k x 3 centres."""
    cv2.setRNGSeed(int(rng.integers(2**31)))  # cv2's RNG is per thread: deterministic for a given seed
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 10, 1e-4)
    _, _, centres = cv2.kmeans(pixels, min(k, len(pixels)), None, criteria, 1, cv2.KMEANS_PP_CENTERS)
    return centres


def _nearest(pixels: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index of the nearest centre for each pixel (k x N layout: argmin over a short axis is slow)."""
    d = (-2.0 * centres) @ pixels.T
    d += (centres**2).sum(1)[:, None]
    return d.argmin(0)


def _quantize(img: np.ndarray, colors: int, rng: np.random.Generator) -> np.ndarray:
    h, w, _ = img.shape
    flat = img.reshape(-1, 3)
    sample = np.ascontiguousarray(flat[rng.choice(len(flat), size=min(len(flat), 2048), replace=False)])
    centres = _kmeans_palette(sample, colors, rng)
    return centres[_nearest(flat, centres)].reshape(h, w, 3)


# ---------------------------------------------------------------------------------------------
# non-photorealistic rendering (OpenCV photo module)


@op(
    "stylization",
    "npr",
    "OpenCV stylization: flat watercolour-like regions with soft edges.",
    sigma_s=Float(60, 1, 200, "spatial extent of the smoothing, pixels"),
    sigma_r=Float(0.45, 0.01, 1, "how different colours may be and still be smoothed together"),
)
def _stylization(img, p, ctx):
    return _from_bgr8(cv2.stylization(_bgr8(img), sigma_s=p["sigma_s"], sigma_r=p["sigma_r"]))


@op(
    "pencil_sketch",
    "npr",
    "OpenCV pencilSketch: graphite (or coloured pencil) drawing.",
    sigma_s=Float(60, 1, 200, "spatial extent of the smoothing, pixels"),
    sigma_r=Float(0.07, 0.01, 1, "edge sensitivity (smaller keeps more strokes)"),
    shade=Float(0.05, 0, 0.1, "amount of shading added to the strokes"),
    colour=Bool(False, "coloured pencil instead of graphite"),
)
def _pencil_sketch(img, p, ctx):
    gray, colour = cv2.pencilSketch(_bgr8(img), sigma_s=p["sigma_s"], sigma_r=p["sigma_r"], shade_factor=p["shade"])
    return _from_bgr8(colour) if p["colour"] else _gray3(to_float(gray))


@op(
    "detail_enhance",
    "npr",
    "OpenCV detailEnhance: exaggerated local detail, an HDR-like look.",
    sigma_s=Float(10, 1, 200, "spatial extent, pixels"),
    sigma_r=Float(0.15, 0.01, 1, "range of detail boosted"),
)
def _detail_enhance(img, p, ctx):
    return _from_bgr8(cv2.detailEnhance(_bgr8(img), sigma_s=p["sigma_s"], sigma_r=p["sigma_r"]))


@op(
    "edge_preserving",
    "npr",
    "OpenCV edgePreservingFilter: smooth surfaces, sharp edges (painterly).",
    sigma_s=Float(60, 1, 200, "spatial extent, pixels"),
    sigma_r=Float(0.4, 0.01, 1, "colour range smoothed together"),
    mode=Choice("recursive", ("recursive", "normconv"), "filter flavour (normconv is softer)"),
)
def _edge_preserving(img, p, ctx):
    flags = cv2.RECURS_FILTER if p["mode"] == "recursive" else cv2.NORMCONV_FILTER
    return _from_bgr8(cv2.edgePreservingFilter(_bgr8(img), flags=flags, sigma_s=p["sigma_s"], sigma_r=p["sigma_r"]))


@op(
    "cartoon",
    "npr",
    "Cartoon: smoothed, colour-quantized regions with dark outlines.",
    colors=Int(8, 2, 32, "number of flat colours (k-means)"),
    smoothing=Int(2, 0, 6, "bilateral smoothing passes before quantizing"),
    edge_block=Int(9, 3, 31, "neighbourhood of the outline threshold, pixels", odd=True),
    edge_offset=Float(0.02, 0, 0.2, "outline threshold offset (larger = fewer lines)"),
)
def _cartoon(img, p, ctx):
    smooth = img
    for _ in range(p["smoothing"]):
        smooth = cv2.bilateralFilter(smooth, 7, 0.15, 5)
    flat = _quantize(np.ascontiguousarray(smooth), p["colors"], ctx.rng)
    gray = cv2.medianBlur(to_uint8(luma(img)), 5)
    edges = cv2.adaptiveThreshold(
        gray, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY, p["edge_block"], p["edge_offset"] * 255.0
    )
    return flat * to_float(edges)[..., None]


@op(
    "edges",
    "npr",
    "Canny edges drawn as ink on paper, white on black, or glowing in the photo's colours.",
    low=Float(0.15, 0, 1, "lower hysteresis threshold"),
    high=Float(0.4, 0, 1, "upper hysteresis threshold"),
    blur=Float(1.0, 0, 5, "Gaussian blur before edge detection, pixels (0 = none)"),
    thickness=Int(1, 1, 7, "line thickness, pixels"),
    style=Choice("ink", ("ink", "white", "glow"), "ink: black on white; white: white on black; glow: colours on black"),
    check=lambda p: "'low' must not exceed 'high'" if p["low"] > p["high"] else None,
)
def _edges(img, p, ctx):
    y = luma(img)
    if p["blur"] > 0:
        y = cv2.GaussianBlur(y, (0, 0), p["blur"])
    e = cv2.Canny(to_uint8(y), p["low"] * 255.0, p["high"] * 255.0)
    if p["thickness"] > 1:
        e = cv2.dilate(e, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (p["thickness"],) * 2))
    m = to_float(e)[..., None]
    if p["style"] == "ink":
        return np.repeat(1.0 - m, 3, axis=2)
    if p["style"] == "white":
        return np.repeat(m, 3, axis=2)
    return img * m


@op(
    "emboss",
    "npr",
    "Emboss: a relief lit from one side, grey metal or over the colours.",
    strength=Float(1.0, 0.1, 5, "depth of the relief"),
    angle=Float(135, 0, 360, "direction of the light, degrees"),
    colour=Bool(False, "keep the photo's colours under the relief"),
)
def _emboss(img, p, ctx):
    y = luma(img)
    gx = cv2.Sobel(y, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(y, cv2.CV_32F, 0, 1, ksize=3)
    a = math.radians(p["angle"])
    relief = (math.cos(a) * gx - math.sin(a) * gy) * (0.25 * p["strength"])
    if p["colour"]:
        return img + relief[..., None]
    return _gray3(0.5 + relief)


@op(
    "halftone",
    "npr",
    "Halftone print: dots whose size follows the darkness (one screen, or CMY screens).",
    cell=Int(6, 3, 32, "dot spacing, pixels"),
    angle=Float(45, 0, 90, "screen angle, degrees"),
    colour=Bool(False, "three rotated CMY screens instead of black ink"),
    amount=Float(1.0, 0, 1, "mix of the halftone version"),
)
def _halftone(img, p, ctx):
    h, w, _ = img.shape
    cell = float(p["cell"])
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    smooth = cv2.GaussianBlur(img, (0, 0), cell / 3.0)

    def screen(ink: np.ndarray, angle_deg: float) -> np.ndarray:
        a = math.radians(angle_deg)
        u = (xx * math.cos(a) + yy * math.sin(a)) / cell
        v = (-xx * math.sin(a) + yy * math.cos(a)) / cell
        d = np.hypot(u - np.floor(u) - 0.5, v - np.floor(v) - 0.5)
        radius = np.sqrt(np.clip(ink, 0, 1) / math.pi)  # dot area proportional to ink
        return 1.0 - _smoothstep(-0.5 / cell, 0.5 / cell, d - radius)

    if p["colour"]:
        printed = np.stack(
            [1.0 - screen(1.0 - smooth[..., c], p["angle"] + off) for c, off in zip(range(3), (15.0, 75.0, 0.0))],
            axis=2,
        )
    else:
        printed = _gray3(1.0 - screen(1.0 - luma(smooth), p["angle"]))
    return _lerp(img, printed, p["amount"])


# ---------------------------------------------------------------------------------------------
# quantization and pixels


@op(
    "posterize",
    "posterize",
    "Posterize: each channel reduced to a few evenly spaced levels.",
    levels=Int(4, 2, 32, "levels per channel"),
)
def _posterize(img, p, ctx):
    n = p["levels"] - 1
    return np.round(np.clip(img, 0, 1) * n) / n


@op(
    "quantize",
    "posterize",
    "Colour quantization: the photo redrawn with its k most representative colours.",
    colors=Int(8, 2, 64, "number of colours (k-means on a pixel sample)"),
)
def _quantize_op(img, p, ctx):
    return _quantize(np.ascontiguousarray(img), p["colors"], ctx.rng)


@op("pixelate", "posterize", "Pixelate: big square pixels.", block=Int(8, 2, 64, "pixel block size, pixels"))
def _pixelate(img, p, ctx):
    h, w, _ = img.shape
    small = cv2.resize(
        img, (max(1, round(w / p["block"])), max(1, round(h / p["block"]))), interpolation=cv2.INTER_AREA
    )
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)


# ---------------------------------------------------------------------------------------------
# blur, sharpen, morphology


@op("gaussian_blur", "blur", "Gaussian blur.", sigma=Float(2.0, 0.1, 30, "blur radius (standard deviation), pixels"))
def _gaussian_blur(img, p, ctx):
    return cv2.GaussianBlur(img, (0, 0), p["sigma"])


@op(
    "bilateral",
    "blur",
    "Bilateral filter: smooths noise and skin while keeping edges.",
    diameter=Int(9, 1, 25, "neighbourhood diameter, pixels"),
    sigma_color=Float(0.15, 0.01, 1, "colour difference smoothed over"),
    sigma_space=Float(5, 0.5, 50, "spatial extent, pixels"),
    iterations=Int(1, 1, 6, "passes"),
)
def _bilateral(img, p, ctx):
    out = np.ascontiguousarray(img)
    for _ in range(p["iterations"]):
        out = cv2.bilateralFilter(out, p["diameter"], p["sigma_color"], p["sigma_space"])
    return out


@op(
    "median",
    "blur",
    "Median filter: removes speckles, flattens texture.",
    ksize=Int(5, 3, 15, "window size, pixels", odd=True),
)
def _median(img, p, ctx):
    return to_float(cv2.medianBlur(to_uint8(img), p["ksize"]))


@op(
    "motion_blur",
    "blur",
    "Motion blur along a line.",
    length=Int(15, 3, 63, "length of the streak, pixels"),
    angle=Float(0, -180, 180, "direction of motion, degrees"),
)
def _motion_blur(img, p, ctx):
    n = p["length"]
    kernel = np.zeros((n, n), np.float32)
    kernel[n // 2, :] = 1.0
    rot = cv2.getRotationMatrix2D(((n - 1) / 2.0, (n - 1) / 2.0), p["angle"], 1.0)
    kernel = cv2.warpAffine(kernel, rot, (n, n))
    return cv2.filter2D(img, -1, kernel / max(kernel.sum(), 1e-6), borderType=cv2.BORDER_REFLECT)


@op(
    "tilt_shift",
    "blur",
    "Tilt-shift: a sharp horizontal band, blur growing above and below (miniature look).",
    center=Float(0.55, 0, 1, "height of the sharp band's centre (0 top, 1 bottom)"),
    band=Float(0.15, 0, 1, "half height of the sharp band, fraction of the image"),
    sigma=Float(4.0, 0.5, 20, "blur at the edges of the image, pixels"),
)
def _tilt_shift(img, p, ctx):
    h = img.shape[0]
    y = (np.arange(h, dtype=np.float32) + 0.5) / h
    dist = np.abs(y - p["center"]) - p["band"]
    mask = _smoothstep(0.0, max(0.5 - p["band"], 0.05), dist)[:, None, None]
    return _lerp(img, cv2.GaussianBlur(img, (0, 0), p["sigma"]), mask)


@op(
    "sharpen",
    "sharpen",
    "Unsharp mask: crisper edges and detail.",
    amount=Float(1.0, 0, 5, "strength"),
    sigma=Float(1.5, 0.3, 20, "radius of the detail boosted, pixels (large = clarity)"),
    threshold=Float(0.0, 0, 0.5, "ignore differences smaller than this (protects noise)"),
)
def _sharpen(img, p, ctx):
    detail = img - cv2.GaussianBlur(img, (0, 0), p["sigma"])
    if p["threshold"] > 0:
        detail = detail * (np.abs(detail) > p["threshold"])
    return img + p["amount"] * detail


@op(
    "morphology",
    "blur",
    "Morphology (erode, dilate, open, close): thickens or thins dark and light shapes.",
    operation=Choice("dilate", ("erode", "dilate", "open", "close"), "the morphological operation"),
    size=Int(3, 3, 15, "structuring element size, pixels", odd=True),
    shape=Choice("ellipse", ("ellipse", "rect", "cross"), "structuring element shape"),
)
def _morphology(img, p, ctx):
    shape = {"ellipse": cv2.MORPH_ELLIPSE, "rect": cv2.MORPH_RECT, "cross": cv2.MORPH_CROSS}[p["shape"]]
    kernel = cv2.getStructuringElement(shape, (p["size"], p["size"]))
    ops = {"erode": cv2.MORPH_ERODE, "dilate": cv2.MORPH_DILATE, "open": cv2.MORPH_OPEN, "close": cv2.MORPH_CLOSE}
    return cv2.morphologyEx(img, ops[p["operation"]], kernel)


# ---------------------------------------------------------------------------------------------
# colour


@op(
    "temperature",
    "colour",
    "White balance temperature: positive warms (amber), negative cools (blue).",
    amount=Float(0.3, -1, 1, "warmth"),
)
def _temperature(img, p, ctx):
    a = p["amount"]
    return img * np.array([1 + 0.3 * a, 1 + 0.04 * a, 1 - 0.3 * a], np.float32)


@op(
    "tint",
    "colour",
    "White balance tint: positive towards magenta, negative towards green.",
    amount=Float(0.2, -1, 1, "tint"),
)
def _tint(img, p, ctx):
    a = p["amount"]
    return img * np.array([1 + 0.1 * a, 1 - 0.25 * a, 1 + 0.1 * a], np.float32)


@op(
    "saturation",
    "colour",
    "Saturation: 0 grey, 1 unchanged, above 1 more colourful.",
    amount=Float(1.3, 0, 4, "saturation multiplier"),
)
def _saturation(img, p, ctx):
    return _lerp(luma(img)[..., None], img, p["amount"])


@op(
    "vibrance",
    "colour",
    "Vibrance: boosts muted colours more than already saturated ones.",
    amount=Float(0.5, -1, 2, "strength (negative mutes)"),
)
def _vibrance(img, p, ctx):
    sat = img.max(2) - img.min(2)
    factor = 1.0 + p["amount"] * (1.0 - sat)
    return _lerp(luma(img)[..., None], img, factor[..., None])


@op(
    "hue_shift",
    "colour",
    "Rotate every hue around the colour wheel.",
    degrees=Float(30, -180, 180, "rotation, degrees"),
)
def _hue_shift(img, p, ctx):
    hsv = cv2.cvtColor(np.clip(img, 0, 1), cv2.COLOR_RGB2HSV)
    hsv[..., 0] = (hsv[..., 0] + p["degrees"]) % 360.0
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


@op(
    "channel_mix",
    "colour",
    "Channel mixer: each output channel a weighted sum of the input R, G, B.",
    matrix=Param(
        "matrix",
        [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
        "rows = output R, G, B; columns = weights of input R, G, B",
        -2,
        2,
    ),
)
def _channel_mix(img, p, ctx):
    return cv2.transform(img, np.array(p["matrix"], np.float32))


@op("sepia", "colour", "Sepia toning.", amount=Float(1.0, 0, 1, "mix of the sepia version"))
def _sepia(img, p, ctx):
    m = np.array([[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]], np.float32)
    return _lerp(img, cv2.transform(img, m), p["amount"])


@op("grayscale", "colour", "Black and white (luma).", amount=Float(1.0, 0, 1, "mix of the grey version"))
def _grayscale(img, p, ctx):
    return _lerp(img, _gray3(luma(img)), p["amount"])


@op("invert", "colour", "Negative image.", amount=Float(1.0, 0, 1, "mix of the negative"))
def _invert(img, p, ctx):
    return _lerp(img, 1.0 - img, p["amount"])


@op(
    "solarize",
    "colour",
    "Solarize: tones above the threshold are inverted.",
    threshold=Float(0.5, 0, 1, "tones above this are inverted"),
)
def _solarize(img, p, ctx):
    return np.where(img > p["threshold"], 1.0 - img, img)


@op(
    "threshold",
    "colour",
    "Pure black and white by a luma threshold (stencil / ink look).",
    level=Float(0.5, 0, 1, "luma threshold"),
    softness=Float(0.02, 0, 0.5, "width of the soft transition"),
)
def _threshold(img, p, ctx):
    return _gray3(_smoothstep(p["level"] - p["softness"], p["level"] + p["softness"], luma(img)))


COLORMAPS = tuple(
    n
    for n in (
        "autumn",
        "bone",
        "cividis",
        "cool",
        "deepgreen",
        "hot",
        "hsv",
        "inferno",
        "jet",
        "magma",
        "ocean",
        "parula",
        "pink",
        "plasma",
        "rainbow",
        "spring",
        "summer",
        "turbo",
        "twilight",
        "twilight_shifted",
        "viridis",
        "winter",
    )
    if hasattr(cv2, f"COLORMAP_{n.upper()}")
)


@op(
    "colormap",
    "colormap",
    "Map brightness to an OpenCV colormap (false colour, thermal, ...).",
    name=Choice("inferno", COLORMAPS, "OpenCV colormap"),
    amount=Float(1.0, 0, 1, "mix of the false-colour version"),
)
def _colormap(img, p, ctx):
    mapped = cv2.applyColorMap(to_uint8(luma(img)), getattr(cv2, f"COLORMAP_{p['name'].upper()}"))
    return _lerp(img, _from_bgr8(mapped), p["amount"])


@op(
    "duotone",
    "colormap",
    "Gradient map: shadows to one colour, highlights to another.",
    shadows=RGB([0.1, 0.05, 0.3], 0, 1, "RGB colour of black"),
    highlights=RGB([1.0, 0.85, 0.5], 0, 1, "RGB colour of white"),
    amount=Float(1.0, 0, 1, "mix of the duotone version"),
)
def _duotone(img, p, ctx):
    y = luma(img)[..., None]
    lo, hi = np.array(p["shadows"], np.float32), np.array(p["highlights"], np.float32)
    return _lerp(img, lo + (hi - lo) * y, p["amount"])


@op(
    "split_tone",
    "colour",
    "Split toning: one hue into the shadows, another into the highlights.",
    shadow_hue=Float(220, 0, 360, "hue for the shadows, degrees (220 blue, 180 teal, 280 purple)"),
    shadow_strength=Float(0.3, 0, 1, "how strongly the shadows are tinted"),
    highlight_hue=Float(40, 0, 360, "hue for the highlights, degrees (30 orange, 50 gold, 330 pink)"),
    highlight_strength=Float(0.3, 0, 1, "how strongly the highlights are tinted"),
    balance=Float(0.0, -1, 1, "positive favours the highlight tint, negative the shadow tint"),
)
def _split_tone(img, p, ctx):
    y = np.clip(luma(img), 0, 1)[..., None]
    w_hi = y ** (2.0 ** -p["balance"])
    s, h = _hue_rgb(p["shadow_hue"]), _hue_rgb(p["highlight_hue"])
    return img + 0.5 * (
        (1 - w_hi) * p["shadow_strength"] * (s - s.mean()) + w_hi * p["highlight_strength"] * (h - h.mean())
    )


# ---------------------------------------------------------------------------------------------
# tone


@op("brightness", "tone", "Add a constant to every channel.", amount=Float(0.1, -1, 1, "offset"))
def _brightness(img, p, ctx):
    return img + p["amount"]


@op(
    "exposure",
    "tone",
    "Exposure in photographic stops (each stop doubles or halves).",
    stops=Float(0.5, -4, 4, "stops"),
)
def _exposure(img, p, ctx):
    return img * np.float32(2.0 ** p["stops"])


@op(
    "contrast",
    "tone",
    "Contrast around a pivot tone.",
    amount=Float(1.2, 0, 4, "contrast multiplier (1 unchanged)"),
    pivot=Float(0.5, 0, 1, "tone that stays fixed"),
)
def _contrast(img, p, ctx):
    return (img - p["pivot"]) * p["amount"] + p["pivot"]


@op(
    "gamma",
    "tone",
    "Gamma: out = in ** gamma (below 1 brightens the midtones, above 1 darkens).",
    gamma=Float(0.8, 0.1, 10, "exponent"),
)
def _gamma(img, p, ctx):
    return np.power(np.clip(img, 0, 1), p["gamma"])


def _curve_lut(points: list[list[float]], n: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    xs = np.array([q[0] for q in points])
    ys = np.array([q[1] for q in points])
    grid = np.linspace(0.0, 1.0, n)
    if len(points) == 2:
        lut = np.interp(grid, xs, ys)
    else:
        from scipy.interpolate import PchipInterpolator

        lut = PchipInterpolator(xs, ys, extrapolate=False)(np.clip(grid, xs[0], xs[-1]))
    return grid.astype(np.float32), np.clip(lut, 0, 1).astype(np.float32)


@op(
    "curve",
    "tone",
    "Tone curve through control points (smooth, monotone between points).",
    points=Param("points", [[0.0, 0.0], [0.25, 0.2], [0.75, 0.8], [1.0, 1.0]], "control points [[x, y], ...]"),
    channel=Choice("rgb", ("rgb", "r", "g", "b", "luma"), "which channel the curve applies to"),
)
def _curve(img, p, ctx):
    grid, lut = _curve_lut(p["points"])
    img = np.clip(img, 0, 1)
    ch = p["channel"]
    if ch == "rgb":
        return np.interp(img, grid, lut).astype(np.float32)
    if ch == "luma":
        y = luma(img)
        return img + (np.interp(y, grid, lut).astype(np.float32) - y)[..., None]
    out = img.copy()
    c = "rgb".index(ch)
    out[..., c] = np.interp(img[..., c], grid, lut)
    return out


@op(
    "levels",
    "tone",
    "Levels: input black/white points, midtone gamma, output black/white points.",
    in_black=Float(0.0, 0, 1, "input tone mapped to black"),
    in_white=Float(1.0, 0, 1, "input tone mapped to white"),
    gamma=Float(1.0, 0.1, 10, "midtone gamma (above 1 brightens, as in photo editors)"),
    out_black=Float(0.0, 0, 1, "output tone of black"),
    out_white=Float(1.0, 0, 1, "output tone of white"),
    check=lambda p: "'in_black' must be below 'in_white'" if p["in_black"] >= p["in_white"] else None,
)
def _levels(img, p, ctx):
    t = np.clip((img - p["in_black"]) / (p["in_white"] - p["in_black"]), 0, 1)
    return p["out_black"] + (p["out_white"] - p["out_black"]) * np.power(t, 1.0 / p["gamma"])


@op("fade", "tone", "Fade: lifted blacks and softened whites, a matte film look.", amount=Float(0.3, 0, 1, "strength"))
def _fade(img, p, ctx):
    lo = 0.3 * p["amount"]
    hi = 1.0 - 0.08 * p["amount"]
    return lo + img * (hi - lo)


@op(
    "lift_gamma_gain",
    "tone",
    "Colour-grading wheels: per-channel lift (shadows), gamma (mids), gain (highlights).",
    lift=RGB([0.0, 0.0, 0.0], -0.5, 0.5, "RGB offset of the shadows"),
    gamma=RGB([1.0, 1.0, 1.0], 0.2, 5, "RGB midtone gamma (above 1 brightens)"),
    gain=RGB([1.0, 1.0, 1.0], 0, 3, "RGB multiplier of the highlights"),
)
def _lift_gamma_gain(img, p, ctx):
    lift, gamma, gain = (np.array(p[k], np.float32) for k in ("lift", "gamma", "gain"))
    x = np.clip(gain * (img + lift * (1.0 - img)), 0, 1)
    return np.power(x, 1.0 / gamma)


@op(
    "clahe",
    "tone",
    "CLAHE: adaptive local contrast on the lightness channel.",
    clip=Float(2.0, 0.5, 40, "contrast limit"),
    tiles=Int(8, 1, 32, "tiles per side"),
)
def _clahe(img, p, ctx):
    lab = cv2.cvtColor(to_uint8(img), cv2.COLOR_RGB2LAB)
    clahe = cv2.createCLAHE(clipLimit=p["clip"], tileGridSize=(p["tiles"], p["tiles"]))
    lab[..., 0] = clahe.apply(np.ascontiguousarray(lab[..., 0]))
    return to_float(cv2.cvtColor(lab, cv2.COLOR_LAB2RGB))


@op(
    "equalize",
    "tone",
    "Histogram equalization of the brightness.",
    amount=Float(1.0, 0, 1, "mix of the equalized version"),
)
def _equalize(img, p, ctx):
    ycc = cv2.cvtColor(to_uint8(img), cv2.COLOR_RGB2YCrCb)
    ycc[..., 0] = cv2.equalizeHist(np.ascontiguousarray(ycc[..., 0]))
    return _lerp(img, to_float(cv2.cvtColor(ycc, cv2.COLOR_YCrCb2RGB)), p["amount"])


# ---------------------------------------------------------------------------------------------
# effects


@op(
    "vignette",
    "effect",
    "Vignette: darken (or lighten) towards the corners.",
    amount=Float(0.5, -1, 1, "darkening at the corners (negative lightens)"),
    radius=Float(0.6, 0, 1.5, "distance from the centre where it starts (1 = corner)"),
    softness=Float(0.6, 0.05, 2, "width of the transition"),
)
def _vignette(img, p, ctx):
    h, w, _ = img.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    d = np.hypot((xx + 0.5 - w / 2) / (w / 2), (yy + 0.5 - h / 2) / (h / 2)) / math.sqrt(2)
    mask = 1.0 - p["amount"] * _smoothstep(p["radius"], p["radius"] + p["softness"], d)
    if p["amount"] < 0:
        return 1.0 - (1.0 - img) * (2.0 - mask)[..., None]
    return img * mask[..., None]


@op(
    "grain",
    "effect",
    "Film grain (seeded noise).",
    amount=Float(0.08, 0, 1, "strength (standard deviation)"),
    size=Float(1.0, 0.5, 4, "grain size, pixels"),
    monochrome=Bool(True, "same grain in all channels"),
)
def _grain(img, p, ctx):
    h, w, _ = img.shape
    noise = ctx.rng.standard_normal((h, w, 1 if p["monochrome"] else 3), dtype=np.float32)
    if p["size"] > 0.5:
        noise = cv2.GaussianBlur(noise, (0, 0), p["size"] * 0.5).reshape(h, w, -1)
        noise /= max(float(noise.std()), 1e-6)
    return img + p["amount"] * noise


@op(
    "glow",
    "effect",
    "Glow / bloom: bright areas bleed soft light.",
    threshold=Float(0.6, 0, 0.99, "tones above this glow"),
    radius=Float(10, 1, 40, "glow radius, pixels"),
    amount=Float(0.6, 0, 3, "strength"),
)
def _glow(img, p, ctx):
    bright = np.clip((img - p["threshold"]) / (1.0 - p["threshold"]), 0, 1)
    halo = np.clip(p["amount"] * cv2.GaussianBlur(bright, (0, 0), p["radius"]), 0, 1)
    return 1.0 - (1.0 - img) * (1.0 - halo)


@op(
    "chromatic_aberration",
    "effect",
    "Chromatic aberration: red and blue split apart towards the edges.",
    shift=Float(2.0, 0, 16, "red/blue displacement at the corners, pixels"),
)
def _chromatic_aberration(img, p, ctx):
    h, w, _ = img.shape
    s = p["shift"] / (0.5 * math.hypot(w, h))
    out = img.copy()
    for c, scale in ((0, 1.0 + s), (2, 1.0 - s)):
        m = np.array([[scale, 0, (1 - scale) * w / 2], [0, scale, (1 - scale) * h / 2]], np.float32)
        out[..., c] = cv2.warpAffine(
            np.ascontiguousarray(img[..., c]), m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
    return out


@op(
    "scanlines",
    "effect",
    "Horizontal scanlines like an old CRT screen.",
    period=Int(3, 2, 16, "line spacing, pixels"),
    strength=Float(0.35, 0, 1, "darkening of the gaps"),
)
def _scanlines(img, p, ctx):
    y = np.arange(img.shape[0], dtype=np.float32)
    mask = 1.0 - p["strength"] * (0.5 + 0.5 * np.cos(2 * math.pi * y / p["period"]))
    return img * mask[:, None, None]


_BLEND_MODES = ("normal", "multiply", "screen", "overlay", "soft_light")


@op(
    "blend_original",
    "effect",
    "Mix with the recipe's input: normal moves 'amount' of the way back to the input; the other modes "
    "combine input (base) and current result (top) and mix 'amount' of that in.",
    amount=Float(0.5, 0, 1, "how much of the blend is used"),
    mode=Choice("normal", _BLEND_MODES, "blend mode"),
)
def _blend_original(img, p, ctx):
    base, top = ctx.original, np.clip(img, 0, 1)
    mode = p["mode"]
    if mode == "normal":
        mixed = base
    elif mode == "multiply":
        mixed = base * top
    elif mode == "screen":
        mixed = 1.0 - (1.0 - base) * (1.0 - top)
    elif mode == "overlay":
        mixed = np.where(base < 0.5, 2 * base * top, 1 - 2 * (1 - base) * (1 - top))
    else:  # soft_light (pegtop)
        mixed = (1 - 2 * top) * base * base + 2 * top * base
    return _lerp(img, mixed, p["amount"])


# ---------------------------------------------------------------------------------------------
# validation and application


def _close(name: str) -> str:
    close = difflib.get_close_matches(name, OPS, n=3, cutoff=0.5)
    return f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""


def validate_step(step: Any, where: str) -> dict:
    """Validate one step; return ``{"op": name, **params}`` with defaults filled in."""
    if not isinstance(step, dict):
        raise FactoryError(f"{where}: must be a mapping like {{op: NAME, ...}}, got {step!r}")
    if "op" not in step:
        raise FactoryError(f"{where}: missing 'op' (the operation name)")
    name = step["op"]
    if not isinstance(name, str) or name not in OPS:
        raise FactoryError(f"{where}: unknown operation '{name}' ({_close(str(name))}known: {', '.join(sorted(OPS))})")
    spec = OPS[name]
    where = f"{where} ({name})"
    out: dict[str, Any] = {"op": name}
    for key in step:
        if key != "op" and key not in spec.params:
            known = ", ".join(spec.params) or "none"
            close = difflib.get_close_matches(str(key), spec.params, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise FactoryError(f"{where}: unknown parameter '{key}' ({hint}parameters of {name}: {known})")
    for key, param in spec.params.items():
        out[key] = param.validate(step[key], f"{where}: parameter '{key}'") if key in step else _copy(param.default)
    if spec.check and (problem := spec.check(out)):
        raise FactoryError(f"{where}: {problem}")
    return out


def _copy(value: Any) -> Any:
    return [_copy(v) for v in value] if isinstance(value, list) else value


def validate_recipe(recipe: Any, source: str = "") -> list[dict]:
    """Check a recipe against ``OPS``; return the normalized steps with every default filled in.

    Errors are FactoryError naming ``source`` (the card file), the step number, the operation and
    the parameter, e.g. ``warm.yaml: recipe step 2: unknown operation 'blurr' (did you mean ...)``.
    """
    source = source or "recipe"
    if not isinstance(recipe, list) or not recipe:
        raise FactoryError(f"{source}: 'recipe' must be a non-empty list of steps like {{op: NAME, ...}}")
    return [validate_step(step, f"{source}: recipe step {i + 1}") for i, step in enumerate(recipe)]


def apply_recipe(rgb: np.ndarray, recipe: list[dict], seed: int = 0) -> np.ndarray:
    """Apply ``recipe`` to an HxWx3 uint8 RGB image; the same seed always gives the same output."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected HxWx3 uint8 RGB, got {rgb.shape} {rgb.dtype}")
    return run_steps(rgb, validate_recipe(recipe, "recipe"), seed)


def run_steps(rgb: np.ndarray, steps: list[dict], seed: int = 0) -> np.ndarray:
    """Apply validated steps (``validate_recipe``) to an HxWx3 uint8 RGB image, without range checks (so
    ``factory.teachers.rescale`` can scale pixel sizes beyond a card's ranges)."""
    original = to_float(rgb)
    img = original
    for i, step in enumerate(steps):
        ctx = StepContext(original=original, rng=np.random.default_rng([seed % 2**63, i]))
        params = {k: v for k, v in step.items() if k != "op"}
        img = np.clip(OPS[step["op"]].fn(img, params, ctx), 0.0, 1.0).astype(np.float32, copy=False)
    return to_uint8(img)


def describe_op(name: str) -> str:
    """Reference text of one operation: its help line and each parameter's type, range and default."""
    spec = OPS[name]
    lines = [f"{name}  [{spec.family}]  {spec.help}"]
    lines += [f"    {key}: {param.describe()}  - {param.help}" for key, param in spec.params.items()]
    return "\n".join(lines)


def describe_ops() -> str:
    """Reference text of every operation, grouped by family (for ``factory concepts ops``)."""
    return "\n".join(describe_op(n) for n in sorted(OPS, key=lambda n: (OPS[n].family, n)))
