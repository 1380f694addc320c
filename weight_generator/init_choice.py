"""Which start ``--init auto`` takes with a weight generator: the one measured best on validation concepts.

Two records can sit in the weight generator's folder (``init_choice.json``), each for the base it was measured
with (its sha256):

* the start for named concepts: ``bench/accelerators.py --split validation --record-choice`` measures every start
  (the weight generator's sample, the Text-to-LoRA hypernetwork when there is one, the mean / ridge / retrieval
  baselines) on the protocol's validation concepts and records the one with the best mean PSNR;
* ``family``: the start for a concept whose teacher is the concept family's own recipe for its text (a family
  concept, or a card ``factory concepts new --teacher classic`` composed from a text the grammar reads), chosen by
  ``bench/family_choice.py`` on the family leave-out's validation draws, where text and teacher are of that kind.

``chosen_init`` gives the record that fits the concept when the base in use is the one measured, else None (the
caller's default).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from factory.core.atomic import atomic_write_json
from factory.core.files import read_json

INIT_CHOICE = "init_choice.json"
FAMILY = "family"  # the key of the family concepts' record


def write_init_choice(folder: str | Path, init: str, base_sha256: str, record: dict[str, Any]) -> Path:
    """Record ``init`` as the measured best start for named concepts of the weight generator in ``folder`` on base
    ``base_sha256`` (a family record already there stays)."""
    path = Path(folder) / INIT_CHOICE
    old = read_json(path)
    family = {FAMILY: old[FAMILY]} if isinstance(old, dict) and FAMILY in old else {}
    atomic_write_json(path, {"init": init, "base_sha256": base_sha256, **record, **family})
    return path


def write_family_choice(folder: str | Path, init: str, base_sha256: str, record: dict[str, Any]) -> Path:
    """Record ``init`` as the measured best start for family-recipe concepts (the named record stays)."""
    path = Path(folder) / INIT_CHOICE
    old = read_json(path)
    atomic_write_json(path, {**(old if isinstance(old, dict) else {}),
                             FAMILY: {"init": init, "base_sha256": base_sha256, **record}})
    return path


def chosen_init(folder: str | Path, base_sha256: str, family: bool = False) -> dict[str, Any] | None:
    """The recorded choice (``init`` and its record) for this base: the family record for a concept whose teacher
    is the family's recipe for its text (``family``) when there is one, else the named concepts' record; None when
    there is no record for this base."""
    record = read_json(Path(folder) / INIT_CHOICE)
    if not isinstance(record, dict):
        return None
    if family and isinstance(record.get(FAMILY), dict) and record[FAMILY].get("base_sha256") == base_sha256 \
            and record[FAMILY].get("init"):
        return {**record[FAMILY], FAMILY: True}
    if record.get("base_sha256") != base_sha256 or not record.get("init"):
        return None
    return {k: v for k, v in record.items() if k != FAMILY}
