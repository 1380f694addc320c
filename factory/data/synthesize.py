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
from factory.data.pair_store import PairStore, read_manifest
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
    reasons: dict[str, str] = field(default_factory=dict)  # why, per declined pair id (when the teacher says)


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


#: a concept's synthesis shards write to <data folder>/shards/<k>-of-<n>/ until they are merged
SHARDS = "shards"


def shard_of(index: int, batch: int, shards: int) -> int:
    """The shard that makes pair ``index``: whole teacher batches dealt round-robin, so every batch a shard
    runs is one a single process runs too (the same pairs, byte for byte)."""
    return (index // max(1, batch)) % shards


def shard_folder(folder: Path, shard: tuple[int, int]) -> Path:
    return Path(folder) / SHARDS / f"{shard[0]}-of-{shard[1]}"


def merge_shards(folder: Path) -> int:
    """Move every pair the shards in ``folder/shards/`` finished into ``folder`` (in pair order, the order one
    process writes them) and remove the shards; returns how many pairs were added. Safe to kill: a pair is
    in the main store only once its manifest line is, and the shard keeps it until the merge has finished."""
    import shutil

    root = Path(folder) / SHARDS
    if not root.is_dir():
        return 0
    shards = sorted(p for p in root.iterdir() if p.is_dir())
    found: dict[str, tuple[dict[str, Any], Path]] = {}
    for shard in shards:
        with PairStore(shard) as store:  # repairs what a killed shard left
            for record in store.records():
                found.setdefault(record["id"], (record, shard))
    added = 0
    with PairStore(folder) as store:
        meta = shards[0] / SYNTH_META if shards else None
        if meta is not None and meta.is_file() and not (Path(folder) / SYNTH_META).is_file():
            atomic_write_json(Path(folder) / SYNTH_META, json.loads(meta.read_text(encoding="utf-8")))
        for pair_id in sorted(found):
            if pair_id not in store:
                store.adopt(*found[pair_id])
                added += 1
        if added:
            store.sort_manifest()  # the order one process writes, whatever order the merges came in
    for shard in shards:
        shutil.rmtree(shard)
    if not any(root.iterdir()):
        root.rmdir()
    return added


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
    shard: tuple[int, int] | None = None,
) -> SynthResult:
    """Make the first ``n`` pairs of ``concept`` in ``folder``, skipping those already stored.

    ``progress(k)`` is called after every k finished pairs (for a progress bar). ``shard=(k, N)`` makes only
    shard k's pairs (``shard_of``) in its own store under ``folder/shards/``, beside other shard processes;
    an unsharded call first merges what shards finished (``merge_shards``).
    """
    meta = {"concept": concept, "instruction": instruction, "teacher": teacher.describe(), "size": size,
            "origin": photos.origin, "seed": seed, "plan": PLAN_VERSION}
    result = SynthResult(concept, folder)
    if shard is not None:
        k, count = shard
        if not 0 <= k < count:
            raise FactoryError(f"shard {k}/{count}: expected 0 <= K < N")
        _check_meta(folder, meta)  # the main store's pairs must be of this teacher too
        done = {r["id"] for r in read_manifest(folder)}
        folder = shard_folder(folder, shard)
    else:
        merge_shards(folder)
        done = set()
    batch = max(1, teacher.batch_size)
    with PairStore(folder) as store:
        _check_meta(folder, meta)
        atomic_write_json(folder / SYNTH_META, meta)
        mine = [p for p in plan_pairs(photos, n, seed, concept)
                if shard is None or shard_of(p.index, batch, shard[1]) == shard[0]]
        todo = [p for p in mine if p.pair_id not in store and p.pair_id not in done]
        if progress:
            progress(n - len(todo) if shard is None else len(mine) - len(todo))
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
        declined = getattr(teacher, "declined", {})
        for k, (plan, src, tgt) in enumerate(zip(chunk, sources, targets)):
            if tgt is None:  # never stored: a rerun asks the teacher again
                result.refused.append(plan.pair_id)
                result.reasons[plan.pair_id] = declined.get(k, "declined by the teacher")
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
