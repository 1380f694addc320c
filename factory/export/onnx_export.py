"""From a base generator (+ a concept's LoRA) to an ONNX editor that takes only an image.

The editor's contract (the same for editor.onnx, editor.int8.onnx and editor.fp16.onnx):

* input ``image``: float32 ``[batch, 3, height, width]``, RGB, values in [-1, 1] (``pixel / 127.5 - 1``);
  batch, height and width are dynamic, height and width must be multiples of the stride (16).
* output ``edited``: float32, same shape and range (may overshoot ±1 slightly; clip before converting
  to pixels: ``round((y + 1) * 127.5)``).

Why float NCHW and not uint8 NHWC with the conversion inside the graph: the uint8 <-> float Casts
at the edges are not taken by the mobile delegates (NNAPI's Cast builder only casts to float32/int32;
CoreML's only between float/int/bool types), so they would run on the CPU around the delegate; a
float input keeps the whole graph on NNAPI / CoreML, and it is exactly the torch module's own
interface, so the parity check compares like with like. The conversion is one multiply-add in the
app (``factory/runtime.py`` does it in numpy).

Export path: LoRA merged with peft (``PeftModel.from_pretrained(base, dir).merge_and_unload()``),
the concept's text token embeddings registered as buffers of a wrapper module (so the text
projections fold into constants), ``torch.onnx.export(..., dynamo=False, opset_version=17)``, then
onnxruntime's BASIC offline optimization (constant folding and redundant-node removal; standard ONNX
ops only, unused opset imports dropped), then metadata.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from factory.core.errors import FactoryError
from factory.runtime.position import FRAME_NAME, POSITION_NAME, whole_photo_feeds

INPUT_NAME = "image"
OUTPUT_NAME = "edited"
OPSET = 17
#: ``EditorModule``'s attribute holding the output curves (its ONNX nodes' name scope)
CURVES_SCOPE = "curves"
INPUT_CONTRACT = {
    "name": INPUT_NAME,
    "dtype": "float32",
    "layout": "NCHW",
    "channels": "RGB",
    "value_range": [-1.0, 1.0],
    "to_model": "pixel / 127.5 - 1",
    "dynamic_axes": ["batch", "height", "width"],
}
#: the second input of an editor with a screen (``EditorModule``, ``factory.runtime.position``)
POSITION_CONTRACT = {
    "name": POSITION_NAME,
    "dtype": "float32",
    "layout": "[batch or 1, 2, height, width]",
    "value": "the row and the column of each pixel in the photo, divided by the photo's short side (a tile adds "
             "its offset)",
}
#: the input of an editor with a lens basis (``EditorModule``, ``factory.runtime.position``), after ``position``
FRAME_CONTRACT = {
    "name": FRAME_NAME,
    "dtype": "float32",
    "layout": "[batch or 1, 2, height, width]",
    "value": "the row and the column of each pixel's centre as fractions of the photo's height and width, from -1 "
             "at its top (left) edge to 1 at its bottom (right) edge (a whole photo: (i + 0.5) * 2 / size - 1)",
}
OUTPUT_CONTRACT = {
    "name": OUTPUT_NAME,
    "dtype": "float32",
    "layout": "NCHW",
    "channels": "RGB",
    "value_range": [-1.0, 1.0],
    "to_pixels": "round(clip((y + 1) * 127.5, 0, 255))",
}


class EditorModule(nn.Module):
    """A generator with the concept's text baked in: ``forward(image) -> edited``.

    A generator that reads screen waves (``screen_waves``) also takes ``position`` [B or 1, 2, H, W]: each pixel's
    (row, col) as a fraction of the photo's short side (``position_grid``), so a tile passes its place and a photo
    of any size gets the screen at the scale the teacher draws it (scaled here by the generator's ``screen_size``).
    A generator with a lens basis (``lens_basis``) also takes ``frame`` [B or 1, 2, H, W]: each pixel's place as a
    fraction of the photo's height and width (``frame_grid``), so a tile gets its part of the photo's vignette.
    ``inputs``: the graph's input names in order; missing extra inputs default to a whole photo.
    """

    def __init__(self, generator: nn.Module, text_tokens: torch.Tensor | None = None,
                 text_mask: torch.Tensor | None = None, curves: nn.Module | None = None) -> None:
        super().__init__()
        self.generator = generator
        self.curves = curves  # output calibration (base_gan.output_curves.OutputCurves) after the generator, or None
        self.stride = int(getattr(generator, "stride", 16))
        self.has_text = text_tokens is not None
        if self.has_text:
            mask = text_mask if text_mask is not None else torch.ones(text_tokens.shape[:2], dtype=torch.bool)
            self.register_buffer("text_tokens", text_tokens.detach().float().clone())
            self.register_buffer("text_mask", mask.detach().bool().clone())
        config = getattr(generator, "config", None)
        self.inputs = editor_inputs(generator)
        self.takes_position = POSITION_NAME in self.inputs
        if self.takes_position and not getattr(config, "screen_size", None):
            raise FactoryError("the generator reads screen waves but does not say the image size they were fitted "
                               "at (screen_size)")
        self.screen_size = float(config.screen_size) if self.takes_position else 1.0

    def forward(self, image: torch.Tensor, *places: torch.Tensor) -> torch.Tensor:
        extra = whole_photo_places(self.inputs, image, places)
        if self.takes_position:
            extra["position"] = extra["position"] * self.screen_size
        if self.has_text:
            out = self.generator(image, self.text_tokens, self.text_mask, **extra)
        else:
            out = self.generator(image, **extra)
        return self.curves(out, image) if self.curves is not None else out



def editor_inputs(generator: nn.Module) -> list[str]:
    """The input names of ``generator``'s editor graph: the image, then ``position`` with screen waves, then
    ``frame`` with a lens basis."""
    config = getattr(generator, "config", None)
    return [INPUT_NAME, *([POSITION_NAME] if getattr(config, "screen_waves", None) else []),
            *([FRAME_NAME] if getattr(config, "lens_basis", False) else [])]


def whole_photo_places(inputs: list[str], image: torch.Tensor, places: tuple[torch.Tensor, ...]
                       ) -> dict[str, torch.Tensor]:
    """The generator's keyword arguments for the extra ``inputs`` (after the image): ``places`` as given, the rest
    those of a whole photo."""
    names = inputs[1:]
    if len(places) > len(names):
        raise FactoryError(f"{len(places)} place inputs for an editor that takes {names or 'none'}")
    given = dict(zip(names, places))
    missing = whole_photo_feeds([n for n in names if n not in given], *image.shape[-2:])
    return {**given, **{k: torch.from_numpy(v) for k, v in missing.items()}}


def export_inputs(inputs: list[str], size: int) -> tuple[tuple[torch.Tensor, ...], dict[str, dict[int, str]]]:
    """(the tracing inputs of a graph with the input names ``inputs``: a zero [1, 3, size, size] image, then a whole
    photo's places; the dynamic axes of those places)."""
    places = whole_photo_feeds(inputs[1:], size, size)
    return ((torch.zeros(1, 3, size, size), *map(torch.from_numpy, places.values())),
            {name: {0: f"{name}_batch", 2: "height", 3: "width"} for name in places})


def merge_adapter(model: nn.Module, adapter_dir: Path) -> nn.Module:
    """``model`` with the peft LoRA adapter in ``adapter_dir`` merged into its weights (``model`` is modified)."""
    from factory.lora.adapters import load_adapter, merge

    return merge(load_adapter(model, adapter_dir)).eval()


def text_condition(
    model: nn.Module, instruction: str, cache_dir: Path | None
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Token embeddings and mask for ``instruction`` with the model's text encoder (None when it takes no text)."""
    if not getattr(model, "takes_text", False):
        return None
    from factory.text.encoder import TextEncoder

    return TextEncoder.from_name(model.config.text_encoder, cache_dir=cache_dir).tokens([instruction])


def export_onnx(module: nn.Module, path: Path, size: int, dynamic: bool = True, mobile_rewrites: bool = True) -> Path:
    """Export ``module`` (image -> image) to ``path``: legacy exporter, opset 17, ORT BASIC optimization,
    static-dim folding and (``mobile_rewrites``) the exact ``delegate_friendly`` rewrites."""
    from onnxruntime.tools.onnx_model_utils import optimize_model

    module = module.eval()
    names = list(getattr(module, "inputs", [INPUT_NAME]))  # a screen's positions, a lens basis's frame: more inputs
    dummy, place_axes = export_inputs(names, size)
    axes = {"batch": 0, "height": 2, "width": 3}
    dynamic_axes = (
        {INPUT_NAME: {v: k for k, v in axes.items()}, OUTPUT_NAME: {v: k for k, v in axes.items()}, **place_axes}
        if dynamic else None
    )
    path = Path(path)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        raw = Path(tmp) / "raw.onnx"
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # TracerWarnings on shape checks that are constant by design
            torch.onnx.export(
                module,
                dummy,
                str(raw),
                dynamo=False,
                opset_version=OPSET,
                input_names=names,
                output_names=[OUTPUT_NAME],
                dynamic_axes=dynamic_axes,
                do_constant_folding=True,
            )
        optimized = Path(tmp) / "optimized.onnx"
        optimize_model(raw, optimized)
        model = onnx.load(str(optimized))
        from factory.export.rewrites import delegate_friendly, drop_unused_opsets, fold_static_dims

        if fold_static_dims(model):  # then fold what became constant (the text keys/values per head)
            onnx.save(model, str(raw))
            optimize_model(raw, optimized)
            model = onnx.load(str(optimized))
        if mobile_rewrites:
            delegate_friendly(model)
        drop_unused_opsets(model)
        model.producer_name = "editfactory"
        onnx.checker.check_model(model)
        onnx.save(model, str(path))
    return path


def set_metadata(path: Path, props: dict[str, Any]) -> None:
    """Replace the model's metadata_props with ``props`` (values as strings)."""
    model = onnx.load(str(path))
    del model.metadata_props[:]
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = str(key), str(value)
    onnx.save(model, str(path))


@dataclass
class Parity:
    max_abs: float
    mean_abs: float
    shapes: list[list[int]]

    def to_dict(self) -> dict[str, Any]:
        return {"max_abs": self.max_abs, "mean_abs": self.mean_abs, "shapes": self.shapes}


@torch.no_grad()
def torch_vs_onnx(
    module: nn.Module, onnx_path: Path, batches: Sequence[np.ndarray], threads: int | None = None
) -> Parity:
    """Largest and mean absolute difference between the torch module and onnxruntime on ``batches`` (NCHW)."""
    from factory.runtime.editor import make_session

    session = make_session(onnx_path, threads)
    worst, total, count, shapes = 0.0, 0.0, 0, []
    for x in batches:
        x = np.ascontiguousarray(x, dtype=np.float32)
        ref = module(torch.from_numpy(x)).numpy()
        feeds = {session.get_inputs()[0].name: x}
        feeds.update(whole_photo_feeds(getattr(module, "inputs", [INPUT_NAME])[1:], *x.shape[-2:]))
        got = session.run(None, feeds)[0]
        if got.shape != ref.shape:
            raise FactoryError(f"{onnx_path.name}: output shape {got.shape} differs from torch's {ref.shape}")
        diff = np.abs(got.astype(np.float64) - ref)
        worst, total, count = max(worst, float(diff.max())), total + float(diff.sum()), count + diff.size
        shapes.append(list(x.shape))
    return Parity(max_abs=worst, mean_abs=total / max(count, 1), shapes=shapes)
