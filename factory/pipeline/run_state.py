"""``runs/<concept>/state.json``: per stage of ``factory run``, its fingerprint, budget, time and outputs."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from factory.core.atomic import atomic_write_json
from factory.core.files import read_json, sha256_file
from factory.core.workspace import Workspace

STAGES = ("card", "synth", "init", "finetune", "export", "eval", "report")
STATE = "state.json"


def run_dir(ws: Workspace, concept: str) -> Path:
    return ws.root / "runs" / concept


def trained_dir(ws: Workspace, concept: str) -> Path:
    """Where the concept's last ``factory run`` fine-tune is (its state says; ``loras/<concept>/`` by default)."""
    state = read_json(run_dir(ws, concept) / "state.json") or {}
    out = (((state.get("stages") or {}).get("finetune") or {}).get("info") or {}).get("out")
    return Path(out) if out else ws.lora(concept)


def digest(*parts: Any) -> str:
    """A short stable digest of JSON-able parts (anything else by its ``str``)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def file_digest(path: Path) -> str:
    return sha256_file(path)[:16]


class RunState:
    """The record of one concept's run; a stage is skipped when its record matches and its outputs exist."""

    def __init__(self, folder: Path):
        self.path = folder / STATE
        self.data: dict[str, Any] = read_json(self.path) or {"stages": {}}

    def get(self, stage: str) -> dict[str, Any] | None:
        return self.data["stages"].get(stage)

    def up_to_date(self, stage: str, fingerprint: str, budget: Any = None) -> bool:
        rec = self.get(stage)
        return bool(rec and rec.get("fingerprint") == fingerprint and rec.get("budget") == budget
                    and all(Path(p).exists() for p in rec.get("outputs", [])))

    def record(self, stage: str, fingerprint: str, seconds: float, outputs: list[Path], info: dict | None = None,
               budget: Any = None) -> None:
        self.data["stages"][stage] = {"fingerprint": fingerprint, "budget": budget, "seconds": round(seconds, 2),
                                      "outputs": [str(p) for p in outputs], "info": info or {},
                                      "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        atomic_write_json(self.path, self.data)

    def forget_after(self, stage: str) -> None:
        """Drop the records of the stages after ``stage`` (their inputs changed)."""
        for later in STAGES[STAGES.index(stage) + 1:]:
            self.data["stages"].pop(later, None)
