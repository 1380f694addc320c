"""Smaller editors: static int8 (QDQ), fp16, and onnxruntime-mobile ``.ort`` files.

* int8: ``quant_pre_process`` (ORT optimization + ONNX shape inference) then ``quantize_static`` in
  QDQ format, calibrated (MinMax) on the concept's own source images. Activations uint8, weights
  int8 per output channel: the layout NNAPI's quantized Conv/MatMul take (uint8 input, int8
  per-channel symmetric weights) and that x86 VNNI / ARM dot-product kernels run. Softmax outputs
  get NNAPI's fixed quantization (scale 1/256, zero point 0). Every op type onnxruntime quantizes is
  quantized: restricting the int8 graph to the ops NNAPI takes as QDQ groups does not make NNAPI take
  it whole (a float op between quantized neighbours is still a QDQ group, e.g. every LeakyRelu
  between two convs), while it costs CPU int8 fusions. The int8 editor is for CPUs (ARM/x86 int8
  kernels) and size; fp32/fp16 are the delegate graphs (see ``mobile_check``). Symbolic shape
  inference is skipped: the editor's height/width are symbolic and the strided-conv / x2-resize
  arithmetic (``floor((h-1)/2)+1`` then ``2*...``) cannot be proven equal without knowing h is a
  multiple of 16; ONNX's own shape inference is enough for a conv network.
* fp16: onnxruntime's ``transformers.float16.convert_float_to_float16`` (ships with onnxruntime;
  no onnxconverter-common needed), float32 input/output kept so every editor has the same contract.
* ``.ort``: ``python -m onnxruntime.tools.convert_onnx_models_to_ort`` with the ``Runtime``
  optimization style (the tool's advice for NNAPI/CoreML), which also writes the
  ``required_operators.config`` a reduced onnxruntime-mobile build needs.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import onnx

from factory.core.errors import FactoryError
from factory.export.onnx_export import CURVES_SCOPE
from factory.runtime.position import POSITION_NAME, whole_photo_feeds


def _calibration_reader_class():
    from onnxruntime.quantization import CalibrationDataReader

    class ImageCalibrationReader(CalibrationDataReader):
        """Feeds images one at a time as ``{input_name: [1, 3, H, W] float32}`` to the calibrator (and the
        ``places`` inputs, a screen's ``position`` or a lens basis's ``frame``: each image a whole photo)."""

        def __init__(self, input_name: str, images: Sequence[np.ndarray], places: Sequence[str] = ()) -> None:
            self.input_name = input_name
            self.images = list(images)
            self.places = list(places)
            self._next = 0

        def get_next(self) -> dict[str, np.ndarray] | None:
            if self._next >= len(self.images):
                return None
            x = np.ascontiguousarray(self.images[self._next], dtype=np.float32)
            self._next += 1
            x = x[None] if x.ndim == 3 else x
            return {self.input_name: x, **whole_photo_feeds(self.places, *x.shape[-2:])}

        def rewind(self) -> None:
            self._next = 0

    return ImageCalibrationReader


def calibration_reader(input_name: str, images: Sequence[np.ndarray], places: Sequence[str] = ()):
    """A ``CalibrationDataReader`` over NCHW float32 images ([3, H, W] or [1, 3, H, W]) in the model's range,
    with whole-photo values for the ``places`` inputs."""
    return _calibration_reader_class()(input_name, images, places)


def quantize_int8(fp32_path: Path, out_path: Path, calibration: Sequence[np.ndarray], per_channel: bool = True) -> Path:
    """Static QDQ int8 copy of ``fp32_path`` written to ``out_path`` (not atomically: use a temp folder)."""
    import logging

    if not calibration:
        raise FactoryError("int8 quantization needs at least one calibration image")
    inputs = [i.name for i in onnx.load(str(fp32_path), load_external_data=False).graph.input]
    input_name, places = inputs[0], inputs[1:]
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer logs per-tensor notes (e.g. rank-1 constants) on the root logger
    try:
        return _quantize(fp32_path, out_path, calibration, per_channel, input_name, places)
    finally:
        root.setLevel(level)


def _quantize(fp32_path: Path, out_path: Path, calibration: Sequence[np.ndarray], per_channel: bool,
              input_name: str, places: Sequence[str] = ()) -> Path:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quant_pre_process, quantize_static

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        model = onnx.load(str(prepared))
        # NNAPI runs an int8 Softmax only with output scale 1/256 and zero point 0 (its [0, 1) range)
        softmax_out = [n.output[0] for n in model.graph.node if n.op_type == "Softmax"]
        overrides = {name: [{"scale": np.array(1.0 / 256, np.float32), "zero_point": np.array(0, np.uint8)}]
                     for name in softmax_out}
        quantize_static(str(prepared), str(out_path), calibration_reader(input_name, calibration, places),
                        quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, per_channel=per_channel,
                        calibrate_method=CalibrationMethod.MinMax,
                        nodes_to_exclude=(phase_nodes(model) if POSITION_NAME in places else [])
                        + curve_nodes(model) or None,
                        extra_options={"TensorQuantOverrides": overrides})
    return out_path


def curve_nodes(model: onnx.ModelProto) -> list[str]:
    """The nodes of the output curves (``EditorModule.curves``), which stay float: their ramps span the knots
    (0-16), so 8 bits would move every output level by a step or more."""
    return [n.name for n in model.graph.node if n.name.startswith(f"/{CURVES_SCOPE}/")]


def phase_nodes(model: onnx.ModelProto) -> list[str]:
    """The nodes that stay float in an editor with a screen: from the position input through the Sin of the
    screen's waves and a lattice's distance planes (phases reach hundreds of radians, so 8 bits would leave nothing
    of the sine) up to the Add where the waves' conv meets the image's first conv, and that conv. The dots' edges
    are where that sum crosses a threshold, so 8 bits there move them: on the validation concept newsprint, int8
    vs fp32 went from 23.1 dB with only the phases float to 38.4 dB (the check needs 30); what follows the Add is
    quantized as usual."""
    producer = {out: node for node in model.graph.node for out in node.output}
    frontier, names = {POSITION_NAME}, []
    for node in model.graph.node:  # topologically sorted
        if not frontier.intersection(node.input):
            continue
        names.append(node.name)
        others = [producer[i] for i in node.input
                  if i in producer and i not in frontier and producer[i].op_type != "Constant"]
        if node.op_type == "Add" and others:  # the first layer's sum: its other operand's conv stays float too
            names += [other.name for other in others if other.name not in names]
        else:  # the position's own arithmetic (a lattice's planes: Sin, Conv, Mul, Sub, Sqrt of it alone)
            frontier.update(node.output)
    return names


def convert_fp16(fp32_path: Path, out_path: Path) -> Path:
    """fp16 weights and compute, float32 input and output (Cast nodes at the edges)."""
    from onnxruntime.transformers.float16 import convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = convert_float_to_float16(onnx.load(str(fp32_path)), keep_io_types=True)
    wrapped = OnnxModel(model)
    wrapped.topological_sort()  # the input Casts are appended last; ONNX requires producers first
    onnx.checker.check_model(wrapped.model)
    onnx.save(wrapped.model, str(out_path))
    return out_path


def convert_to_ort(models: Iterable[Path], out_dir: Path) -> tuple[list[Path], Path]:
    """``.ort`` files for ``models`` (same stems) in ``out_dir`` plus their ``required_operators.config``."""
    models = [Path(m) for m in models]
    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        dst = Path(tmp) / "out"
        src.mkdir()
        for m in models:
            shutil.copy2(m, src / m.name)
        cmd = [sys.executable, "-m", "onnxruntime.tools.convert_onnx_models_to_ort", str(src),
               "--output_dir", str(dst), "--optimization_style", "Runtime"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            last = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or ["no output"]
            raise FactoryError(f".ort conversion failed: {last[0]}")
        outputs = []
        for m in models:
            produced = dst / f"{m.stem}.with_runtime_opt.ort"
            if not produced.is_file():
                raise FactoryError(f".ort conversion did not produce {produced.name}")
            target = out_dir / f"{m.stem}.ort"
            shutil.move(str(produced), target)
            outputs.append(target)
        configs = sorted(dst.glob("required_operators*.config"))
        if not configs:
            raise FactoryError(".ort conversion did not write required_operators.config")
        config = out_dir / "required_operators.config"
        shutil.move(str(configs[0]), config)
    return outputs, config
