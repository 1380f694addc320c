"""``editors/manifest.json``: every installed editor of a workspace, for an app (and the browser editor).

Rebuilt from ``editors/*/card.json`` whenever an editor is installed (``factory export``, the export
stage of ``factory run``, each finished concept of ``factory batch``) and when ``factory web`` starts,
so it always lists exactly the editors on disk::

    {"format": "editfactory-editors/1",
     "editors": [{"name", "instruction", "input", "output",
                  "files": {"editor.onnx": {"path": "<concept>/editor.onnx", "bytes", "sha256"}, ...}}]}

``path`` is relative to ``editors/``. Writers hold a lock on the ``editors/`` folder itself while they
scan and write (batch workers export concurrently; no lock file is left behind), and the file is
replaced atomically.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from factory.core.atomic import atomic_write_json
from factory.core.files import read_json, sha256_file
from factory.core.workspace import Workspace

MANIFEST = "manifest.json"
FORMAT = "editfactory-editors/1"
#: the files an app ships, in the order it prefers them
APP_FILES = ("editor.ort", "editor.int8.ort", "editor.onnx", "editor.int8.onnx")


def manifest_path(ws: Workspace) -> Path:
    return ws.root / "editors" / MANIFEST


def editor_entry(ws: Workspace, folder: Path, previous: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """One editor's manifest entry, or None when ``folder`` holds no card.json or no model file. Checksums of
    files whose size and path match ``previous`` (the same editor's entry in the last manifest) and that are
    older than that manifest are reused rather than read again."""
    card = read_json(folder / "card.json")
    if not isinstance(card, dict) or "input" not in card:
        return None
    root = ws.root / "editors"
    old_files = (previous or {}).get("files", {})
    since = previous.get("_written_ns", 0) if previous else 0
    files = {}
    for name in APP_FILES:
        path = folder / name
        if not path.is_file():
            continue
        st = path.stat()
        rel = os.path.relpath(path, root)
        old = old_files.get(name, {})
        same = old.get("path") == rel and old.get("bytes") == st.st_size and st.st_mtime_ns < since
        files[name] = {"path": rel, "bytes": st.st_size, "sha256": old["sha256"] if same else sha256_file(path)}
    if not files:
        return None
    return {"name": folder.name, "instruction": card.get("instruction", ""), "input": card["input"],
            "output": card.get("output", {}), "files": files}


def build_manifest(ws: Workspace) -> dict[str, Any]:
    """The manifest of every editor folder under ``editors/`` (hidden and temporary folders skipped), by name."""
    root = ws.root / "editors"
    path = root / MANIFEST
    last = read_json(path) if path.is_file() else None
    written = path.stat().st_mtime_ns if last else 0
    previous = {e.get("name"): {**e, "_written_ns": written}
                for e in (last or {}).get("editors", []) if isinstance(e, dict)}
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) if root.is_dir() else []
    editors = [e for e in (editor_entry(ws, f, previous.get(f.name)) for f in folders) if e is not None]
    return {"format": FORMAT, "editors": editors}


@contextmanager
def _locked(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root, os.O_RDONLY)  # flock on the folder: nothing to clean up
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # blocking: writers take turns (a scan takes well under a second)
        yield
    finally:
        os.close(fd)


def write_manifest(ws: Workspace) -> dict[str, Any]:
    """Rebuild ``editors/manifest.json`` from the editor folders on disk; returns its content."""
    with _locked(ws.root / "editors"):
        manifest = build_manifest(ws)
        atomic_write_json(manifest_path(ws), manifest)
    return manifest
