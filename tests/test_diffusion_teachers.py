"""The Stable Diffusion teachers on tiny random-weight pipelines saved to disk and loaded back with
``from_pretrained``: the same loading and editing code a user with the real model runs."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from tiny_pipelines import build_tiny_img2img, build_tiny_instruct_pix2pix, build_tiny_sdxl

from factory.cli import cli, main
from factory.core.errors import FactoryError
from factory.core.files import sha256_file
from factory.core.images import read_image
from factory.data.pair_store import read_manifest
from factory.teachers import make_teacher
from factory.teachers.diffusion import InstructPix2PixTeacher, SDEditTeacher

FAST = {"steps": 2, "batch_size": 2}


@pytest.fixture(scope="session")
def ip2p_folder(tmp_path_factory):
    return build_tiny_instruct_pix2pix(tmp_path_factory.mktemp("tiny") / "ip2p")


@pytest.fixture(scope="session")
def img2img_folder(tmp_path_factory):
    return build_tiny_img2img(tmp_path_factory.mktemp("tiny") / "img2img")


@pytest.fixture(scope="module")
def ip2p(ip2p_folder):
    return InstructPix2PixTeacher.from_params({"model": str(ip2p_folder), **FAST}, source="test")


@pytest.fixture(scope="module")
def sdedit(img2img_folder):
    # 10 steps x strength 0.1: one denoising step from timestep 101 of the tiny pipeline's leading PNDM schedule,
    # little enough noise for the random-weight UNet to leave the source visible
    return SDEditTeacher.from_params({"model": str(img2img_folder), "strength": 0.1, "steps": 10, "batch_size": 2},
                                     source="test")


def photos(*shapes, seed=0):
    """Smooth random colour images (gradients plus noise) of the given (H, W) shapes."""
    rng = np.random.default_rng(seed)
    out = []
    for h, w in shapes:
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([xx / w, yy / h, (xx + yy) / (h + w)], axis=-1) * rng.uniform(80, 220, size=3)
        out.append(np.clip(base + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8))
    return out


def differ(a, b):
    return np.abs(a.astype(int) - b.astype(int)).mean()


@pytest.mark.parametrize("teacher_name", ["ip2p", "sdedit"])
def test_edit_is_seeded_per_pair_and_keeps_source_size(teacher_name, request):
    teacher = request.getfixturevalue(teacher_name)
    # three 32x32 sources and one whose sides are not multiples of 8 (the pipeline works at 24x40)
    sources = photos((32, 32), (32, 32), (32, 32), (28, 44))
    out = teacher.edit(sources, "make it look like winter", [11, 12, 13, 14])
    assert [o.shape for o in out] == [s.shape for s in sources]
    assert all(o.dtype == np.uint8 for o in out)
    assert all(o.std() > 1 for o in out)  # real images, not a constant fill

    again = teacher.edit(sources[:2], "make it look like winter", [11, 99])
    np.testing.assert_array_equal(again[0], out[0])  # same seed, same pair
    assert differ(again[1], out[1]) > 1  # another seed, another target

    # one pair regenerated alone matches the same pair made inside a batch (up to float rounding)
    alone = teacher.edit([sources[2]], "make it look like winter", [13])[0]
    assert np.abs(alone.astype(int) - out[2].astype(int)).max() <= 2

    # the source image and the text both condition the result (the same inputs gave identical pixels above, so
    # any difference is theirs; the random-weight UNet's text effect is small under SDEdit's noise)
    assert differ(teacher.edit([sources[1]], "make it look like winter", [11])[0], out[0]) > 1
    assert differ(teacher.edit([sources[0]], "turn it into a pencil sketch", [11])[0], out[0]) > 0.2


def test_sdedit_prompt_replaces_the_instruction(img2img_folder):
    teacher = SDEditTeacher.from_params({"model": str(img2img_folder), "prompt": "a watercolor painting", **FAST})
    source = photos((32, 32))
    a = teacher.edit(source, "make it look like winter", [5])[0]
    b = teacher.edit(source, "turn it into a pencil sketch", [5])[0]
    np.testing.assert_array_equal(a, b)
    assert teacher.describe()["prompt"] == "a watercolor painting"


def test_describe_records_model_and_parameters_as_json(ip2p, sdedit, ip2p_folder, img2img_folder):
    for teacher, folder, kind in ((ip2p, ip2p_folder, "instruct-pix2pix"), (sdedit, img2img_folder, "sdedit")):
        described = json.loads(json.dumps(teacher.describe()))
        assert described == teacher.describe()
        assert described["kind"] == kind and described["model"] == str(folder)
        assert described["steps"] == (2 if kind == "instruct-pix2pix" else 10) and described["batch_size"] == 2
        # the fixtures say device/dtype "auto": CUDA and float16 where there is a GPU, else the CPU in float32
        import torch

        gpu = torch.cuda.is_available()
        assert described["device"] == ("cuda" if gpu else "cpu")
        assert described["dtype"] == ("float16" if gpu else "float32")
        assert described["revision"] == "local folder" and described["working_size_at_least"] == 64
    assert ip2p.describe()["guidance_scale"] == 7.5 and ip2p.describe()["image_guidance_scale"] == 1.5
    assert sdedit.describe()["strength"] == 0.1 and sdedit.describe()["prompt"] is None
    assert sdedit.describe()["first_timestep"] == 101 and sdedit.describe()["timestep_spacing"] == "leading"
    assert ip2p.describe()["pipeline"] == "StableDiffusionInstructPix2PixPipeline"
    assert sdedit.describe()["pipeline"] == "StableDiffusionImg2ImgPipeline"


def test_make_teacher_dispatches_to_the_diffusion_teachers(ip2p_folder, img2img_folder):
    assert isinstance(make_teacher("instruct-pix2pix", {"model": str(ip2p_folder)}), InstructPix2PixTeacher)
    # a card mapping may carry its own kind; None values (CLI options not given) mean "default"
    teacher = make_teacher("sdedit", {"kind": "sdedit", "model": str(img2img_folder), "strength": None})
    assert isinstance(teacher, SDEditTeacher) and teacher.describe()["strength"] == 0.5


def test_safety_checker_hits_come_back_as_none(tmp_path):
    folder = build_tiny_instruct_pix2pix(tmp_path / "flagging", safety="flag-all")
    teacher = InstructPix2PixTeacher.from_params({"model": str(folder), **FAST})
    assert teacher.pipe.safety_checker is not None  # the folder's checker was loaded, not dropped
    assert teacher.edit(photos((32, 32), (32, 32)), "make it red", [1, 2]) == [None, None]


def test_loading_and_editing_print_no_progress_bars(img2img_folder, capfd):
    capfd.readouterr()
    teacher = SDEditTeacher.from_params({"model": str(img2img_folder), **FAST})
    teacher.edit(photos((32, 32)), "make it red", [1])
    err = capfd.readouterr().err
    assert "it/s" not in err and "Loading" not in err, err


@pytest.mark.parametrize("model", ["/nonexistent/pipeline", "./no/such/folder"])
def test_missing_model_folder_is_one_clear_line(model):
    with pytest.raises(FactoryError) as caught:
        InstructPix2PixTeacher.from_params({"model": model})
    message = str(caught.value)
    assert f"'{model}'" in message and "not found" in message and "--model" in message
    assert "\n" not in message


def test_hub_id_not_cached_offline_says_what_to_pass(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FactoryError) as caught:
        SDEditTeacher.from_params({"model": "editfactory-tests/no-such-model"})
    message = str(caught.value)
    assert "'editfactory-tests/no-such-model' not found locally" in message
    assert "Hugging Face cache" in message and "--model" in message and "--teacher classic" in message
    assert "\n" not in message


def test_folder_that_is_not_a_pipeline_is_refused(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"not a model")
    with pytest.raises(FactoryError, match=r"is a folder but not a diffusers pipeline \(no model_index.json\)"):
        SDEditTeacher.from_params({"model": str(tmp_path)})
    (tmp_path / "model_index.json").write_text("{ broken")
    with pytest.raises(FactoryError, match=r"could not be loaded as a diffusers pipeline"):
        SDEditTeacher.from_params({"model": str(tmp_path)})


def test_damaged_pipeline_folder_is_refused_with_the_cause(tmp_path, ip2p_folder):
    truncated = shutil.copytree(ip2p_folder, tmp_path / "truncated")
    weights = next((truncated / "unet").glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:1000])
    expected = r"'.*truncated' could not be loaded as a diffusers pipeline \(SafetensorError"
    with pytest.raises(FactoryError, match=expected):
        InstructPix2PixTeacher.from_params({"model": str(truncated)})
    incomplete = shutil.copytree(ip2p_folder, tmp_path / "incomplete")
    shutil.rmtree(incomplete / "vae")
    with pytest.raises(FactoryError, match=r"'.*incomplete' could not be loaded as a diffusers pipeline"):
        InstructPix2PixTeacher.from_params({"model": str(incomplete)})


def test_pipeline_of_the_wrong_kind_is_refused(ip2p_folder, img2img_folder):
    with pytest.raises(FactoryError, match=r"is not an InstructPix2Pix model .*4 input channels"):
        InstructPix2PixTeacher.from_params({"model": str(img2img_folder)})
    with pytest.raises(FactoryError, match=r"use --teacher instruct-pix2pix"):
        SDEditTeacher.from_params({"model": str(ip2p_folder)})


def test_a_leading_schedule_that_barely_noises_is_switched_to_trailing(img2img_folder, capfd):
    # the tiny img2img pipeline ships PNDM with leading spacing and steps_offset 1, as plain SD 1.5 and BK-SDM
    # do: sd-turbo's defaults (2 steps, strength 0.5) would start at t=1 of 1000 (target = the source via the VAE)
    teacher = SDEditTeacher.from_params({"model": str(img2img_folder), "strength": 0.5, **FAST})
    described = teacher.describe()
    assert described["timestep_spacing"] == "trailing" and described["first_timestep"] == 499
    assert "leading started at timestep 1 of 1000" in described["schedule_note"]
    assert "switched from leading to trailing" in capfd.readouterr().err
    assert teacher.pipe.scheduler.config.timestep_spacing == "trailing"  # what the next edit runs with
    # a schedule that starts high enough is left alone
    fine = SDEditTeacher.from_params({"model": str(img2img_folder), "strength": 0.5, "steps": 30})
    assert fine.describe()["timestep_spacing"] == "leading" and fine.describe()["first_timestep"] >= 450
    assert "schedule_note" not in fine.describe()


def test_cards_with_the_same_model_share_one_pipeline_and_keep_their_own_schedule(img2img_folder):
    weak = SDEditTeacher.from_params({"model": str(img2img_folder), "strength": 0.5, "steps": 30, "batch_size": 1})
    source = photos((32, 32))
    before = weak.edit(source, "make it red", [3])[0]
    strong = SDEditTeacher.from_params({"model": str(img2img_folder), "strength": 0.9, **FAST})
    assert strong.pipe is weak.pipe  # one copy of the model for both cards
    strong.edit(source, "make it red", [3])
    np.testing.assert_array_equal(weak.edit(source, "make it red", [3])[0], before)


def test_sources_run_at_least_at_the_models_native_size():
    from factory.teachers.diffusion import _working_size

    assert _working_size(256, 256, 8, 512) == (512, 512)  # sd-turbo at the pair size 256 runs at 512
    assert _working_size(256, 384, 8, 512) == (512, 768)  # the shorter side reaches it, aspect kept
    assert _working_size(1024, 768, 8, 512) == (1024, 768)  # never scaled down
    assert _working_size(28, 44, 8, 0) == (24, 40)  # no native size: rounded down, as before


def test_a_pipeline_that_returns_nan_stores_no_pair_and_lists_it(workspace, tmp_path):
    import torch

    folder = build_tiny_img2img(tmp_path / "nan")
    teacher = SDEditTeacher.from_params({"model": str(folder), "strength": 0.5, **FAST})
    with torch.no_grad():
        teacher.pipe.unet.conv_out.bias.fill_(float("nan"))  # as an fp16 overflow does
    assert teacher.edit(photos((32, 32), (32, 32)), "make it red", [1, 2]) == [None, None]
    assert "non-finite output" in teacher.declined[0]
    args = ["--workspace", str(workspace), "synth", "black-and-white", "--teacher", "sdedit", "--model", str(folder),
            "--steps", "2", "-n", "2", "--size", "32"]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0 and "0 pairs (0 new" in result.stdout
    assert "declined 2 pair(s), not stored (non-finite output" in result.stderr and "00000, 00001" in result.stderr
    assert read_manifest(workspace / "data" / "black-and-white") == []


def test_sdxl_folders_run_through_the_xl_pipeline_or_are_refused_before_loading(tmp_path):
    folder = build_tiny_sdxl(tmp_path / "sdxl-turbo-like")
    teacher = SDEditTeacher.from_params({"model": str(folder), **FAST})
    assert teacher.describe()["pipeline"] == "StableDiffusionXLImg2ImgPipeline"
    out = teacher.edit(photos((32, 32), (28, 44)), "make it look like winter", [1, 2])
    assert [o.shape for o in out] == [(32, 32, 3), (28, 44, 3)] and all(o.std() > 1 for o in out)
    # refused from the configs alone: the weights are gone and are never read
    for weights in folder.rglob("*.safetensors"):
        weights.unlink()
    with pytest.raises(FactoryError, match=r"is not an InstructPix2Pix model .*4 input channels"):
        InstructPix2PixTeacher.from_params({"model": str(folder)})
    other = tmp_path / "flux"
    other.mkdir()
    (other / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    with pytest.raises(FactoryError, match=r"is a FluxPipeline: the teachers run Stable Diffusion"):
        SDEditTeacher.from_params({"model": str(other)})


@pytest.mark.parametrize(
    ("teacher", "params", "named"),
    [
        (InstructPix2PixTeacher, {"image_guidance_scale": 0.5}, "image_guidance_scale"),
        (InstructPix2PixTeacher, {"guidance_scale": "high"}, "guidance_scale"),
        (InstructPix2PixTeacher, {"steps": 0}, "steps"),
        (InstructPix2PixTeacher, {"steps": 2.5}, "steps"),
        (InstructPix2PixTeacher, {"batch_size": 0}, "batch_size"),
        (InstructPix2PixTeacher, {"strength": 0.5}, "strength"),  # an sdedit key is unknown here
        (InstructPix2PixTeacher, {"dtype": "float8"}, "dtype"),
        (SDEditTeacher, {"strength": 0}, "strength"),
        (SDEditTeacher, {"strength": 1.5}, "strength"),
        (SDEditTeacher, {"steps": 2, "strength": 0.3}, "steps"),  # int(2 x 0.3) = 0 denoising steps
        (SDEditTeacher, {"prompt": ""}, "prompt"),
        (SDEditTeacher, {"guidance": 7}, "guidance"),
    ],
)
def test_bad_parameters_are_refused_with_their_name_and_source(teacher, params, named):
    with pytest.raises(FactoryError) as caught:
        teacher.from_params({"model": "/never/loaded", **params}, source="concepts/winter.yaml")
    message = str(caught.value)
    assert message.startswith("concepts/winter.yaml: ") and f"'{named}'" in message, message


# ---------------------------------------------------------------- through `factory synth`


def check_diffusion_pairs(folder, kind, model, n, size):
    records = read_manifest(folder)
    assert sorted(r["id"] for r in records) == [f"{i:05d}" for i in range(n)]
    for r in records:
        assert r["teacher"]["kind"] == kind and r["teacher"]["model"] == str(model) and r["teacher"]["steps"] == 2
        src, tgt = read_image(folder / r["source"]), read_image(folder / r["target"])
        assert src.shape == tgt.shape == (size, size, 3) and differ(src, tgt) > 1
        assert sha256_file(folder / r["target"]) == r["sha256"]["target"]
    return records


def test_synth_with_instruct_pix2pix_loads_the_model_folder_as_a_user_would(workspace, factory_cli, ip2p_folder):
    concept = "autumn"  # a built-in classic card; --teacher overrides its teacher
    out = factory_cli(
        "synth",
        concept,
        "--teacher",
        "instruct-pix2pix",
        "--model",
        str(ip2p_folder),
        "--steps",
        "2",
        "-n",
        "2",
        "--size",
        "64",
    )
    assert "2 pairs (2 new" in out.stdout
    check_diffusion_pairs(workspace / "data" / concept, "instruct-pix2pix", ip2p_folder, 2, 64)


def test_synth_with_sdedit(workspace, img2img_folder):
    # in-process (the subprocess path is covered above; a second one would only re-import torch)
    args = [
        "--workspace",
        str(workspace),
        "synth",
        "black-and-white",
        "--teacher",
        "sdedit",
        "--model",
        str(img2img_folder),
        "--steps",
        "2",
        "--strength",
        "0.6",
        "-n",
        "2",
        "--size",
        "64",
        "--prompt",
        "a black and white photo",
        "--negative-prompt",
        "colour",
        "--device",
        "cpu",
        "--dtype",
        "float32",
    ]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0 and "2 pairs (2 new" in result.output
    records = check_diffusion_pairs(workspace / "data" / "black-and-white", "sdedit", img2img_folder, 2, 64)
    assert {r["teacher"]["strength"] for r in records} == {0.6}
    teacher = records[0]["teacher"]
    assert teacher["prompt"] == "a black and white photo" and teacher["negative_prompt"] == "colour"
    assert teacher["device"] == "cpu" and teacher["dtype"] == "float32" and teacher["first_timestep"] > 0


def test_synth_with_a_missing_model_exits_2_with_one_line(workspace, monkeypatch, capsys):
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "factory",
            "--workspace",
            str(workspace),
            "synth",
            "autumn",
            "--teacher",
            "instruct-pix2pix",
            "--model",
            "/nonexistent",
            "-n",
            "2",
            "--size",
            "64",
        ],
    )
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: model '/nonexistent' not found") and "--model" in err and "\n" not in err
    assert not read_manifest(workspace / "data" / "autumn")
