"""Rescaled windows of a screen concept's pairs (factory.data.multiscale), and what training on them buys."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from base_gan.generator import build_generator, pixel_grid
from base_gan.train import Trainer, TrainSettings
from concepts.cards import find_card
from factory.core.workspace import Workspace
from factory.data.card_pairs import make_pairs
from factory.data.dataset import PairedDataset, to_tensor
from factory.data.multiscale import ScaledPairs, pair_photos, rescaled_pairs, scalable_recipe
from factory.data.screen_fit import fit_screen_waves
from factory.text.encoder import TextEncoder

SIZE = 64


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Workspace:
    ws = Workspace(tmp_path_factory.mktemp("multiscale-ws"))
    make_pairs(ws, find_card("halftone"), 24, SIZE, seed=0)
    make_pairs(ws, find_card("sepia"), 6, SIZE, seed=0)
    return ws


def _scaled(ws: Workspace, max_scale: float = 4.0) -> ScaledPairs:
    recipe, why = scalable_recipe(ws.data("halftone"), max_scale)
    assert recipe is not None, why
    return ScaledPairs(PairedDataset([ws.data("halftone")], split="train"), recipe, max_scale)


def test_a_window_is_the_teacher_at_its_scale_with_its_screen_anchored_where_its_position_says(ws):
    sp = _scaled(ws)
    source, target, factor = sp.window(0, 2.0, [0.0, 0.0])
    assert factor == 2.0 and source.shape == target.shape == (SIZE, SIZE, 3)
    # the top-left quarter of the pair, upscaled 2x: the teacher on the whole pair upscaled 2x draws the same dots
    from factory.teachers.rescale import apply_recipe_at

    big = cv2.resize(sp.pairs.images(0)[0], (2 * SIZE, 2 * SIZE), interpolation=cv2.INTER_CUBIC)
    whole = apply_recipe_at(big, sp.recipe, 2.0).astype(np.float32)
    inner = (slice(12, SIZE - 12), slice(12, SIZE - 12))
    same = np.abs(target.astype(np.float32) - whole[:SIZE, :SIZE])[inner].mean()
    moved = np.abs(target.astype(np.float32) - whole[5:SIZE + 5, 3:SIZE + 3])[inner].mean()
    assert same < 0.35 * moved, (same, moved)
    # over many windows at one scale the screen's frequency is the pairs' over the scale
    pairs_waves = fit_screen_waves(*(torch.stack([to_tensor(sp.pairs.images(k)[j]) for k in range(16)])
                                     for j in (0, 1)))
    windows = [sp.window(k, 2.0, [0.5, 0.5]) for k in range(16)]
    half = fit_screen_waves(torch.stack([to_tensor(w[0]) for w in windows]),
                            torch.stack([to_tensor(w[1]) for w in windows]))
    assert sorted(abs(f) for w in half for f in w) == pytest.approx(
        sorted(abs(f) / 2 for w in pairs_waves for f in w), abs=2e-3)


def test_items_are_the_pairs_then_rescaled_windows_each_with_its_position(ws):
    sp = _scaled(ws)
    n = len(sp.pairs)
    assert len(sp) == 2 * n
    grid = pixel_grid(SIZE, SIZE, torch.zeros(1))[0]
    first = sp[0]
    assert torch.equal(first["source"], sp.pairs[0]["source"]) and torch.equal(first["position"], grid)
    torch.manual_seed(1)
    item = sp[n]
    torch.manual_seed(1)
    again = sp[n]
    assert torch.equal(item["target"], again["target"])  # the Trainer's per-sample seed decides the window
    factor = float(grid[0, 1, 0] / item["position"][0, 1, 0])
    assert 1.0 <= factor <= 4.0 + 1e-6 and not torch.equal(item["source"], first["source"])
    assert torch.allclose(item["position"], grid / factor)
    with pytest.raises(ValueError, match="max_scale"):
        ScaledPairs(sp.pairs, sp.recipe, 0.5)


def _detail(rgb: np.ndarray) -> float:
    """Mean absolute Laplacian of the grey image: how much fine detail a window holds."""
    return float(np.abs(cv2.Laplacian(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32), cv2.CV_32F)).mean())


def test_windows_cut_from_the_photo_hold_its_detail_and_shrink_back_to_the_pair(ws):
    """``windows="photo"``: a window is the same part of the scene as the pair's upscaled window, cut from the photo
    at its own resolution: at scale 1 it is the pair's source; at scale 4 it shrinks back to the pair's quarter and
    holds more detail than that quarter upscaled."""
    data = ws.data("halftone")
    ids = [json.loads(line)["id"] for line in (data / "manifest.jsonl").read_text().splitlines()
           if json.loads(line)["split"] == "train"]
    with_photos, _ = rescaled_pairs(data, ids, 4.0, augment=False, seed=0, windows="photo")
    upscaled, _ = rescaled_pairs(data, ids, 4.0, augment=False, seed=0)
    assert set(with_photos.photos) == set(range(len(with_photos.pairs))) and upscaled.photos == {}
    whole, _, factor = with_photos.window(0, 1.0, [0.0, 0.0])
    assert factor == 1.0 and np.abs(whole.astype(int) - with_photos.pairs.images(0)[0].astype(int)).max() <= 1
    sharper = 0
    for k in range(8):
        cut, target, factor = with_photos.window(k, 4.0, [0.5, 0.25])
        blurred, _, same_factor = upscaled.window(k, 4.0, [0.5, 0.25])
        assert factor == same_factor == 4.0 and target.shape == cut.shape == (SIZE, SIZE, 3)
        side = SIZE // 4
        y, x = int(0.5 * (SIZE - side + 1)), int(0.25 * (SIZE - side + 1))  # where the window sits in the pair
        quarter = with_photos.pairs.images(k)[0][y:y + side, x:x + side]
        back = cv2.resize(cut, (side, side), interpolation=cv2.INTER_AREA).astype(np.float32)
        assert np.abs(back - quarter.astype(np.float32)).mean() < 8.0, k
        sharper += _detail(cut) > 1.2 * _detail(blurred)
    assert sharper >= 6
    with pytest.raises(ValueError, match="windows"):
        rescaled_pairs(data, ids, 4.0, augment=False, seed=0, windows="photos")


def test_a_pair_whose_photo_does_not_give_its_source_keeps_the_upscaled_window(ws, tmp_path):
    """The photo is read again by name: a pair whose recorded crop no longer gives its source (here: moved) is left
    out of ``pair_photos`` and its windows are upscaled from the pair as before."""
    import shutil

    folder = tmp_path / "halftone"
    shutil.copytree(ws.data("halftone"), folder)
    lines = [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]
    train = [r for r in lines if r["split"] == "train"]
    x, y, w, h = train[0]["crop"]
    train[0]["crop"] = [x + w // 3, y, w, h]  # past the photo's edge or another part of it: either way not its source
    (folder / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    pairs = PairedDataset([folder], split="train")
    found = pair_photos(folder, pairs)
    moved = next(i for i, r in enumerate(pairs.refs) if r.pair_id == train[0]["id"])
    assert moved not in found and len(found) == len(pairs) - 1


def test_only_a_classic_teacher_that_can_be_rescaled_gets_windows(ws, tmp_path):
    assert scalable_recipe(ws.data("sepia"), 8.0)[0] is not None  # colour ops scale trivially
    folder = tmp_path / "pairs-concept"
    folder.mkdir()
    (folder / "synth.json").write_text(json.dumps({"teacher": {"kind": "pairs"}, "size": SIZE}))
    recipe, why = scalable_recipe(folder, 8.0)
    assert recipe is None and "pairs teacher" in why
    (folder / "synth.json").write_text(json.dumps({"teacher": {"kind": "classic", "recipe": [{"op": "cartoon"}]},
                                                     "size": SIZE}))
    recipe, why = scalable_recipe(folder, 8.0)
    assert recipe is None and "cartoon" in why


def test_training_on_rescaled_windows_draws_the_screen_better_on_a_photo_four_times_the_pairs_size(ws, tmp_path):
    """A tiny generator with the screen's waves, trained the same steps on the pairs alone and on the pairs with
    rescaled windows: on held-out photos at 4x (the teacher at 4x as reference) the second is closer."""
    from factory.lora.finetune import fitted_screen
    from factory.teachers.rescale import apply_recipe_at

    sp = _scaled(ws, 4.0)
    screen = fitted_screen(ws.data("halftone"), [r.pair_id for r in sp.pairs.refs])
    assert screen is not None  # the fit finds the halftone's screen in the pairs

    def train(data: ScaledPairs | None) -> torch.nn.Module:
        settings = TrainSettings(disc_nf=8, batch=4, steps=160, lr=3e-3, augment=False, checkpoint_every=10_000)
        model = build_generator(seed=0, ngf=8, heads=2, image_size=SIZE, **screen)
        trainer = Trainer(tmp_path / f"run-{data is None}", [ws.data("halftone")], settings, ws.text_cache,
                          generator=model, data=data)
        trainer.train()
        return model.eval()

    tests = PairedDataset([ws.data("halftone")], split="test")
    big = [cv2.resize(tests.images(k)[0], (4 * SIZE, 4 * SIZE), interpolation=cv2.INTER_CUBIC) for k in range(3)]
    refs = torch.stack([to_tensor(apply_recipe_at(b, sp.recipe, 4.0)) for b in big])
    x = torch.stack([to_tensor(b) for b in big])
    tokens, mask = TextEncoder.from_name("minilm", cache_dir=ws.text_cache).tokens([find_card("halftone").instruction])
    position = pixel_grid(4 * SIZE, 4 * SIZE, x) / 4
    errors = {}
    for name, data in (("pairs", None), ("scaled", sp)):
        model = train(data)
        with torch.no_grad():
            out = model(x, tokens.expand(3, -1, -1), mask.expand(3, -1), position=position)
        errors[name] = float(((out - refs) ** 2).mean())
    assert errors["scaled"] < 0.8 * errors["pairs"], errors


def test_an_export_larger_than_the_pairs_scores_against_the_recipe_at_the_export_size(ws):
    """The card's held-out targets at 2x the pairs' size: the recipe run there (crisp dots of twice the cell), not
    the pairs' targets resized (soft ones); at the pairs' size, the pairs' own targets."""
    from factory.export.editor import export_images
    from factory.teachers.rescale import apply_recipe_at

    images = export_images(ws.data("halftone"), 2 * SIZE, n_calibration=2, n_held_out=3)
    recipe, _ = scalable_recipe(ws.data("halftone"), 2.0)
    assert "the recipe at 128 px" in images.origin
    for source, target in zip(images.held_out, images.held_out_targets):
        assert np.array_equal(target, apply_recipe_at(source, recipe, 2.0))
    tests = PairedDataset([ws.data("halftone")], split="test")
    resized = cv2.resize(tests.images(0)[1], (2 * SIZE, 2 * SIZE), interpolation=cv2.INTER_CUBIC)
    assert np.abs(images.held_out_targets[0].astype(int) - resized).mean() > 10
    same = export_images(ws.data("halftone"), SIZE, n_calibration=2, n_held_out=3)
    assert np.array_equal(same.held_out_targets[0], tests.images(0)[1]) and "pairs' own" in same.origin
