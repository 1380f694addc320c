"""A concept card's paired data: the one way every command, benchmark and test makes a card's pairs.

``make_pairs(workspace, card, n, size, seed)`` runs the card's teacher (or another one, with
parameter overrides) on the source photos (scikit-image's by default, or ``images``), or imports the
user's own pairs for the ``pairs`` teacher, into ``<workspace>/data/<card>/``. It resumes: pairs
already there are kept. ``TeacherCache`` lets many cards share one loaded teacher (a diffusion
pipeline loads once for every card with the same model and settings).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from concepts.cards import ConceptCard, find_card
from factory.core.atomic import atomic_write_json
from factory.core.errors import FactoryError
from factory.core.workspace import Workspace
from factory.data.pair_store import read_manifest
from factory.data.photos import PhotoSet, default_photos, folder_photos
from factory.data.synthesize import SYNTH_META, synthesize
from factory.teachers import make_teacher, teacher_params
from factory.teachers.base import Teacher


@dataclass
class PairsResult:
    """What ``make_pairs`` did for one card."""

    concept: str
    folder: Path
    teacher: str
    total: int = 0
    new: int = 0
    refused: list[str] = field(default_factory=list)          # pair ids the teacher declined
    reasons: dict[str, str] = field(default_factory=dict)     # why, per declined pair id
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, why) unreadable inputs


class TeacherCache:
    """Teachers by (kind, parameters): a second card with the same teacher reuses the loaded one."""

    def __init__(self) -> None:
        self._teachers: dict[str, Teacher] = {}

    def get(self, kind: str, params: dict[str, Any], source: str) -> Teacher:
        key = repr((kind, sorted(params.items(), key=lambda kv: kv[0])))
        if key not in self._teachers:
            self._teachers[key] = make_teacher(kind, params, source=source)
        return self._teachers[key]

    def for_card(self, card: ConceptCard, teacher: str | None = None,
                 overrides: dict[str, Any] | None = None) -> Teacher | None:
        """The teacher that makes ``card``'s pairs (its own kind, or ``teacher``, with ``overrides``);
        None for the ``pairs`` teacher, which imports pairs instead. Loads it now (a diffusion model loads
        once for every card with the same settings)."""
        kind = teacher or card.teacher.kind
        if kind == "pairs":
            return None
        params = teacher_params(card.teacher.kind, card.teacher.params, kind, overrides or {})
        return self.get(kind, params, str(card.path or card.name))


class PhotoCache:
    """Source photos decoded once per folder (or the default set) for every card of a command."""

    def __init__(self, images: Path | None = None, test_fraction: float = 0.1) -> None:
        self.images, self.test_fraction = images, test_fraction
        self._photos: PhotoSet | None = None

    def get(self) -> PhotoSet:
        if self._photos is None:
            self._photos = folder_photos(self.images, self.test_fraction) if self.images else default_photos()
        return self._photos


def make_pairs(workspace: Workspace, card: ConceptCard, n: int, size: int, seed: int, *,
               images: str | os.PathLike | None = None, teacher: str | None = None,
               overrides: dict[str, Any] | None = None, test_fraction: float = 0.1,
               teachers: TeacherCache | None = None, photos: PhotoCache | None = None,
               progress: Callable[[int], Any] | None = None, shard: tuple[int, int] | None = None) -> PairsResult:
    """The first ``n`` pairs of ``card`` at ``size`` px in ``workspace.data(card.name)`` (resumable); with
    ``shard=(k, N)`` only shard k's pairs, in the shard's own store (``factory.data.synthesize``)."""
    folder = workspace.data(card.name)
    images = Path(images) if images is not None else None
    teacher_obj = (teachers or TeacherCache()).for_card(card, teacher, overrides)
    if teacher_obj is None:
        if shard is not None:
            raise FactoryError("--shard: imported pairs (the 'pairs' teacher) are not sharded")
        return _import(folder, card, images, size, test_fraction, progress)
    photo_set = (photos or PhotoCache(images, test_fraction)).get()
    result = synthesize(folder, card.name, card.instruction, teacher_obj, photo_set, n, size, seed, progress=progress,
                        shard=shard)
    return PairsResult(card.name, folder, teacher_obj.kind, result.total, result.new, result.refused,
                       result.reasons, list(photo_set.skipped))


def _import(folder: Path, card: ConceptCard, images: Path | None, size: int, test_fraction: float,
            progress: Callable[[int], Any] | None) -> PairsResult:
    from factory.data.pairs_import import import_pairs

    if images is None:
        raise FactoryError(f"{card.name}: the pairs teacher needs --images DIR (train_A/ + train_B/, or aligned "
                           "A|B images)")
    found, total, added = import_pairs(folder, images, size, test_fraction, progress=progress)
    atomic_write_json(folder / SYNTH_META, {"concept": card.name, "instruction": card.instruction,
                                            "teacher": {"kind": "pairs", "format": found.format, "origin": str(images)},
                                            "size": size, "origin": str(images), "seed": None})
    return PairsResult(card.name, folder, "pairs", total, added, [], {}, list(found.skipped))


def ensure_pairs(workspace: Workspace, names: Iterable[str], n: int, size: int, seed: int,
                 log: Callable[[str], None] = print) -> list[PairsResult]:
    """Pairs (each card's own teacher, default photos) for the concepts that have none yet."""
    missing = [c for c in names if not read_manifest(workspace.data(c))]
    teachers, photos = TeacherCache(), PhotoCache()
    done = []
    for name in missing:
        card = find_card(name, workspace)
        log(f"no pairs for {name} yet: synthesizing {n} at {size} px with its {card.teacher.kind} teacher")
        done.append(make_pairs(workspace, card, n, size, seed, teachers=teachers, photos=photos))
    return done
