"""Teachers that make paired data: ``classic`` recipes, ``instruct-pix2pix`` and ``sdedit`` (diffusers).

(The user's own pairs are imported by ``factory.data.pairs_import``; they need no teacher.)
"""

from __future__ import annotations

from typing import Any

from factory.core.errors import FactoryError
from factory.teachers.base import Teacher

TEACHER_KINDS = ("classic", "instruct-pix2pix", "sdedit", "pairs")


def teacher_params(card_kind: str, card_params: dict[str, Any], kind: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """The card's teacher parameters when ``kind`` is the card's own teacher, plus the non-None overrides."""
    params = dict(card_params) if kind == card_kind else {}
    params.update({k: v for k, v in overrides.items() if v is not None})
    return params


def make_teacher(kind: str, params: dict[str, Any], *, source: str = "") -> Teacher:
    """Build the teacher ``kind`` from its parameters (a card's ``teacher`` mapping plus CLI overrides).

    ``source`` names where the parameters came from (a card file) for error messages.
    """
    if kind == "classic":
        from factory.teachers.classic import ClassicTeacher

        return ClassicTeacher.from_params(params, source=source)
    if kind == "instruct-pix2pix":
        from factory.teachers.diffusion import InstructPix2PixTeacher

        return InstructPix2PixTeacher.from_params(params, source=source)
    if kind == "sdedit":
        from factory.teachers.diffusion import SDEditTeacher

        return SDEditTeacher.from_params(params, source=source)
    if kind == "pairs":
        raise FactoryError(f"{source or 'teacher'}: the 'pairs' teacher imports existing pairs; use --images DIR")
    raise FactoryError(f"{source or 'teacher'}: unknown teacher kind '{kind}' (known: {', '.join(TEACHER_KINDS)})")
