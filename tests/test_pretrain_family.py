"""``factory pretrain family``: the concept-family recipe end to end on a tiny scale; stages resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import factory
from base_gan.models import read_training
from factory.core.errors import FactoryError
from factory.core.workspace import Workspace
from factory.pipeline.pretrain_family import (
    FamilyPretrainOptions,
    adapters_workspace,
    heldout_concepts,
    pretrain_family,
)
from factory.pipeline.steps import initial_adapter
from weight_generator.dataset import WeightDataset

TINY = dict(base_concepts=3, base_pairs=4, size=32, ngf=8, base_minutes=0.05, batch=2, adapters=3, adapter_pairs=4,
            adapter_size=16, adapter_steps=3, per_concept=2, chunk=2, layers="up2,head", rank=2,
            weightgen_minutes=0.03, hypernet_steps=3)


def test_family_recipe_trains_installs_and_resumes(tmp_path):
    torch.set_num_threads(1)
    ws = Workspace(tmp_path / "ws")
    opts = FamilyPretrainOptions(**TINY)
    logs: list[str] = []
    r = pretrain_family(ws, opts, install=True, dest=tmp_path / "assets", log=logs.append, progress=False)
    base = read_training(ws.base("family-base"))
    assert len(base["concepts"]) == 3 and all(c.startswith("fam-") for c in base["concepts"])
    assert base["settings"]["text_dropout"] == pytest.approx(0.1)
    weights_ws = adapters_workspace(ws)  # the adapters' pairs are at another size than the base's, same concepts
    assert set(WeightDataset.load(weights_ws.weightgen("family-weightgen")).concepts) & set(base["concepts"])
    dataset = WeightDataset.load(weights_ws.weightgen("family-weightgen"))
    assert len(dataset) == r["adapters"] == 3
    manifest = json.loads((tmp_path / "assets" / "manifest.json").read_text())
    assert manifest["recipe"] == opts.command() and "--film" in opts.command() and "--no-coords" in opts.command()
    made = json.loads((weights_ws.weightgen("family-weightgen") / "training.json").read_text())
    assert made["settings"]["recipe_tokens"] is True and "--recipe-tokens" in opts.command()  # the validated default
    assert set(manifest["heldout"]) == set(heldout_concepts()) and "halftone" in manifest["heldout"]
    hyper_dir = tmp_path / "assets" / "editfactory-weightgen" / "hypernet"
    assert (hyper_dir / "layout.json").is_file()
    shipped_hyper = json.loads((hyper_dir / "training.json").read_text())
    assert shipped_hyper["base"] == "editfactory-base" and shipped_hyper["steps"] == 3
    for f in (tmp_path / "assets").rglob("*.json"):  # no path of the machine that made them
        assert str(tmp_path) not in f.read_text() and "\"_name_or_path\"" not in f.read_text(), f
    # --init hypernet: the shipped hypernetwork writes an adapter of the weight dataset's layout from any text
    starts = [initial_adapter("hypernet", text, tmp_path / f"init{i}", workspace=weights_ws, name="family-weightgen",
                              base=str(ws.base("family-base"))) for i, text in enumerate(["warmer", "add a vignette"])]
    a, b = (load_file(s / "adapter_model.safetensors") for s in starts)
    assert a.keys() == load_file(weights_ws.lora(dataset.concepts[0]) / "adapter_model.safetensors").keys()
    assert any(not torch.equal(a[k], b[k]) for k in a if "lora_B" in k), "the text moves the adapter"
    assert json.loads((starts[0] / "init.json").read_text())["init"] == "hypernet"
    # run again: every stage is found finished, nothing is trained again
    stamps = {p: p.stat().st_mtime_ns for p in (ws.root / "base" / "family-base").rglob("*.safetensors")}
    stamps |= {p: p.stat().st_mtime_ns for p in (weights_ws.root / "loras").rglob("*.safetensors")}
    again: list[str] = []
    factory.pretrain_family(workspace=ws.root, log=again.append, **TINY)
    with pytest.raises(FactoryError, match=r"unknown setting.*adapterz"):
        factory.pretrain_family(workspace=ws.root, adapterz=3)
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())
    assert not any("trained (chunk" in m for m in again), again
    # more adapters in the same workspace: refused before anything is trained or overwritten
    saved = (weights_ws.weightgen("family-weightgen") / "dataset.safetensors").read_bytes()
    with pytest.raises(FactoryError, match=r"trained on 3 adapters; --adapters 4 asks for another weight dataset"):
        pretrain_family(ws, FamilyPretrainOptions(**{**TINY, "adapters": 4}), log=again.append, progress=False)
    assert (weights_ws.weightgen("family-weightgen") / "dataset.safetensors").read_bytes() == saved
    assert len(list((weights_ws.root / "loras").iterdir())) == 3  # no fourth adapter


def test_shipped_assets_are_the_default_family_recipe():
    shipped = json.loads((Path(factory.__file__).parent / "pretrained" / "manifest.json").read_text())
    assert shipped["recipe"] == FamilyPretrainOptions().command()  # `factory pretrain family --install` made them
    from factory.cli.pretrain_cmd import family_cmd  # ... and the command's defaults are the same

    cli_defaults = {p.name: p.default for p in family_cmd.params if p.name not in ("install", "dest", "processes")}
    assert FamilyPretrainOptions(**cli_defaults).command() == shipped["recipe"]
    assert shipped["total_bytes"] <= 30_000_000 and len(shipped["weightgen"]["concepts"]) == 1024


def test_family_recipe_refuses_bad_settings():
    with pytest.raises(FactoryError, match="multiples of 16"):
        FamilyPretrainOptions(size=40)
    with pytest.raises(FactoryError, match="text-dropout"):
        FamilyPretrainOptions(text_dropout=1.5)
