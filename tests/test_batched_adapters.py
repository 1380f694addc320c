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
