"""Filter packs: one base graph for many concepts, and per concept only what differs.

A pack folder holds::

    pack.json            format, layout, concepts (file, bytes, sha256), checks
    base.onnx            the generator graph; every weight is an initializer stored outside the graph
    base.weights         the base's weights (external data, written once)
    concepts/<name>.bin  one concept: its LoRA factors and its text, in one fixed layout

``base.onnx`` computes every adapted layer's weight as ``W + B @ A`` (and bias ``b + b_lora``) and the
text's projections from initializers only: all of them are constants, so onnxruntime's constant folding
merges them when the session is created and inference costs what the merged standalone editor costs.
The graph names two external-data files, ``base.weights`` and ``concept.bin``; an app (or the browser,
with onnxruntime-web's ``externalData`` option; Python: ``factory.runtime.pack``) passes the base's file
and the chosen concept's ``.bin`` as ``concept.bin``. Every concept file of a pack has the same layout:
the union of the concepts' adapted layers at the largest rank (zero rows and columns elsewhere, which
change nothing) and the longest text (masked tokens elsewhere); the LoRA scaling is folded into B. A concept
fine-tuned with a colour basis trains its ``head.colour`` conv whole: the pack's base then has that conv at zero
and the concept's weight is its factors (``a`` the weight, ``b`` the identity); every concept of a pack has the same
degree or none. The lens basis's ``head.lens`` likewise: in the graph when any concept trained it, zero for the
others. When a concept carries output curves (``factory.lora.output_calibration``), the graph ends with the
curves' 1x1 convs (reading the photo too when a concept's do) and every concept stores their weights (the identity
curves for a concept without, zero curves of the photo for one whose curves read only the output).

``precision="fp16"`` stores the weights and factors as float16 (cast to float32 in the graph, folded at
load; the text tokens stay float32): half the bytes. A base saved float16-exact (as training and
``factory pretrain install`` save it) is stored losslessly, so the outputs differ from the standalone
editor's only by the LoRA factors' float16 rounding (``checks.stored_exactly`` says when even they are
exact and the fp32 bound applies).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from base_gan.generator import with_colour_basis, with_lens_basis
from base_gan.models import BaseGAN, is_float16_exact
from base_gan.output_curves import OutputCurves
from factory.core.errors import FactoryError
from factory.export.onnx_export import (
    FRAME_CONTRACT,
    INPUT_CONTRACT,
    INPUT_NAME,
    OPSET,
    OUTPUT_CONTRACT,
    OUTPUT_NAME,
    EditorModule,
    editor_inputs,
    export_inputs,
    export_onnx,
    merge_adapter,
    text_condition,
    whole_photo_places,
)
from factory.lora.output_calibration import saved_output_curves
from factory.runtime.colour_curves import identity_knots
from factory.runtime.pack import BASE_DATA, BASE_MODEL, CONCEPT_DATA, PACK_FORMAT, PACK_MANIFEST
from factory.runtime.position import FRAME_NAME

PRECISIONS = ("fp32", "fp16")
ALIGN = 64  # byte alignment of each tensor in the external files
INLINE_BELOW = 256  # base tensors smaller than this many bytes stay inside the graph


@dataclass
class PackConcept:
    """One concept of a pack: its name, instruction and LoRA folder (None: the base alone)."""

    name: str
    instruction: str
    adapter_dir: Path | None


@dataclass
class Factors:
    """One adapted layer's LoRA as matrices: ``delta = b @ a`` (scaling folded into ``b``), ``bias`` or None."""

    a: torch.Tensor  # [rank, fan_in]
    b: torch.Tensor  # [out, rank]
    bias: torch.Tensor | None


