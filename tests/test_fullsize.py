"""Full-size photos: guided upsampling, streamed tiles, the export's choice, a screen finish, `factory apply --path`."""

from __future__ import annotations

import itertools
import json
import shutil
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper

from factory.cli import cli
from factory.core.errors import FactoryError
from factory.runtime.editor import Editor
from factory.runtime.fullsize import FullSize, card_full_size, describe, resolve
from factory.runtime.guided import DEFAULT_EPS, guided_edit
from factory.runtime.screen_finish import Finish, blur, finish_for, levels, screen_cell
from factory.runtime.tiles import axis_tiles, edit_tiled, ordered_map
from tests.conftest import photo, write_rgb

MIX = np.array([[0.7, 0.3, 0.1], [0.1, 0.8, 0.1], [0.05, 0.25, 0.6]], np.float32)  # a channel mixer


def textured(h: int, w: int, seed: int = 0, noise: float = 10.0) -> np.ndarray:
    """A smooth photo-like image with fine texture (what a low-resolution edit never sees)."""
    img = photo(seed, h, w).astype(np.float32)
    img += np.random.default_rng(seed).normal(0.0, noise, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


def per_pixel(x: np.ndarray) -> np.ndarray:
    """A per-pixel 'editor' on [B, 3, H, W] in [-1, 1]: a colour mix and a tone curve."""
    return np.tanh(1.4 * np.einsum("ci,bihw->bchw", MIX, x) + 0.15)


def whole(run, img: np.ndarray, stride: int = 16) -> np.ndarray:
    """``run`` on the whole reflect-padded image, cropped back (what tiles must reproduce)."""
    h, w = img.shape[:2]
    ph, pw = -(-h // stride) * stride, -(-w // stride) * stride
    border = cv2.BORDER_REFLECT_101 if min(h, w) > 1 else cv2.BORDER_REPLICATE
    pad = cv2.copyMakeBorder(img, 0, ph - h, 0, pw - w, border)
    y = run(pad.astype(np.float32).transpose(2, 0, 1)[None] / 127.5 - 1)[0]
    return np.clip(np.rint((y + 1) * 127.5), 0, 255).astype(np.uint8).transpose(1, 2, 0)[:h, :w]


# -- tiles ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("h, w, tile", [(333, 517, 128), (700, 450, 256), (100, 60, 64), (17, 900, 64), (1, 5, 16)])
def test_streamed_tiles_equal_the_whole_image_for_a_per_pixel_editor(h: int, w: int, tile: int) -> None:
    img = textured(h, w, seed=h)
    calls = []

    def run(x: np.ndarray) -> np.ndarray:
        calls.append(x.shape)
        return per_pixel(x)

    tiled = edit_tiled(run, img, tile, 16, batch=3)
    assert tiled.shape == img.shape and tiled.dtype == np.uint8
    assert np.abs(tiled.astype(int) - whole(per_pixel, img)).max() <= 1
    assert all(s[2] <= tile and s[3] <= tile and s[2] % 16 == 0 and s[3] % 16 == 0 for s in calls)


def test_tiles_run_by_two_workers_equal_one_worker() -> None:
    img = textured(700, 450, seed=5)
    lock, running, most = threading.Lock(), [0], [0]

    def run(x: np.ndarray) -> np.ndarray:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.002 * (int(x[0, 0, 0, 0] * 100) % 3))  # calls finish out of order
        try:
            return np.tanh(per_pixel(x) + 0.3 * x[:, :, ::-1, :])  # position-dependent: a misplaced tile shows
        finally:
            with lock:
                running[0] -= 1

    one = edit_tiled(run, img, 128, 16, batch=1, overlap=32)
    two = edit_tiled(run, img, 128, 16, batch=1, overlap=32, workers=2)
    np.testing.assert_array_equal(one, two)
    assert most[0] == 2


def test_ordered_map_keeps_order_with_a_bounded_number_in_flight() -> None:
    pulled = [0]

    def items():
        for i in range(40):
            pulled[0] += 1
            yield i

    def slow(i: int) -> int:
        time.sleep(0.001 * (i % 4))
        return i * i

    got = []
    for r in ordered_map(slow, items(), 3):
        assert pulled[0] - len(got) <= 2 * 3
        got.append(r)
    assert got == [i * i for i in range(40)]
    assert list(ordered_map(slow, range(5), 1)) == [0, 1, 4, 9, 16]


def test_tile_grid_covers_with_overlap_and_little_waste() -> None:
    for total, tile in [(4000, 512), (3008, 512), (9008, 512), (1088, 1024), (512, 512), (48, 512)]:
        length, starts = axis_tiles(total, tile, 64, 16)
        assert length <= tile and length % 16 == 0 and all(s % 16 == 0 for s in starts)
        assert starts[0] == 0 and starts[-1] + length == total
        assert all(b - a <= length - 48 for a, b in itertools.pairwise(starts))  # overlap >= overlap - stride
        assert len(starts) * length < total * 1.15 + length  # shrunk tiles, not a last tile mostly overlapping


# -- guided upsampling --------------------------------------------------------------------------------


def test_guided_reproduces_global_and_smooth_colour_transforms_at_full_resolution() -> None:
    img = textured(900, 1200, seed=4)

    def affine(im: np.ndarray) -> np.ndarray:
        return np.clip(im.astype(np.float32) @ MIX.T + 12.0, 0, 255).round().astype(np.uint8)

    def curve(im: np.ndarray) -> np.ndarray:
        return np.clip(255 * (im.astype(np.float32) / 255) ** 0.7, 0, 255).round().astype(np.uint8)

    def graded(im: np.ndarray) -> np.ndarray:  # the curve and a vignette: smooth in space, relative to the image
        h, w = im.shape[:2]
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        v = 1.0 - 1.4 * (((xx + 0.5) / w - 0.5) ** 2 + ((yy + 0.5) / h - 0.5) ** 2)
        return np.clip(curve(im) * v[..., None], 0, 255).round().astype(np.uint8)

    for edit, floor in ((affine, 45.0), (curve, 38.0), (graded, 36.0)):
        out, low = guided_edit(edit, img, 256, 16)
        assert out.shape == img.shape and low.shape[:2] == (192, 256)
        exact = edit(img)
        upsized = cv2.resize(low, (1200, 900), interpolation=cv2.INTER_CUBIC)
        assert psnr(out, exact) > max(floor, psnr(upsized, exact) + 6), (edit.__name__, psnr(out, exact))


# -- the editor runtime: paths, card, errors ---------------------------------------------------------


def onnx_editor(path: Path, kernel: np.ndarray) -> Path:
    """A conv editor (``kernel``: out x in x k x k, then a tone curve; dynamic shapes) with editor metadata."""
    k = kernel.shape[-1]
    w = helper.make_tensor("w", TensorProto.FLOAT, list(kernel.shape), kernel.astype(np.float32).flatten().tolist())
    b = helper.make_tensor("b", TensorProto.FLOAT, [3], [0.15] * 3)
    conv = helper.make_node("Conv", ["image", "w", "b"], ["mixed"], pads=[k // 2] * 4)
    dims = ["batch", 3, "height", "width"]
    graph = helper.make_graph(
        [conv, helper.make_node("Tanh", ["mixed"], ["edited"])], "editor",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("edited", TensorProto.FLOAT, dims)], [w, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, v in {"concept": path.parent.name, "stride": "16", "input_size": "64", "precision": "fp32"}.items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=v))
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)
    return path


@pytest.fixture(scope="module")
def editors(tmp_path_factory) -> dict[str, Path]:
    """A per-pixel editor ('mix': ``per_pixel``) and a spatial one ('sharp': the mix plus strong sharpening,
    which no colour model reproduces), each in a folder whose card chooses guided at 64 px, tiles of 64."""
    root = tmp_path_factory.mktemp("editors")
    mix = (1.4 * MIX)[:, :, None, None]
    laplacian = np.array([[0, -1, 0], [-1, 4, -1], [0, -1, 0]], np.float32)
    sharp = np.pad(mix, ((0, 0), (0, 0), (1, 1), (1, 1))) + 1.5 * np.eye(3)[:, :, None, None] * laplacian
    paths = {"mix": onnx_editor(root / "mix" / "editor.onnx", mix),
             "sharp": onnx_editor(root / "sharp" / "editor.onnx", sharp)}
    for p in paths.values():
        (p.parent / "card.json").write_text(json.dumps({"full_size": {"path": "guided", "low_side": 64, "tile": 64}}))
    return paths


def test_editor_paths_follow_the_card_and_overrides(editors: dict[str, Path]) -> None:
    img = textured(150, 230, seed=7)
    mix = Editor(editors["mix"].parent, threads=1)
    assert mix.full_size == FullSize("guided", 64, 64, str(editors["mix"].parent / "card.json"))
    exact = whole(per_pixel, img)
    assert np.abs(mix.edit([img], path="tiled")[0].astype(int) - exact).max() <= 1
    assert psnr(mix.edit([img])[0], exact) > 38  # the card's guided path, from a 64 px edit
    sharp = Editor(editors["sharp"], threads=1)
    guided, tiled = sharp.edit([img])[0], sharp.edit([img], path="tiled")[0]
    assert psnr(guided, tiled) < 35  # the two paths really differ on this editor
    np.testing.assert_array_equal(guided, sharp.edit([img], path="guided", size=64)[0])
    np.testing.assert_array_equal(tiled, sharp.edit([img], tile=64)[0])  # --tile alone means tiled
    assert sharp.edit([img], size=48)[0].shape == img.shape  # --size alone means resize
    small = img[:40, :60]
    np.testing.assert_array_equal(sharp.edit([small])[0], sharp.edit([small], path="tiled")[0])  # nothing to upsample


def test_guided_path_follows_the_cards_colour_curves(editors: dict[str, Path], tmp_path: Path) -> None:
    img = textured(150, 230, seed=5)
    folder = tmp_path / "curved"
    shutil.copytree(editors["mix"].parent, folder)
    (folder / "card.json").write_text(json.dumps({"full_size": {"path": "guided", "low_side": 64, "tile": 64,
                                                                "guided_curves": True, "guided_eps": 1.0}}))
    curved, plain = Editor(folder, threads=1), Editor(editors["mix"].parent, threads=1)
    assert (curved.full_size.curves, curved.full_size.eps) == (True, 1.0) and not plain.full_size.curves
    assert "colour curves" in describe(curved.full_size)
    out = curved.edit([img])[0]
    np.testing.assert_array_equal(out, plain.guided(img, 64, 1, 64, curves=True, eps=1.0)[0])
    assert not np.array_equal(out, plain.edit([img])[0])  # the card's curves changed the output
    assert psnr(out, whole(per_pixel, img)) > 38  # and it is still the editor's edit


def test_editor_edits_tiles_in_as_many_workers_as_threads(editors: dict[str, Path]) -> None:
    img = textured(300, 420, seed=11)
    single = Editor(editors["sharp"], threads=1)
    double = Editor(editors["sharp"], threads=2)
    assert (single.tile_workers, double.tile_workers) == (1, 2)
    one, two = single.edit([img], path="tiled", tile=64)[0], double.edit([img], path="tiled", tile=64)[0]
    assert double._tile_session is not None and single._tile_session is None  # two workers ran the tiles
    assert np.abs(one.astype(int) - two).max() <= 1
    double.tile_overlap = 16
    assert np.abs(double.edit([img], path="tiled", tile=64)[0].astype(int) - one).max() <= 1  # a conv editor: seamless


def test_card_and_path_errors(editors: dict[str, Path], tmp_path: Path) -> None:
    assert card_full_size(tmp_path / "bare.onnx") == FullSize()  # no card: tiled
    assert resolve(FullSize(), "auto") == ("tiled", None, 512)
    with pytest.raises(FactoryError, match="unknown path 'fast'"):
        resolve(FullSize(), "fast")
    with pytest.raises(FactoryError, match="does not apply to --path tiled"):
        resolve(FullSize(), "tiled", size=256)
    bad = tmp_path / "bad"
    shutil.copytree(editors["mix"].parent, bad)
    (bad / "card.json").write_text(json.dumps({"full_size": {"path": "magic", "low_side": 64}}))
    with pytest.raises(FactoryError, match=r"card\.json: full_size must have path guided, tiled or screen"):
        Editor(bad).edit([photo(1)])
    for curves, eps in (("yes", 0.01), (True, 0), (False, "small")):
        (bad / "card.json").write_text(json.dumps({"full_size": {"path": "guided", "low_side": 64, "tile": 64,
                                                                 "guided_curves": curves, "guided_eps": eps}}))
        with pytest.raises(FactoryError, match=r"full_size\.guided_curves must be true or false and guided_eps"):
            Editor(bad).edit([photo(1)])
    (bad / "card.json").write_text("{not json")
    with pytest.raises(FactoryError, match="not a readable editor card"):
        Editor(bad).edit([photo(1)])
    with pytest.raises(FactoryError, match="expected HxWx3 uint8"):
        Editor(editors["mix"]).edit([np.zeros((0, 5, 3), np.uint8)])


def _apply(workspace: Path, *args: str):
    return CliRunner().invoke(cli, ["--workspace", str(workspace), "apply", *args])


def test_factory_apply_honours_the_card_and_overrides(editors: dict[str, Path], workspace: Path,
                                                      tmp_path: Path) -> None:
    img = textured(150, 230, seed=9)
    src = write_rgb(tmp_path / "in" / "shot.png", img)
    folder = editors["sharp"].parent
    sharp = Editor(folder, threads=1)
    names = itertools.count()

    def applied(*args: str) -> tuple[np.ndarray, str]:
        out = tmp_path / "out" / f"{next(names)}.png"
        r = _apply(workspace, *args[:1], str(src), "-o", str(out), *args[1:])
        assert r.exit_code == 0, r.output
        return cv2.cvtColor(cv2.imread(str(out)), cv2.COLOR_BGR2RGB), r.output

    out, msg = applied(str(folder))
    np.testing.assert_array_equal(out, sharp.edit([img], path="guided")[0])
    assert "guided, editor at 64 px (from" in msg and "card.json" in msg
    out, msg = applied(str(folder), "--path", "tiled")
    np.testing.assert_array_equal(out, sharp.edit([img], path="tiled")[0])
    assert "tiled, 64 px tiles (from the options)" in msg
    out, _ = applied(str(folder), "--tile", "32")
    np.testing.assert_array_equal(out, sharp.edit([img], path="tiled", tile=32)[0])
    out, msg = applied(str(folder), "--size", "48")
    assert out.shape == img.shape and "resized to 48 px" in msg
    bare = tmp_path / "bare" / "model.onnx"  # a .onnx without a card: tiled
    bare.parent.mkdir()
    shutil.copy(editors["sharp"], bare)
    out, msg = applied(str(bare))
    np.testing.assert_array_equal(out, sharp.edit([img], path="tiled", tile=512)[0])
    assert "tiled, 512 px tiles (from default (no card.json))" in msg

    bad_path = _apply(workspace, str(folder), str(src), "-o", str(tmp_path / "x.png"), "--path", "fast")
    assert bad_path.exit_code == 2 and "Invalid value for '--path'" in bad_path.output
    conflict = _apply(workspace, str(folder), str(src), "-o", str(tmp_path / "x.png"), "--path", "tiled",
                      "--size", "64")
    assert isinstance(conflict.exception, FactoryError)  # `factory` prints it as one line, exit code 2
    assert "(--size 64) does not apply to --path tiled" in str(conflict.exception)
    (tmp_path / "notes.png").write_text("not an image")
    not_image = _apply(workspace, str(folder), str(tmp_path / "notes.png"), "-o", str(tmp_path / "y"))
    assert not_image.exit_code == 0 and "notes.png" in not_image.output and "1 skipped" in not_image.output


# -- the export's measurement -------------------------------------------------------------------------


def _concept(tmp_path: Path, teacher: dict, photos: list[str]) -> Path:
    data = tmp_path / "data" / "mix"
    data.mkdir(parents=True)
    (data / "synth.json").write_text(json.dumps({"origin": "default photos (test)", "size": 64, "teacher": teacher}))
    lines = [json.dumps({"id": f"{i:05d}", "split": "test", "photo": name}) for i, name in enumerate(photos)]
    (data / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return data


def test_export_measures_both_paths_against_the_full_resolution_teacher(editors: dict[str, Path],
                                                                        tmp_path: Path) -> None:
    from factory.export.fullsize import guided_sides, measure_full_size

    # the teacher: a channel mix (the per-pixel editor is a similar mix with a tone curve)
    recipe = [{"op": "channel_mix", "matrix": MIX.tolist()}]
    data = _concept(tmp_path, {"kind": "classic", "recipe": recipe}, ["skimage:coffee", "skimage:rocket"])
    ed = Editor(editors["mix"], threads=1)
    section = measure_full_size(ed, data, 64, editor_db=20.0, photos=2, log=lambda m: None)
    assert section["measured"] and section["editor_psnr_db"] == 20.0
    assert [r["photo"] for r in section["photos"]] == ["skimage:rocket", "skimage:coffee"]  # largest first
    assert max(r["measured_size"][0] * r["measured_size"][1] for r in section["photos"]) <= (6 * 64) ** 2
    assert guided_sides(128, 256, 16) == [128, 256, 512] and guided_sides(64, 64, 16) == [64, 128]
    psnr = section["psnr_db"]  # guided measured with the editor at the pairs' size and at twice the export size,
    variants = {"guided_64", "guided_128", "curves_64", "curves_128"}  # with and without the colour curves
    assert set(psnr) == {"guided", "tiled", "resize"} | variants and section["seconds"]["tiled"] > 0
    kind = "curves" if section["guided_curves"] else "guided"
    assert psnr["guided"] == max(psnr[k] for k in variants) == psnr[f"{kind}_{section['low_side']}"]
    assert section["guided_eps"] == DEFAULT_EPS
    # guided matches tiled on a colour edit, so it is chosen; also on the crops upscaled twice (a larger photo)
    assert section["psnr_db"]["guided"] > section["psnr_db"]["tiled"] - 0.5 and section["path"] == "guided"
    larger = section["psnr_db_larger"]
    assert larger["guided"] > larger["tiled"] - 0.5 and "2x larger" in section["why"]

    emboss = _concept(tmp_path / "e", {"kind": "classic", "recipe": [{"op": "emboss"}]}, ["skimage:coffee"])
    section = measure_full_size(ed, emboss, 64, log=lambda m: None)
    assert not section["measured"] and section["path"] == "tiled" and "Sobel" in section["why"]
    diffusion = _concept(tmp_path / "d", {"kind": "instruct-pix2pix"}, ["skimage:coffee"])
    section = measure_full_size(ed, diffusion, 64, log=lambda m: None)
    assert section["path"] == "tiled" and "instruct-pix2pix teacher cannot be run" in section["why"]


def test_export_rejects_guided_when_it_loses_on_a_larger_photo(editors: dict[str, Path], tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import factory.export.fullsize as export

    recipe = [{"op": "channel_mix", "matrix": MIX.tolist()}]
    data = _concept(tmp_path, {"kind": "classic", "recipe": recipe}, ["skimage:coffee"])
    calls = []

    def larger(measured, recipe, cap, paths):
        calls.append([img.shape for img, _ in measured])
        assert set(paths) == {"guided", "tiled"}
        return {"guided": 20.0, "tiled": 25.0}

    monkeypatch.setattr(export, "_larger", larger)
    section = export.measure_full_size(Editor(editors["mix"], threads=1), data, 64, photos=1, log=lambda m: None)
    assert calls and section["path"] == "tiled" and "2x larger: guided 20.00 dB vs tiled 25.00 dB, beyond" in \
        section["why"]


def test_every_recipe_operation_has_a_full_resolution_rule() -> None:
    from factory.teachers.recipes import OPS, apply_recipe
    from factory.teachers.rescale import FIXED_SIZE, PIXEL_PARAMS, SCALE_FREE, apply_recipe_at, rescale_recipe

    assert set(OPS) == SCALE_FREE | set(PIXEL_PARAMS) | set(FIXED_SIZE)
    steps = rescale_recipe([{"op": "gaussian_blur", "sigma": 2.0}, {"op": "median", "ksize": 5},
                            {"op": "halftone", "cell": 6}, {"op": "curve"}], 3.0)
    assert [s.get("sigma") or s.get("ksize") or s.get("cell") for s in steps[:3]] == [6.0, 15, 18.0]
    # a blur at 3x on a 3x image is the blur at 1x upsampled
    img = photo(5, 64, 96)
    big = cv2.resize(img, (288, 192), interpolation=cv2.INTER_CUBIC)
    at_1x = apply_recipe(img, [{"op": "gaussian_blur", "sigma": 3.0}])
    at_3x = apply_recipe_at(big, [{"op": "gaussian_blur", "sigma": 3.0}], 3.0)
    assert psnr(cv2.resize(at_3x, (96, 64), interpolation=cv2.INTER_AREA), at_1x) > 35


# -- a screen editor's full-size finish ----------------------------------------------------------------

#: a halftone screen of cell 4 at 45 degrees, fitted on 128 px pairs (as card.json's position.screen holds it)
SCREEN = {"screen_waves": [[0.17678, 0.17678], [-0.17678, 0.17678]], "screen_size": 128,
          "screen_lattice": [[0.17678, 0.17678, 0.0], [-0.17678, 0.17678, 0.0]]}


def test_blur_matches_a_gaussian_and_levels_steepen_around_the_level() -> None:
    img = cv2.resize(textured(60, 80, seed=3), (800, 600), interpolation=cv2.INTER_CUBIC)
    exact = cv2.GaussianBlur(img, (0, 0), 24).astype(float)
    fast = blur(img, 24).astype(float)
    assert np.abs(fast - exact).mean() < 1.5 and np.abs(fast - img).mean() > 5 * np.abs(fast - exact).mean()
    assert blur(img, 0) is img
    v = np.arange(256, dtype=np.uint8)[None, :, None].repeat(3, axis=2)
    out = levels(v, 0.55, 2.0)[0, :, 0].astype(int)
    assert abs(out[round(0.55 * 255)] - 128) <= 1 and out[0] == 0 and out[-1] == 255
    assert (np.diff(out) >= 0).all() and out[200] - out[100] > 200 - 100  # monotone and steeper than the identity


def test_the_finish_follows_the_screen_and_rejects_bad_cards() -> None:
    assert screen_cell(SCREEN) == pytest.approx(4 / 128, rel=1e-3)  # the lattice's period over the pairs' side
    assert screen_cell({**SCREEN, "screen_lattice": None}) == pytest.approx(4 / 128, rel=1e-3)
    assert screen_cell(None) is None and finish_for(None) is None
    finish = finish_for(SCREEN)
    assert finish is not None and finish.pair_size == 128
    assert Finish.from_json(json.loads(json.dumps(finish.to_json()))) == finish
    assert finish.applies((512, 700, 3)) and not finish.applies((511, 4000, 3))  # 4x the pairs' short side
    old = {k: v for k, v in finish.to_json().items() if k != "max_scale"}  # a card from before max_scale
    assert finish.max_scale == 12 and Finish.from_json(old).max_scale == 0
    with pytest.raises(ValueError, match="needs numbers"):
        Finish.from_json({"cell": 0.1})
    with pytest.raises(ValueError, match="0 < level < 1"):
        Finish.from_json({**finish.to_json(), "level": 1.5})


def _finished_editor(editors: dict[str, Path], root: Path, finish: dict | None) -> Path:
    folder = root / "mix-finished"
    shutil.copytree(editors["mix"].parent, folder)
    (folder / "card.json").write_text(json.dumps({"full_size": {"path": "tiled", "low_side": 64, "tile": 64,
                                                                "finish": finish}}))
    return folder


def test_the_tiled_path_finishes_large_photos_only(editors: dict[str, Path], tmp_path: Path,
                                                    workspace: Path) -> None:
    finish = Finish(cell=0.1, pair_size=16, blur_cells=0.5, level=0.55, gain=2.0)
    folder = _finished_editor(editors, tmp_path, finish.to_json())
    ed = Editor(folder, threads=1)
    assert ed.full_size.finish == finish
    large, small = textured(150, 230, seed=5), textured(48, 80, seed=6)  # 150 >= 4 x 16 > 48
    plain = ed.edit([large], path="tiled", finish=False)[0]
    expected = levels(ed.edit([blur(large, 0.5 * 0.1 * 150)], path="tiled", finish=False)[0], 0.55, 2.0)
    np.testing.assert_array_equal(ed.edit([large])[0], expected)
    assert np.abs(expected.astype(int) - plain).mean() > 5  # the finish changed the photo
    np.testing.assert_array_equal(ed.edit([small])[0], ed.edit([small], finish=False)[0])
    np.testing.assert_array_equal(ed.edit([large], size=64)[0], ed.edit([large], size=64, finish=False)[0])
    capped = Editor(_finished_editor(editors, tmp_path / "capped", {**finish.to_json(), "max_scale": 6}), threads=1)
    shrunk = cv2.resize(large, (147, 96), interpolation=cv2.INTER_AREA)  # 6 x 16 px short side
    edited = capped.edit([blur(shrunk, 0.5 * 0.1 * 96)], path="tiled", finish=False)[0]
    want = levels(cv2.resize(edited, (230, 150), interpolation=cv2.INTER_CUBIC), 0.55, 2.0)
    np.testing.assert_array_equal(capped.edit([large])[0], want)

    src = write_rgb(tmp_path / "in.png", large)
    for args, want, phrase in (((), expected, "finished from 4x"), (("--no-finish",), plain, "64 px tiles (")):
        out = tmp_path / f"out{len(args)}.png"
        r = CliRunner().invoke(cli, ["--workspace", str(workspace), "apply", str(folder), str(src), "-o", str(out),
                                     *args])
        assert r.exit_code == 0 and phrase in r.output, r.output
        np.testing.assert_array_equal(cv2.cvtColor(cv2.imread(str(out)), cv2.COLOR_BGR2RGB), want)

    bad = _finished_editor(editors, tmp_path / "bad", {**finish.to_json(), "gain": -1})
    with pytest.raises(FactoryError, match=r"full_size\.finish: .*gain > 0.*export the editor again"):
        Editor(bad).edit([large])


def test_export_keeps_the_finish_only_when_it_measures_better(editors: dict[str, Path], tmp_path: Path) -> None:
    from factory.export.fullsize import measure_full_size

    recipe = [{"op": "halftone", "cell": 4, "angle": 45.0}]
    data = _concept(tmp_path, {"kind": "classic", "recipe": recipe}, ["skimage:coffee"])
    screen = {**SCREEN, "screen_size": 64}  # the concept's pairs are 64 px
    section = measure_full_size(Editor(editors["mix"], threads=1), data, 64, photos=1, log=lambda m: None,
                                screen=screen)
    psnr = section["psnr_db"]
    assert {"tiled", "tiled_finished"} <= set(psnr) and psnr["tiled_finished"] != psnr["tiled"]
    kept = psnr["tiled_finished"] > psnr["tiled"]
    assert (section["finish"] is not None) == kept and "screen finish" in section["why"]
    if kept:
        assert Finish.from_json(section["finish"]) == finish_for(screen)
    plain = measure_full_size(Editor(editors["mix"], threads=1), data, 64, photos=1, log=lambda m: None)
    assert plain["finish"] is None and "tiled_finished" not in plain["psnr_db"]
