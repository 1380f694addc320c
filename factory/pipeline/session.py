"""What every command runs with: the workspace and the global seed."""

from __future__ import annotations

from dataclasses import dataclass

from factory.core.workspace import Workspace


@dataclass
class Session:
    workspace: Workspace
    seed: int = 0
