"""Will NNAPI (Android) and CoreML (iOS) take an editor graph whole? A structured answer.

This runs onnxruntime's own mobile usability checker (``onnxruntime.tools.check_onnx_model_mobile_usability``,
i.e. ``mobile_helpers.usability_checker``) step by step instead of parsing its log: the model is
optimized at the BASIC level like the tool does (what an ``.ort`` conversion also does), shapes are
inferred, and the tool's partitioner estimates, per execution provider, how many nodes and partitions
the delegate would take, using the operator tables shipped with onnxruntime
(``nnapi_supported_ops.md``, ``coreml_supported_{mlprogram,neuralnetwork}_ops.md``).

The tool checks operator *types* only and prints the tables' caveats unchecked. The caveats that
decide real graphs are checked here, as the EPs' op builders in onnxruntime's source state them:

* NNAPI MatMul runs as FULLY_CONNECTED (A 2-D, B a constant 2-D, also as a QDQ int8 group) or, float
  only, as a batch MatMul of equal-rank (>= 3) inputs with equal leading dims. A [B, N, C] token
  tensor times a weight (a Linear layer on tokens) is neither.
* NNAPI Softmax takes 2-D or 4-D input only; as a QDQ int8 group its output must have scale 1/256
  and zero point 0.
* NNAPI takes an int8 QDQ node unit (DequantizeLinear -> op -> QuantizeLinear) only for Conv, MatMul,
  Gemm, Add, Mul, Transpose, Reshape, Softmax, Concat, Resize and AveragePool (its builders reject
  QDQ groups of any other op, e.g. LeakyRelu, Slice, ReduceMean, Sub, Div, Sqrt, Tanh, Clip).
* NNAPI Clip is RELU1 or RELU6 only (min/max -1/1 or 0/6); Cast only to float32/int32.
* Pad: NNAPI and CoreML take only ``mode=constant`` (reflect/edge padding falls off).
* Cast for CoreML: only between float/int32/int64/bool (a uint8 image Cast at the graph edges
  falls off both delegates).
* CoreML NeuralNetwork MatMul: A and B 2-D and B constant (self-attention's ``q @ k^T`` is not).
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
    """Copy ``src`` with its image input fixed to ``shape`` (a screen's position input to [1, 2, H, W]) and the
    output shapes inferred."""
    from onnxruntime.tools.onnx_model_utils import fix_output_shapes, make_input_shape_fixed

    model = onnx.load(str(src))
    make_input_shape_fixed(model.graph, model.graph.input[0].name, list(shape))
    for extra in model.graph.input[1:]:
        make_input_shape_fixed(model.graph, extra.name, [1, 2, *shape[2:]])
    fix_output_shapes(model)
    onnx.save(model, str(dst))
    return dst


@dataclass
class _Graph:
    """What the caveat rules look at: constants, shapes, producers and consumers of every value."""

    constants: dict[str, Any]
    shapes: dict[str, list[int | None]]
    producer: dict[str, Any]
    consumers: dict[str, list[Any]]

    @classmethod
    def of(cls, graph) -> _Graph:
        from onnx import numpy_helper

        constants: dict[str, Any] = {t.name: t for t in graph.initializer}
        for n in graph.node:
            if n.op_type == "Constant":
                constants.update({o: n.attribute[0].t for o in n.output if n.attribute and n.attribute[0].t})
        shapes: dict[str, list[int | None]] = {}
        for v in [*graph.input, *graph.output, *graph.value_info]:
            if v.type.HasField("tensor_type") and v.type.tensor_type.HasField("shape"):
                dims = v.type.tensor_type.shape.dim
                shapes[v.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
        for name, t in constants.items():
            shapes.setdefault(name, list(t.dims))
        producer = {o: n for n in graph.node for o in n.output}
        consumers: dict[str, list[Any]] = {}
        for n in graph.node:
            for i in n.input:
                consumers.setdefault(i, []).append(n)
        _ = numpy_helper
        return cls(constants, shapes, producer, consumers)

    def value(self, name: str):
        from onnx import numpy_helper

        t = self.constants.get(name)
        return None if t is None else numpy_helper.to_array(t)

    def from_dq(self, name: str):
        """The DequantizeLinear producing ``name``, if any."""
        p = self.producer.get(name)
        return p if p is not None and p.op_type == "DequantizeLinear" else None

    def is_constant(self, name: str) -> bool:
        dq = self.from_dq(name)
        return name in self.constants or (dq is not None and dq.input[0] in self.constants)

    def in_qdq_group(self, node) -> bool:
        """Inputs from DequantizeLinear and every output consumer a QuantizeLinear (a QDQ node unit)."""
        outs = [c for o in node.output for c in self.consumers.get(o, [])]
        return (
            self.from_dq(node.input[0]) is not None and bool(outs) and all(c.op_type == "QuantizeLinear" for c in outs)
        )

    def rank(self, name: str) -> int | None:
        shape = self.shapes.get(name)
        return None if shape is None else len(shape)


def _checker_class():
    from onnxruntime.tools.mobile_helpers.usability_checker import _SupportedOpsChecker

    class CaveatAwareChecker(_SupportedOpsChecker):
        """The tool's table lookup plus the caveats listed in the module docstring."""

        def __init__(self, filename: str, ep_key: str, graph: _Graph) -> None:
            super().__init__(filename)
            self.ep_key = ep_key
            self.graph = graph

        def in_table(self, node) -> bool:
            return super().is_op_supported(node)

        def is_op_supported(self, node) -> bool:
            return self.in_table(node) and _caveat_violation(self.ep_key, node, self.graph) is None

    return CaveatAwareChecker


def _attr(node, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


# Op types whose int8 QDQ node units NNAPI's builders take (QuantizedOpType in the NNAPI EP's helper.h);
# any other op between DequantizeLinear and QuantizeLinear is refused as a QDQ group.
NNAPI_QDQ_OPS = frozenset(
    {"Conv", "MatMul", "Gemm", "Add", "Mul", "Transpose", "Reshape", "Softmax", "Concat", "Resize", "AveragePool"}
)


def _caveat_violation(ep_key: str, node, g: _Graph) -> str | None:
    """``"label: reason"`` when ``node`` breaks a caveat of ``ep_key`` (see the module docstring), else None."""
    op = node.op_type
    if (
        ep_key == "nnapi"
        and op not in NNAPI_QDQ_OPS
        and op not in ("QuantizeLinear", "DequantizeLinear")
        and g.in_qdq_group(node)
    ):
        return (
            f"ai.onnx:{op} (int8 QDQ): between quantized neighbours this op is a QDQ node unit, and "
            f"NNAPI's EP takes those only for {', '.join(sorted(NNAPI_QDQ_OPS))}"
        )
    if op == "Pad":
        mode = _attr(node, "mode", b"constant")
        mode = mode.decode() if isinstance(mode, bytes) else str(mode)
        if mode != "constant":
            return f"ai.onnx:Pad (mode={mode}): only constant padding is supported"
    if op == "Cast":
        to = int(_attr(node, "to", 0))
        name = onnx.TensorProto.DataType.Name(to)
        allowed = (
            {onnx.TensorProto.FLOAT, onnx.TensorProto.INT32}
            if ep_key == "nnapi"
            else {
                onnx.TensorProto.FLOAT,
                onnx.TensorProto.FLOAT16,
                onnx.TensorProto.INT32,
                onnx.TensorProto.INT64,
                onnx.TensorProto.BOOL,
            }
        )
        if to not in allowed:
            return f"ai.onnx:Cast (to={name}): this EP cannot cast to {name}"
    if (
        op == "ConvTranspose"
        and ep_key.startswith("coreml")
        and (any(_attr(node, "output_padding", []) or []) or _attr(node, "output_shape") is not None)
    ):
        return "ai.onnx:ConvTranspose (output_padding): only default output_padding is supported"
    if op == "MatMul":
        a, b = g.shapes.get(node.input[0]), g.shapes.get(node.input[1])
        ra, rb = g.rank(node.input[0]), g.rank(node.input[1])
        b_const = g.is_constant(node.input[1])
        if ep_key == "coreml_neuralnetwork" and not (ra == 2 and rb == 2 and b_const):
            return (
                f"ai.onnx:MatMul (A {ra}-D, B {rb}-D{'' if b_const else ' not constant'}): the NeuralNetwork "
                "format takes only 2-D A x constant 2-D B (MLProgram takes any MatMul)"
            )
        if ep_key == "nnapi":
            qdq = g.in_qdq_group(node)
            batch = (
                not qdq
                and ra is not None
                and ra >= 3
                and ra == rb
                and a is not None
                and b is not None
                and a[:-2] == b[:-2]
            )
            if not batch and not (ra == 2 and rb == 2 and b_const):
                kind = "int8 QDQ, " if qdq else ""
                return (
                    f"ai.onnx:MatMul ({kind}A {ra}-D, B {rb}-D{'' if b_const else ' not constant'}): NNAPI runs "
                    "MatMul as FULLY_CONNECTED (2-D A x constant 2-D B) or, float only, as a batch MatMul of "
                    "equal-rank inputs"
                )
    if op == "Softmax" and ep_key == "nnapi":
        r = g.rank(node.input[0])
        if r not in (2, 4):
            return f"ai.onnx:Softmax ({r}-D): NNAPI's softmax takes 2-D or 4-D input"
        if g.in_qdq_group(node):
            q = g.consumers[node.output[0]][0]
            scale, zp = g.value(q.input[1]), g.value(q.input[2]) if len(q.input) > 2 else 0
            if scale is None or abs(float(scale) - 1 / 256) > 1e-9 or int(zp if zp is not None else 0) != 0:
                return "ai.onnx:Softmax (int8 output scale): NNAPI needs output scale 1/256 and zero point 0"
    if op == "Clip" and ep_key == "nnapi":
        lo = g.value(node.input[1]) if len(node.input) > 1 and node.input[1] else None
        hi = g.value(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        bounds = (None if lo is None else float(lo), None if hi is None else float(hi))
        if bounds not in ((0.0, 6.0), (-1.0, 1.0)):
            return f"ai.onnx:Clip {bounds}: NNAPI clips only as RELU1 (-1, 1) or RELU6 (0, 6)"
    return None


def _ep_result(model: onnx.ModelProto, key: str) -> EPResult:
    from onnxruntime.tools.mobile_helpers import usability_checker as uc

    display, table, max_rank = EPS[key]
    table_path = Path(uc.__file__).parent / table
    checker = _checker_class()(str(table_path), key, _Graph.of(model.graph))
    info = uc.check_partitioning(model.graph, checker, require_fixed_input_sizes=True, max_rank=max_rank)
    counts: Counter[str] = Counter()
    reasons: dict[str, str] = {}
    for node in model.graph.node:
        if not checker.in_table(node):
            label = f"{node.domain or 'ai.onnx'}:{node.op_type}"
            why = KNOWN_REASONS.get((key, label), f"not in onnxruntime's {display} operator table ({table})")
        else:
            violation = _caveat_violation(key, node, checker.graph)
            if violation is None:
                continue
            label, why = violation.split(": ", 1)
        counts[label] += 1
        reasons[label] = why
    return EPResult(
        ep=display,
        nodes=info.num_nodes,
        supported_nodes=info.num_supported_nodes,
        partitions=info.num_partitions,
        partition_sizes=[len(g) for g in info.supported_groups],
        suitability=info.suitability().name,
        unsupported_ops=dict(counts),
        reasons=reasons,
        dynamic_shape_nodes=info.nodes_unsupported_due_to_dynamic_input,
        unsupported_rank_nodes=info.num_unsupported_nodes_due_to_rank,
        caveats=checker.get_caveats(),
    )


def check_mobile(
    model_path: str | Path, eps: tuple[str, ...] = tuple(EPS), optimize: bool = True
) -> dict[str, EPResult]:
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
