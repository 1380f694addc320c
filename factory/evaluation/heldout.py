"""The one evaluation of a student (a torch model or an exported editor) against its teacher on held-out pairs.

``HeldOutPairs(data_dir)`` keeps a concept's test pairs (or any split / subset) in memory;
``score(edit)`` gives the mean metrics of an edit function (the pixel metrics, fast enough for a
training curve; all of them with ``full``), ``evaluate(edit)`` every metric for the student and for
identity (the unchanged source), whether the concept is ``learned`` (``metrics.learned``), and the
images for a grid. An edit function maps
[B, 3, H, W] in [-1, 1] to the same; ``text_conditioned`` makes one from a generator and a concept
text, ``editor_edit`` from an onnxruntime ``Editor``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from factory.core.atomic import atomic_write_json, atomic_write_png
from factory.core.errors import FactoryError
from factory.data.dataset import PairedDataset, to_uint8
from factory.evaluation.metrics import learned, quality

EditFn = Callable[[torch.Tensor], torch.Tensor]  # [B,3,H,W] in [-1,1] -> same


class HeldOutPairs:
    """One concept's pairs of ``split`` (optionally only ``ids``), held in memory, no augmentation."""

    def __init__(self, data_dir: str | Path, split: str | None = "test", ids: Sequence[str] | None = None):
        data_dir = Path(data_dir)
        self.data_dir = data_dir
        ds = PairedDataset([data_dir], split=split, ids={data_dir.name: list(ids)} if ids is not None else None)
        items = [ds[i] for i in range(len(ds))]
        self.ids = [it["pair_id"] for it in items]
        self.source = torch.stack([it["source"] for it in items])
        self.target = torch.stack([it["target"] for it in items])

    def __len__(self) -> int:
        return len(self.ids)

    @torch.no_grad()
    def outputs(self, edit: EditFn, model: nn.Module | None = None, batch: int = 16) -> torch.Tensor:
        """``edit`` over every source in batches (``model``, when given, is in eval mode meanwhile)."""
        was = model.training if model is not None else None
        if model is not None:
            model.eval()
        try:
            return torch.cat([edit(self.source[s:s + batch]) for s in range(0, len(self), batch)])
        finally:
            if model is not None:
                model.train(was)

    def score(self, edit: EditFn, model: nn.Module | None = None, batch: int = 16,
              full: bool = False) -> dict[str, float]:
        """Mean metrics of ``edit``'s outputs against the targets (PSNR/SSIM/L1; all of them with ``full``)."""
        return self.score_outputs(self.outputs(edit, model, batch), full)

    def score_outputs(self, outputs: torch.Tensor, full: bool = False) -> dict[str, float]:
        """Mean metrics of outputs already computed for every source, in order."""
        return _means(quality(outputs, self.target, full))

    def identity(self, full: bool = True) -> dict[str, float]:
        """The same metrics for the unchanged sources: the baseline a student must beat."""
        return _means(quality(self.source, self.target, full))

    def evaluate(self, edit: EditFn, model: nn.Module | None = None) -> tuple[dict[str, Any], list]:
        """Student and identity figures (plus LPIPS when its weights are cached) and (source, target, output)
        triples for a grid."""
        from base_gan.losses import make_lpips

        out = self.outputs(edit, model).clamp(-1, 1)
        student = _means(quality(out, self.target))
        result: dict[str, Any] = {"concept": self.data_dir.name, "test_pairs": len(self), "student": student,
                                  "identity": self.identity(), "metrics": "PSNR/SSIM/L1, PSNR at 1/4 resolution, "
                                  "HaarPSI, FSIM, MS-SSIM (higher is better), GMSD (lower is better)"}
        result["learned"] = learned(student, result["identity"])
        lpips_fn, note = make_lpips()
        if lpips_fn is not None:
            for key, pred in (("student", out), ("identity", self.source)):
                result[key]["lpips"] = float(np.mean([float(lpips_fn(p[None], t[None]))
                                                      for p, t in zip(pred, self.target)]))
        result["lpips"] = "measured" if lpips_fn is not None else f"unavailable: {note}"
        return result, list(zip(self.source, self.target, out))


def _means(q: dict[str, torch.Tensor]) -> dict[str, float]:
    return {k: float(v.float().mean()) for k, v in q.items()}


def text_conditioned(model: nn.Module, instruction: str, cache_dir: Path | None = None) -> EditFn:
    """Wrap a generator as an image -> image function, conditioned on ``instruction`` when it takes text."""
    from base_gan.models import unwrap

    plain = unwrap(model)
    if not getattr(plain, "takes_text", False):
        return lambda x: model(x)
    from factory.text.encoder import TextEncoder

    tokens, mask = TextEncoder.from_name(plain.config.text_encoder, cache_dir=cache_dir).tokens([instruction])
    return lambda x: model(x, tokens.expand(len(x), -1, -1), mask.expand(len(x), -1))


def editor_edit(editor: Any, batch: int = 8) -> EditFn:
    """An exported ``factory.runtime.Editor`` as an edit function (onnxruntime in batches of ``batch``)."""
    return lambda x: torch.from_numpy(editor.run_batched(x.numpy(), batch))


def save_grid(path: Path, triples: list, rows: int = 4) -> Path:
    """A PNG with one row per test image: source | teacher | student."""
    if not triples:
        raise FactoryError(f"{path}: no held-out images to show")
    lines = [np.hstack([to_uint8(t) for t in triple]) for triple in triples[:rows]]
    return atomic_write_png(path, np.vstack(lines))


def evaluate_to_files(edit: EditFn, data_dir: Path, out_dir: Path, name: str, extra: dict | None = None) -> dict:
    """Evaluate on the test split and write ``<name>.json`` and ``<name>.png`` (the grid) into ``out_dir``."""
    result, triples = HeldOutPairs(data_dir).evaluate(edit)
    result.update(extra or {})
    result["grid"] = str(save_grid(out_dir / f"{name}.png", triples))
    atomic_write_json(out_dir / f"{name}.json", result)
    return result
