"""The `pairs` teacher (the user's own pairs) and `factory data export` in the formats tools use."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from factory.core.images import read_image
from factory.data.pair_store import read_manifest
from tests.conftest import photo, write_rgb
from tests.test_synth import BLUR_CARD, add_card, check_folder


def pixels_by_split(folder: Path) -> dict[str, list[tuple[bytes, bytes]]]:
    out: dict[str, list] = {"train": [], "test": []}
    for r in sorted(read_manifest(folder), key=lambda r: r["id"]):
        out[r["split"]].append((read_image(folder / r["source"]).tobytes(), read_image(folder / r["target"]).tobytes()))
    return {k: sorted(v) for k, v in out.items()}


def test_export_then_import_round_trips(workspace: Path, tmp_path: Path, factory_cli) -> None:
    name = add_card(workspace, BLUR_CARD)
    factory_cli("synth", name, "-n", "10", "--size", "32")
    original = pixels_by_split(workspace / "data" / name)

    turbo = tmp_path / "turbo"
    out = factory_cli("data", "export", name, "--format", "img2img-turbo", "--out", str(turbo))
    assert "10 pairs" in out.stdout
    assert len(list((turbo / "train_A").glob("*.png"))) == len(original["train"])
    prompts = json.loads((turbo / "train_prompts.json").read_text())
    assert set(prompts.values()) == {"blur the photo softly"}

    pix = tmp_path / "pix2pix"
    factory_cli("data", "export", name, "--format", "pix2pix", "--out", str(pix))
    aligned = read_image(next((pix / "train").glob("*.jpg")))
    assert aligned.shape == (32, 64, 3)

    # importing the exported img2img-turbo folder gives back the same pixels and splits (PNG is lossless)
    ws2 = tmp_path / "ws2"
    ws2.mkdir()
    add_card(ws2, BLUR_CARD)
    from tests.conftest import run_factory

    out = run_factory(ws2, "synth", name, "--teacher", "pairs", "--images", str(turbo), "--size", "32")
    assert "10 pairs (10 new" in out.stdout
    check_folder(ws2 / "data" / name)
    assert pixels_by_split(ws2 / "data" / name) == original
    again = run_factory(ws2, "synth", name, "--teacher", "pairs", "--images", str(turbo), "--size", "32")
    assert "10 pairs (0 new, 10 kept" in again.stdout


def test_import_aligned_pix2pix_pairs(workspace: Path, tmp_path: Path, factory_cli) -> None:
    name = add_card(workspace, BLUR_CARD)
    for i in range(4):
        src, tgt = photo(i, 40, 40), 255 - photo(i, 40, 40)
        write_rgb(tmp_path / "pairs" / ("test" if i == 3 else "train") / f"{i}.png", np.hstack([src, tgt]))
    write_rgb(tmp_path / "pairs" / "train" / "square.png", photo(9, 40, 40))  # not an A|B pair
    out = factory_cli("synth", name, "--teacher", "pairs", "--images", str(tmp_path / "pairs"), "--size", "32")
    assert "4 pairs" in out.stdout and "square.png" in out.stderr
    records = check_folder(workspace / "data" / name)
    assert sorted(r["split"] for r in records) == ["test", "train", "train", "train"]
    r = records[0]
    src, tgt = read_image(workspace / "data" / name / r["source"]), read_image(workspace / "data" / name / r["target"])
    assert np.abs(src.astype(int) + tgt.astype(int) - 255).max() <= 2  # target is the inverted source


def test_pairs_without_images_is_a_usage_error(workspace: Path, factory_cli) -> None:
    name = add_card(workspace, BLUR_CARD)
    out = factory_cli("synth", name, "--teacher", "pairs", check=False)
    assert out.returncode == 2 and "--images" in out.stderr
