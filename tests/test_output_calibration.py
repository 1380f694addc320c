"""Output calibration: nine colour curves after a student's output, fitted on its training pairs, kept only where
they help photos the fit did not see, saved with the adapter and carried by the exported editor."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from base_gan.output_curves import OutputCurves
from factory.core.errors import FactoryError
from factory.lora.output_calibration import (
    CURVES_FILE,
    MAX_GAIN,
    held_out_folds,
    save_output_curves,
    saved_output_curves,
    solve_output_curves,
)
from factory.runtime.colour_curves import apply_curves, fit_curve_knots, identity_knots, knot_tables


def _photos(n: int, size: int = 48, seed: int = 0) -> torch.Tensor:
    """``n`` smooth colour images in [-1, 1] (blurred noise: photo-like colour ranges, no two alike)."""
    rng = np.random.default_rng(seed)
    out = [cv2.GaussianBlur(rng.uniform(0, 1, (size, size, 3)).astype(np.float32), (0, 0), 4) for _ in range(n)]
    out = [(o - o.min()) / (o.max() - o.min()) for o in out]
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2) * 2 - 1


def _graded(x: torch.Tensor) -> torch.Tensor:
    """A global colour map: a gamma per channel, then a channel mix (curves, then saturation)."""
    y = ((x + 1) / 2).clamp(0, 1) ** torch.tensor([0.6, 1.0, 1.6]).view(1, 3, 1, 1)
    y = torch.einsum("ij,bjhw->bihw", torch.tensor([[0.8, 0.2, 0.0], [0.1, 0.8, 0.1], [0.0, 0.3, 0.7]]), y)
    return y * 2 - 1


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(4 / ((a.clamp(-1, 1) - b) ** 2).mean()))


def test_the_curves_module_is_the_lookup_tables_and_the_identity_changes_nothing() -> None:
    rng = np.random.default_rng(1)
    src = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    dst = (255 * (src / 255.0) ** 0.7).astype(np.uint8)[..., ::-1].copy()
    knots = fit_curve_knots(src, dst)
    tables = np.stack(apply_curves(cv2.split(src), knot_tables(knots)), -1)
    x = torch.from_numpy(src).permute(2, 0, 1)[None].float() / 127.5 - 1
    torch_out = (OutputCurves(knots)(x)[0].permute(1, 2, 0).numpy() + 1) * 127.5
    assert np.abs(torch_out - tables).max() < 0.25  # pixel levels: the second conv's float16 rounding
    assert np.abs(torch_out - dst).mean() < 2.0  # and the fit does follow the map
    y = torch.rand(2, 3, 16, 16) * 3 - 1.5  # out of range too: the curves continue straight
    assert torch.allclose(OutputCurves(identity_knots())(y), y, atol=1e-6)
    with pytest.raises(ValueError, match="3 x C x K"):
        OutputCurves(np.zeros((3, 17)))
    with pytest.raises(ValueError, match="also read the photo"):
        OutputCurves(identity_knots(inputs=6))(y)


def test_curves_are_kept_for_a_global_colour_error_and_left_off_for_a_perfect_student() -> None:
    targets = _photos(24)
    groups = [f"photo{i // 2}" for i in range(24)]  # two pairs a photo: the rule holds out whole photos
    outputs = _graded(targets)  # the student's error is one global colour map
    solved = solve_output_curves(outputs, targets, groups, inputs=("output",))
    assert solved["kept"] and solved["held_out"]["photos"] == 3 and solved["inputs"] == "output"
    assert solved["held_out"]["output_db"] > solved["held_out"]["raw_db"] + 10
    fresh = _photos(4, seed=9)  # photos the fit never saw
    assert _psnr(OutputCurves(solved["knots"])(_graded(fresh)), fresh) > _psnr(_graded(fresh), fresh) + 10
    for weights in OutputCurves(solved["knots"]).linear.state_dict().values():
        assert torch.equal(weights, weights.half().float())  # a float16 pack stores them exactly
    perfect = solve_output_curves(targets.clone(), targets, groups, photos=targets)
    assert not perfect["kept"]
    lone = solve_output_curves(outputs[:3], targets[:3], ["one"] * 3, photos=targets[:3])  # nothing to hold out
    assert not lone["kept"] and lone["held_out"]["photos"] == 0
    with pytest.raises(FactoryError, match="one target and photo per output"):
        solve_output_curves(outputs, targets[:5], groups)
    with pytest.raises(FactoryError, match="need the photo"):
        solve_output_curves(outputs, targets, groups)
    # a student whose output barely varies yet: curves would stretch it (and its int8 rounding) 50 times: not kept
    flat = solve_output_curves(0.02 * targets, targets, groups, inputs=("output",))
    assert not flat["kept"] and flat["held_out"]["output_gain"] > MAX_GAIN
    assert flat["held_out"]["output_db"] > flat["held_out"]["raw_db"] + 5  # though it would score on the pairs

def test_folds_hold_out_whole_photos_each_once_and_one_fold_is_the_last_quarter() -> None:
    groups = [f"photo{i % 10:02d}" for i in range(30)]  # three pairs a photo, interleaved
    one, four = held_out_folds(groups, 1), held_out_folds(groups, 4)
    assert {groups[i] for i in one[0]} == {"photo07", "photo08", "photo09"}  # the last quarter of the sorted photos
    assert len(four) == 4 and four[0] == one[0]
    assert sorted(i for fold in four for i in fold) == list(range(30))  # every pair held out exactly once
    assert sum(len({groups[i] for i in fold}) for fold in four) == 10  # a photo's pairs all in one fold
    assert held_out_folds(["a", "a", "b"], 4) == [[2], [0, 1]] and held_out_folds(["a"] * 3, 4) == []
    with pytest.raises(FactoryError, match="1 to 4 quarters"):
        held_out_folds(groups, 5)
    # the rule with every quarter held out scores each kind on every training pair
    targets = _photos(24)
    solved = solve_output_curves(_graded(targets), targets, [f"photo{i // 2}" for i in range(24)],
                                 inputs=("output",), folds=4)
    assert solved["kept"] and solved["held_out"]["photos"] == 12 and solved["held_out"]["folds"] == 4
    assert solved["held_out"]["output_db"] > solved["held_out"]["raw_db"] + 10


def test_a_concept_that_is_a_colour_map_of_the_photo_gets_it_from_the_photo() -> None:
    """A student that has barely learned a concept which is one global colour map of the photo (its output the photo
    with noise): curves of its output cannot undo the noise, curves of the output and the photo take the map from the
    photo's own colours, and the rule picks them."""
    photos = _photos(24, seed=3)
    targets = _graded(photos)
    noisy = photos + 0.15 * torch.randn(photos.shape, generator=torch.Generator().manual_seed(0))
    groups = [f"photo{i // 2}" for i in range(24)]
    solved = solve_output_curves(noisy, targets, groups, photos=photos, inputs=("output", "output+photo"))
    held = solved["held_out"]
    assert solved["kept"] and solved["inputs"] == "output+photo"
    assert held["output+photo_db"] > held["output_db"] + 5 > held["raw_db"] + 5
    fresh = _photos(4, seed=11)
    curves = OutputCurves(solved["knots"])
    assert curves.reads_photo and _psnr(curves(fresh, fresh), _graded(fresh)) > 35


