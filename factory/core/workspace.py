"""The workspace folder layout shared by every command (see DESIGN.md, Conventions)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_WORKSPACE = "factory-workspace"
WORKSPACE_ENV = "FACTORY_WORKSPACE"


@dataclass(frozen=True)
class Workspace:
    """Paths inside a workspace: data/, base/, loras/, weightgen/, editors/, reports/."""

    root: Path

    @classmethod
    def from_option(cls, value: str | os.PathLike | None) -> Workspace:
        return cls(Path(value or os.environ.get(WORKSPACE_ENV) or DEFAULT_WORKSPACE).expanduser())

    def data(self, concept: str) -> Path:
        return self.root / "data" / concept

    def base(self, name: str) -> Path:
        return self.root / "base" / name

    def lora(self, concept: str) -> Path:
        return self.root / "loras" / concept

    def weightgen(self, name: str) -> Path:
        return self.root / "weightgen" / name

    def editor(self, concept: str) -> Path:
        return self.root / "editors" / concept

    def pack(self, name: str) -> Path:
        return self.root / "packs" / name

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def text_cache(self) -> Path:
        """Cached text-encoder outputs, one file per (encoder, text)."""
        return self.root / "cache" / "text"

    @property
    def concepts(self) -> Path:
        """User concept cards written by ``factory concepts new`` live here."""
        return self.root / "concepts"
