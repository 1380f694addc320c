"""Paired-data synthesis: plan crops of source photos, run the teacher, store pairs resumably.

A pair's plan (photo, crop, seed, split) depends only on the photo list, the global seed, the concept
and the pair's index, so a resumed or repeated run regenerates exactly the pairs that are missing.
"""

from __future__ import annotations

import errno
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from factory.core.atomic import atomic_write_json
from factory.core.errors import FactoryError
from factory.core.images import center_square, crop_and_resize, random_square
from factory.core.seeds import derive_seed
from factory.data.pair_store import PairStore
from factory.data.photos import PhotoSet
from factory.teachers.base import Teacher

SYNTH_META = "synth.json"
#: teacher settings that change how pairs are computed but not which pairs come out
RUNTIME_SETTINGS = frozenset({"batch_size", "device", "dtype", "diffusers"})


@dataclass(frozen=True)
class PairPlan:
    """Where pair ``index`` comes from: a crop of one photo, its teacher seed and its split."""

    index: int
    photo: int  # index into PhotoSet.photos
    crop: tuple[int, int, int, int]
    seed: int
    split: str

    @property
    def pair_id(self) -> str:
        return f"{self.index:05d}"


@dataclass
class SynthResult:
    concept: str
    folder: Path
    total: int = 0
    new: int = 0
    refused: list[str] = field(default_factory=list)  # pair ids the teacher declined (e.g. safety checker)


#: every TEST_EVERY-th pair (indices 3, 7, 11, ...) is a test pair when the photo set has test photos
TEST_EVERY = 4
#: the planning rule's version, recorded with the pairs: a folder planned by another rule is refused
PLAN_VERSION = 2


def pair_split(i: int, has_test: bool, has_train: bool = True) -> tuple[str, int]:
    """(split, position within that split) of pair ``i``: one pair in ``TEST_EVERY`` is a test pair,
    interleaved so that any prefix of the pairs holds both splits; independent of how many are planned."""
    if not has_test:
        return "train", i
    if not has_train:
        return "test", i
    if i % TEST_EVERY == TEST_EVERY - 1:
        return "test", i // TEST_EVERY
    return "train", i - (i + 1) // TEST_EVERY


def plan_pairs(photos: PhotoSet, n: int, seed: int, concept: str) -> list[PairPlan]:
    """Pair i is a crop of a photo of its split (``pair_split``): the j-th pair of a split uses that split's
    photo ``j mod P``, its centred square on the first pass, random squares after."""
    if not photos.photos:
        raise FactoryError("no source photos")
    by_split = {name: [k for k, p in enumerate(photos.photos) if p.split == name] for name in ("train", "test")}
    plans = []
    for i in range(n):
        split, j = pair_split(i, bool(by_split["test"]), bool(by_split["train"]))
        k = by_split[split][j % len(by_split[split])]
        photo = photos.photos[k]
        if j < len(by_split[split]):
            crop = center_square(photo.rgb.shape)
        else:
            crop = random_square(photo.rgb.shape, np.random.default_rng(derive_seed(seed, "crop", photo.name, i)))
        plans.append(PairPlan(i, k, crop, derive_seed(seed, concept, i), split))
    return plans


def _check_meta(folder: Path, meta: dict[str, Any]) -> None:
    """Refuse to mix pairs of a different teacher, size or source into an existing folder."""
    path = folder / SYNTH_META
    if not path.exists():
        return
    old = json.loads(path.read_text(encoding="utf-8"))
    for key in ("teacher", "size", "origin", "seed", "plan"):
        before, now = old.get(key), meta.get(key)
        if key == "teacher":  # resuming with another batch size, device or library version is fine
            before, now = ({k: v for k, v in (t or {}).items() if k not in RUNTIME_SETTINGS} for t in (before, now))
        if before != now:
            raise FactoryError(
                f"{folder}: holds pairs made with a different {key} ({json.dumps(old.get(key))}, "
                f"now {json.dumps(meta.get(key))}); delete that folder or use another --workspace"
            )


def synthesize(
    folder: Path,
    concept: str,
    instruction: str,
    teacher: Teacher,
    photos: PhotoSet,
    n: int,
    size: int,
    seed: int,
    progress: Callable[[int], Any] | None = None,
) -> SynthResult:
    """Make the first ``n`` pairs of ``concept`` in ``folder``, skipping those already stored.

    ``progress(k)`` is called after every k finished pairs (for a progress bar).
    """
    meta = {"concept": concept, "instruction": instruction, "teacher": teacher.describe(), "size": size,
            "origin": photos.origin, "seed": seed, "plan": PLAN_VERSION}
    result = SynthResult(concept, folder)
    with PairStore(folder) as store:
        _check_meta(folder, meta)
        atomic_write_json(folder / SYNTH_META, meta)
        todo = [p for p in plan_pairs(photos, n, seed, concept) if p.pair_id not in store]
        if progress:
            progress(n - len(todo))
        try:
            _run_teacher(store, todo, teacher, instruction, photos, size, meta["teacher"], result, progress)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
            raise FactoryError(
                f"{folder}: the disk is full; kept the {len(store)} complete pairs written so far "
                "(run the same command again once there is space: it adds only what is missing)"
            ) from None
        result.total = len(store)
    return result


def _run_teacher(
    store: PairStore,
    todo: list[PairPlan],
    teacher: Teacher,
    instruction: str,
    photos: PhotoSet,
    size: int,
    described: dict[str, Any],
    result: SynthResult,
    progress: Callable[[int], Any] | None,
) -> None:
    """Run the teacher over ``todo`` in its batch size and store every pair it returns."""
    batch = max(1, teacher.batch_size)
    for start in range(0, len(todo), batch):
        chunk = todo[start : start + batch]
        sources = [crop_and_resize(photos.photos[p.photo].rgb, p.crop, size) for p in chunk]
        targets = teacher.edit(sources, instruction, [p.seed for p in chunk])
        for plan, src, tgt in zip(chunk, sources, targets):
            if tgt is None:
                result.refused.append(plan.pair_id)
                continue
            if tgt.shape != src.shape or tgt.dtype != np.uint8:
                raise FactoryError(f"teacher {teacher.kind} returned {tgt.shape} {tgt.dtype} for {src.shape} uint8")
            photo = photos.photos[plan.photo]
            store.add(plan.pair_id, src, tgt, {
                "photo": photo.name, "group": photo.group, "crop": list(plan.crop), "seed": plan.seed,
                "split": plan.split, "size": size, "teacher": described,
            })
            result.new += 1
        if progress:
            progress(len(chunk))
