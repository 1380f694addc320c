"""Settings dataclasses to and from JSON-able dicts, one behaviour for all: unknown keys are refused."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from factory.core.errors import FactoryError

T = TypeVar("T")


def to_dict(obj: Any) -> dict[str, Any]:
    """A dataclass as a JSON-able dict (tuples become lists)."""

    def plain(v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return {f.name: plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}


def check_known(cls: type, keys: Iterable[str], what: str | None = None) -> None:
    """FactoryError naming the ``keys`` that are not fields of the dataclass ``cls``."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(keys) - known)
    if unknown:
        raise FactoryError(f"{what or cls.__name__}: unknown setting(s) {', '.join(unknown)} "
                           f"(known: {', '.join(sorted(known))})")


def from_dict(cls: type[T], data: Mapping[str, Any], what: str | None = None) -> T:
    """``cls(**data)``, refusing keys ``cls`` does not have with a FactoryError naming them and ``what``."""
    check_known(cls, data, what)
    try:
        return cls(**data)
    except (TypeError, ValueError) as exc:
        raise FactoryError(f"{what or cls.__name__}: {exc}") from None
