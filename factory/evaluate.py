"""Held-out evaluation of a student against its teacher: metrics JSON and a source | teacher | student grid."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from factory.atomic import atomic_write_json, atomic_write_png
from factory.dataset import PairedDataset, to_uint8
from factory.metrics import quality

EditFn = Callable[[torch.Tensor], torch.Tensor]  # [B,3,H,W] in [-1,1] -> same


def text_conditioned(model: torch.nn.Module, meta: dict[str, Any], instruction: str,
                     cache_dir: Path | None = None) -> EditFn:
    """Wrap a generator as an image -> image function, conditioned on ``instruction`` when it takes text."""
    if meta.get("generator", {}).get("arch", "e2gan") != "e2gan":
        return lambda x: model(x)
    from factory.text_encoder import TextEncoder

    tokens, mask = TextEncoder.from_name(meta.get("text_encoder", "minilm"), cache_dir=cache_dir).tokens([instruction])
    return lambda x: model(x, tokens.expand(len(x), -1, -1), mask.expand(len(x), -1))


@torch.no_grad()
def evaluate(edit: EditFn, data_dir: Path, batch: int = 8, max_images: int | None = None) -> tuple[dict, list]:
    """Student and identity quality on the concept's test split; also returns (source, target, output) triples."""
    from base_gan.losses import make_lpips

    ds = PairedDataset([data_dir], split="test")
    n = len(ds) if max_images is None else min(len(ds), max_images)
    lpips_fn, lpips_note = make_lpips()
    student: dict[str, list[float]] = {}
    identity: dict[str, list[float]] = {}
    triples = []
    for start in range(0, n, batch):
        items = [ds[i] for i in range(start, min(n, start + batch))]
        src = torch.stack([it["source"] for it in items])
        tgt = torch.stack([it["target"] for it in items])
        out = edit(src).clamp(-1, 1)
        for table, pred in ((student, out), (identity, src)):
            for k, v in quality(pred, tgt).items():
                table.setdefault(k, []).extend(v.tolist())
            if lpips_fn is not None:
                table.setdefault("lpips", []).extend(float(lpips_fn(p[None], t[None])) for p, t in zip(pred, tgt))
        triples += list(zip(src, tgt, out))
    mean = lambda t: {k: float(np.mean(v)) for k, v in t.items()}  # noqa: E731
    result = {"concept": data_dir.name, "test_pairs": n, "student": mean(student), "identity": mean(identity),
              "lpips": "measured" if lpips_fn is not None else f"unavailable: {lpips_note}"}
    return result, triples


def save_grid(path: Path, triples: list, rows: int = 4) -> Path:
    """A PNG with one row per test image: source | teacher | student."""
    lines = [np.hstack([to_uint8(t) for t in triple]) for triple in triples[:rows]]
    return atomic_write_png(path, np.vstack(lines))


def evaluate_to_files(edit: EditFn, data_dir: Path, out_dir: Path, name: str, extra: dict | None = None) -> dict:
    """Run ``evaluate`` and write ``<name>.json`` and ``<name>.png`` (the grid) into ``out_dir``."""
    result, triples = evaluate(edit, data_dir)
    result.update(extra or {})
    result["grid"] = str(save_grid(out_dir / f"{name}.png", triples))
    atomic_write_json(out_dir / f"{name}.json", result)
    return result
