"""editfactory: distil a diffusion edit into a tiny mobile GAN.

The library API (what the ``factory`` command runs), importable without loading torch until used::

    import factory
    factory.synthesize(["sepia"], n=40, size=64, workspace="ws")
    factory.train_base(["sepia"], name="tiny", size=64, ngf=8, steps=30, workspace="ws")
    factory.finetune("sepia", base="tiny", layers="head", rank=2, steps=20, workspace="ws")
    factory.export_editor("sepia", size=64, workspace="ws")
    factory.Editor("ws/editors/sepia").edit([photo])
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: public name -> module that defines it (imported on first use, PEP 562)
_API = {
    "synthesize": "factory.pipeline.steps",
    "train_base": "factory.pipeline.steps",
    "finetune": "factory.pipeline.steps",
    "probe_layers": "factory.pipeline.steps",
    "generate_adapter": "factory.pipeline.steps",
    "family_weights": "factory.pipeline.steps",
    "initial_adapter": "factory.pipeline.steps",
    "collect_weights": "factory.pipeline.steps",
    "train_weightgen": "factory.pipeline.steps",
    "evaluate_model": "factory.pipeline.steps",
    "export_editor": "factory.pipeline.steps",
    "export_pack": "factory.pipeline.steps",
    "bench_editor": "factory.pipeline.steps",
    "run": "factory.pipeline.api_run",
    "batch": "factory.pipeline.api_run",
    "pretrain": "factory.pipeline.api_run",
    "pretrain_family": "factory.pipeline.api_run",
    "Editor": "factory.runtime.editor",
    "Workspace": "factory.core.workspace",
    "FactoryError": "factory.core.errors",
}

__all__ = sorted(_API) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'factory' has no attribute {name!r}")
    return getattr(importlib.import_module(_API[name]), name)
