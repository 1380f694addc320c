"""Near-duplicate photos by perceptual hashing (imagehash), so one scene never sits on both sides of a split.

Two photos are near-duplicates when the perceptual hash (pHash, 64 bits) of one, whole, is within
``THRESHOLD`` bits of the hash of the other whole or of one of its windows: every window of the same
aspect at 40-95% of the photo's sides, placed on a 5% grid. That catches the same photo at two sizes
or encodings and a stereo pair or slightly moved shot (whole vs whole), and a crop of another photo
(whole vs the window of the larger photo that it shows). Groups are the connected components.

Measured on scikit-image's and scikit-learn's photos: crops of 50-60% anywhere and the stereo pair are
within 0-6 bits, unrelated photos at least 14 bits apart.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

THRESHOLD = 10  # bits out of 64
SIDE = 256  # photos are hashed from a copy at most this many px on the longer side (pHash reads 32x32 anyway)
SCALES = np.arange(0.40, 0.96, 0.05)
STEP = 0.05


def _phash(rgb: np.ndarray) -> int:
    import imagehash
    from PIL import Image

    return int(str(imagehash.phash(Image.fromarray(np.ascontiguousarray(rgb)))), 16)


def _small(rgb: np.ndarray) -> np.ndarray:
    import cv2

    scale = SIDE / max(rgb.shape[:2])
    if scale >= 1:
        return rgb
    return cv2.resize(rgb, (max(8, round(rgb.shape[1] * scale)), max(8, round(rgb.shape[0] * scale))),
                      interpolation=cv2.INTER_AREA)


def photo_hashes(rgb: np.ndarray) -> tuple[int, np.ndarray]:
    """(hash of the whole photo, uint64 hashes of its windows)."""
    im = _small(rgb)
    h, w = im.shape[:2]
    windows = []
    for frac in SCALES:
        sh, sw = max(8, int(h * frac)), max(8, int(w * frac))
        n = max(2, round((1 - frac) / STEP) + 1)
        for y in np.linspace(0, h - sh, n).astype(int):
            for x in np.linspace(0, w - sw, n).astype(int):
                windows.append(_phash(im[y:y + sh, x:x + sw]))
    return _phash(im), np.array(windows, dtype=np.uint64)


def _bits(x: np.ndarray) -> np.ndarray:
    """Set bits of each uint64."""
    return np.unpackbits(np.ascontiguousarray(x, dtype=np.uint64).view(np.uint8)).reshape(-1, 64).sum(1)


def _distance(a: tuple[int, np.ndarray], b: tuple[int, np.ndarray]) -> int:
    (wa, pa), (wb, pb) = a, b
    whole = int(_bits(np.array([wa ^ wb], dtype=np.uint64))[0])
    return min(whole, int(_bits(pb ^ np.uint64(wa)).min()), int(_bits(pa ^ np.uint64(wb)).min()))


def hash_distance(a: np.ndarray, b: np.ndarray) -> int:
    """The smallest distance between either photo whole and the other whole or one of its windows."""
    return _distance(photo_hashes(a), photo_hashes(b))


def near_duplicate_groups(images: Sequence[np.ndarray], threshold: int = THRESHOLD) -> list[int]:
    """A group index per image: images linked by near-duplicate pairs share a group (union-find)."""
    hashes = [photo_hashes(im) for im in images]
    parent = list(range(len(images)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(images)):
        for j in range(i + 1, len(images)):
            if _distance(hashes[i], hashes[j]) <= threshold:
                parent[root(j)] = root(i)
    roots = [root(i) for i in range(len(images))]
    first = {r: k for k, r in enumerate(dict.fromkeys(roots))}
    return [first[r] for r in roots]


def split_by_group(names: Sequence[str], groups: Sequence[int], test_fraction: float) -> set[str]:
    """The names that form the test split: whole near-duplicate groups, taken in the order of a hash of their
    first name (stable when items are added), until ``test_fraction`` of the items are test items; none when
    ``test_fraction`` is 0 or there is a single group, and never every item."""
    import hashlib
    import math

    members: dict[int, list[str]] = {}
    for name, g in zip(names, groups):
        members.setdefault(g, []).append(name)
    want = math.ceil(test_fraction * len(names)) if len(members) > 1 and test_fraction > 0 else 0
    test: set[str] = set()
    for group in sorted(members.values(), key=lambda ms: hashlib.sha256(ms[0].encode("utf-8")).hexdigest()):
        if len(test) >= want or len(test) + len(group) >= len(names):
            break
        test.update(group)
    return test
