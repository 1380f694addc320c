"""A concept's paired data on disk: ``source/*.png``, ``target/*.png`` and ``manifest.jsonl``.

Crash safety: each PNG is written atomically, and a pair exists only once its manifest line is
appended (one ``write`` + fsync). A process killed at any moment leaves at most orphan PNGs or a
torn last manifest line; ``PairStore.open`` removes both, so every listed pair is complete and its
files match their sha256. An exclusive lock (``flock``, released by the kernel even on SIGKILL)
stops two writers from sharing a folder.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from factory.core.atomic import atomic_write_bytes, atomic_write_text, encode_png, sweep_temp_files
from factory.core.files import sha256_bytes, sha256_file
from factory.core.locks import exclusive_lock

MANIFEST = "manifest.jsonl"
LOCK = ".lock"


def read_manifest(folder: str | os.PathLike) -> list[dict[str, Any]]:
    """Complete records of ``folder/manifest.jsonl`` (a torn or duplicate line is ignored)."""
    path = Path(folder) / MANIFEST
    if not path.exists():
        return []
    records: dict[str, dict[str, Any]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line torn by a kill mid-append
        if isinstance(record, dict) and "id" in record:
            records.setdefault(record["id"], record)
    return list(records.values())


def photo_group(record: dict[str, Any]) -> str:
    """The photo a pair record was cut from, for holding whole photos out: its near-duplicate ``group``, else its
    ``photo``, else the pair's own id."""
    return str(record.get("group") or record.get("photo") or record["id"])


class PairStore:
    """Writer for one concept's data folder; use as a context manager (holds the lock)."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self._lock = None  # the held exclusive_lock context
        self._records: dict[str, dict[str, Any]] = {}

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> PairStore:
        self.folder.mkdir(parents=True, exist_ok=True)
        lock = exclusive_lock(self.folder / LOCK, f"{self.folder}: another factory process is writing this concept's "
                                                  "data; wait for it to finish (or stop it) and run again")
        lock.__enter__()
        self._lock = lock
        try:
            self._recover()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._lock is not None:
            self._lock.__exit__(None, None, None)
            self._lock = None

    def _recover(self) -> None:
        """Drop temp files, torn manifest lines and pairs whose files are missing or altered."""
        sweep_temp_files(self.folder)
        manifest = self.folder / MANIFEST
        raw = manifest.read_text(encoding="utf-8") if manifest.exists() else ""
        raw_lines = raw.splitlines()
        good = []
        for record in read_manifest(self.folder):
            ok = all(
                (self.folder / record[k]).is_file() and sha256_file(self.folder / record[k]) == record["sha256"][k]
                for k in ("source", "target")
            )
            if ok:
                good.append(record)
        self._records = {r["id"]: r for r in good}
        if len(good) != len(raw_lines) or (raw and not raw.endswith("\n")):  # rewrite without bad lines
            atomic_write_text(manifest, "".join(json.dumps(r, sort_keys=True) + "\n" for r in good))
        listed = {self.folder / r[k] for r in good for k in ("source", "target")}
        for sub in ("source", "target"):
            for orphan in (self.folder / sub).glob("*.png") if (self.folder / sub).is_dir() else []:
                if orphan not in listed:
                    orphan.unlink()

    # -- access ------------------------------------------------------------------------------
    def __contains__(self, pair_id: str) -> bool:
        return pair_id in self._records

    def __len__(self) -> int:
        return len(self._records)

    def records(self) -> Iterator[dict[str, Any]]:
        return iter(self._records.values())

    def sort_manifest(self) -> None:
        """Rewrite ``manifest.jsonl`` (atomically) with its records in pair-id order."""
        if self._lock is None:
            raise RuntimeError("PairStore.sort_manifest outside its context")
        records = sorted(self._records.values(), key=lambda r: r["id"])
        atomic_write_text(self.folder / MANIFEST, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))

    def adopt(self, record: dict[str, Any], folder: Path) -> None:
        """Take over a complete pair of another store in ``folder`` (a synthesis shard): its PNGs copied
        atomically, then the same manifest line ``add`` writes."""
        if self._lock is None:
            raise RuntimeError("PairStore.adopt outside its context")
        for kind in ("source", "target"):
            atomic_write_bytes(self.folder / record[kind], (Path(folder) / record[kind]).read_bytes())
        self._append(record)

    def _append(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, sort_keys=True) + "\n").encode("utf-8")
        fd = os.open(self.folder / MANIFEST, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        self._records[record["id"]] = record

    def add(self, pair_id: str, source: np.ndarray, target: np.ndarray, meta: dict[str, Any]) -> dict[str, Any]:
        """Write one pair (both PNGs, then its manifest line) and return its record."""
        if self._lock is None:
            raise RuntimeError("PairStore.add outside its context")
        if pair_id in self._records:
            raise ValueError(f"pair {pair_id} already exists")
        blobs = {"source": encode_png(source), "target": encode_png(target)}
        record = dict(meta, id=pair_id)
        record["sha256"] = {}
        for kind, blob in blobs.items():
            rel = f"{kind}/{pair_id}.png"
            atomic_write_bytes(self.folder / rel, blob)
            record[kind] = rel
            record["sha256"][kind] = sha256_bytes(blob)
        self._append(record)
        return record