def test_curves_of_the_photo_alone_ignore_the_student_and_are_kept_when_they_score_best() -> None:
    """Offered the photo's curves alone, the rule keeps them for a noisy student of a colour map of the photo: saved
    as output+photo curves flat on the output, so the editor's result does not depend on the student's output."""
    photos = _photos(24, seed=3)
    noisy = photos + 0.15 * torch.randn(photos.shape, generator=torch.Generator().manual_seed(0))
    groups = [f"photo{i // 2}" for i in range(24)]
    solved = solve_output_curves(noisy, _graded(photos), groups, photos=photos,
                                 inputs=("output", "output+photo", "photo"))
    held = solved["held_out"]
    assert solved["kept"] and solved["inputs"] == "photo" and held["photo_gain"] == 0
    assert held["photo_db"] > held["output+photo_db"] > held["raw_db"] + 5
    knots = np.asarray(solved["knots"])
    assert knots.shape[1] == 6 and not knots[:, :3].any()
    fresh, curves = _photos(4, seed=11), OutputCurves(knots)
    assert torch.allclose(curves(fresh, fresh), curves(-fresh, fresh), atol=1e-5)
    assert _psnr(curves(torch.zeros_like(fresh), fresh), _graded(fresh)) > 35
    with pytest.raises(FactoryError, match="expected some of"):
        solve_output_curves(noisy, photos, groups, photos=photos, inputs=("the sky",))


def test_kept_curves_are_saved_and_read_back_and_a_broken_file_is_a_clear_error(tmp_path) -> None:
    targets = _photos(8)
    solved = solve_output_curves(_graded(targets), targets, [str(i) for i in range(8)], photos=targets)
    assert solved["kept"]
    save_output_curves(tmp_path, solved)
    assert np.array_equal(saved_output_curves(tmp_path), np.asarray(solved["knots"]))
    save_output_curves(tmp_path, {**solved, "kept": False})  # a later run that does not keep them: no stale file
    assert saved_output_curves(tmp_path) is None and not (tmp_path / CURVES_FILE).exists()
    (tmp_path / CURVES_FILE).write_text(json.dumps({"knots": [[1, 2], [3, 4]]}))
    with pytest.raises(FactoryError, match="3 x C x K"):
        saved_output_curves(tmp_path)
    (tmp_path / CURVES_FILE).write_text("{not json")
    with pytest.raises(FactoryError, match="not an output-curves file"):
        saved_output_curves(tmp_path)


