"""An exclusive, non-blocking lock on a file (``flock``) so two processes never write the same outputs."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from factory.core.errors import FactoryError


@contextmanager
def exclusive_lock(path: str | os.PathLike, busy_message: str) -> Iterator[None]:
    """Hold ``flock(LOCK_EX)`` on ``path`` (created if needed); raise FactoryError(busy_message) if another
    process holds it. The lock goes with the process, so a killed holder never leaves it stuck."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FactoryError(busy_message) from None
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
