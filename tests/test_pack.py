"""Filter packs: one base graph + per-concept files, equal to the standalone editors, loaded in onnxruntime."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from base_gan.generator import build_generator, target_modules
from base_gan.models import BaseGAN, load_model, save_model
from factory.core.errors import FactoryError
from factory.export.pack import PackConcept, build_pack, write_pack
from factory.runtime.editor import Editor
from factory.runtime.pack import read_pack

GEN = dict(ngf=8, image_size=32)


def lora(folder: Path, base_dir: Path, seed: int, rank: int, groups: list[str], bias: bool,
         scale: float = 0.1, exact: bool = False) -> Path:
    """A 'trained' peft adapter: random B (``scale``) and a moved A, optionally with lora_bias; ``exact``:
    every factor float16-exact."""
    from peft import LoraConfig, get_peft_model

    base = load_model(base_dir)
    torch.manual_seed(seed)
    model = get_peft_model(base, LoraConfig(target_modules=target_modules(base, groups), r=rank,
                                            lora_alpha=2 * rank, lora_bias=bias))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape) * scale)
            elif "lora_A" in name:
                p.add_(torch.randn(p.shape) * 0.05)
            if exact and "lora_" in name:
                p.copy_(p.half().float())
    model.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("pack")
    torch.set_num_threads(1)
    base_dir = root / "base"
    save_model(build_generator(seed=3, **GEN), base_dir, {})
    concepts = [
        PackConcept("warm", "give it a warm golden tone", lora(root / "a1", base_dir, 1, 2, ["down2", "xattn"], True)),
        PackConcept("sketch", "turn it into a strongly contrasted pencil sketch with heavy lines",
                    lora(root / "a2", base_dir, 2, 4, ["up1", "head"], False)),
        PackConcept("plain", "make it plain", None),
    ]
    rng = np.random.default_rng(0)
    images = {c.name: rng.uniform(-1, 1, (3, 3, 32, 48)).astype(np.float32) for c in concepts}
    return {"root": root, "base": BaseGAN.load(base_dir), "concepts": concepts, "images": images}


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_pack_equals_standalone_editors(tiny, precision):
    base = tiny["base"]
    parts = build_pack(base, tiny["concepts"], size=32, precision=precision)
    out = tiny["root"] / f"pack-{precision}"
    manifest = write_pack(parts, out, "tiny", tiny["images"], precision, base, threads=1, log=lambda m: None)
    # one base, one small file per concept, all of the same size (one layout)
    sizes = {e["name"]: (out / e["file"]).stat().st_size for e in manifest["concepts"]}
    assert len(set(sizes.values())) == 1
    assert (out / "base.weights").stat().st_size > 3 * max(sizes.values())
    for name in ("warm", "sketch", "plain"):
        assert manifest["checks"][name]["max_abs"] <= (1e-4 if precision == "fp32" else 4e-3)
    # the concepts really differ (the check is not comparing one model with itself)
    x = tiny["images"]["warm"]
    outs = {c: Editor.from_pack(out, c, threads=1).run(x) for c in ("warm", "sketch", "plain")}
    assert np.abs(outs["warm"] - outs["sketch"]).max() > 1e-2
    assert np.abs(outs["warm"] - outs["plain"]).max() > 1e-3  # 10x the fp32 bound
    if precision == "fp16":
        fp32_bytes = (tiny["root"] / "pack-fp32" / "base.weights").stat().st_size
        assert (out / "base.weights").stat().st_size < 0.6 * fp32_bytes


def test_fp16_pack_of_float16_exact_weights_equals_the_standalone_editor(tiny):
    """A base saved float16-exact (as training and `factory pretrain install` save it) and float16-exact LoRA
    factors: the float16 pack stores every value exactly, so it meets the fp32 bound at half the bytes."""
    from base_gan.models import round_to_float16_

    root = tiny["root"] / "exact"
    base_dir = save_model(round_to_float16_(load_model(tiny["base"].folder)), root / "base", {})
    adapter = lora(root / "raw", base_dir, 7, 4, ["up1", "head"], True, scale=0.3)
    lora(root / "exact-adapter", base_dir, 7, 4, ["up1", "head"], True, scale=0.3, exact=True)
    base = BaseGAN.load(base_dir)
    images = {"exact": np.random.default_rng(3).uniform(-1, 1, (3, 3, 32, 48)).astype(np.float32)}
    parts = build_pack(base, [PackConcept("exact", "make it exact", root / "exact-adapter")], size=32,
                       precision="fp16")
    assert parts.lossless
    manifest = write_pack(parts, root / "pack", "exact", images, "fp16", base, threads=1, log=lambda m: None)
    assert manifest["checks"]["stored_exactly"] and manifest["checks"]["threshold_max_abs"] == 1e-4
    assert manifest["checks"]["exact"]["max_abs"] <= 1e-4
    # the same adapter unrounded is not stored exactly: the float16 bound applies
    loose = build_pack(base, [PackConcept("loose", "make it exact", adapter)], size=32, precision="fp16")
    assert not loose.lossless


def test_a_corrupt_or_missing_pack_part_is_a_clear_error(tiny):
    out = tiny["root"] / "pack-fp32"
    if not out.is_dir():
        write_pack(build_pack(tiny["base"], tiny["concepts"], size=32), out, "tiny", tiny["images"], "fp32",
                   tiny["base"], threads=1, log=lambda m: None)
    with pytest.raises(FactoryError, match="must be file names"):
        build_pack(tiny["base"], [PackConcept("../evil", "x", None)], size=32)
    with pytest.raises(FactoryError, match=r"no concept 'nope'.*warm"):
        Editor.from_pack(out, "nope")
    bad = tiny["root"] / "broken"
    import shutil

    shutil.copytree(out, bad)
    part = bad / "concepts" / "warm.bin"
    part.write_bytes(part.read_bytes()[:-8] + b"\xff" * 8)
    with pytest.raises(FactoryError, match="corrupt pack file"):
        Editor.from_pack(bad, "warm")
    (bad / "pack.json").write_text("{not json")
    with pytest.raises(FactoryError, match="corrupt pack manifest"):
        read_pack(bad)
    with pytest.raises(FactoryError, match="not a filter pack"):
        read_pack(tiny["root"])
    manifest = json.loads((out / "pack.json").read_text())
    assert manifest["format"] == "editfactory-pack/1"


def test_factory_export_pack_from_the_workspace(tiny, tmp_path):
    from conftest import run_factory

    from factory.core.workspace import Workspace

    ws = Workspace(tmp_path / "ws")
    base_dir = ws.base("tiny")
    save_model(load_model(tiny["base"].folder), base_dir, {})
    for i, concept in enumerate(("sepia", "negative")):
        lora(ws.lora(concept), base_dir, i + 5, 2, ["head"], True)
        (ws.lora(concept) / "metrics.json").write_text(json.dumps({"base": str(base_dir)}))
    r = run_factory(ws.root, "export", "sepia", "negative", "--pack", "duo", "--size", "32", "--threads", "1")
    assert "pack duo: 2 concept(s)" in r.stdout, r.stdout + r.stderr
    manifest = read_pack(ws.pack("duo"))
    assert [c["name"] for c in manifest["concepts"]] == ["sepia", "negative"]
    assert all(manifest["checks"][c]["max_abs"] <= 1e-4 for c in ("sepia", "negative"))
    photo = np.random.default_rng(1).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    a = Editor.from_pack(ws.pack("duo"), "sepia", threads=1).edit([photo])[0]
    b = Editor.from_pack(ws.pack("duo"), "negative", threads=1).edit([photo])[0]
    assert a.shape == photo.shape and np.abs(a.astype(int) - b).max() > 2
    r = run_factory(ws.root, "export", "sepia", "negative", check=False)
    assert r.returncode == 2 and "--pack NAME" in r.stderr
    # factory apply runs a pack's concept by the pack's name in the workspace: the library's pixels
    from conftest import write_rgb

    from factory.core.images import read_image

    write_rgb(tmp_path / "in.png", photo)
    run_factory(ws.root, "apply", "duo", str(tmp_path / "in.png"), "--concept", "negative", "-o",
                str(tmp_path / "out.png"), "--threads", "1")
    assert np.array_equal(read_image(tmp_path / "out.png"), b)
    for args, message in ((["duo"], "is a filter pack: name one of its concepts with --concept"),
                          (["duo", "--concept", "nope"], "no concept 'nope'"),
                          ([str(tmp_path / "in.png"), "--concept", "sepia"], "is not a filter pack")):
        r = run_factory(ws.root, "apply", *args, str(tmp_path / "in.png"), "-o", str(tmp_path / "x"), check=False)
        assert r.returncode != 0 and message in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_a_concept_drawn_with_a_screen_is_refused_with_a_clear_message(tiny):
    """A pack's shared graph has no position input: an adapter that trains the stem's waves conv is refused (the
    standalone editor is the way to ship it), not packed without its screen."""
    from base_gan.generator import with_screen_waves
    from factory.lora.adapters import LoraLayout, save_adapter, wrap

    screen = with_screen_waves(tiny["base"].copy(), [[0.1414, 0.1414]], 32)
    folder = save_adapter(wrap(screen, LoraLayout(["up1"], ranks=2)), tiny["root"] / "dots")
    assert (folder / "screen.json").is_file()
    with pytest.raises(FactoryError, match=r"dots: drawn with a fixed screen.*standalone editor"):
        build_pack(tiny["base"], [tiny["concepts"][0], PackConcept("dots", "print it in dots", folder)], size=32)


def test_a_concept_with_a_colour_basis_packs_its_colour_conv_with_its_factors(tiny):
    """An adapter that trains head.colour whole (the colour basis) packs beside concepts without one: the pack's
    base has the conv at zero, the concept's file carries its weight, and each concept edits as its standalone editor
    (the colour conv really changes the output); two degrees in one pack are refused."""
    from base_gan.generator import with_colour_basis
    from factory.lora.adapters import LoraLayout, save_adapter, wrap

    root = tiny["root"] / "colour"
    folders = {}
    for degree in (5, 2):  # the highest degree (55 monomials) and a low one
        model = wrap(with_colour_basis(tiny["base"].copy(), degree), LoraLayout(["up1"], ranks=2), seed=degree)
        with torch.no_grad():
            model.get_submodule("base_model.model.head.colour").modules_to_save["default"].weight.normal_(0, 0.2)
        folders[degree] = save_adapter(model, root / f"degree{degree}")
    concepts = [PackConcept("tinted", "tint it by a colour map", folders[5]), tiny["concepts"][1],
                tiny["concepts"][2]]
    images = {c.name: tiny["images"][c.name] if c.name in tiny["images"] else tiny["images"]["warm"]
              for c in concepts}
    parts = build_pack(tiny["base"], concepts, size=32)
    manifest = write_pack(parts, root / "pack", "colour", images, "fp32", tiny["base"], threads=1, log=lambda m: None)
    for name in ("tinted", "sketch", "plain"):
        assert manifest["checks"][name]["max_abs"] <= 1e-4, (name, manifest["checks"][name])
    x = images["tinted"]
    assert np.abs(Editor.from_pack(root / "pack", "tinted", threads=1).run(x)
                  - Editor.from_pack(root / "pack", "plain", threads=1).run(x)).max() > 0.05
    with pytest.raises(FactoryError, match="share one colour basis"):
        build_pack(tiny["base"], [concepts[0], PackConcept("other", "another map", folders[2])], size=32)


def test_a_concept_with_the_lens_basis_packs_its_lens_conv_beside_concepts_without(tiny):
    """An adapter that trains head.lens whole (the lens basis, with a colour basis) packs beside concepts without
    either: the pack's base has both convs at zero, the concept's file carries their weights, each concept edits as
    its standalone editor, and the lens conv really changes the output."""
    from base_gan.generator import with_colour_basis, with_lens_basis
    from factory.lora.adapters import LoraLayout, save_adapter, wrap

    root = tiny["root"] / "lens"
    model = wrap(with_lens_basis(with_colour_basis(tiny["base"].copy(), 2)), LoraLayout(["up1"], ranks=2), seed=1)
    with torch.no_grad():
        model.get_submodule("base_model.model.head.lens").modules_to_save["default"].weight.normal_(0, 0.2)
    concepts = [PackConcept("vignetted", "darken the corners", save_adapter(model, root / "lensed")),
                tiny["concepts"][2]]
    images = {"vignetted": tiny["images"]["warm"], "plain": tiny["images"]["plain"]}
    manifest = write_pack(build_pack(tiny["base"], concepts, size=32), root / "pack", "lens", images, "fp32",
                          tiny["base"], threads=1, log=lambda m: None)
    for name in ("vignetted", "plain"):
        assert manifest["checks"][name]["max_abs"] <= 1e-4, (name, manifest["checks"][name])
    assert manifest["frame"]["name"] == Editor.from_pack(root / "pack", "vignetted").frame_name == "frame"
    x = images["vignetted"]
    assert np.abs(Editor.from_pack(root / "pack", "vignetted", threads=1).run(x)
                  - Editor.from_pack(root / "pack", "plain", threads=1).run(x)).max() > 0.05


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_a_concept_with_output_curves_packs_them_beside_concepts_without(tiny, precision):
    """A concept whose adapter folder holds output curves (factory.lora.output_calibration): the pack's graph ends
    with the curves, the concept's file carries its own, the others the identity; each concept edits as its
    standalone editor, and the curves really change the output."""
    import shutil

    from factory.lora.output_calibration import CURVES_FILE
    from factory.runtime.colour_curves import identity_knots

    root = tiny["root"] / f"curves-{precision}"
    graded = shutil.copytree(tiny["concepts"][0].adapter_dir, root / "graded")
    knots = identity_knots()[::-1] ** 0.7  # each output channel another input's curve
    (graded / CURVES_FILE).write_text(json.dumps({"knots": knots.tolist()}))
    mapped = shutil.copytree(tiny["concepts"][1].adapter_dir, root / "mapped")  # curves of the output and the photo
    both = np.concatenate([0.5 * identity_knots(), 0.5 * identity_knots()[::-1] ** 2], 1)
    (mapped / CURVES_FILE).write_text(json.dumps({"knots": both.tolist()}))
    concepts = [PackConcept("graded", tiny["concepts"][0].instruction, graded),
                PackConcept("mapped", tiny["concepts"][1].instruction, mapped), *tiny["concepts"]]
    images = {**tiny["images"], "graded": tiny["images"]["warm"], "mapped": tiny["images"]["sketch"]}
    parts = build_pack(tiny["base"], concepts, size=32, precision=precision)
    manifest = write_pack(parts, root / "pack", "curves", images, precision, tiny["base"], threads=1,
                          log=lambda m: None)
    for name in ("graded", "mapped", "warm", "sketch", "plain"):
        assert manifest["checks"][name]["max_abs"] <= (1e-4 if precision == "fp32" else 4e-3), name
    x = images["graded"]
    graded_out = Editor.from_pack(root / "pack", "graded", threads=1).run(x)
    assert np.abs(graded_out - Editor.from_pack(root / "pack", "warm", threads=1).run(x)).max() > 0.1
    mapped_out = Editor.from_pack(root / "pack", "mapped", threads=1).run(x)
    assert np.abs(mapped_out - Editor.from_pack(root / "pack", "sketch", threads=1).run(x)).max() > 0.1