TINY = {"arch": "e2gan", "ngf": 8, "heads": 2, "image_size": 32}


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """Autumn pairs and a tiny base trained a few steps on another concept (the student's colours start off)."""
    from base_gan.train import Trainer, TrainSettings
    from concepts.cards import find_card
    from factory.core.workspace import Workspace
    from factory.data.card_pairs import make_pairs

    torch.set_num_threads(1)
    ws = Workspace(tmp_path_factory.mktemp("calibration-ws"))
    for name in ("sepia", "autumn"):
        make_pairs(ws, find_card(name), 27, 32, seed=0)
    settings = TrainSettings(generator=TINY, disc_nf=8, batch=4, steps=6, checkpoint_every=100, lr=1e-3)
    trainer = Trainer(ws.base("tiny"), [ws.data("sepia")], settings, text_cache=ws.text_cache)
    trainer.train()
    trainer.save_final({"concepts": ["sepia"], "instructions": trainer.data.instructions})
    return ws


def _finetune(ws, out, output_curves: bool) -> dict:
    from base_gan.models import BaseGAN
    from factory.lora.finetune import finetune
    from factory.lora.options import FinetuneOptions

    opts = FinetuneOptions(init="base", layers="up2,head", rank=2, steps=6, batch=4, eval_every=3, lr=3e-3,
                           output_curves=output_curves, readout=False, colour_basis=0)
    return finetune(ws, "autumn", BaseGAN.load(ws.base("tiny")), opts, out_dir=out, quiet=True, log=lambda m: None)


def test_a_fine_tune_keeps_its_curves_charges_them_to_the_curve_and_the_export_carries_them(ws, tmp_path) -> None:
    from base_gan.models import BaseGAN
    from factory.data.dataset import concept_instruction
    from factory.evaluation.curves import read_curve
    from factory.export.editor import ExportRequest, export_editor
    from factory.runtime.editor import Editor

    out = tmp_path / "lora"
    m = _finetune(ws, out, True)
    solved = m["output_curves"]
    assert solved["kept"], solved  # the few-step student's colours are off in one global way the curves fix
    assert solved["held_out"][f"{solved['inputs']}_db"] > solved["held_out"]["raw_db"] and solved["seconds"] > 0
    assert (out / CURVES_FILE).is_file()
    curve = read_curve(out / "curve.csv")
    assert all("raw_psnr" in r for r in curve) and curve[-1]["psnr"] != curve[-1]["raw_psnr"]
    assert m["test"]["student"]["psnr"] == pytest.approx(curve[-1]["psnr"], abs=1e-3)
    assert m["test"]["uncalibrated"]["psnr"] == pytest.approx(curve[-1]["raw_psnr"], abs=1e-3)
    # without them: no file, no raw column, the curve's seconds are the training's alone
    plain = _finetune(ws, tmp_path / "plain", False)
    assert plain["output_curves"].startswith("off") and not (tmp_path / "plain" / CURVES_FILE).exists()
    assert "raw_psnr" not in read_curve(tmp_path / "plain" / "curve.csv")[0]
    # the editor ends with the curves: float nodes in int8 too, and its output is the calibrated student's
    req = ExportRequest(concept="autumn", base=BaseGAN.load(ws.base("tiny")), adapter_dir=out, adapter_note="test",
                        instruction=concept_instruction(ws.data("autumn")), data_dir=ws.data("autumn"),
                        out_dir=tmp_path / "editor", size=32, int8=True, threads=1, min_int8_psnr=10,
                        text_cache=ws.text_cache, full_size=False)
    card = export_editor(req, log=lambda m: None)
    assert card["output_curves"] and card["checks"]["parity"]["passed"]
    import onnx

    int8 = onnx.load(str(tmp_path / "editor" / "editor.int8.onnx"))
    curve_ops = [n.op_type for n in int8.graph.node if n.name.startswith("/curves/")]
    assert curve_ops.count("Conv") == 3 and "QuantizeLinear" not in curve_ops
    fp32 = Editor(tmp_path / "editor" / "editor.onnx", threads=1)
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 32, 32)).astype(np.float32)
    knots = saved_output_curves(out)
    bare = export_editor(ExportRequest(**{**req.__dict__, "out_dir": tmp_path / "bare",
                                          "curves_dir": tmp_path / "plain"}), log=lambda m: None)
    assert not bare["output_curves"]
    raw = Editor(tmp_path / "bare" / "editor.onnx", threads=1).run(x)
    expected = OutputCurves(knots)(torch.from_numpy(raw), torch.from_numpy(x)).numpy()
    assert np.abs(fp32.run(x) - expected).max() < 1e-4 and np.abs(expected - raw).max() > 1e-2
