"""``--processes N`` for the training commands that run data-parallel (not a command)."""

from __future__ import annotations

from collections.abc import Callable

import click


def processes_option(what: str) -> Callable[[Callable], Callable]:
    """Add ``--processes`` (``what``: how the work is split); the command calls ``relaunch(processes)`` first."""
    return click.option(
        "--processes", type=click.IntRange(1), default=1, show_default=True,
        help=f"Processes on this machine (one per GPU when there are GPUs); {what} Under `accelerate launch` or "
             "`torchrun` leave it at 1.")
