"""Reading user photos robustly (OpenCV only, so the torch-free runtime can use it too).

Every image comes out as HxWx3 uint8 RGB: EXIF orientation applied, grayscale expanded, alpha
composited over white, 16-bit and float images scaled to 8 bits. A file that cannot be decoded
raises ``UnreadableImage`` with the reason; callers skip it and list it in their summary.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import cv2
import numpy as np

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"})


class UnreadableImage(Exception):
    """A file that is not a decodable image (corrupt, truncated, empty, or not an image at all)."""


def find_images(folder: str | os.PathLike) -> list[Path]:
    """All image files under ``folder`` (recursive, by extension, hidden files skipped), sorted."""
    folder = Path(folder)
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file() and not p.name.startswith(".")
    )


def _jpeg_is_truncated(data: np.ndarray) -> bool:
    """libjpeg decodes a truncated JPEG into a grey-filled image without failing; catch it by its end marker."""
    tail = data[-64:].tobytes().rstrip(b"\x00\r\n ")
    return not tail.endswith(b"\xff\xd9")


def _to_uint8(img: np.ndarray) -> np.ndarray:
    if img.dtype == np.uint8:
        return img
    if img.dtype == np.uint16:
        return np.round(img.astype(np.float32) / 257.0).astype(np.uint8)
    if np.issubdtype(img.dtype, np.floating):
        return np.round(np.clip(np.nan_to_num(img), 0.0, 1.0) * 255.0).astype(np.uint8)
    raise UnreadableImage(f"unsupported pixel type {img.dtype}")


def decode_image(data: bytes | np.ndarray, name: str = "") -> np.ndarray:
    """Decode encoded image bytes to HxWx3 uint8 RGB (see module docstring)."""
    buf = np.frombuffer(data, np.uint8) if isinstance(data, (bytes, bytearray)) else data
    if buf.size == 0:
        raise UnreadableImage("empty file")
    if buf[:2].tobytes() == b"\xff\xd8" and _jpeg_is_truncated(buf):
        raise UnreadableImage("truncated or corrupt JPEG")
    raw = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if raw is None or raw.size == 0:
        raise UnreadableImage("not a decodable image")
    if raw.ndim == 3 and raw.shape[2] == 4:
        # alpha: composite over white (PNG/WebP with alpha carry no EXIF orientation in practice)
        bgra = _to_uint8(raw).astype(np.float32) / 255.0
        alpha = bgra[..., 3:4]
        bgr = bgra[..., :3] * alpha + (1.0 - alpha)
        img = np.round(bgr * 255.0).astype(np.uint8)
    else:
        del raw  # freed before decoding again (a 9000x9000 photo is 243 MB per copy)
        # IMREAD_COLOR applies EXIF orientation and expands grayscale; ANYDEPTH keeps 16-bit for scaling
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
        if img is None:
            raise UnreadableImage("not a decodable image")
        img = _to_uint8(img)
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if min(img.shape[:2]) < 8:
        raise UnreadableImage(f"too small ({img.shape[1]}x{img.shape[0]})")
    return np.ascontiguousarray(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read one image file as HxWx3 uint8 RGB, or raise ``UnreadableImage``."""
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as exc:
        raise UnreadableImage(str(exc.strerror or exc)) from exc
    return decode_image(data, str(path))


def crop_and_resize(rgb: np.ndarray, box: tuple[int, int, int, int], size: int | tuple[int, int]) -> np.ndarray:
    """Crop ``box`` = (x, y, w, h) and resize to ``size`` (side, or (width, height)) with area filtering."""
    x, y, w, h = box
    crop = rgb[y : y + h, x : x + w]
    width, height = (size, size) if isinstance(size, int) else size
    if crop.shape[1] == width and crop.shape[0] == height:
        return np.ascontiguousarray(crop)
    shrinking = crop.shape[1] > width
    interp = cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
    return cv2.resize(crop, (width, height), interpolation=interp)


def center_square(shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """The largest centred square (x, y, w, h) of an image of ``shape``."""
    h, w = shape[:2]
    side = min(h, w)
    return ((w - side) // 2, (h - side) // 2, side, side)


def random_square(
    shape: tuple[int, ...], rng: np.random.Generator, min_scale: float = 0.4
) -> tuple[int, int, int, int]:
    """A random square (x, y, w, h) covering ``min_scale``..1 of the shorter side."""
    h, w = shape[:2]
    side = int(round(min(h, w) * rng.uniform(min_scale, 1.0)))
    x = int(rng.integers(0, w - side + 1))
    y = int(rng.integers(0, h - side + 1))
    return (x, y, side, side)


def psnr_u8(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR (dB) of two images in 0-255 units (uint8 or float), peak 255."""
    mse = float(np.mean((a.astype(np.float32) - b.astype(np.float32)) ** 2))
    return 10 * math.log10(255.0**2 / max(mse, 1e-10))