def adapter_factors(base: BaseGAN, adapter_dir: Path | None) -> dict[str, Factors]:
    """The adapter's factors per module name of the base (peft loads it; {} for None)."""
    if adapter_dir is None:
        return {}
    from peft.tuners.lora import LoraLayer

    from factory.lora.adapters import COLOUR_MODULE, LENS_MODULE, colour_basis_of, lens_basis_of, load_adapter

    peft_model = load_adapter(base.copy(), adapter_dir)
    prefix = "base_model.model."
    out: dict[str, Factors] = {}
    for name, has in ((COLOUR_MODULE, colour_basis_of(peft_model)), (LENS_MODULE, lens_basis_of(peft_model))):
        if not has:
            continue
        # trained whole (peft's modules_to_save): the weight itself, over the base's zero conv
        weight = peft_model.get_submodule(prefix + name).modules_to_save["default"].weight.detach().float()
        out[name] = Factors(weight.reshape(weight.shape[0], -1), torch.eye(weight.shape[0]), None)
    for name, module in peft_model.named_modules():
        if not isinstance(module, LoraLayer) or "default" not in module.lora_A:
            continue
        scale = float(module.scaling["default"])
        a = module.lora_A["default"].weight.detach().float()
        lora_b = module.lora_B["default"]
        b = lora_b.weight.detach().float().reshape(lora_b.weight.shape[0], -1) * scale
        bias = lora_b.bias.detach().float() * scale if getattr(lora_b, "bias", None) is not None else None
        out[name.removeprefix(prefix)] = Factors(a.reshape(a.shape[0], -1), b, bias)
    return out


@dataclass
class PackLayout:
    """The fixed per-concept layout: rank and bias per adapted module, the text's length and width."""

    ranks: dict[str, int]
    bias: dict[str, bool]
    text_len: int
    text_dim: int

    @classmethod
    def of(cls, factors: list[dict[str, Factors]], texts: list[tuple[torch.Tensor, torch.Tensor] | None]) -> PackLayout:
        ranks: dict[str, int] = {}
        bias: dict[str, bool] = {}
        for concept in factors:
            for name, f in concept.items():
                ranks[name] = max(ranks.get(name, 0), f.a.shape[0])
                bias[name] = bias.get(name, False) or f.bias is not None
        lengths = [t[0].shape[1] for t in texts if t is not None]
        dims = [t[0].shape[2] for t in texts if t is not None]
        return cls(dict(sorted(ranks.items())), {k: bias[k] for k in sorted(bias)}, max(lengths, default=0),
                   max(dims, default=0))


class LoraDelta(nn.Module):
    """A parametrization ``W -> W + (b @ a).reshape(W.shape)`` whose buffers are one concept's factors."""

    def __init__(self, rank: int, out: int, fan_in: int) -> None:
        super().__init__()
        self.register_buffer("a", torch.zeros(rank, fan_in))
        self.register_buffer("b", torch.zeros(out, rank))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight + (self.b @ self.a).reshape(weight.shape)


class BiasDelta(nn.Module):
    """A parametrization ``bias -> bias + delta`` (peft's lora_bias, scaled)."""

    def __init__(self, out: int) -> None:
        super().__init__()
        self.register_buffer("delta", torch.zeros(out))

    def forward(self, bias: torch.Tensor) -> torch.Tensor:
        return bias + self.delta


#: the output curves' convs that differ between concepts (``spread`` is the same for every concept)
CURVE_PARTS = ("linear", "mix")


