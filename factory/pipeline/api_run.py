"""The whole jobs as library calls: ``run`` one concept, ``batch`` many, ``pretrain_family`` the shipped assets
(``pretrain``: the first shipped assets' recipe)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from factory.core.configs import check_known
from factory.pipeline.steps import WorkspaceLike, workspace_of


def run(concept: str, *, workspace: WorkspaceLike = None, log: Callable[[str], None] = print, **options: Any):
    """``factory run``: a card name or the edit as text -> a checked mobile editor and its report.
    ``options`` are ``RunOptions`` fields (seconds, init, n_pairs, export_size, ...). Returns a ``RunResult``."""
    from factory.pipeline.run import RunOptions
    from factory.pipeline.run import run as run_chain

    check_known(RunOptions, options, "run")
    return run_chain(workspace_of(workspace), RunOptions(target=concept, **options), log=log)


def batch(concepts: Iterable[str], *, workspace: WorkspaceLike = None, log: Callable[[str], None] = print,
          **options: Any) -> dict[str, Any]:
    """``factory batch``: ``run`` for many concepts on local workers or Ray; returns the batch summary.
    ``options`` are ``BatchOptions`` fields (executor, workers, run_args, ...)."""
    from factory.pipeline.batch import BatchOptions, read_targets, run_batch

    check_known(BatchOptions, options, "batch")
    return run_batch(workspace_of(workspace), read_targets(concepts), BatchOptions(**options), log=log)


def pretrain(*, workspace: WorkspaceLike = None, install: bool = False, dest: str | os.PathLike | None = None,
             log: Callable[[str], None] = print, **options: Any) -> dict[str, Any]:
    """``factory pretrain train``: the first shipped assets' recipe (``PretrainOptions`` fields), resumable."""
    from factory.pipeline.pretrain import PretrainOptions
    from factory.pipeline.pretrain import pretrain as run_pretrain

    check_known(PretrainOptions, options, "pretrain")
    return run_pretrain(workspace_of(workspace), PretrainOptions(**options), install=install,
                        dest=Path(dest) if dest else None, log=log)


def pretrain_family(*, workspace: WorkspaceLike = None, install: bool = False, dest: str | os.PathLike | None = None,
                    log: Callable[[str], None] = print, **options: Any) -> dict[str, Any]:
    """``factory pretrain family``: the shipped assets' recipe on the concept family (``FamilyPretrainOptions``
    fields), resumable by stage; with ``install`` the result becomes the shipped assets (or goes to ``dest``)."""
    from factory.pipeline.pretrain_family import FamilyPretrainOptions
    from factory.pipeline.pretrain_family import pretrain_family as run_family

    check_known(FamilyPretrainOptions, options, "pretrain_family")
    return run_family(workspace_of(workspace), FamilyPretrainOptions(**options), install=install,
                      dest=Path(dest) if dest else None, log=log)
