"""Source photos for synthesis: the user's folder (``--images DIR``) or the default photo set.

Photos are split into train and test *by scene*, never by crop, so a test crop never shares pixels
with a training crop: near-duplicates (a stereo pair, crops of one scene, the same photo at two
sizes; ``near_duplicates``) form one group and a group sits wholly on one side.

* The default set (``photo_sources``): scikit-image's and scikit-learn's sample photos and the
  photographs of two Debian wallpaper packages, with a fixed split: the 20 photos of
  ``DEFAULT_TEST_PHOTOS`` are test photos, the others train. Its near-duplicate groups are fixed
  (``DEFAULT_GROUPS``; a test recomputes them from the pixels). The wallpapers are fetched into the
  photo cache on first use (``factory photos fetch``); without them the set is the wheels' 11 photos.
* A user folder: groups found by perceptual hashing, then whole groups go to the test split, in the
  order of a hash of their first file's relative path (stable when files are added), until
  ``test_fraction`` of the photos are test photos.
"""

from __future__ import annotations

import functools
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from factory.core.errors import FactoryError
from factory.core.images import UnreadableImage, find_images, read_image
from factory.data.photo_sources import fetch_wallpapers, wallpaper_photos, wallpapers_missing, wheel_photos

DEFAULT_ORIGIN = "default photos (scikit-image, scikit-learn, Debian wallpapers)"
#: the default set's test photos: never used for training anything
DEFAULT_TEST_PHOTOS = (
    "skimage:coffee", "skimage:rocket", "sklearn:china",
    "mate:aqua", "mate:dune", "mate:freshflower", "mate:garden", "mate:ladybird", "mate:raindrops", "mate:storm",
    "mate:twowings", "mate:yellowflower",
    "plasma:bythewater", "plasma:coldripple", "plasma:darkesthour", "plasma:eveningglow", "plasma:fallenleaf",
    "plasma:onestandsout", "plasma:path", "plasma:summer_1am",
)
#: near-duplicate groups of the default set (every other photo is a group of its own)
DEFAULT_GROUPS = {"skimage:motorcycle_left": "skimage:motorcycle", "skimage:motorcycle_right": "skimage:motorcycle"}


@dataclass
class Photo:
    """One decoded source photo, its split and its near-duplicate group."""

    name: str
    rgb: np.ndarray
    split: str  # "train" or "test"
    group: str = ""

    def __post_init__(self) -> None:
        self.group = self.group or self.name


@dataclass
class PhotoSet:
    """Decoded photos plus the files that could not be read (path, reason)."""

    origin: str
    photos: list[Photo]
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def split(self, name: str) -> list[Photo]:
        return [p for p in self.photos if p.split == name]


@functools.lru_cache(maxsize=1)
def _ensure_wallpapers() -> None:
    """Fetch the wallpaper photos once per process when they are missing; warn (once) when that fails."""
    if not wallpapers_missing():
        return
    try:
        fetch_wallpapers(log=lambda m: print(m, file=sys.stderr))
    except FactoryError as exc:
        print(f"warning: the default photo set has only the scikit-image/scikit-learn photos ({exc})", file=sys.stderr)


def default_photos(fetch: bool = True) -> PhotoSet:
    """The default photo set with its fixed split (fetching the wallpaper photos first when ``fetch``);
    decoded once per process and shared (treat it as read-only)."""
    if fetch:
        _ensure_wallpapers()
    return _decoded(tuple((f.id, str(f.path)) for f in wheel_photos() + wallpaper_photos()))


@functools.lru_cache(maxsize=2)
def _decoded(files: tuple[tuple[str, str], ...]) -> PhotoSet:
    photos = [Photo(pid, read_image(path), "test" if pid in DEFAULT_TEST_PHOTOS else "train",
                    DEFAULT_GROUPS.get(pid, pid)) for pid, path in files]
    wallpapers = sum(pid.split(":")[0] not in ("skimage", "sklearn") for pid, _ in files)
    origin = DEFAULT_ORIGIN if wallpapers else "default photos without the wallpapers (scikit-image, scikit-learn)"
    return PhotoSet(origin=origin, photos=photos)


def folder_photos(folder: str | os.PathLike, test_fraction: float = 0.1, progress=None) -> PhotoSet:
    """Decode every image under ``folder`` (unreadable files are skipped and listed, never fatal) and split
    them by near-duplicate group (see the module docstring); no test photos when ``test_fraction`` is 0 or
    there is a single group."""
    from factory.data.near_duplicates import near_duplicate_groups, split_by_group

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
    groups = near_duplicate_groups([p.rgb for p in photos])
    first: dict[int, str] = {}
    for photo, g in zip(photos, groups):
        photo.group = first.setdefault(g, photo.name)
    test = split_by_group([p.name for p in photos], groups, test_fraction)
    for photo in photos:
        photo.split = "test" if photo.name in test else "train"
    return PhotoSet(origin=str(folder), photos=photos, skipped=skipped)


def photos_by_name(origin: str, names: list[str]) -> dict[str, np.ndarray]:
    """The photos ``names`` of a pair folder's ``origin`` (its synth.json's: the default set, or a folder of images)
    decoded again at their own size, as the pairs were cut from them; unreadable or missing ones are left out."""
    if origin.startswith("default photos"):
        pool = {p.name: p.rgb for p in default_photos(fetch=False).photos}
        return {name: pool[name] for name in names if name in pool}
    found: dict[str, np.ndarray] = {}
    if origin and Path(origin).is_dir():
        for name in names:
            try:
                found[name] = read_image(Path(origin) / name)
            except UnreadableImage:
                continue
    return found
