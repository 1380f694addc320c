"""Many adapters in one batch: equal to one-at-a-time training, saved as plain peft adapters."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from base_gan.generator import build_generator
from concepts.cards import find_card
from factory.core.workspace import Workspace
from factory.data.dataset import PairedDataset
from factory.lora.adapters import LoraLayout, load_adapter
from factory.lora.batched import AdapterTraining, train_adapters
from factory.text.encoder import TextEncoder

SIZE = 32


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Workspace:
    from factory.data.card_pairs import make_pairs

    ws = Workspace(tmp_path_factory.mktemp("ws"))
    for name in ("sepia", "negative", "film-noir"):
        make_pairs(ws, find_card(name), 12, SIZE, seed=0)
    return ws


def base_model():
    return build_generator(seed=0, ngf=8, heads=2, image_size=SIZE, film=True)


LAYOUT = LoraLayout(["down1", "xattn", "up2", "head", "film"], ranks=2, bias=True)


def test_batched_training_equals_one_at_a_time(ws: Workspace) -> None:
    dirs = [ws.data(c) for c in ("sepia", "negative", "film-noir")]
    settings = AdapterTraining(steps=6, per_concept=3, lr=1e-2, seed=5)
    together, history = train_adapters(base_model(), LAYOUT, dirs, settings, ws.text_cache)
    assert len(history) == settings.steps
    data = PairedDataset(dirs, split="test")
    tokens, mask = TextEncoder.from_name("minilm", ws.text_cache).tokens(data.instructions)
    items = [data[i] for i in range(len(data))]
    x, y = torch.stack([i["source"] for i in items]), torch.stack([i["target"] for i in items])
    ids = torch.tensor([i["concept"] for i in items])
    with torch.no_grad():
        before = (base_model()(x, tokens[ids], mask[ids]) - y).abs().mean()
        after = (together(x, ids, tokens[ids], mask[ids]) - y).abs().mean()
    assert after < before  # it learns: held-out L1 falls from the base's
    for k, d in enumerate(dirs):
        alone, _ = train_adapters(base_model(), LAYOUT, [d], settings, ws.text_cache)
        for name, layer in together.layers.items():
            assert layer.b[k].abs().max() > 0
            # Adam steps are 1e-2: float noise in the summed loss stays far below one step
            torch.testing.assert_close(layer.b[k], alone.layers[name].b[0], rtol=1e-3, atol=5e-5)
            torch.testing.assert_close(layer.b_bias[k], alone.layers[name].b_bias[0], rtol=1e-3, atol=5e-5)


def test_a_saved_adapter_is_the_batched_one_in_peft(ws: Workspace, tmp_path: Path) -> None:
    dirs = [ws.data("sepia"), ws.data("negative")]
    model, _ = train_adapters(base_model(), LAYOUT, dirs, AdapterTraining(steps=3, per_concept=2, lr=1e-2))
    data = PairedDataset(dirs, split="test")
    tokens, mask = TextEncoder.from_name("minilm", ws.text_cache).tokens(data.instructions)
    x = torch.stack([data[i]["source"] for i in range(2)])
    for k in range(2):
        folder = model.save(k, tmp_path / f"a{k}")
        peft = load_adapter(base_model(), folder).eval()
        ids = torch.full((2,), k)
        with torch.no_grad():
            want = model(x, ids, tokens[ids], mask[ids])
            got = peft(x, tokens[ids], mask[ids])
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    a0 = load_adapter(base_model(), tmp_path / "a0").state_dict()
    a1 = load_adapter(base_model(), tmp_path / "a1").state_dict()
    a_keys = [key for key in a0 if "lora_A" in key]
    assert a_keys and all(torch.equal(a0[key], a1[key]) for key in a_keys)  # one shared, frozen A
    assert any(not torch.equal(a0[key], a1[key]) for key in a0 if "lora_B" in key)


def test_a_family_weight_dataset_shares_one_frozen_a_and_resumes(tmp_path: Path) -> None:
    from base_gan.models import BaseGAN, save_model
    from factory.pipeline.weight_dataset import family_weight_dataset
    from weight_generator.tokenize import WeightTokenizer

    ws = Workspace(tmp_path / "ws")
    save_model(base_model(), ws.base("tiny"))
    base = BaseGAN.load(ws.base("tiny"))
    layout = LoraLayout(["down1", "head"], ranks=2, bias=True)
    settings = AdapterTraining(steps=3, per_concept=2, lr=1e-2)
    logs: list[str] = []
    ds = family_weight_dataset(ws, base, 4, layout, settings, pairs=8, chunk=3, log=logs.append)
    assert len(ds) == 4 and all(c.startswith("fam-") for c in ds.concepts)
    assert len(set(ds.instructions)) == 4 and sum("adapters:" in m for m in logs) == 2  # chunks of 3 and 1
    tok = WeightTokenizer.fit(ds.weights, ds.layout, ds.adapter_config, block_size=32)
    a_values = sum(n for k, n in zip(ds.layout.keys, ds.layout.numels) if "lora_A" in k)
    assert a_values > 0 and tok.n_free == ds.layout.numel - a_values  # one frozen A: not generated
    assert not torch.equal(ds.weights[0], ds.weights[1])
    saved = {c: ws.lora(c).joinpath("adapter_model.safetensors").stat().st_mtime_ns for c in ds.concepts}
    again = family_weight_dataset(ws, base, 4, layout, settings, pairs=8, chunk=3, log=logs.append)
    assert again.concepts == ds.concepts and torch.equal(again.weights, ds.weights)
    assert saved == {c: ws.lora(c).joinpath("adapter_model.safetensors").stat().st_mtime_ns for c in ds.concepts}

    from conftest import run_factory  # the command: same concepts (seed 0), nothing trained again, dataset saved

    r = run_factory(ws.root, "weightgen", "family", "4", "--base", "tiny", "--layers", "down1,head", "--rank", "2",
                    "--steps", "3", "--per-concept", "2", "--lr", "1e-2", "--chunk", "3", "--pairs", "8")
    assert "weightgen family: 4 adapters" in r.stdout and "adapters:" not in r.stdout
    assert saved == {c: ws.lora(c).joinpath("adapter_model.safetensors").stat().st_mtime_ns for c in ds.concepts}
    assert (ws.weightgen("family") / "dataset.safetensors").is_file()
    bad = run_factory(ws.root, "weightgen", "family", "1", check=False)
    assert bad.returncode == 2 and "1 is not in the range x>=2" in bad.stderr


def test_the_hypernetwork_learns_text_to_adapter_through_the_frozen_base(ws: Workspace, tmp_path: Path) -> None:
    from weight_generator.hypernet import HypernetTraining, TextToLora, hypernet_adapter, train_hypernet

    dirs = [ws.data(c) for c in ("sepia", "negative", "film-noir")]
    settings = HypernetTraining(steps=150, concepts_per_step=3, per_concept=2, lr=3e-3, hidden=32)
    net, history = train_hypernet(base_model(), LAYOUT, dirs, settings, ws.text_cache)
    first, last = history[:5], history[-5:]
    assert sum(h["l1"] for h in last) < 0.8 * sum(h["l1"] for h in first)  # loss falls
    net.save_pretrained(tmp_path / "hnet")
    net = TextToLora.from_pretrained(tmp_path / "hnet")
    data = PairedDataset(dirs, split="test")
    tokens, mask = TextEncoder.from_name("minilm", ws.text_cache).tokens(data.instructions)
    errors = {}
    for k in range(len(dirs)):  # each text's adapter, loaded in plain peft, on each concept's test pairs
        folder = hypernet_adapter(net, base_model(), LAYOUT, data.instructions[k], tmp_path / f"a{k}", ws.text_cache)
        peft = load_adapter(base_model(), folder).eval()
        for j in range(len(dirs)):
            items = [data[i] for i in data.members(j)]
            x, y = torch.stack([i["source"] for i in items]), torch.stack([i["target"] for i in items])
            ids = torch.full((len(x),), j)
            with torch.no_grad():
                errors[k, j] = float((peft(x, tokens[ids], mask[ids]) - y).abs().mean())
    for j in range(len(dirs)):  # it follows the text: a concept's own text gives the adapter nearest its edit
        assert errors[j, j] == min(errors[k, j] for k in range(len(dirs))), errors
