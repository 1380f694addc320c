"""Weight tokenization: a peft LoRA adapter <-> normalized, equal-sized 1-D blocks, each with its index.

* Canonical order: the adapter's tensors sorted by their state-dict key (``base_model.model.<module>.
  lora_A.weight`` ...), each flattened row-major. Every adapter of one layout flattens the same way.
* Layout (``AdapterLayout``): the tensor keys and shapes plus the adapter_config fields that change
  what the numbers mean (ranks, alphas, target modules, DoRA/rsLoRA, ...). Two adapters can share a
  weight dataset only when their layouts are equal; ``AdapterLayout.difference`` names the first
  difference.
* Normalization statistics over the dataset, one (mean, scale) pair per tensor (``stats="tensor"``),
  optionally with a per-element mean on top (``stats="element"``; the dataset's average adapter is
  then all zeros in token space). The mean is stored as a float32 value and the scale as a power of
  two, and the arithmetic runs in float64, so ``x -> (x - mean) / scale -> * scale + mean`` gives back
  the same float32 bits (exact for zero and for any value within 2^29 of the mean's magnitude).
* Shared tensors: a tensor equal in every training adapter (adapters trained against one frozen
  lora_A, ``factory.lora.batched``) is stored once in the tokenizer (``fixed``) and left out of the
  blocks, so the generator spends nothing on it and every generated adapter carries it exactly.
* Blocks: the normalized (free) values padded with zeros to a multiple of ``block_size`` and cut into
  ``n_blocks`` rows; block ``i`` has index ``i``. ``valid_mask`` marks the real (unpadded) elements.

``WeightTokenizer.save(folder)`` writes ``tokenizer.json`` (layout, block size, adapter_config
template) and ``tokenizer.safetensors`` (the statistics); ``write_adapter`` writes a peft adapter
folder (``adapter_config.json`` + ``adapter_model.safetensors``) that ``PeftModel.from_pretrained``
loads onto the base generator.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from factory.core.atomic import atomic_save_file, atomic_write_json
from factory.core.errors import FactoryError

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
TOKENIZER_CONFIG = "tokenizer.json"
TOKENIZER_STATS = "tokenizer.safetensors"
DEFAULT_BLOCK_SIZE = 256
STATS_KINDS = ("tensor", "element")

# adapter_config.json fields that change what an adapter's numbers mean; all must match in a dataset
LAYOUT_CONFIG_KEYS = ("peft_type", "r", "lora_alpha", "rank_pattern", "alpha_pattern", "target_modules",
                      "use_rslora", "use_dora", "bias", "lora_bias", "fan_in_fan_out", "modules_to_save",
                      "layers_to_transform", "layers_pattern", "exclude_modules", "target_parameters")


def _canonical(value: Any) -> Any:
    """JSON-comparable form: sets/lists of module names sorted, dicts with sorted keys."""
    if isinstance(value, (list, tuple, set)):
        items = [_canonical(v) for v in value]
        return sorted(items, key=json.dumps) if all(isinstance(v, str) for v in items) else items
    if isinstance(value, dict):
        return {str(k): _canonical(value[k]) for k in sorted(value)}
    return value


@dataclass(frozen=True)
class AdapterLayout:
    """The tensors (key, shape) of an adapter in canonical order and its meaning-bearing config fields."""

    keys: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    config: tuple[tuple[str, str], ...]  # (field, json of its canonical value)

    @classmethod
    def of(cls, tensors: dict[str, torch.Tensor], adapter_config: dict[str, Any]) -> AdapterLayout:
        keys = tuple(sorted(tensors))
        cfg = tuple((k, json.dumps(_canonical(adapter_config.get(k)), sort_keys=True)) for k in LAYOUT_CONFIG_KEYS)
        return cls(keys, tuple(tuple(int(s) for s in tensors[k].shape) for k in keys), cfg)

    @property
    def numels(self) -> list[int]:
        return [math.prod(s) for s in self.shapes]

    @property
    def numel(self) -> int:
        return sum(self.numels)

    def difference(self, other: AdapterLayout) -> str | None:
        """A short description of the first way ``other`` differs from this layout (None when equal)."""
        mine, theirs = dict(self.config), dict(other.config)
        for k in LAYOUT_CONFIG_KEYS:
            if mine.get(k) != theirs.get(k):
                return f"adapter_config '{k}' is {theirs.get(k)} instead of {mine.get(k)}"
        missing = sorted(set(self.keys) - set(other.keys))
        extra = sorted(set(other.keys) - set(self.keys))
        if missing or extra:
            parts = ([f"lacks {_short(missing)}"] if missing else []) + (
                [f"has extra {_short(extra)}"] if extra else []
            )
            return "tensors differ: it " + " and ".join(parts)
        shapes = dict(zip(other.keys, other.shapes))
        for k, s in zip(self.keys, self.shapes):
            if shapes[k] != s:
                return f"tensor {k} has shape {list(shapes[k])} instead of {list(s)}"
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "keys": list(self.keys),
            "shapes": [list(s) for s in self.shapes],
            "config": {k: json.loads(v) for k, v in self.config},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AdapterLayout:
        cfg = tuple((k, json.dumps(_canonical(d["config"].get(k)), sort_keys=True)) for k in LAYOUT_CONFIG_KEYS)
        return cls(tuple(d["keys"]), tuple(tuple(s) for s in d["shapes"]), cfg)


def _short(keys: list[str], n: int = 3) -> str:
    return ", ".join(keys[:n]) + (f" (+{len(keys) - n} more)" if len(keys) > n else "")


# -- adapter folders ------------------------------------------------------------------------------
def read_adapter(folder: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, adapter_config) of a peft adapter folder; FactoryError naming the folder when unusable."""
    from safetensors.torch import load_file

    folder = Path(folder)
    cfg_path, w_path = folder / ADAPTER_CONFIG, folder / ADAPTER_WEIGHTS
    if not cfg_path.is_file() or not w_path.is_file():
        raise FactoryError(f"{folder}: not a peft adapter (expected {ADAPTER_CONFIG} and {ADAPTER_WEIGHTS})")
    try:
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
        tensors = load_file(str(w_path))
    except Exception as exc:  # corrupt JSON or safetensors
        raise FactoryError(f"{folder}: unreadable adapter ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
    if config.get("peft_type") != "LORA":
        raise FactoryError(f"{folder}: peft_type is {config.get('peft_type')!r}, only LORA adapters are supported")
    if not tensors:
        raise FactoryError(f"{folder}: {ADAPTER_WEIGHTS} holds no tensors")
    bad = [k for k, v in tensors.items() if not v.is_floating_point()]
    if bad:
        raise FactoryError(f"{folder}: non-float tensor(s) {_short(bad)} in {ADAPTER_WEIGHTS}")
    return tensors, config


def write_adapter(folder: str | Path, tensors: dict[str, torch.Tensor], adapter_config: dict[str, Any]) -> Path:
    """Write a peft adapter folder (weights first, config last, each atomically). The config names no base
    (``base_model_name_or_path`` None): an adapter carries no path of the machine that made it."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = {k: v.detach().to(torch.float32).contiguous() for k, v in tensors.items()}
    atomic_save_file(folder / ADAPTER_WEIGHTS, lambda tmp: save_file(data, tmp, metadata={"format": "pt"}))
    atomic_write_json(folder / ADAPTER_CONFIG, dict(adapter_config, base_model_name_or_path=None))
    return folder


def flatten(tensors: dict[str, torch.Tensor], layout: AdapterLayout) -> torch.Tensor:
    """The adapter as one float64 vector in the layout's canonical order."""
    return torch.cat([tensors[k].detach().reshape(-1).to(torch.float64) for k in layout.keys])


def unflatten(vector: torch.Tensor, layout: AdapterLayout) -> dict[str, torch.Tensor]:
    """Inverse of ``flatten``: float32 tensors of the layout's shapes."""
    if vector.numel() != layout.numel:
        raise ValueError(f"vector has {vector.numel()} values, the layout needs {layout.numel}")
    parts = torch.split(vector.reshape(-1), layout.numels)
    return {k: p.to(torch.float32).reshape(s).clone() for k, p, s in zip(layout.keys, parts, layout.shapes)}


def _float32_value(x: float) -> float:
    return float(torch.tensor(x, dtype=torch.float32))


def _power_of_two(x: float) -> float:
    return 1.0 if not math.isfinite(x) or x <= 0 else 2.0 ** round(math.log2(x))


# -- the tokenizer --------------------------------------------------------------------------------
class WeightTokenizer:
    """Adapter vector <-> [n_blocks, block_size] normalized blocks, with the dataset's statistics."""

    def __init__(
        self,
        layout: AdapterLayout,
        block_size: int,
        tensor_mean: torch.Tensor,
        tensor_scale: torch.Tensor,
        element_mean: torch.Tensor | None,
        adapter_config: dict[str, Any],
        fixed: torch.Tensor | None = None,
    ):
        if block_size < 1:
            raise ValueError(f"block_size must be positive, got {block_size}")
        self.layout = layout
        #: values of tensors every training adapter shares exactly (e.g. one frozen lora_A), stored once here
        #: and left out of the blocks; NaN marks the free values the blocks carry
        self.fixed = None if fixed is None else fixed.to(torch.float64)
        self._free = (torch.ones(layout.numel, dtype=torch.bool) if self.fixed is None
                      else torch.isnan(self.fixed))
        self.n_free = int(self._free.sum())
        self.block_size = int(block_size)
        self.tensor_mean = tensor_mean.to(torch.float64)
        self.tensor_scale = tensor_scale.to(torch.float64)
        self.element_mean = None if element_mean is None else element_mean.to(torch.float32).to(torch.float64)
        self.adapter_config = dict(adapter_config)
        counts = torch.tensor(layout.numels)
        self._mean = torch.repeat_interleave(self.tensor_mean, counts)
        if self.element_mean is not None:
            self._mean = (self._mean + self.element_mean).to(torch.float32).to(torch.float64)
        self._scale = torch.repeat_interleave(self.tensor_scale, counts)

    @property
    def stats(self) -> str:
        return "tensor" if self.element_mean is None else "element"

    @property
    def n_blocks(self) -> int:
        return -(-self.n_free // self.block_size)

    @property
    def padded(self) -> int:
        return self.n_blocks * self.block_size

    @classmethod
    def fit(
        cls,
        vectors: torch.Tensor,
        layout: AdapterLayout,
        adapter_config: dict[str, Any],
        block_size: int = DEFAULT_BLOCK_SIZE,
        stats: str = "tensor",
        share_fixed: bool = True,
    ) -> WeightTokenizer:
        """Statistics over a dataset of adapter vectors [N, P] (float32 or float64). With ``share_fixed``,
        a tensor equal in every adapter (N >= 2) is stored once and left out of the blocks."""
        if stats not in STATS_KINDS:
            raise ValueError(f"stats must be one of {STATS_KINDS}, got {stats!r}")
        v = vectors.to(torch.float64).reshape(len(vectors), -1)
        if v.shape[1] != layout.numel:
            raise ValueError(f"vectors have {v.shape[1]} values, the layout needs {layout.numel}")
        element_mean = v.mean(0).to(torch.float32) if stats == "element" else None
        resid = v - element_mean.to(torch.float64) if element_mean is not None else v
        means, scales, fixed = [], [], []
        for part, raw in zip(torch.split(resid, layout.numels, dim=1), torch.split(v, layout.numels, dim=1)):
            shared = share_fixed and len(v) > 1 and bool((raw == raw[:1]).all())
            fixed.append(raw[0] if shared else torch.full((raw.shape[1],), float("nan"), dtype=torch.float64))
            if shared:
                means.append(0.0)
                scales.append(1.0)
                continue
            means.append(0.0 if element_mean is not None else _float32_value(part.mean().item()))
            scales.append(_power_of_two(part.std(unbiased=False).item()) if part.numel() > 1 else 1.0)
        fixed_values = torch.cat(fixed)
        return cls(
            layout,
            block_size,
            torch.tensor(means, dtype=torch.float64),
            torch.tensor(scales, dtype=torch.float64),
            element_mean,
            adapter_config,
            fixed_values if not torch.isnan(fixed_values).all() else None,
        )

    # -- vector <-> blocks ------------------------------------------------------------------------
    def encode(self, vectors: torch.Tensor) -> torch.Tensor:
        """Adapter vector(s) [P] or [N, P] -> float64 blocks [n_blocks, S] or [N, n_blocks, S]."""
        single = vectors.dim() == 1
        v = vectors.to(torch.float64).reshape(-1, self.layout.numel)
        z = ((v - self._mean) / self._scale)[:, self._free]
        z = torch.nn.functional.pad(z, (0, self.padded - self.n_free))
        blocks = z.reshape(len(v), self.n_blocks, self.block_size)
        return blocks[0] if single else blocks

    def decode(self, blocks: torch.Tensor) -> torch.Tensor:
        """Blocks [n_blocks, S] or [N, n_blocks, S] -> float64 adapter vector(s) [P] or [N, P]."""
        single = blocks.dim() == 2
        b = blocks.to(torch.float64).reshape(-1, self.padded)[:, : self.n_free]
        v = torch.zeros(len(b), self.layout.numel, dtype=torch.float64) if self.fixed is None else \
            self.fixed.expand(len(b), -1).clone()
        v[:, self._free] = b * self._scale[self._free] + self._mean[self._free]
        return v[0] if single else v

    def scale_vector(self) -> torch.Tensor:
        """float64 [P]: each value's normalization scale (its tensor's)."""
        return self._scale.clone()

    def valid_mask(self) -> torch.Tensor:
        """bool [n_blocks, S]: True on real values, False on the zero padding of the last block."""
        return (torch.arange(self.padded) < self.n_free).reshape(self.n_blocks, self.block_size)

    def block_index(self) -> torch.Tensor:
        return torch.arange(self.n_blocks)

    # -- adapters ---------------------------------------------------------------------------------
    def tokenize_adapter(self, folder: str | Path) -> torch.Tensor:
        """A peft adapter folder -> float64 blocks; FactoryError when its layout is not this one."""
        tensors, config = read_adapter(folder)
        diff = self.layout.difference(AdapterLayout.of(tensors, config))
        if diff:
            raise FactoryError(f"{folder}: adapter layout does not match the weight generator's: {diff}")
        vector = flatten(tensors, self.layout).to(torch.float64)
        if self.fixed is not None and not torch.equal(vector[~self._free], self.fixed[~self._free]):
            raise FactoryError(f"{folder}: its shared tensors (e.g. lora_A) differ from the ones every training "
                               "adapter of this weight generator has; it was trained against another lora_A")
        return self.encode(vector)

    def to_tensors(self, blocks: torch.Tensor) -> dict[str, torch.Tensor]:
        return unflatten(self.decode(blocks), self.layout)

    def write_adapter(
        self, blocks: torch.Tensor, folder: str | Path, config_updates: dict[str, Any] | None = None
    ) -> Path:
        """Blocks -> a peft adapter folder loadable with ``PeftModel.from_pretrained`` on the base."""
        cfg = dict(self.adapter_config, **(config_updates or {}))
        return write_adapter(folder, self.to_tensors(blocks), cfg)

    # -- persistence ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "block_size": self.block_size,
            "stats": self.stats,
            "n_blocks": self.n_blocks,
            "numel": self.layout.numel,
            "fixed_values": self.layout.numel - self.n_free,
            "layout": self.layout.to_dict(),
            "adapter_config": self.adapter_config,
        }

    def save(self, folder: str | Path) -> Path:
        from safetensors.torch import save_file

        folder = Path(folder)
        tensors = {"tensor_mean": self.tensor_mean.contiguous(), "tensor_scale": self.tensor_scale.contiguous()}
        if self.element_mean is not None:
            tensors["element_mean"] = self.element_mean.to(torch.float32).contiguous()
        if self.fixed is not None:
            tensors["fixed"] = self.fixed.contiguous()
        atomic_save_file(folder / TOKENIZER_STATS, lambda tmp: save_file(tensors, tmp))
        atomic_write_json(folder / TOKENIZER_CONFIG, self.to_dict())
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> WeightTokenizer:
        from safetensors.torch import load_file

        folder = Path(folder)
        if not (folder / TOKENIZER_CONFIG).is_file() or not (folder / TOKENIZER_STATS).is_file():
            raise FactoryError(
                f"{folder}: no weight tokenizer here (expected {TOKENIZER_CONFIG} and {TOKENIZER_STATS})"
            )
        d = json.loads((folder / TOKENIZER_CONFIG).read_text(encoding="utf-8"))
        t = load_file(str(folder / TOKENIZER_STATS))
        return cls(
            AdapterLayout.from_dict(d["layout"]),
            d["block_size"],
            t["tensor_mean"],
            t["tensor_scale"],
            t.get("element_mean"),
            d["adapter_config"],
            t.get("fixed"),
        )
