"""Will NNAPI (Android) and CoreML (iOS) take an editor graph whole? A structured answer.

This runs onnxruntime's own mobile usability checker (``onnxruntime.tools.check_onnx_model_mobile_usability``,
i.e. ``mobile_helpers.usability_checker``) step by step instead of parsing its log: the model is
optimized at the BASIC level like the tool does (what an ``.ort`` conversion also does), shapes are
inferred, and the tool's partitioner estimates, per execution provider, how many nodes and partitions
the delegate would take, using the operator tables shipped with onnxruntime
(``nnapi_supported_ops.md``, ``coreml_supported_{mlprogram,neuralnetwork}_ops.md``).

The tool checks operator *types* only and prints the tables' caveats unchecked. A few caveats decide
real graphs, so they are checked here from the EPs' op builders (onnxruntime source):

* Pad: NNAPI and CoreML take only ``mode=constant`` (reflect/edge padding falls off).
* Cast: NNAPI casts only to float32/int32; CoreML only between float/int32/int64/bool types
  (a uint8 image Cast at the graph edges falls off both).
* MatMul, CoreML NeuralNetwork format: input B must be a constant (attention's ``q @ k^T`` is not).
* ConvTranspose, CoreML: only default ``output_padding`` and no ``output_shape``.

Delegates need fixed shapes (NNAPI takes no node with a dynamic input), so callers check a copy of
the model with its input fixed to the size an app would run (``fixed_input_shape``).
"""

from __future__ import annotations

import logging
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import onnx

EPS = {  # result key -> (display name, operator table, max rank)
    "nnapi": ("NNAPI", "nnapi_supported_ops.md", 999),
    "coreml_mlprogram": ("CoreML MLProgram", "coreml_supported_mlprogram_ops.md", 5),
    "coreml_neuralnetwork": ("CoreML NeuralNetwork", "coreml_supported_neuralnetwork_ops.md", 5),
}

# Why a known op is off a delegate, and why it stays (shown next to the op in card.json).
KNOWN_REASONS = {
    ("coreml_neuralnetwork", "ai.onnx:ReduceMean"):
        "CoreML's legacy NeuralNetwork format has no ReduceMean builder; it comes from TokenNorm "
        "(base_gan/attention.py: LayerNorm as ReduceMean/Sub/Mul/Sqrt/Div, chosen because NNAPI lacks "
        "LayerNormalization). MLProgram (iOS 15+) takes it; a MatMul with a constant 1/C column "
        "would also compute the mean",
    ("coreml_neuralnetwork", "ai.onnx:MatMul"):
        "CoreML NeuralNetwork needs a constant B in MatMul; self-attention multiplies two activations "
        "(q @ k^T, p @ v), which only the MLProgram format supports",
    ("coreml_mlprogram", "ai.onnx:QuantizeLinear"):
        "CoreML does not run QDQ int8 graphs; on iOS use the fp32 or fp16 editor",
    ("coreml_mlprogram", "ai.onnx:DequantizeLinear"):
        "CoreML does not run QDQ int8 graphs; on iOS use the fp32 or fp16 editor",
    ("coreml_neuralnetwork", "ai.onnx:QuantizeLinear"):
        "CoreML does not run QDQ int8 graphs; on iOS use the fp32 or fp16 editor",
    ("coreml_neuralnetwork", "ai.onnx:DequantizeLinear"):
        "CoreML does not run QDQ int8 graphs; on iOS use the fp32 or fp16 editor",
    ("nnapi", "ai.onnx:InstanceNormalization"): "NNAPI has no instance normalization (pix2pix's norm layer)",
    ("nnapi", "ai.onnx:ConvTranspose"): "NNAPI EP has no ConvTranspose builder (pix2pix's upsampling)",
    ("nnapi", "ai.onnx:LayerNormalization"): "NNAPI has no LayerNormalization",
    ("nnapi", "ai.onnx:Erf"): "NNAPI has no Erf (exact GELU)",
    ("nnapi", "ai.onnx:Where"): "NNAPI EP has no Where builder",
}


@dataclass
class EPResult:
    """How one execution provider would partition the graph."""

    ep: str
    nodes: int
    supported_nodes: int
    partitions: int
    partition_sizes: list[int]
    suitability: str  # the tool's verdict: YES / MAYBE / NO
    unsupported_ops: dict[str, int] = field(default_factory=dict)  # "domain:Op[ (detail)]" -> node count
    reasons: dict[str, str] = field(default_factory=dict)  # same keys -> why
    dynamic_shape_nodes: int = 0
    unsupported_rank_nodes: int = 0
    caveats: list[str] = field(default_factory=list)  # the table's notes for ops it takes (not all checkable)

    @property
    def takes_whole(self) -> bool:
        return self.partitions == 1 and self.supported_nodes == self.nodes

    def summary(self) -> str:
        if self.takes_whole:
            return f"{self.ep}: whole graph ({self.nodes} nodes, 1 partition)"
        off = ", ".join(f"{op} x{n}" for op, n in sorted(self.unsupported_ops.items())) or "dynamic shapes"
        return (f"{self.ep}: {self.supported_nodes}/{self.nodes} nodes in {self.partitions} partition(s); "
                f"off the delegate: {off}")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "takes_whole": self.takes_whole, "summary": self.summary()}