class PackModule(nn.Module):
    """The base generator with every adapted layer parametrized as ``W + B @ A`` (``bias + b``) and the text as
    buffers: ``forward(image) -> edited``; ``fill`` sets one concept's tensors (zero-padded to the layout)."""

    def __init__(self, generator: nn.Module, layout: PackLayout, curves: int = 0) -> None:
        from torch.nn.utils import parametrize

        super().__init__()
        self.generator = generator
        # ``curves``: the inputs the output curves read (0: none); their linear and mix convs per concept
        self.curves = OutputCurves(identity_knots(inputs=curves)) if curves else None
        self.layout = layout
        modules = dict(generator.named_modules())
        self.deltas: dict[str, tuple[LoraDelta, BiasDelta | None]] = {}
        for name, rank in layout.ranks.items():
            if name not in modules:
                raise FactoryError(f"an adapter of this pack targets '{name}', which this base does not have")
            module = modules[name]
            w = module.weight
            delta = LoraDelta(rank, w.shape[0], int(np.prod(w.shape[1:])))
            parametrize.register_parametrization(module, "weight", delta, unsafe=True)
            bias = None
            if layout.bias[name]:
                if module.bias is None:
                    raise FactoryError(f"an adapter of this pack has a bias on '{name}', which has none in the base")
                bias = BiasDelta(w.shape[0])
                parametrize.register_parametrization(module, "bias", bias, unsafe=True)
            self.deltas[name] = (delta, bias)
        self.inputs = editor_inputs(generator)
        self.has_text = layout.text_len > 0
        if self.has_text:
            self.register_buffer("text_tokens", torch.zeros(1, layout.text_len, layout.text_dim))
            self.register_buffer("text_mask", torch.zeros(1, layout.text_len, dtype=torch.bool))

    def concept_tensors(self) -> dict[str, torch.Tensor]:
        """Every per-concept tensor by its name in the exported graph (the ``concept.bin`` part)."""
        return {k: v for k, v in self.state_dict().items()
                if (".parametrizations." in k and not k.endswith(".original"))
                or k.startswith(("text_", *(f"curves.{part}." for part in CURVE_PARTS)))}

    @torch.no_grad()
    def fill(self, factors: dict[str, Factors], text: tuple[torch.Tensor, torch.Tensor] | None,
             knots: np.ndarray | None = None) -> PackModule:
        """Set one concept's tensors: its LoRA ``factors``, ``text`` and output curves (``knots``; None: identity)."""
        if self.curves is not None:
            inputs = self.curves.linear.in_channels
            own = identity_knots(inputs=inputs) if knots is None else np.asarray(knots)
            if own.shape[1] > inputs:
                raise FactoryError("a concept whose output curves read the photo in a pack whose curves do not")
            own = OutputCurves(np.concatenate([own, np.zeros((3, inputs - own.shape[1], own.shape[2]))], 1))
            for part in CURVE_PARTS:
                getattr(self.curves, part).load_state_dict(getattr(own, part).state_dict())
        elif knots is not None:
            raise FactoryError("a concept with output curves in a pack built without them")
        for name, (delta, bias) in self.deltas.items():
            delta.a.zero_(), delta.b.zero_()
            f = factors.get(name)
            if f is not None:
                delta.a[: f.a.shape[0]] = f.a
                delta.b[:, : f.b.shape[1]] = f.b
            if bias is not None:
                bias.delta.copy_(f.bias if f is not None and f.bias is not None else torch.zeros_like(bias.delta))
        unknown = sorted(set(factors) - set(self.deltas))
        if unknown:
            raise FactoryError(f"adapted layers outside the pack's layout: {', '.join(unknown)}")
        if self.has_text:
            self.text_tokens.zero_(), self.text_mask.zero_()
            if text is not None:
                tokens, mask = text
                self.text_tokens[:, : tokens.shape[1]] = tokens
                self.text_mask[:, : tokens.shape[1]] = mask
        return self

    def forward(self, image: torch.Tensor, *places: torch.Tensor) -> torch.Tensor:
        extra = whole_photo_places(self.inputs, image, places)  # a lens basis's frame
        out = (self.generator(image, self.text_tokens, self.text_mask, **extra) if self.has_text
               else self.generator(image, **extra))
        return self.curves(out, image) if self.curves is not None else out


def _export_graph(module: PackModule, size: int) -> onnx.ModelProto:
    """The pack graph with no constant folding (the merge must stay in the graph until load)."""
    import tempfile
    import warnings

    axes = {0: "batch", 2: "height", 3: "width"}
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        raw = Path(tmp) / "raw.onnx"
        dummy, place_axes = export_inputs(module.inputs, size)
        torch.onnx.export(module.eval(), dummy, str(raw), dynamo=False, opset_version=OPSET,
                          input_names=module.inputs, output_names=[OUTPUT_NAME], do_constant_folding=False,
                          dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes, **place_axes})
        return onnx.load(str(raw))


