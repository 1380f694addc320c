"""Atomic file writes: write to a temp file in the same folder, fsync, then rename over the target.

A reader (or a process killed mid-write) sees either the old file or the complete new one, never a
partial file. Temp files are named ``.<name>.<random>.tmp`` and are swept by ``sweep_temp_files``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

TMP_SUFFIX = ".tmp"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give; mkstemp alone makes files 0600
_DIR_MODE = 0o777 & ~_umask()  # what mkdir() would give; mkdtemp alone makes folders 0700


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (fsynced before the rename) and return the path."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())

    return atomic_save_file(path, write)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def encode_png(rgb: np.ndarray) -> bytes:
    """Encode an HxWx3 uint8 RGB array as PNG bytes."""
    import cv2

    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected HxWx3 uint8 RGB, got {rgb.shape} {rgb.dtype}")
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def atomic_write_png(path: str | os.PathLike, rgb: np.ndarray) -> Path:
    return atomic_write_bytes(path, encode_png(rgb))


def atomic_save_file(path: str | os.PathLike, write_fn) -> Path:
    """Atomically produce ``path`` with ``write_fn(tmp_path)``, for libraries that write files by name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix + TMP_SUFFIX, dir=path.parent)
    os.close(fd)
    try:
        write_fn(tmp)
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def sweep_temp_files(folder: str | os.PathLike) -> int:
    """Remove temp files left by a killed writer under ``folder``; return how many."""
    n = 0
    for p in Path(folder).rglob(f".*{TMP_SUFFIX}"):
        p.unlink(missing_ok=True)
        n += 1
    return n


@contextmanager
def atomic_folder(final: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temp folder beside ``final`` to fill; when the block ends without an error it replaces
    ``final`` whole (a previous ``final`` is removed after the swap), otherwise it is removed.

    Readers see the old folder or the complete new one. Leftovers of a killed writer
    (``.<name>.*.tmp`` / ``.old``) are swept on the next call.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in final.parent.glob(f".{final.name}.*"):
        if stale.is_dir() and stale.name.endswith((TMP_SUFFIX, ".old")):
            shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=TMP_SUFFIX, dir=final.parent))
    try:
        yield tmp
        os.chmod(tmp, _DIR_MODE)
        old = None
        if final.exists():
            old = final.parent / f".{final.name}.{os.getpid()}.old"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def atomic_save_pretrained(save: Callable[[str], Any], folder: str | os.PathLike, last: str,
                           keep: tuple[str, ...] | None = None) -> list[Path]:
    """Run a library's ``save(tmp_folder)`` (``save_pretrained``) and move each file it wrote (or only those
    named in ``keep``) into ``folder``, ``last`` (its config) after the others: a reader that finds ``last``
    finds the complete set."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".save.", suffix=TMP_SUFFIX, dir=folder))
    try:
        save(str(tmp))
        names = sorted((p.name for p in tmp.iterdir() if p.is_file() and (keep is None or p.name in keep)),
                       key=lambda n: (n == last, n))
        for name in names:
            os.chmod(tmp / name, _FILE_MODE)
            os.replace(tmp / name, folder / name)
        return [folder / n for n in names]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
