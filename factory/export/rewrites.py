"""Exact ONNX graph rewrites applied at export: static-dim folding and the mobile-delegate layouts.

``fold_static_dims`` turns shape arithmetic on static dims into constants (so the baked-in text
keys/values fold); ``delegate_friendly`` reshapes token MatMuls to 2-D and 3-D Softmaxes to 4-D so
NNAPI's op builders take them (see ``mobile_check`` for the rules); ``drop_unused_opsets`` removes
the opset imports onnxruntime's optimizer adds. None changes a single output value.
"""

from __future__ import annotations

import numpy as np
import onnx


def drop_unused_opsets(model: onnx.ModelProto) -> None:
    """Keep only the opset imports the graph's nodes use (plus the default domain)."""
    used = {n.domain or "" for n in model.graph.node}
    keep = [o for o in model.opset_import if (o.domain or "") in used or (o.domain or "") == ""]
    del model.opset_import[:]
    model.opset_import.extend(keep)


def fold_static_dims(model: onnx.ModelProto) -> int:
    """Replace ``Gather(Shape(x), i)`` by a constant when dim ``i`` of ``x`` is static; returns how many.

    The traced attention computes its head width as ``q.shape[-1] // heads``; with dynamic height and
    width that is a Shape->Gather->Div chain although the channel count is fixed, which keeps the
    per-head slices of the baked-in text keys/values from folding into constants.
    """
    from onnx import helper, numpy_helper

    inferred = onnx.shape_inference.infer_shapes(model)
    dims = {v.name: [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
            for v in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]
            if v.type.HasField("tensor_type") and v.type.tensor_type.HasField("shape")}
    inits = {t.name: t for t in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    folded, keep = [], []
    for node in model.graph.node:
        shape_node = producer.get(node.input[0]) if node.op_type == "Gather" and node.input else None
        if (shape_node is not None and shape_node.op_type == "Shape" and node.input[1] in inits
                and shape_node.input[0] in dims):
            index = numpy_helper.to_array(inits[node.input[1]])
            bounds = {a.name: helper.get_attribute_value(a) for a in shape_node.attribute}
            shape = dims[shape_node.input[0]][bounds.get("start", 0):bounds.get("end")]
            if index.ndim == 0 and -len(shape) <= int(index) < len(shape) and shape[int(index)] is not None:
                folded.append(numpy_helper.from_array(np.array(shape[int(index)], np.int64), node.output[0]))
                continue
        keep.append(node)
    if folded:
        del model.graph.node[:]
        model.graph.node.extend(keep)
        model.graph.initializer.extend(folded)
    return len(folded)


def delegate_friendly(model: onnx.ModelProto) -> dict[str, int]:
    """Rewrite ``model`` in place so NNAPI's op builders take its token MatMuls and Softmaxes; returns counts.

    Numerically exact (only reshapes are added), valid for dynamic shapes:

    * ``MatMul(A [B, N, K], W)`` with a constant W ([K, D], or [1, K, D]: the cross-attention's
      folded text keys/values) becomes ``Reshape(A, [-1, K]) @ W2d`` (+ its bias Add, when that is
      the only consumer) and a Reshape back to ``[B, N, D]``: NNAPI runs it as FULLY_CONNECTED
      (2-D A x constant 2-D B), also as an int8 QDQ group. 3-D A falls off NNAPI otherwise.
    * ``Softmax`` over the last axis of a 3-D tensor [B, N, M] runs as a 4-D Softmax on [B, 1, N, M]
      between two Reshapes (NNAPI's softmax takes 2-D or 4-D input only).
    """
    from onnx import helper, numpy_helper

    inferred = onnx.shape_inference.infer_shapes(model)
    ranks = {v.name: len(v.type.tensor_type.shape.dim)
             for v in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]
             if v.type.HasField("tensor_type") and v.type.tensor_type.HasField("shape")}
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    consumers: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    new_inits: list = []
    counts = {"matmul_2d": 0, "softmax_4d": 0}
    taken: set[str] = set()

    def const(name: str, value: np.ndarray) -> str:
        new_inits.append(numpy_helper.from_array(value, name))
        return name

    out_nodes = []
    for k, node in enumerate(graph.node):
        if id(node) in taken:
            continue
        tag = f"delegate_friendly_{k}"
        if (node.op_type == "MatMul" and ranks.get(node.input[0]) == 3 and node.input[1] in inits
                and (len(inits[node.input[1]].dims) == 2 or
                     (len(inits[node.input[1]].dims) == 3 and inits[node.input[1]].dims[0] == 1))):
            w = numpy_helper.to_array(inits[node.input[1]])
            w2 = w.reshape(w.shape[-2], w.shape[-1])
            kdim, ddim = w2.shape
            a, out = node.input[0], node.output[0]
            users = consumers.get(out, [])
            bias = None
            if len(users) == 1 and users[0].op_type == "Add":
                other = [i for i in users[0].input if i != out]
                if len(other) == 1 and other[0] in inits:
                    b = numpy_helper.to_array(inits[other[0]])
                    if b.size == ddim:
                        bias, out = b.reshape(ddim), users[0].output[0]
                        taken.add(id(users[0]))
            out_nodes += [
                helper.make_node("Reshape", [a, const(f"{tag}_flat", np.array([-1, kdim], np.int64))], [f"{tag}_a2d"]),
                helper.make_node("MatMul", [f"{tag}_a2d", const(f"{tag}_w", w2.astype(w.dtype))], [f"{tag}_y2d"]),
            ]
            y2d = f"{tag}_y2d"
            if bias is not None:
                out_nodes.append(helper.make_node("Add", [y2d, const(f"{tag}_b", bias)], [f"{tag}_y2db"]))
                y2d = f"{tag}_y2db"
            out_nodes += [
                helper.make_node("Shape", [a], [f"{tag}_shape"]),
                helper.make_node("Slice", [f"{tag}_shape", const(f"{tag}_s0", np.array([0], np.int64)),
                                           const(f"{tag}_s1", np.array([2], np.int64))], [f"{tag}_lead"]),
                helper.make_node("Concat", [f"{tag}_lead", const(f"{tag}_d", np.array([ddim], np.int64))],
                                 [f"{tag}_back"], axis=0),
                helper.make_node("Reshape", [y2d, f"{tag}_back"], [out]),
            ]
            counts["matmul_2d"] += 1
            continue
        axis = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "axis"), -1)
        if node.op_type == "Softmax" and ranks.get(node.input[0]) == 3 and axis in (-1, 2):
            x = node.input[0]
            out_nodes += [  # Reshape, not Unsqueeze/Squeeze: every delegate's table has Reshape
                helper.make_node("Shape", [x], [f"{tag}_shape"]),
                helper.make_node("Slice", [f"{tag}_shape", const(f"{tag}_s0", np.array([0], np.int64)),
                                           const(f"{tag}_s1", np.array([1], np.int64))], [f"{tag}_b"]),
                helper.make_node("Slice", [f"{tag}_shape", const(f"{tag}_s2", np.array([1], np.int64)),
                                           const(f"{tag}_s3", np.array([3], np.int64))], [f"{tag}_nm"]),
                helper.make_node("Concat", [f"{tag}_b", const(f"{tag}_one", np.array([1], np.int64)), f"{tag}_nm"],
                                 [f"{tag}_shape4d"], axis=0),
                helper.make_node("Reshape", [x, f"{tag}_shape4d"], [f"{tag}_x4d"]),
                helper.make_node("Softmax", [f"{tag}_x4d"], [f"{tag}_y4d"], axis=-1),
                helper.make_node("Reshape", [f"{tag}_y4d", f"{tag}_shape"], [node.output[0]]),
            ]
            counts["softmax_4d"] += 1
            continue
        out_nodes.append(node)
    for i, n in enumerate(out_nodes):  # unique names: quantization excludes nodes by name
        if not n.name:
            n.name = f"{n.op_type}_{i}_df"
    del graph.node[:]
    graph.node.extend(out_nodes)
    graph.initializer.extend(new_inits)
    used = {i for n in graph.node for i in n.input}
    keep = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    onnx.checker.check_model(model)
    return counts
