"""Write a concept's pairs in the formats other tools read (pix2pix aligned A|B, img2img-turbo folders)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from factory.core.atomic import atomic_write_bytes, atomic_write_json, atomic_write_png
from factory.core.errors import FactoryError
from factory.core.images import read_image
from factory.data.pair_store import read_manifest

EXPORT_FORMATS = ("pix2pix", "img2img-turbo")


def export_pairs(data_dir: Path, out: Path, fmt: str, instruction: str) -> int:
    """Export every pair of ``data_dir`` to ``out`` in ``fmt``; return the number of pairs written.

    pix2pix: ``train/<id>.jpg`` and ``test/<id>.jpg`` with source | target side by side (AtoB).
    img2img-turbo: ``train_A/``, ``train_B/``, ``test_A/``, ``test_B/`` and ``{train,test}_prompts.json``.
    """
    if fmt not in EXPORT_FORMATS:
        raise FactoryError(f"unknown export format '{fmt}' (known: {', '.join(EXPORT_FORMATS)})")
    records = sorted(read_manifest(data_dir), key=lambda r: r["id"])
    if not records:
        raise FactoryError(f"{data_dir}: no pairs; run `factory synth` first")
    prompts: dict[str, dict[str, str]] = {"train": {}, "test": {}}
    for r in records:
        src, tgt = read_image(data_dir / r["source"]), read_image(data_dir / r["target"])
        split = r["split"]
        if fmt == "pix2pix":
            _, buf = cv2.imencode(".jpg", cv2.cvtColor(np.hstack([src, tgt]), cv2.COLOR_RGB2BGR),
                                   [cv2.IMWRITE_JPEG_QUALITY, 95])
            atomic_write_bytes(out / split / f"{r['id']}.jpg", buf.tobytes())
        else:
            atomic_write_png(out / f"{split}_A" / f"{r['id']}.png", src)
            atomic_write_png(out / f"{split}_B" / f"{r['id']}.png", tgt)
            prompts[split][f"{r['id']}.png"] = instruction
    if fmt == "img2img-turbo":
        for split, table in prompts.items():
            if table:
                atomic_write_json(out / f"{split}_prompts.json", table)
    return len(records)


def data_summary(data_dir: Path) -> dict:
    """Counts per split and the teacher that made a concept's pairs."""
    records = read_manifest(data_dir)
    meta_path = data_dir / "synth.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    return {
        "concept": data_dir.name,
        "pairs": len(records),
        "train": sum(r["split"] == "train" for r in records),
        "test": sum(r["split"] == "test" for r in records),
        "teacher": (meta.get("teacher") or {}).get("kind", "?"),
        "size": meta.get("size"),
        "instruction": meta.get("instruction", ""),
    }
