"""A filter pack's concept as an onnxruntime session (no torch): the base graph + two in-memory files.

The pack format is written by ``factory.export.pack``: ``pack.json``, ``base.onnx``, ``base.weights`` and
``concepts/<name>.bin``. The graph names its external data ``base.weights`` and ``concept.bin``; a
concept loads by handing onnxruntime the base's file and that concept's file under those two names
(``SessionOptions.add_external_initializers_from_files_in_memory``; onnxruntime-web's ``externalData``
does the same in a browser). onnxruntime folds ``W + B @ A`` into one weight when it builds the session.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from factory.core.errors import FactoryError

PACK_FORMAT = "editfactory-pack/1"
PACK_MANIFEST = "pack.json"
BASE_MODEL, BASE_DATA, CONCEPT_DATA = "base.onnx", "base.weights", "concept.bin"


def is_pack(folder: str | os.PathLike) -> bool:
    return (Path(folder) / PACK_MANIFEST).is_file()


def read_pack(folder: str | os.PathLike) -> dict[str, Any]:
    """``pack.json`` of ``folder``, checked: the format is known and the base's files are there."""
    folder = Path(folder)
    path = folder / PACK_MANIFEST
    if not path.is_file():
        raise FactoryError(f"{folder}: not a filter pack (no {PACK_MANIFEST}; make one with `factory export --pack`)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FactoryError(f"{path}: corrupt pack manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != PACK_FORMAT:
        got = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise FactoryError(f"{path}: not a {PACK_FORMAT} manifest (format {got!r})")
    for name in (BASE_MODEL, BASE_DATA):
        if not (folder / name).is_file():
            raise FactoryError(f"{folder}: the pack's {name} is missing")
    return manifest


def concept_entry(manifest: dict[str, Any], concept: str, folder: Path) -> dict[str, Any]:
    for entry in manifest.get("concepts", []):
        if entry.get("name") == concept:
            return entry
    known = ", ".join(e.get("name", "?") for e in manifest.get("concepts", [])) or "none"
    raise FactoryError(f"pack {folder} has no concept '{concept}' (it has: {known})")


def _read_checked(path: Path, size: int | None, sha256: str | None) -> bytes:
    if not path.is_file():
        raise FactoryError(f"{path}: missing from its pack")
    data = path.read_bytes()
    if (size is not None and len(data) != size) or (sha256 and hashlib.sha256(data).hexdigest() != sha256):
        raise FactoryError(f"{path}: corrupt pack file (its size or sha256 differs from pack.json)")
    return data


def pack_session(folder: str | os.PathLike, concept: str, options: ort.SessionOptions) -> ort.InferenceSession:
    """The session of ``concept`` in the pack ``folder`` (sizes and sha256 checked; a clear error otherwise)."""
    folder = Path(folder)
    manifest = read_pack(folder)
    entry = concept_entry(manifest, concept, folder)
    base = manifest.get("base", {})
    model = (folder / BASE_MODEL).read_bytes()
    weights = _read_checked(folder / BASE_DATA, base.get("weights_bytes"), base.get("weights_sha256"))
    part = _read_checked(folder / entry["file"], entry.get("bytes"), entry.get("sha256"))
    buffers = [np.frombuffer(weights, np.uint8), np.frombuffer(part, np.uint8)]
    options.add_external_initializers_from_files_in_memory([BASE_DATA, CONCEPT_DATA], buffers,
                                                           [len(b) for b in buffers])
    try:
        return ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own exception types
        raise FactoryError(f"pack {folder}, concept '{concept}': not loadable "
                           f"({str(exc).strip().splitlines()[0][:300]})") from None
