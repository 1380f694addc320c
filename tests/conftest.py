"""Shared fixtures: an isolated workspace, the CLI as a user runs it, and small image folders."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from factory.data.photo_sources import CACHE_ENV, cache_dir

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault(CACHE_ENV, str(cache_dir()))  # one photo cache for every test and the processes they start

if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):  # `pytest -n N`: the N workers share the cores out
    _threads = str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))
    os.environ.setdefault("OMP_NUM_THREADS", _threads)  # for the processes the tests start
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))



@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    return ws


def run_factory(
    workspace: Path, *args: str, check: bool = True, timeout: float = 300, **kw
) -> subprocess.CompletedProcess:
    """Run ``factory --workspace WS ARGS...`` in a subprocess, exactly as a user would."""
    cmd = [sys.executable, "-m", "factory", "--workspace", str(workspace), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


@pytest.fixture
def factory_cli(workspace: Path):
    def _run(*args: str, **kw) -> subprocess.CompletedProcess:
        return run_factory(workspace, *args, **kw)

    return _run


def photo(seed: int, h: int = 96, w: int = 128) -> np.ndarray:
    """A smooth, photo-like RGB image (gradients and blobs) made from a seed."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(4, 5, 3), dtype=np.uint8)
    img = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def write_rgb(path: Path, rgb: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


@pytest.fixture(scope="session")
def tiny_pretrained(tmp_path_factory) -> Path:
    """A shipped-assets folder with a tiny base and weight generator (see tiny_assets.py); pass it to the
    CLI as FACTORY_PRETRAINED."""
    from tiny_assets import make_tiny_pretrained

    return make_tiny_pretrained(tmp_path_factory.mktemp("pretrained"))
