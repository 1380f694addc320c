"""The screen path (factory.runtime.screen_render): a screen editor's ink drawn as full-resolution dots."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from factory.cli import cli
from factory.core.errors import FactoryError
from factory.runtime.editor import Editor
from factory.runtime.fullsize import FullSize, describe, resolve
from factory.runtime.screen_render import ScreenRender, check_lattice, fit_render, render_screen
from factory.teachers.rescale import apply_recipe_at
from tests.conftest import write_rgb
from tests.test_fullsize import MIX, SCREEN, onnx_editor, psnr, textured

#: the teacher: a halftone of cell 4 at 45 degrees on 64 px pairs (SCREEN's lattice, fitted on 64 px pairs)
RECIPE = [{"op": "halftone", "cell": 4, "angle": 45.0}]
SCREEN64 = {**SCREEN, "screen_size": 64}


def teacher(img: np.ndarray) -> np.ndarray:
    """The halftone at the photo's own scale (its cell grows with the photo: 4 px per 64 px of short side)."""
    return apply_recipe_at(img, RECIPE, min(img.shape[:2]) / 64)


def large_photo(seed: int, h: int = 384, w: int = 512) -> np.ndarray:
    return cv2.resize(textured(h // 8, w // 8, seed=seed, noise=4.0), (w, h), interpolation=cv2.INTER_CUBIC)


@pytest.fixture(scope="module")
def render() -> ScreenRender:
    """The render's threshold array fitted on two training photos with the teacher's output."""
    return fit_render(SCREEN64, [(p, teacher(p)) for p in (large_photo(1), large_photo(2))], bins=32)


def test_the_render_draws_the_teachers_dots_from_a_low_resolution_ink(render: ScreenRender) -> None:
    test = large_photo(3, 512, 640)  # 8x the pairs' size; never seen by the fit
    reference = teacher(test)
    low = replace(render, low_scale=4.0)  # an ideal editor (the teacher itself) at 4x the pairs' size
    drawn = render_screen(teacher, test, low)
    small = cv2.resize(test, (320, 256), interpolation=cv2.INTER_AREA)
    upscaled = cv2.resize(teacher(small), (640, 512), interpolation=cv2.INTER_CUBIC)
    assert drawn.shape == test.shape and (drawn[..., 0] == drawn[..., 1]).all()  # grey, full size
    assert psnr(drawn, reference) > psnr(upscaled, reference) + 2.0, (psnr(drawn, reference), psnr(upscaled, reference))
    assert psnr(drawn, reference) > 18.0
    white = render_screen(lambda a: np.full_like(a, 255), test, low)  # no ink at all: (almost) no dots
    assert white.mean() > 245 and reference.mean() < 200


def test_the_render_card_round_trips_and_bad_cards_are_refused(render: ScreenRender) -> None:
    back = ScreenRender.from_json(json.loads(json.dumps(render.to_json())))
    assert (back.lattice, back.screen_size, back.low_scale) == (render.lattice, 64, 12.0)
    np.testing.assert_allclose(back.table, render.table, atol=1e-4)
    assert render.cell == pytest.approx(4 / 64, rel=1e-3)
    assert render.applies((256, 300, 3)) and not render.applies((255, 4000, 3))  # 4x the pairs' short side
    assert not check_lattice(SCREEN["screen_lattice"][:1]) and not check_lattice(None)
    with pytest.raises(ValueError, match="two lattice waves"):
        ScreenRender.from_json({**render.to_json(), "lattice": render.to_json()["lattice"][:1]})
    with pytest.raises(ValueError, match="needs lattice, screen_size"):
        ScreenRender.from_json({"lattice": []})
    with pytest.raises(ValueError, match="two-wave screen_lattice"):
        fit_render({**SCREEN64, "screen_lattice": None}, [])
    with pytest.raises(FactoryError, match="--path screen needs an editor whose card has a screen render"):
        resolve(FullSize(), "screen")
    with pytest.raises(FactoryError, match="does not apply to --path screen"):
        resolve(FullSize(path="screen", render=render), "screen", size=128)


def _screen_editor(root: Path, full_size: dict) -> Path:
    folder = root / "mix-screen"
    onnx_editor(folder / "editor.onnx", (1.4 * MIX)[:, :, None, None])
    (folder / "card.json").write_text(json.dumps({"full_size": full_size}))
    return folder


def test_the_screen_path_follows_the_card(render: ScreenRender, tmp_path: Path, workspace: Path) -> None:
    small_pairs = replace(render, screen_size=16)  # so that a 150 px photo is large enough (4 x 16)
    folder = _screen_editor(tmp_path, {"path": "screen", "low_side": 64, "tile": 64,
                                       "render": small_pairs.to_json()})
    ed = Editor(folder, threads=1)
    assert ed.full_size.render is not None and ed.full_size.path == "screen"
    assert "screen render from 4x" in describe(ed.full_size)
    large, small = textured(150, 230, seed=5), textured(48, 80, seed=6)
    want = render_screen(lambda a: ed.edit([a], path="tiled")[0], large, ed.full_size.render)  # (no finish here)
    np.testing.assert_array_equal(ed.edit([large])[0], want)
    tiled = ed.edit([large], path="tiled")[0]
    assert np.abs(tiled.astype(int) - want).mean() > 5  # the dots differ from the model's own colours
    np.testing.assert_array_equal(ed.edit([small])[0], ed.edit([small], path="tiled")[0])  # too small: tiled

    src = write_rgb(tmp_path / "in.png", large)
    for args, expected in (((), want), (("--path", "tiled"), tiled)):
        out = tmp_path / f"out{len(args)}.png"
        r = CliRunner().invoke(cli, ["--workspace", str(workspace), "apply", str(folder), str(src), "-o", str(out),
                                     *args])
        assert r.exit_code == 0, r.output
        np.testing.assert_array_equal(cv2.cvtColor(cv2.imread(str(out)), cv2.COLOR_BGR2RGB), expected)

    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    (bad / "card.json").write_text(json.dumps({"full_size": {"path": "screen", "low_side": 64, "tile": 64}}))
    with pytest.raises(FactoryError, match="path screen but no render; export the editor again"):
        Editor(bad).edit([large])
    (bad / "card.json").write_text(json.dumps({"full_size": {"path": "screen", "low_side": 64, "tile": 64,
                                                             "render": {**render.to_json(), "table": [[1.0]]}}}))
    with pytest.raises(FactoryError, match=r"full_size\.render: .*square finite table"):
        Editor(bad).edit([large])
    plain = tmp_path / "plain"
    shutil.copytree(folder, plain)
    (plain / "card.json").write_text(json.dumps({"full_size": {"path": "tiled", "low_side": 64, "tile": 64}}))
    r = CliRunner().invoke(cli, ["--workspace", str(workspace), "apply", str(plain), str(src), "-o",
                                 str(tmp_path / "x.png"), "--path", "screen"])
    assert isinstance(r.exception, FactoryError) and "card has a screen render" in str(r.exception)


def test_export_fits_the_render_on_training_photos_and_measures_it(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import factory.export.fullsize as export

    data = tmp_path / "data" / "mix"
    data.mkdir(parents=True)
    (data / "synth.json").write_text(json.dumps({"origin": "default photos (test)", "size": 64,
                                                 "teacher": {"kind": "classic", "recipe": RECIPE}}))
    rows = [{"id": "00000", "split": "train", "photo": "skimage:astronaut"},
            {"id": "00001", "split": "test", "photo": "skimage:coffee"}]
    (data / "manifest.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    fitted_on = []

    def spy(screen, samples, bins=64):
        samples = list(samples)
        fitted_on.extend(p.shape for p, _ in samples)
        return fit_render(screen, samples, bins)

    monkeypatch.setattr(export, "fit_render", spy)
    folder = _screen_editor(tmp_path, {"path": "tiled", "low_side": 64, "tile": 64})
    section = export.measure_full_size(Editor(folder, threads=1), data, 64, photos=2, log=lambda m: None,
                                       screen=SCREEN64)
    assert fitted_on == [(384, 384, 3)]  # the training photo (512 px, centre-cropped to the cap), not the test one
    measured = section["photos"][0]["measured_size"]
    assert measured != [384, 384] and {"tiled", "tiled_finished", "screen"} <= set(section["psnr_db"])
    assert (section["render"] is not None) == (section["path"] == "screen") and "screen render" in section["why"]
    no_train = export.measure_full_size(Editor(folder, threads=1), data, 64, photos=2, log=lambda m: None,
                                        screen={**SCREEN64, "screen_lattice": None})
    assert "screen" not in no_train["psnr_db"] and no_train["render"] is None