def _to_fp16(graph: onnx.GraphProto, names: set[str]) -> None:
    """Store the float32 initializers ``names`` as float16, each followed by a Cast back to float32."""
    casts = []
    for init in graph.initializer:
        if init.name in names and init.data_type == onnx.TensorProto.FLOAT:
            arr = numpy_helper.to_array(init).astype(np.float16)
            original = init.name
            init.CopyFrom(numpy_helper.from_array(arr, f"{original}.fp16"))
            casts.append(onnx.helper.make_node("Cast", [f"{original}.fp16"], [original], to=onnx.TensorProto.FLOAT,
                                               name=f"cast/{original}"))
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(casts + nodes)


def _externalize(graph: onnx.GraphProto, location: str, select) -> tuple[bytes, list[dict[str, Any]]]:
    """Move the initializers ``select(init)`` accepts into one external file; returns its bytes and entries."""
    blob = bytearray()
    entries = []
    for init in graph.initializer:
        if not select(init):
            continue
        data = numpy_helper.to_array(init).tobytes()
        blob.extend(b"\0" * (-len(blob) % ALIGN))
        offset = len(blob)
        blob.extend(data)
        name, dims, dtype = init.name, list(init.dims), init.data_type
        init.Clear()
        init.name = name
        init.dims.extend(dims)
        init.data_type = dtype
        init.data_location = onnx.TensorProto.EXTERNAL
        for key, value in (("location", location), ("offset", str(offset)), ("length", str(len(data)))):
            entry = init.external_data.add()
            entry.key, entry.value = key, value
        entries.append({"name": name, "offset": offset, "bytes": len(data), "shape": dims,
                        "dtype": onnx.helper.tensor_dtype_to_np_dtype(dtype).name})
    return bytes(blob), entries


def _concept_blob(graph_entries: list[dict[str, Any]], module: PackModule, precision: str) -> bytes:
    """One concept's ``concept.bin`` in the layout ``graph_entries`` recorded (the same for every concept)."""
    state = module.concept_tensors()
    blob = bytearray()
    for e in graph_entries:
        name = e["name"].removesuffix(".fp16")
        arr = state[name].numpy()
        if arr.dtype == np.float32 and precision == "fp16" and e["dtype"] == "float16":
            arr = arr.astype(np.float16)
        data = np.ascontiguousarray(arr).tobytes()
        if len(data) != e["bytes"] or arr.dtype.name != e["dtype"]:
            raise FactoryError(f"concept tensor {name}: {arr.dtype.name} {len(data)} bytes, layout says {e}")
        blob.extend(b"\0" * (e["offset"] - len(blob)))
        blob.extend(data)
    return bytes(blob)


@dataclass
class PackParts:
    """A built pack in memory: the graph, the base's weights and each concept's file, before anything is written."""

    graph: onnx.ModelProto
    base_weights: bytes
    concepts: dict[str, bytes]
    layout: PackLayout
    concept_entries: list[dict[str, Any]]
    references: dict[str, EditorModule]
    instructions: dict[str, str]
    lossless: bool = True  # every stored value is exactly the standalone editor's (fp16: float16-exact inputs)


