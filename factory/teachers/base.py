"""The one interface every teacher implements: source photos + instruction in, edited photos out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np


class Teacher(ABC):
    """Makes the target image of a training pair from a source image.

    Images are HxWx3 uint8 RGB numpy arrays; a teacher returns targets of the same size as its sources.
    ``seeds`` has one seed per source so a pair can be regenerated alone (resume, reproducibility).
    """

    kind: str = ""
    #: how many sources ``edit`` should receive at once (diffusion teachers batch on the GPU)
    batch_size: int = 1

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """Teacher kind and parameters, recorded with every pair in the manifest (JSON-serializable)."""

    @abstractmethod
    def edit(self, sources: list[np.ndarray], instruction: str, seeds: list[int]) -> list[np.ndarray]:
        """Return the edited version of each source."""
