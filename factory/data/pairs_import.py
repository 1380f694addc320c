"""The ``pairs`` teacher: import the user's own pairs in the formats people already have.

* img2img-turbo: ``train_A/`` (sources) and ``train_B/`` (targets) matched by file stem, optionally
  ``test_A/`` and ``test_B/``.
* pix2pix: aligned images with the source on the left half and the target on the right half,
  optionally under ``train/``, ``val/`` and ``test/`` sub-folders.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from factory.core.errors import FactoryError
from factory.core.images import UnreadableImage, center_square, crop_and_resize, find_images, read_image
from factory.data.pair_store import PairStore


@dataclass
class ImportedPairs:
    format: str
    pairs: list[tuple[str, Path, Path | None, str]]  # (name, source file, target file or None for A|B, split)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _group_split(folder: Path, names: list[str], files: list[Path], test_fraction: float) -> set[str]:
    """The A|B files of the test split: whole near-duplicate groups of their source halves (a crop or another
    size of one scene never sits on both sides); an unreadable file is its own group (it is skipped later)."""
    from factory.data.near_duplicates import near_duplicate_groups, split_by_group

    sources, kept = [], []
    for name, path in zip(names, files):
        try:
            sources.append(_split_aligned(read_image(path))[0])
            kept.append(name)
        except UnreadableImage:
            continue
    groups = near_duplicate_groups(sources) if sources else []
    return split_by_group(kept, groups, test_fraction)


def scan_pairs(folder: Path, test_fraction: float = 0.1) -> ImportedPairs:
    """Find the pairs in ``folder`` and tell which format it is in."""
    if not folder.is_dir():
        raise FactoryError(f"{folder}: not a folder of pairs")
    if (folder / "train_A").is_dir() and (folder / "train_B").is_dir():
        found = ImportedPairs("img2img-turbo", [])
        for split, prefix in (("train", "train"), ("test", "test")):
            a_dir, b_dir = folder / f"{prefix}_A", folder / f"{prefix}_B"
            if not a_dir.is_dir():
                continue
            targets = (
                {p.relative_to(b_dir).with_suffix("").as_posix(): p for p in find_images(b_dir)}
                if b_dir.is_dir()
                else {}
            )
            for src in find_images(a_dir):
                key = src.relative_to(a_dir).with_suffix("").as_posix()
                if key in targets:
                    found.pairs.append((f"{prefix}/{key}", src, targets[key], split))
                else:
                    found.skipped.append((str(src), f"no matching target in {b_dir.name}/"))
        return found
    files = find_images(folder)
    names = [f.relative_to(folder).as_posix() for f in files]
    has_split_dirs = any(n.split("/", 1)[0] in ("test", "val") for n in names)
    hashed_test = set() if has_split_dirs else _group_split(folder, names, files, test_fraction)
    pairs = []
    for name, path in zip(names, files):
        split = (
            ("test" if name.split("/", 1)[0] in ("test", "val") else "train")
            if has_split_dirs
            else ("test" if name in hashed_test else "train")
        )
        pairs.append((name, path, None, split))
    return ImportedPairs("pix2pix", pairs)


def _split_aligned(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h, w = rgb.shape[:2]
    if w < 1.5 * h:
        raise UnreadableImage(f"not an aligned A|B pair ({w}x{h}; expected width about twice the height)")
    half = w // 2
    return rgb[:, :half], rgb[:, half : 2 * half]


def import_pairs(
    data_dir: Path, pairs_dir: Path, size: int, test_fraction: float = 0.1, progress=None
) -> tuple[ImportedPairs, int, int]:
    """Copy the pairs of ``pairs_dir`` into ``data_dir`` (resumable); return (scan, total, new)."""
    found = scan_pairs(pairs_dir, test_fraction)
    if not found.pairs:
        raise FactoryError(f"{pairs_dir}: no pairs found (expected train_A/ + train_B/, or aligned A|B images)")
    new = 0
    teacher = {"kind": "pairs", "format": found.format, "origin": str(pairs_dir)}
    with PairStore(data_dir) as store:
        for i, (name, src_path, tgt_path, split) in enumerate(found.pairs):
            pair_id = f"{i:05d}"
            if pair_id not in store:
                try:
                    if tgt_path is None:
                        src, tgt = _split_aligned(read_image(src_path))
                    else:
                        src, tgt = read_image(src_path), read_image(tgt_path)
                        if tgt.shape != src.shape:
                            tgt = crop_and_resize(tgt, (0, 0, tgt.shape[1], tgt.shape[0]), (src.shape[1], src.shape[0]))
                except UnreadableImage as exc:
                    found.skipped.append((str(src_path), str(exc)))
                    continue
                box = center_square(src.shape)
                store.add(
                    pair_id,
                    crop_and_resize(src, box, size),
                    crop_and_resize(tgt, box, size),
                    {
                        "photo": name,
                        "crop": list(box),
                        "seed": None,
                        "split": split,
                        "size": size,
                        "teacher": teacher,
                    },
                )
                new += 1
            if progress:
                progress(1)
        total = len(store)
    return found, total, new
