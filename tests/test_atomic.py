"""Atomic writes leave complete files with ordinary permissions and no temp files."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from factory.core.atomic import atomic_save_file, sweep_temp_files


def test_files_get_the_permissions_open_would_give(tmp_path: Path) -> None:
    code = (f"from pathlib import Path; from factory.core.atomic import atomic_write_bytes, atomic_save_file; "
            f"atomic_write_bytes({str(tmp_path / 'a.bin')!r}, b'x'); "
            f"atomic_save_file({str(tmp_path / 'b.bin')!r}, lambda p: Path(p).write_bytes(b'y'))")
    subprocess.run(["sh", "-c", 'umask 022 && exec "$0" -c "$1"', sys.executable, code], check=True)
    for name in ("a.bin", "b.bin"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644  # as open() gives; mkstemp alone: 0600
    assert (tmp_path / "a.bin").read_bytes() == b"x" and (tmp_path / "b.bin").read_bytes() == b"y"


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    def boom(_: str) -> None:
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_save_file(tmp_path / "c.bin", boom)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / ".d.bin.123.tmp").write_bytes(b"")
    assert sweep_temp_files(tmp_path) == 1
