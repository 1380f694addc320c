"""Whether a run may resume from what an earlier run saved: one check for every resumable job."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from factory.core.errors import FactoryError


def changed_settings(saved: Mapping[str, Any], now: Mapping[str, Any], may_change: Iterable[str] = ()) -> list[str]:
    """Sorted names of the settings whose value differs (missing counts as None), except ``may_change``."""
    free = set(may_change)
    return sorted(k for k in set(saved) | set(now) if k not in free and saved.get(k) != now.get(k))


def check_resumable(saved: Mapping[str, Any], now: Mapping[str, Any], where: str | os.PathLike,
                    may_change: Iterable[str] = (), retry: str = "another output folder") -> None:
    """FactoryError naming the changed settings when ``now`` cannot continue what ``saved`` started."""
    changed = changed_settings(saved, now, may_change)
    if changed:
        raise FactoryError(f"{where}: its checkpoints were made with different {', '.join(changed)}; pass the "
                           f"same options to resume, --restart to start over, or {retry}")
