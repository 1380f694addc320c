"""The offline ``classic`` teacher: targets are made by a concept card's recipe of image operations."""

from __future__ import annotations

from typing import Any

import numpy as np

from factory.core.errors import FactoryError
from factory.teachers.base import Teacher
from factory.teachers.recipes import apply_recipe, validate_recipe


class ClassicTeacher(Teacher):
    """Applies a ``classic`` recipe (see ``factory.teachers.recipes``); deterministic for a given seed."""

    kind = "classic"
    batch_size = 1

    def __init__(self, recipe: list, source: str = "") -> None:
        self.recipe = validate_recipe(recipe, source)

    @classmethod
    def from_params(cls, params: dict[str, Any], source: str = "") -> ClassicTeacher:
        """Build from a card's ``teacher`` parameters; the only key is ``recipe``."""
        where = source or "teacher"
        if not isinstance(params, dict):
            raise FactoryError(f"{where}: classic teacher parameters must be a mapping with 'recipe'")
        unknown = sorted(set(params) - {"recipe"})
        if unknown:
            raise FactoryError(f"{where}: unknown key '{unknown[0]}' in teacher (classic takes only 'recipe')")
        if "recipe" not in params:
            raise FactoryError(f"{where}: classic teacher needs a 'recipe' (a list of operations)")
        return cls(params["recipe"], source=source)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "recipe": self.recipe}

    def edit(self, sources: list[np.ndarray], instruction: str, seeds: list[int]) -> list[np.ndarray]:
        if len(sources) != len(seeds):
            raise ValueError(f"{len(sources)} sources but {len(seeds)} seeds")
        return [apply_recipe(src, self.recipe, seed) for src, seed in zip(sources, seeds)]
