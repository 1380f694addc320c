"""Source photos for synthesis: the user's folder (``--images DIR``) or scikit-image's bundled colour photos.

Photos are split into train and test *by photo*, never by crop, so a test crop never shares pixels
with a training crop. The default set has a fixed split; a user folder is split by a hash of each
file's relative path (stable when files are added).
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from factory.core.errors import FactoryError
from factory.core.images import UnreadableImage, find_images, read_image

# scikit-image's colour photographs (shipped inside its wheel). The stereo pair motorcycle_left/right
# shows the same scene, so both sit on the same side of the split.
DEFAULT_TRAIN_PHOTOS = (
    "astronaut.png",
    "chelsea.png",
    "hubble_deep_field.jpg",
    "ihc.png",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "retina.jpg",
)
DEFAULT_TEST_PHOTOS = ("coffee.png", "rocket.jpg")


@dataclass
class Photo:
    """One decoded source photo and the split it belongs to."""

    name: str
    rgb: np.ndarray
    split: str  # "train" or "test"


@dataclass
class PhotoSet:
    """Decoded photos plus the files that could not be read (path, reason)."""

    origin: str
    photos: list[Photo]
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def split(self, name: str) -> list[Photo]:
        return [p for p in self.photos if p.split == name]


def skimage_data_dir() -> Path:
    return Path(str(resources.files("skimage") / "data"))


def default_photos() -> PhotoSet:
    """scikit-image's bundled colour photos with the fixed train/test split."""
    folder = skimage_data_dir()
    photos = [
        Photo(name, read_image(folder / name), split)
        for split, names in (("train", DEFAULT_TRAIN_PHOTOS), ("test", DEFAULT_TEST_PHOTOS))
        for name in names
    ]
    return PhotoSet(origin="scikit-image sample photos", photos=photos)


def _hash_rank(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def folder_photos(folder: str | os.PathLike, test_fraction: float = 0.1, progress=None) -> PhotoSet:
    """Decode every image under ``folder``; unreadable files are skipped and listed, never fatal.

    The test split is the ``ceil(test_fraction * n)`` files whose path hashes lowest (none when
    ``test_fraction`` is 0 or there is a single photo).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FactoryError(f"{folder}: not a folder of images")
    files = find_images(folder)
    photos: list[Photo] = []
    skipped: list[tuple[str, str]] = []
    for path in progress(files) if progress else files:
        try:
            photos.append(Photo(path.relative_to(folder).as_posix(), read_image(path), "train"))
        except UnreadableImage as exc:
            skipped.append((str(path), str(exc)))
    if not photos:
        detail = f" ({len(skipped)} unreadable)" if skipped else ""
        raise FactoryError(f"{folder}: no readable images{detail}")
    n_test = math.ceil(test_fraction * len(photos)) if len(photos) > 1 and test_fraction > 0 else 0
    for photo in sorted(photos, key=lambda p: _hash_rank(p.name))[:n_test]:
        photo.split = "test"
    return PhotoSet(origin=str(folder), photos=photos, skipped=skipped)