def build_pack(base: BaseGAN, concepts: list[PackConcept], size: int = 256, precision: str = "fp32",
               text_cache: Path | None = None) -> PackParts:
    """The pack of ``concepts`` on ``base`` (nothing written); ``references`` holds each concept's merged
    torch editor (what its standalone editor exports) for the checks."""
    if precision not in PRECISIONS:
        raise FactoryError(f"unknown pack precision '{precision}' (known: {', '.join(PRECISIONS)})")
    if not concepts:
        raise FactoryError("a pack needs at least one concept")
    names = [c.name for c in concepts]
    import re

    bad = [n for n in names if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", n)]
    if bad:
        raise FactoryError(f"pack concept names must be file names (letters, digits, '.', '_', '-'): {', '.join(bad)}")
    if len(set(names)) != len(names):
        raise FactoryError(f"a concept is named twice in the pack: {', '.join(names)}")
    from factory.lora.adapters import saved_lens_basis, saved_screen

    screened = [c.name for c in concepts if c.adapter_dir is not None and saved_screen(c.adapter_dir)]
    if screened:
        raise FactoryError(f"{', '.join(screened)}: drawn with a fixed screen (position channels), which a pack's "
                           "shared base graph does not have; export such a concept as a standalone editor "
                           "(factory export <concept>) or fine-tune it with --screen off")
    factors = [adapter_factors(base, c.adapter_dir) for c in concepts]
    texts = [text_condition(base.model, c.instruction, text_cache) for c in concepts]
    layout = PackLayout.of(factors, texts)
    knots = [saved_output_curves(c.adapter_dir) for c in concepts]
    lens = any(saved_lens_basis(c.adapter_dir) for c in concepts if c.adapter_dir is not None)
    graph_base = with_lens_basis(with_colour_basis(copy.deepcopy(base.model), _colour_degree(concepts)), lens)
    module = PackModule(graph_base.eval(), layout,
                        curves=max((k.shape[1] for k in knots if k is not None), default=0))
    with torch.no_grad():  # distinct values while exporting: the exporter merges initializers of equal content
        g = torch.Generator().manual_seed(0)
        for t in module.concept_tensors().values():
            values = torch.rand(t.shape, generator=g)
            t.copy_(values > 0.5 if t.dtype == torch.bool else values)
    graph = _export_graph(module, size)
    concept_names = set(module.concept_tensors())
    missing = concept_names - {i.name for i in graph.graph.initializer}
    if missing:
        raise FactoryError(f"pack export lost the names of per-concept tensors: {', '.join(sorted(missing)[:5])}")
    if precision == "fp16":  # the text tokens stay float32: they feed every cross-attention (a few KB a concept)
        _to_fp16(graph.graph, {i.name for i in graph.graph.initializer} - {"text_tokens"})
    _, concept_entries = _externalize(graph.graph, CONCEPT_DATA,
                                      lambda i: i.name.removesuffix(".fp16") in concept_names)
    base_weights, _ = _externalize(
        graph.graph, BASE_DATA,
        lambda i: i.data_location != onnx.TensorProto.EXTERNAL and len(i.raw_data) >= INLINE_BELOW)
    graph.producer_name = "editfactory"
    blobs, references = {}, {}
    lossless = precision == "fp32" or is_float16_exact([*base.model.parameters(), *base.model.buffers()])
    for concept, f, text, curves in zip(concepts, factors, texts, knots):
        filled = module.fill(f, text, curves)
        stored_half = [v for k, v in filled.concept_tensors().items() if k != "text_tokens"]
        lossless = lossless and (precision == "fp32" or is_float16_exact(stored_half))
        blobs[concept.name] = _concept_blob(concept_entries, filled, precision)
        merged = merge_adapter(copy.deepcopy(base.model), concept.adapter_dir) if concept.adapter_dir else \
            copy.deepcopy(base.model)
        references[concept.name] = EditorModule(merged.eval(), *(text or (None, None)),
                                                curves=OutputCurves(curves) if curves is not None else None).eval()
    return PackParts(graph, base_weights, blobs, layout, concept_entries, references,
                     {c.name: c.instruction for c in concepts}, lossless)


def _colour_degree(concepts: list[PackConcept]) -> int:
    """The colour basis's degree the pack's concepts were fine-tuned with (0: none); mixed degrees are refused."""
    from factory.lora.adapters import saved_colour_basis

    degrees = {c.name: saved_colour_basis(c.adapter_dir) for c in concepts if c.adapter_dir is not None}
    if len(set(degrees.values()) - {0}) > 1:
        raise FactoryError("a pack's concepts must share one colour basis (--colour-basis): "
                           + ", ".join(f"{n} {d}" for n, d in degrees.items()))
    return max(degrees.values(), default=0)


#: pack vs standalone editor, max abs difference on the [-1, 1] scale: 1e-4 when every stored value is the
#: standalone editor's exactly (fp32, or fp16 of float16-exact weights), else float16 rounding (about 1/255)
MAX_ABS = {"fp32": 1e-4, "fp16": 4e-3}


def pack_tolerance(precision: str, lossless: bool) -> float:
    return MAX_ABS["fp32"] if lossless else MAX_ABS[precision]


def write_pack(parts: PackParts, out_dir: Path, name: str, images: dict[str, np.ndarray], precision: str,
               base: BaseGAN, threads: int | None = None, log=print) -> dict[str, Any]:
    """Check ``parts`` against each concept's standalone editor graph on ``images[concept]`` ([B,3,H,W]) and
    install the pack in ``out_dir`` atomically; returns pack.json. A failed check installs nothing."""
    import hashlib
    import shutil
    import tempfile

    from factory import __version__
    from factory.core.atomic import atomic_folder, atomic_write_json
    from factory.runtime.editor import Editor

    def sha(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()

    tolerance = pack_tolerance(precision, parts.lossless)
    checks: dict[str, Any] = {"threshold_max_abs": tolerance, "stored_exactly": parts.lossless,
                              "vs": "the standalone editor.onnx graph"}
    failures = []
    with atomic_folder(out_dir) as tmp:
        onnx.save(parts.graph, str(tmp / BASE_MODEL))
        (tmp / BASE_DATA).write_bytes(parts.base_weights)
        (tmp / "concepts").mkdir()
        entries = []
        for concept, blob in parts.concepts.items():
            (tmp / "concepts" / f"{concept}.bin").write_bytes(blob)
            entries.append({"name": concept, "instruction": parts.instructions[concept],
                            "file": f"concepts/{concept}.bin", "bytes": len(blob), "sha256": sha(blob)})
        manifest = {
            "format": PACK_FORMAT, "name": name, "precision": precision, "model": BASE_MODEL,
            "external_data": {"base": BASE_DATA, "concept": CONCEPT_DATA},
            "base": {"path": str(base.folder), "sha256": base.sha256,
                     "generator": dict(base.model.config), "model_bytes": (tmp / BASE_MODEL).stat().st_size,
                     "weights_bytes": len(parts.base_weights), "weights_sha256": sha(parts.base_weights)},
            "layout": {"ranks": parts.layout.ranks, "bias": parts.layout.bias, "text_len": parts.layout.text_len,
                       "text_dim": parts.layout.text_dim, "tensors": parts.concept_entries},
            "concepts": entries, "input": INPUT_CONTRACT, "output": OUTPUT_CONTRACT,
            **({"frame": FRAME_CONTRACT} if FRAME_NAME in {i.name for i in parts.graph.graph.input} else {}),
            "stride": int(getattr(base.model, "stride", 16)), "factory_version": __version__,
        }
        atomic_write_json(tmp / PACK_MANIFEST, manifest)  # what Editor.from_pack reads for the checks below
        scratch = Path(tempfile.mkdtemp(prefix=".pack-check.", dir=out_dir.parent))
        try:
            for concept, ref in parts.references.items():
                x = images[concept]
                standalone = Editor(export_onnx(ref, scratch / f"{concept}.onnx", x.shape[-1]), threads)
                packed = Editor.from_pack(tmp, concept, threads)
                a, b = packed.run_batched(x, 4), standalone.run_batched(x, 4)
                diff = np.abs(a.astype(np.float64) - b)
                row = {"max_abs": float(diff.max()), "mean_abs": float(diff.mean()), "images": len(x)}
                row["passed"] = row["max_abs"] <= tolerance
                checks[concept] = row
                log(f"pack {concept}: max abs {row['max_abs']:.1e} vs its standalone editor over {len(x)} images")
                if not row["passed"]:
                    failures.append(f"{concept}: max abs {row['max_abs']:.1e} > {tolerance:.0e}")
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        checks["failures"] = failures
        manifest["checks"] = checks
        manifest["bytes"] = {"base": manifest["base"]["model_bytes"] + len(parts.base_weights),
                             "concepts": sum(e["bytes"] for e in entries)}
        if failures:
            raise FactoryError(f"pack '{name}' failed its checks: {'; '.join(failures)} (nothing installed)")
        atomic_write_json(tmp / PACK_MANIFEST, manifest)
    return manifest
