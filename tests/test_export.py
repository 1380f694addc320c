"""`factory export`: a tiny base + LoRA merged, text baked in, parity, int8, fp16, .ort, mobile check, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner

from base_gan.generator import build_generator, target_modules
from base_gan.models import load_model, save_model
from concepts.cards import find_card
from factory.cli import cli
from factory.core.errors import FactoryError
from factory.core.images import read_image
from factory.core.workspace import Workspace
from factory.data.card_pairs import make_pairs
from factory.data.dataset import pair_refs
from factory.export.editor import psnr
from factory.export.mobile_check import check_mobile, fixed_input_shape
from factory.export.onnx_export import EditorModule, export_onnx
from factory.runtime.editor import Editor, to_input
from factory.text.encoder import TextEncoder
from tests.conftest import run_factory

SIZE = 64
TINY = dict(ngf=8, heads=2, image_size=SIZE)
#: the fixture's base and LoRA are random (untrained): int8 tracks them less closely than a trained editor,
#: whose export keeps the default 30 dB check (``factory.export.editor.INT8_MIN_PSNR_DB``)
INT8_MIN_DB = 20.0


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Workspace:
    """A workspace with sepia pairs, a tiny 'default' base and a LoRA adapter made with plain peft."""
    from peft import LoraConfig, get_peft_model

    ws = Workspace(tmp_path_factory.mktemp("ws"))
    make_pairs(ws, find_card("sepia"), 14, SIZE, seed=0)
    base = build_generator(seed=0, **TINY)
    save_model(base, ws.base("default"), {"concepts": ["sepia"]})
    torch.manual_seed(0)  # the global RNG's state depends on which libraries were imported before
    lora = get_peft_model(build_generator(seed=0, **TINY), LoraConfig(
        r=4, lora_alpha=8, init_lora_weights=False,  # random A and B: the merge visibly changes the output
        target_modules=target_modules(base, ["down1", "xattn", "up1", "head"])))
    lora.save_pretrained(str(ws.lora("sepia")))
    return ws


@pytest.fixture(scope="module")
def exported(ws: Workspace) -> dict:
    result = CliRunner().invoke(cli, ["--workspace", str(ws.root), "export", "sepia", "--size", str(SIZE),
                                      "--fp16", "--ort", "--threads", "2", "--min-int8-psnr", str(INT8_MIN_DB)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return json.loads((ws.editor("sepia") / "card.json").read_text())


def _held_out(ws: Workspace) -> np.ndarray:
    from factory.export.editor import _square

    return to_input([_square(read_image(r.source), SIZE) for r in pair_refs(ws.data("sepia"), "test")])


@torch.no_grad()
def test_editor_is_the_merged_text_conditioned_model(ws: Workspace, exported: dict) -> None:
    from peft import PeftModel

    folder = ws.editor("sepia")
    assert {"editor.onnx", "editor.int8.onnx", "editor.fp16.onnx", "card.json"} <= {p.name for p in folder.iterdir()}
    tokens, mask = TextEncoder.from_name("minilm", ws.text_cache).tokens([find_card("sepia").instruction])
    from base_gan.generator import with_colour_basis
    from factory.lora.adapters import saved_colour_basis

    base = with_colour_basis(load_model(ws.base("default")), saved_colour_basis(ws.lora("sepia")))
    unmerged = PeftModel.from_pretrained(base, str(ws.lora("sepia"))).eval()  # LoRA applied on the fly
    x = _held_out(ws)
    want = unmerged(torch.from_numpy(x), tokens, mask).numpy()
    editor = Editor(folder / "editor.onnx")
    got = editor.run(x)
    assert np.abs(got - want).max() < 1e-4
    plain = load_model(ws.base("default"))
    assert np.abs(got - plain(torch.from_numpy(x), tokens, mask).numpy()).max() > 1e-2  # the adapter matters
    no_text = unmerged(torch.from_numpy(x)).numpy()  # the null token only: differs, so the text is baked in
    assert np.abs(got - no_text).max() > 1e-3

    # image in, image out: one input, dynamic batch / height / width
    model = onnx.load(str(folder / "editor.onnx"))
    assert [i.name for i in model.graph.input] == ["image"]
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]
    assert editor.run(np.zeros((3, 3, 32, 48), np.float32)).shape == (3, 3, 32, 48)
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["concept"] == "sepia" and meta["instruction"] == find_card("sepia").instruction
    assert meta["input_size"] == str(SIZE) and meta["value_range"] == "[-1, 1]" and meta["stride"] == "16"
    assert meta["base_sha256"] == exported["base"]["sha256"] and len(meta["adapter_sha256"]) == 64
    assert meta["factory_version"]


def test_card_records_parity_and_passes(exported: dict) -> None:
    parity = exported["checks"]["parity"]
    assert parity["passed"] and parity["max_abs"] <= 1e-3
    assert [2, 3, SIZE - 16, SIZE + 16] in parity["shapes"]  # a non-square batch of 2 was compared too
    assert exported["checks"]["failures"] == []
    assert exported["input"]["value_range"] == [-1.0, 1.0] and exported["input"]["layout"] == "NCHW"
    for name in ("editor.onnx", "editor.int8.onnx", "editor.fp16.onnx", "editor.ort", "editor.int8.ort"):
        assert exported["files"][name] > 0
    lat = exported["latency_ms"]
    assert lat["fp32"]["median_ms"] > 0 and lat["int8"]["median_ms"] > 0 and lat["threads"] == 2


def test_card_records_the_full_size_choice(ws: Workspace, exported: dict) -> None:
    full = exported["full_size"]  # sepia's recipe runs at any resolution: both paths were measured
    sides = [int(k.split("_")[1]) for k in full["psnr_db"] if k.startswith("guided_")]
    assert full["measured"] and full["path"] in ("guided", "tiled") and 2 * SIZE in sides and len(sides) >= 2
    kinds = ("guided", "curves")  # the local affine fit alone, and after global colour curves
    assert full["psnr_db"]["guided"] == max(full["psnr_db"][f"{k}_{s}"] for s in sides for k in kinds)
    kind = kinds[full["guided_curves"]]  # the card's side and kind: the best
    assert full["psnr_db"]["guided"] == full["psnr_db"][f"{kind}_{full['low_side']}"]
    assert full["tile"] % 16 == 0 and full["editor_psnr_db"] == exported["checks"]["quality"][
        "fp32_vs_teacher"]["mean_db"]
    assert {"guided", "tiled", "resize"} <= set(full["psnr_db"]) and full["seconds"]["guided"] > 0
    close = full["psnr_db"]["guided"] >= full["psnr_db"]["tiled"] - full["margin_db"]
    larger = full["psnr_db_larger"]  # measured only when guided was close: then it decides
    assert (larger is not None) == close
    assert (full["path"] == "guided") == (close and larger["guided"] >= larger["tiled"] - full["margin_db"])
    assert full["photos"] and all(r["scale"] > 1 for r in full["photos"])  # photos larger than the pairs
    assert Editor(ws.editor("sepia")).full_size.path == full["path"]  # what `factory apply` follows


def test_int8_is_quantized_and_close_to_fp32(ws: Workspace, exported: dict) -> None:
    folder = ws.editor("sepia")
    int8 = onnx.load(str(folder / "editor.int8.onnx"))
    ops = [n.op_type for n in int8.graph.node]
    assert ops.count("QuantizeLinear") > 10 and ops.count("DequantizeLinear") > 10
    weights = [t for t in int8.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert sum(np.prod(t.dims) for t in weights) > 5000  # conv/linear weights stored as int8
    x = _held_out(ws)
    fp32_out = Editor(folder / "editor.onnx").run(x)
    int8_out = Editor(folder / "editor.int8.onnx").run(x)
    ours = psnr(int8_out, fp32_out)
    assert ours.mean() >= INT8_MIN_DB and np.abs(int8_out - fp32_out).max() > 0
    q = exported["checks"]["quality"]["int8_vs_fp32"]
    assert q["passed"] and abs(q["mean_db"] - ours.mean()) < 0.05
    assert "fp32_vs_teacher" in exported["checks"]["quality"] and "int8_vs_teacher" in exported["checks"]["quality"]


def test_fp16_and_ort_files(ws: Workspace, exported: dict) -> None:
    folder = ws.editor("sepia")
    fp16 = onnx.load(str(folder / "editor.fp16.onnx"))
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in fp16.graph.initializer)
    assert exported["checks"]["quality"]["fp16_vs_fp32"]["mean_db"] > 40
    config = (folder / "required_operators.config").read_text()
    assert "Conv" in config and "QuantizeLinear" in config  # the ops of both .ort models
    ort_editor = Editor(folder / "editor.ort")
    assert ort_editor.fixed_hw == (SIZE, SIZE) and ort_editor.metadata["input_shape"] == f"1x3x{SIZE}x{SIZE}"
    x = _held_out(ws)[:1]
    assert np.abs(ort_editor.run(x) - Editor(folder / "editor.onnx").run(x)).max() < 1e-4
    assert exported["checks"]["ort"]["max_abs_vs_onnx"]["editor.ort"] < 1e-4


def test_mobile_check_default_generator_and_a_graph_that_falls_off(exported: dict, tmp_path: Path) -> None:
    mobile = exported["checks"]["mobile"]
    assert mobile["passed"] and mobile["checked_shape"] == [1, 3, SIZE, SIZE]
    assert mobile["fp32"]["nnapi"]["takes_whole"] and mobile["fp32"]["coreml_mlprogram"]["takes_whole"]
    assert mobile["fp16"]["coreml_mlprogram"]["takes_whole"]
    legacy = mobile["fp32"]["coreml_neuralnetwork"]  # reported with the reason, not required
    assert not legacy["takes_whole"] and "ai.onnx:ReduceMean" in legacy["reasons"]
    int8 = mobile["int8"]["nnapi"]  # reported: NNAPI's EP runs few op types as int8 QDQ groups
    assert not int8["takes_whole"] and "ai.onnx:LeakyRelu (int8 QDQ)" in int8["unsupported_ops"]

    # without the export's exact rewrites the token MatMuls and 3-D Softmaxes fall off NNAPI
    from factory.runtime.editor import Editor

    gen = build_generator(seed=0, **TINY)
    plain = export_onnx(EditorModule(gen), tmp_path / "plain.onnx", SIZE, mobile_rewrites=False)
    rewritten = export_onnx(EditorModule(gen), tmp_path / "rewritten.onnx", SIZE)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, 32, 48)).astype(np.float32)
    assert np.abs(Editor(plain).run(x) - Editor(rewritten).run(x)).max() < 1e-5
    nnapi = check_mobile(fixed_input_shape(plain, tmp_path / "pf.onnx", [1, 3, SIZE, SIZE]), ("nnapi",))["nnapi"]
    assert not nnapi.takes_whole and "ai.onnx:Softmax (3-D)" in nnapi.unsupported_ops
    assert check_mobile(fixed_input_shape(rewritten, tmp_path / "rf.onnx", [1, 3, SIZE, SIZE]),
                        ("nnapi",))["nnapi"].takes_whole

    # pix2pix has InstanceNorm, ConvTranspose and reflect Pad: the check must say which and why
    from base_gan.pix2pix import build_pix2pix

    p2p = export_onnx(EditorModule(build_pix2pix(ngf=4, n_blocks=1, dropout=0.0)), tmp_path / "p.onnx", 32)
    fixed = fixed_input_shape(p2p, tmp_path / "fixed.onnx", [1, 3, 32, 32])
    result = check_mobile(fixed, ("nnapi", "coreml_mlprogram"))
    nnapi = result["nnapi"]
    assert not nnapi.takes_whole and nnapi.partitions > 1
    assert {"ai.onnx:InstanceNormalization", "ai.onnx:ConvTranspose"} <= set(nnapi.unsupported_ops)
    assert any(op.startswith("ai.onnx:Pad (mode=reflect)") for op in nnapi.unsupported_ops)
    assert "instance normalization" in nnapi.reasons["ai.onnx:InstanceNormalization"]
    assert any(op.startswith("ai.onnx:Pad") for op in result["coreml_mlprogram"].unsupported_ops)


def test_failed_check_installs_nothing(ws: Workspace, exported: dict) -> None:
    import shutil

    before = (ws.editor("sepia") / "editor.onnx").read_bytes()
    # the LoRA says which base it was fine-tuned on (factory finetune's metrics.json): that base is the default
    shutil.copytree(ws.base("default"), ws.base("tuned"))
    metrics = ws.lora("sepia") / "metrics.json"
    metrics.write_text(json.dumps({"base": str(ws.base("tuned"))}))
    try:
        result = CliRunner().invoke(
            cli, ["--workspace", str(ws.root), "export", "sepia", "--size", str(SIZE), "--min-int8-psnr", "200"]
        )
    finally:
        metrics.unlink()
    assert isinstance(result.exception, FactoryError)
    message = str(result.exception)
    assert "\n" not in message and "int8 editor is" in message and "needs >= 200 dB" in message
    assert (ws.editor("sepia") / "editor.onnx").read_bytes() == before  # the previous editor is untouched
    failed = json.loads((ws.root / "editors" / "sepia.failed-card.json").read_text())
    assert failed["checks"]["quality"]["int8_vs_fp32"]["passed"] is False
    assert failed["base"]["path"] == str(ws.base("tuned"))
    assert not [p for p in (ws.root / "editors").iterdir() if p.name.startswith(".")]  # no temp folders left


def test_export_errors_are_one_line(ws: Workspace) -> None:
    for args, expected in (
        (["export", "sepia", "--base", "nope"], "base 'nope' not found"),
        (["export", "sepia", "--size", "72"], "--size 72 is not a multiple of the generator stride 16"),
        (["export", "sepia", "--adapter", str(ws.root / "missing")], "not a LoRA adapter folder"),
        (["export", "no-such-concept-xyz"], "unknown concept 'no-such-concept-xyz'"),
    ):
        proc = run_factory(ws.root, *args, check=False)
        assert proc.returncode == 2, (args, proc.stderr)
        lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and expected in lines[0], (args, proc.stderr)


def test_export_keeps_the_editors_manifest_current(ws: Workspace, exported: dict) -> None:
    from factory.core.files import sha256_file

    manifest = json.loads((ws.root / "editors" / "manifest.json").read_text())
    (entry,) = [e for e in manifest["editors"] if e["name"] == "sepia"]
    assert entry["instruction"] == exported["instruction"] and entry["input"] == exported["input"]
    assert {"editor.onnx", "editor.int8.onnx", "editor.ort"} <= set(entry["files"])
    for f in entry["files"].values():
        assert sha256_file(ws.root / "editors" / f["path"]) == f["sha256"]


@pytest.mark.parametrize("lattice", [None, [[0.11, 0.07, 0.2], [-0.07, 0.11, -0.1]]], ids=["waves", "lattice"])
def test_an_editor_with_a_screen_exports_its_position_input_and_tiles_keep_the_screen_in_place(tmp_path, lattice):
    """A generator with screen waves (and a lattice's distance planes) exports with a second input ``position``
    (torch parity); ``Editor`` feeds it, so a photo edited in tiles matches the photo edited whole, which it does not
    when every tile is told it is a photo of its own."""
    from base_gan.generator import build_generator
    from factory.export.onnx_export import EditorModule, export_onnx, torch_vs_onnx
    from factory.runtime.editor import Editor
    from factory.runtime.position import position_grid
    from factory.runtime.tiles import edit_tiled

    g = build_generator(seed=0, ngf=8, heads=2, screen_waves=[[0.11, 0.07], [-0.07, 0.11]], screen_size=64,
                        screen_lattice=lattice)
    with torch.no_grad():
        g.stem.waves.weight.normal_(0, 0.5 * (4 / g.stem.waves.in_channels) ** 0.5)  # a screen the editor draws
        g.head.conv3.weight.mul_(40.0)
    module = EditorModule(g).eval()
    path = export_onnx(module, tmp_path / "screen.onnx", 64)
    x = [np.random.default_rng(0).uniform(-1, 1, (2, 3, 64, 96)).astype(np.float32)]
    assert torch_vs_onnx(module, path, x).max_abs < 1e-3
    editor = Editor(path)
    assert editor.position_name == "position"
    photo = (np.random.default_rng(1).uniform(0.3, 0.7, (1, 1, 3)) * 255 * np.ones((160, 224, 3))).astype(np.uint8)
    whole = editor.edit([photo], path="tiled", tile=256)[0].astype(np.float32)
    tiled = editor.edit([photo], path="tiled", tile=96)[0].astype(np.float32)
    unplaced = edit_tiled(editor.run, photo, 96, 16, overlap=32).astype(np.float32)
    assert whole.std() > 5  # the screen is drawn
    assert np.abs(tiled - whole).mean() < 2.0 < np.abs(unplaced - whole).mean(), (
        np.abs(tiled - whole).mean(), np.abs(unplaced - whole).mean())

    # a fixed-shape copy (batch 1, as the mobile files are) runs a batch one image at a time with the given place
    from factory.export.mobile_check import fixed_input_shape

    fixed = Editor(fixed_input_shape(path, tmp_path / "screen.fixed.onnx", [1, 3, 64, 96]))
    place = position_grid(64, 96, [(40, 24)], 160)
    np.testing.assert_allclose(fixed.run(x[0], place), editor.run(x[0], place), atol=1e-5)
    assert np.abs(fixed.run(x[0], place) - fixed.run(x[0])).max() > 0.05

    # int8: the phases (hundreds of radians on a large photo) stay float, the rest is quantized as usual
    from factory.export.quantize import quantize_int8

    rng = np.random.default_rng(2)
    int8_path = quantize_int8(path, tmp_path / "screen.int8.onnx",
                              [rng.uniform(-1, 1, (3, 64, 64)).astype(np.float32) for _ in range(4)])
    int8 = Editor(int8_path)
    # the first layer, where the waves meet the image (the dots' edges are where it crosses a threshold), stays
    # float too; the next layers read quantized activations
    import onnx

    graph = onnx.load(str(int8_path)).graph
    producer = {out: node.op_type for node in graph.node for out in node.output}
    reads = {node.name: [producer.get(i) for i in node.input] for node in graph.node}
    for name in ("/generator/stem/conv1/Conv", "/generator/stem/waves/Conv"):
        assert reads[name][1] != "DequantizeLinear", (name, reads[name])  # float weights
    assert "DequantizeLinear" not in reads["/generator/stem/Add"], reads["/generator/stem/Add"]  # float sum
    assert reads["/generator/stem/conv2/Conv"][:2] == ["DequantizeLinear"] * 2  # int8 from here on
    if lattice:  # the distance planes are the position's own arithmetic: float, and on both delegates whole
        from factory.export.mobile_check import check_mobile

        sqrt = [n for n in graph.node if n.op_type == "Sqrt" and n.name.count("/") == 2]  # the generator's own
        assert sqrt and all("DequantizeLinear" not in reads[n.name] for n in sqrt), [reads[n.name] for n in sqrt]
        results = check_mobile(fixed_input_shape(path, tmp_path / "whole.onnx", [1, 3, 64, 64]),
                               ("nnapi", "coreml_mlprogram"))
        assert all(r.takes_whole for r in results.values()), {k: r.summary() for k, r in results.items()}
    big = rng.uniform(-1, 1, (1, 3, 64, 64)).astype(np.float32)
    far = position_grid(64, 64, [(3000, 4000)], 3000)  # a tile far into a 12 MP photo
    a, b = editor.run(big, far), int8.run(big, far)
    assert 10 * np.log10(4 / np.mean((a - b) ** 2)) > 30


def test_an_editor_with_a_lens_basis_takes_its_frame_so_tiles_share_the_photos_vignette(tmp_path):
    """A generator with a lens basis exports with an input ``frame`` (each pixel's place as a fraction of the photo;
    torch parity); ``Editor`` feeds it, so a photo edited in tiles gets one vignette about the photo's centre, as
    edited whole, and not one per tile (what every tile told it is a photo of its own gives); a fixed-shape copy
    and the int8 copy take it too."""
    from base_gan.generator import LENS_OFFSETS
    from factory.export.onnx_export import torch_vs_onnx
    from factory.export.quantize import quantize_int8
    from factory.runtime.position import frame_grid
    from factory.runtime.tiles import edit_tiled

    g = build_generator(seed=0, ngf=8, heads=2, lens_basis=True)
    radial = 3 * len(LENS_OFFSETS)  # the planes (1, r, g, b) * d^2 follow the neighbours' taps
    with torch.no_grad():
        g.head.conv3.weight.zero_(), g.head.conv3.bias.zero_()  # the edit is the lens conv's alone
        for c in range(3):
            g.head.lens.weight[c, radial, 0, 0] = -0.6  # darker towards the corners
            g.head.lens.weight[c, radial + 1 + c, 0, 0] = -0.3
    module = EditorModule(g).eval()
    path = export_onnx(module, tmp_path / "lens.onnx", 64)
    x = [np.random.default_rng(0).uniform(-1, 1, (2, 3, 64, 96)).astype(np.float32)]
    assert torch_vs_onnx(module, path, x).max_abs < 1e-3
    editor = Editor(path)
    assert (editor.position_name, editor.frame_name) == (None, "frame")
    photo = np.full((160, 224, 3), 150, np.uint8)
    whole = editor.edit([photo], path="tiled", tile=256)[0].astype(np.float32)
    tiled = editor.edit([photo], path="tiled", tile=96)[0].astype(np.float32)
    unplaced = edit_tiled(editor.run, photo, 96, 16, overlap=32).astype(np.float32)
    assert whole[80, 112].mean() - whole[0, 0].mean() > 40  # the vignette is drawn about the photo's centre
    assert np.abs(tiled - whole).max() <= 1.0 < 10.0 < np.abs(unplaced - whole).mean(), (
        np.abs(tiled - whole).max(), np.abs(unplaced - whole).mean())

    fixed = Editor(fixed_input_shape(path, tmp_path / "lens.fixed.onnx", [1, 3, 64, 96]))
    place = frame_grid(64, 96, [(40, 24)], (160, 224))
    np.testing.assert_allclose(fixed.run(x[0], None, place), editor.run(x[0], None, place), atol=1e-5)
    assert np.abs(fixed.run(x[0], None, place) - fixed.run(x[0])).max() > 0.05
    rng = np.random.default_rng(2)
    int8 = Editor(quantize_int8(path, tmp_path / "lens.int8.onnx",
                                [rng.uniform(-1, 1, (3, 64, 64)).astype(np.float32) for _ in range(4)]))
    assert int8.frame_name == "frame"
    a, b = editor.run(x[0], None, place), int8.run(x[0], None, place)
    assert 10 * np.log10(4 / np.mean((a - b) ** 2)) > 30
    np.testing.assert_allclose(frame_grid(1, 4, photo=(1, 8), zoom=(1.0, 2.0))[0, 1, 0], [-0.75, -0.25, 0.25, 0.75])
    results = check_mobile(fixed_input_shape(path, tmp_path / "whole.onnx", [1, 3, 64, 64]),
                           ("nnapi", "coreml_mlprogram"))  # the frame's arithmetic: Mul and Conv, on both whole
    assert all(r.takes_whole for r in results.values()), {k: r.summary() for k, r in results.items()}


def _screen_only_editor(path, cycles: float = 0.05):
    """An ONNX 'editor' whose output is a screen of its position input alone: sin(2 pi cycles x 64 x row), the same
    for column, and the product (64: position is in fractions of the photo's short side, as for a 64 px pair)."""
    import onnx
    from onnx import TensorProto, helper

    k = helper.make_tensor("k", TensorProto.FLOAT, [], [2 * np.pi * cycles * 64])
    nodes = [helper.make_node("Mul", ["position", "k"], ["phase"]), helper.make_node("Sin", ["phase"], ["waves"]),
             helper.make_node("ReduceProd", ["waves"], ["both"], axes=[1], keepdims=1),
             helper.make_node("Concat", ["waves", "both"], ["output"], axis=1)]
    graph = helper.make_graph(nodes, "screen", [
        helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 3, "h", "w"]),
        helper.make_tensor_value_info("position", TensorProto.FLOAT, ["n", 2, "h", "w"])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["n", 3, "h", "w"])], [k])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def test_a_screen_editor_on_a_resized_photo_draws_the_screen_where_the_photo_has_it(tmp_path):
    """The resize and guided paths (and a mobile model's fixed square) round the photo's sides to the stride, so rows
    and columns shrink by different factors: each resized pixel gets the place of the photo pixels it covers, and the
    output resized back matches the photo edited at native size, which it does not with one scale for both sides."""
    import cv2

    from factory.runtime.editor import Editor, to_input, to_pixels
    from factory.runtime.position import position_grid

    editor = Editor(_screen_only_editor(tmp_path / "screen.onnx"))
    photo = np.full((300, 400, 3), 128, np.uint8)
    native = editor.edit([photo], path="tiled", tile=512)[0].astype(np.float32)
    assert native.std() > 50  # the screen is drawn
    resized = editor.edit([photo], size=112)[0].astype(np.float32)  # 80 x 112: rows / 3.75, columns / 3.57
    small = cv2.resize(photo, (112, 80), interpolation=cv2.INTER_AREA)
    one_scale = to_pixels(editor.run(to_input([small]), position_grid(80, 112, short_side=80)))[0]
    one_scale = cv2.resize(one_scale, (400, 300), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    good, drifted = (np.abs(x - native).mean() for x in (resized, one_scale))
    assert good < 4 < 20 < drifted, (good, drifted)
    # the guided path's low resolution gets the same places (its colour fit cannot draw a screen: the low output),
    # and resized back it is the resize path's output (the export scores both from one run)
    _, low = editor.guided(photo, 112, 1, 512)
    low = cv2.resize(low, (400, 300), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    np.testing.assert_array_equal(low, resized)
    np.testing.assert_allclose(position_grid(1, 3, zoom=(2.0, 2.0), short_side=10)[0, 1, 0], [0.05, 0.25, 0.45])
