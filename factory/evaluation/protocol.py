"""The evaluation protocol: what every benchmark measures on, and how.

* Concepts (``concepts/_splits.yaml``): *test* concepts are for final reporting only; every choice
  (learning rate, layout, variant, probe) is made on *validation* concepts; a base or a weight dataset
  trains on *train* concepts only. Test and validation concepts each come in two groups, ``colour``
  and ``structural``, reported apart.
* Photos: the default photo set's fixed split (``factory.data.photos``), at least ``MIN_TEST_PHOTOS``
  test photos never used for training, near-duplicates on one side.
* Data: each concept's pairs are ``PAIRS`` teacher pairs at ``SIZE`` px drawn with ``DATA_SEED``, the same
  for every arm, so arms differ only in how they train.
* Seeds: every headline figure is a mean with its spread over ``SEEDS``.
* Time: every arm is evaluated on the same cadence in training seconds (``EVAL_SECONDS``), and its
  time to a quality is the first evaluation at or above it, plus every cost charged to the arm
  (``factory.evaluation.curves.time_to_quality``). A target below the unchanged photo is never used.
* References are trained to a plateau (``PLATEAU``): held-out PSNR gains less than ``min_gain_db``
  over the last ``last_fraction`` of the run, or ``cap_seconds`` (said plainly).
"""

from __future__ import annotations

import functools
import statistics
from collections.abc import Iterable
from dataclasses import dataclass

import yaml

from factory.core.errors import FactoryError

SEEDS = (0, 1, 2)
PAIRS, SIZE, DATA_SEED = 160, 128, 0
EVAL_SECONDS = 10.0
MIN_TEST_PHOTOS = 20
PLATEAU = {"min_gain_db": 0.2, "last_fraction": 0.25, "min_seconds": 600.0, "cap_seconds": 7200.0}
GROUPS = ("colour", "structural")


@dataclass(frozen=True)
class ConceptSplit:
    """Concept names per split; ``group[name]`` is "colour" or "structural" for test/validation concepts."""

    train: tuple[str, ...]
    validation: tuple[str, ...]
    test: tuple[str, ...]
    group: dict[str, str]

    def of(self, split: str, group: str | None = None) -> list[str]:
        names = getattr(self, split)
        return [n for n in names if group is None or self.group.get(n) == group]

    def split_of(self, name: str) -> str:
        for split in ("test", "validation", "train"):
            if name in getattr(self, split):
                return split
        raise FactoryError(f"concept '{name}' is in no split of concepts/_splits.yaml")

    def refuse_in_training(self, names: Iterable[str], what: str) -> None:
        """FactoryError when a test or validation concept is among ``names`` (training concepts of ``what``)."""
        bad = sorted(n for n in names if n in self.test or n in self.validation)
        if bad:
            raise FactoryError(f"{what} would train on {', '.join(bad)}: test and validation concepts "
                               "(concepts/_splits.yaml) are never trained on")


@functools.lru_cache(maxsize=1)
def concept_split() -> ConceptSplit:
    """The committed split; every built-in classic card is in exactly one split."""
    from concepts import CARDS_DIR
    from concepts.cards import builtin_cards

    data = yaml.safe_load((CARDS_DIR / "_splits.yaml").read_text(encoding="utf-8"))
    group: dict[str, str] = {}
    held: dict[str, list[str]] = {}
    for split in ("test", "validation"):
        held[split] = []
        for g, names in data[split].items():
            if g not in GROUPS:
                raise FactoryError(f"concepts/_splits.yaml: unknown group '{g}' in {split} "
                                   f"(known: {', '.join(GROUPS)})")
            for n in names:
                if n in group:
                    raise FactoryError(f"concepts/_splits.yaml: '{n}' is listed twice")
                group[n] = g
                held[split].append(n)
    cards = {c.name for c in builtin_cards() if c.teacher.kind == "classic"}
    unknown = sorted(set(group) - cards)
    if unknown:
        raise FactoryError(f"concepts/_splits.yaml names unknown cards: {', '.join(unknown)}")
    train = tuple(sorted(cards - set(group)))
    return ConceptSplit(train, tuple(held["validation"]), tuple(held["test"]), group)


def mean_spread(values: Iterable[float]) -> dict[str, float]:
    """Mean, sample standard deviation, min, max and count of a figure over seeds."""
    v = [float(x) for x in values]
    if not v:
        raise ValueError("no values")
    return {"mean": statistics.fmean(v), "std": statistics.stdev(v) if len(v) > 1 else 0.0,
            "min": min(v), "max": max(v), "n": len(v)}


def check_photos(photos) -> None:
    """FactoryError unless the photo set has at least ``MIN_TEST_PHOTOS`` test photos."""
    n = len(photos.split("test"))
    if n < MIN_TEST_PHOTOS:
        raise FactoryError(f"the protocol needs >= {MIN_TEST_PHOTOS} test photos, the photo set has {n}; "
                           "run `factory photos fetch` (the Debian wallpaper photos)")
