"""Which start ``--init auto`` takes with a weight generator: the one measured best on validation concepts.

``bench/accelerators.py --split validation --record-choice`` measures every start (the weight generator's
sample, the Text-to-LoRA hypernetwork when there is one, the mean / ridge / retrieval baselines) on the
protocol's validation concepts, through the base it was measured with, and writes ``init_choice.json`` into
the weight generator's folder: the start with the best mean PSNR, the base's sha256, every start's mean and
the command. ``chosen_init`` gives that start when the base in use is the one measured, else None (the
caller's default).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from factory.core.atomic import atomic_write_json
from factory.core.files import read_json

INIT_CHOICE = "init_choice.json"


def write_init_choice(folder: str | Path, init: str, base_sha256: str, record: dict[str, Any]) -> Path:
    """Record ``init`` as the measured best start of the weight generator in ``folder`` on base ``base_sha256``."""
    path = Path(folder) / INIT_CHOICE
    atomic_write_json(path, {"init": init, "base_sha256": base_sha256, **record})
    return path


def chosen_init(folder: str | Path, base_sha256: str) -> dict[str, Any] | None:
    """The recorded choice (``init`` and its record) for this base, or None (no record, or another base)."""
    record = read_json(Path(folder) / INIT_CHOICE)
    if not isinstance(record, dict) or record.get("base_sha256") != base_sha256 or not record.get("init"):
        return None
    return record