def fixed_input_shape(src: Path, dst: Path, shape: list[int]) -> Path:
    """Copy ``src`` with its (single) image input fixed to ``shape`` and the output shapes inferred."""
    from onnxruntime.tools.onnx_model_utils import fix_output_shapes, make_input_shape_fixed

    model = onnx.load(str(src))
    make_input_shape_fixed(model.graph, model.graph.input[0].name, list(shape))
    fix_output_shapes(model)
    onnx.save(model, str(dst))
    return dst


def _checker_class():
    from onnxruntime.tools.mobile_helpers.usability_checker import _SupportedOpsChecker

    class CaveatAwareChecker(_SupportedOpsChecker):
        """The tool's table lookup plus the caveats listed in the module docstring; remembers reasons."""

        def __init__(self, filename: str, ep_key: str, constants: set[str]) -> None:
            super().__init__(filename)
            self.ep_key = ep_key
            self.constants = constants

        def in_table(self, node) -> bool:
            return super().is_op_supported(node)

        def is_op_supported(self, node) -> bool:
            return self.in_table(node) and _caveat_violation(self.ep_key, node, self.constants) is None

    return CaveatAwareChecker


def _attr(node, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _caveat_violation(ep_key: str, node, constants: set[str]) -> str | None:
    op = node.op_type
    if op == "Pad":
        mode = _attr(node, "mode", b"constant")
        mode = mode.decode() if isinstance(mode, bytes) else str(mode)
        if mode != "constant":
            return f"ai.onnx:Pad (mode={mode}): only constant padding is supported"
    if op == "Cast":
        to = int(_attr(node, "to", 0))
        name = onnx.TensorProto.DataType.Name(to)
        allowed = {onnx.TensorProto.FLOAT, onnx.TensorProto.INT32} if ep_key == "nnapi" else {
            onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.INT32, onnx.TensorProto.INT64,
            onnx.TensorProto.BOOL}
        if to not in allowed:
            return f"ai.onnx:Cast (to={name}): this EP cannot cast to {name}"
    if op == "MatMul" and ep_key == "coreml_neuralnetwork" and node.input[1] not in constants:
        return "ai.onnx:MatMul (B not constant): the NeuralNetwork format needs a constant B"
    if op == "ConvTranspose" and ep_key.startswith("coreml") and (
            any(_attr(node, "output_padding", []) or []) or _attr(node, "output_shape") is not None):
        return "ai.onnx:ConvTranspose (output_padding): only default output_padding is supported"
    return None


def _constant_names(graph) -> set[str]:
    names = {t.name for t in graph.initializer}
    names.update(o for n in graph.node if n.op_type == "Constant" for o in n.output)
    return names


def _ep_result(model: onnx.ModelProto, key: str) -> EPResult:
    from onnxruntime.tools.mobile_helpers import usability_checker as uc

    display, table, max_rank = EPS[key]
    table_path = Path(uc.__file__).parent / table
    checker = _checker_class()(str(table_path), key, _constant_names(model.graph))
    info = uc.check_partitioning(model.graph, checker, require_fixed_input_sizes=True, max_rank=max_rank)
    counts: Counter[str] = Counter()
    reasons: dict[str, str] = {}
    for node in model.graph.node:
        if not checker.in_table(node):
            label = f"{node.domain or 'ai.onnx'}:{node.op_type}"
            why = KNOWN_REASONS.get((key, label), f"not in onnxruntime's {display} operator table ({table})")
        else:
            violation = _caveat_violation(key, node, checker.constants)
            if violation is None:
                continue
            label, why = violation.split(": ", 1)
            why = KNOWN_REASONS.get((key, label.split(" ")[0]), why) if label.startswith("ai.onnx:MatMul") else why
        counts[label] += 1
        reasons[label] = why
    return EPResult(
        ep=display, nodes=info.num_nodes, supported_nodes=info.num_supported_nodes,
        partitions=info.num_partitions, partition_sizes=[len(g) for g in info.supported_groups],
        suitability=info.suitability().name, unsupported_ops=dict(counts), reasons=reasons,
        dynamic_shape_nodes=info.nodes_unsupported_due_to_dynamic_input,
        unsupported_rank_nodes=info.num_unsupported_nodes_due_to_rank,
        caveats=checker.get_caveats())


def check_mobile(model_path: str | Path, eps: tuple[str, ...] = tuple(EPS), optimize: bool = True) -> dict[str, EPResult]:
    """Partitioning of ``model_path`` (fixed input shape expected) for each EP key in ``eps``.

    ``optimize`` runs onnxruntime's BASIC optimization first, as the tool does. Turn it off for fp16
    graphs: on a CPU build it inlines fp16 LeakyRelu/Softmax into Less/Where/ReduceMax... because
    the CPU EP lacks fp16 kernels for them, which says nothing about the phone's delegate.
    """
    from onnxruntime.tools.onnx_model_utils import ModelProtoWithShapeInfo, optimize_model

    unknown = [e for e in eps if e not in EPS]
    if unknown:
        raise ValueError(f"unknown execution provider key(s) {unknown} (known: {', '.join(EPS)})")
    logging.getLogger("onnxruntime").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        optimized = Path(model_path)
        if optimize:
            optimized = Path(tmp) / "optimized.onnx"
            optimize_model(Path(model_path), optimized)  # BASIC level, as the tool and the .ort conversion do
        model = ModelProtoWithShapeInfo(optimized).model_with_shape_info
        return {key: _ep_result(model, key) for key in eps}
