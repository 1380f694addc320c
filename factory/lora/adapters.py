"""peft LoRA on the generator's layer groups: layout, wrapping, saving in peft's own format, merging.

A ``LoraLayout`` says which layer groups (``base_gan.generator.LAYER_GROUPS``) are adapted and at
which rank (``ranks[group]``; ``to_dict``/``from_dict`` of ``factory.core.configs``). It becomes a
``peft.LoraConfig`` with the exact module names as ``target_modules`` and
an explicit ``rank_pattern`` entry for every one of them (and ``alpha_pattern`` = ranks, so the
LoRA scaling alpha/r is 1 everywhere and ranks are comparable under one learning rate). The same
layout on the same base therefore always gives the same tensors, names and shapes: that is what
the weight generator needs (one layout for all concepts). Force it with ``--layers GROUPS --rank N``.
``bias=True`` sets peft's ``lora_bias``: each lora_B gets a bias (zero at init, part of the adapter,
added to the base layer's bias by ``merge_and_unload``), so the base's tensors still never change.

peft's default init (A random, B = 0) makes the adapted model equal to the base at step 0.
Adapters are saved with ``PeftModel.save_pretrained`` (``adapter_config.json`` +
``adapter_model.safetensors``), each file moved into place atomically, so plain peft loads them::

    base = load_model(base_dir)
    base = with_colour_basis(base, saved_colour_basis(adapter_dir))  # the colour basis's conv, when it has one
    model = PeftModel.from_pretrained(base, adapter_dir)   # or set_peft_model_state_dict

(peft skips a ``modules_to_save`` module the model does not have, so without the second line an adapter trained
with the colour basis loads without its colour map.)

The adapter config names no base (``base_model_name_or_path`` is None): the shipped files carry no
build paths, and peft then never looks for a config file at such a path.

A concept with a fixed screen (``factory.data.screen_fit``) also trains the stem's ``waves`` conv, which the base
does not have: it is peft's ``modules_to_save`` (trained whole, saved in the adapter, kept by a merge), and
``screen.json`` beside the adapter names the waves, so ``load_adapter`` first gives the base that conv. A fine-tune
with a colour basis (``base_gan.generator.COLOUR_DEGREES``) trains ``head.colour`` the same way; its degree is read
back from the saved conv's input channels. One with the lens basis (``base_gan.generator.LENS_PLANES``) trains
``head.lens`` the same way, read back from its name among the adapter's ``modules_to_save``.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from dataclasses import InitVar, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from base_gan.generator import LAYER_GROUPS, group_of, target_modules
from factory.core.atomic import atomic_save_pretrained, atomic_write_json
from factory.core.errors import FactoryError

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
SCREEN_FILE = "screen.json"  # screen_of's dict for an adapter that trains the stem's waves conv
SCREEN_MODULE = "stem.waves"
COLOUR_MODULE = "head.colour"
LENS_MODULE = "head.lens"


@dataclass
class LoraLayout:
    """Adapted layer groups and the rank of each (``ranks``: one number for all, or per group with ``rank``
    for the groups not named); ``bias``: peft lora_bias, a trainable bias on every lora_B (zero at init,
    merged into the base bias)."""

    groups: list[str]
    ranks: dict[str, int] | int = 4
    bias: bool = False
    rank: InitVar[int | None] = None

    def __post_init__(self, rank: int | None) -> None:
        self.groups = parse_groups(self.groups)
        given = {} if isinstance(self.ranks, int) else dict(self.ranks)
        default = rank if rank is not None else self.ranks if isinstance(self.ranks, int) else None
        bad = sorted(set(given) - set(self.groups))
        if bad:
            raise FactoryError(f"ranks given for groups that are not adapted: {', '.join(bad)}")
        missing = [g for g in self.groups if g not in given and default is None]
        if missing:
            raise FactoryError(f"no rank for group(s) {', '.join(missing)}")
        self.ranks = {g: given.get(g, default) for g in self.groups}
        for r in self.ranks.values():
            if not isinstance(r, int) or isinstance(r, bool) or r < 1:
                raise FactoryError(f"LoRA ranks must be whole numbers >= 1, got {r!r}")

    def rank_of(self, group: str) -> int:
        return self.ranks[group]

    @property
    def max_rank(self) -> int:
        return max(self.ranks.values())

    def module_ranks(self, model: nn.Module) -> dict[str, int]:
        """Exact module name -> rank, for every adapted Conv2d/Linear of ``model``."""
        names = target_modules(model, self.groups)
        if not names:
            raise FactoryError(f"no layers of groups {', '.join(self.groups)} in this model")
        return {n: self.rank_of(group_of(n)) for n in names}

    def lora_config(self, model: nn.Module):
        from peft import LoraConfig

        ranks = self.module_ranks(model)
        return LoraConfig(
            modules_to_save=extra_modules(model) or None,
            r=self.max_rank,
            lora_alpha=self.max_rank,
            target_modules=list(ranks),
            rank_pattern=dict(ranks),
            alpha_pattern=dict(ranks),
            lora_dropout=0.0,
            bias="none",
            lora_bias=self.bias,
            base_model_name_or_path=None,
        )

    def describe(self) -> str:
        rs = set(self.ranks.values())
        text = (
            f"{','.join(self.groups)} @ rank {rs.pop()}"
            if len(rs) == 1
            else ", ".join(f"{g}@{self.rank_of(g)}" for g in self.groups)
        )
        return text + (" + lora bias" if self.bias else "")


def parse_groups(spec: str | list[str] | tuple[str, ...]) -> list[str]:
    """``"down1,attn,up1"`` or a list -> validated group names in LAYER_GROUPS order (no duplicates)."""
    items = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else [str(s).strip() for s in spec]
    items = [s for s in items if s]
    unknown = [g for g in items if g not in LAYER_GROUPS]
    if unknown:
        raise FactoryError(f"unknown layer group(s) {', '.join(unknown)} (known: {', '.join(LAYER_GROUPS)})")
    if not items:
        raise FactoryError(f"no layer groups given (known: {', '.join(LAYER_GROUPS)})")
    return [g for g in LAYER_GROUPS if g in items]


def wrap(model: nn.Module, layout: LoraLayout, seed: int = 0):
    """Inject LoRA layers into ``model`` (in place) and return the ``PeftModel``; only LoRA weights train.

    ``seed`` fixes the random init of the A matrices (B starts at zero, so outputs start at the base's).
    """
    from peft import get_peft_model

    config = layout.lora_config(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        peft_model = get_peft_model(model, config)
    # after wrapping: get_peft_model fills it from the model (a diffusers model has no name_or_path)
    peft_model.peft_config["default"].base_model_name_or_path = None
    return peft_model


def extra_modules(model: nn.Module) -> list[str]:
    """The modules of ``model`` (or a peft model over one) that a LoRA run trains whole, the base lacking them: a
    screen's ``waves`` conv, the colour basis's conv and the lens basis's."""
    return ([SCREEN_MODULE] if screen_of(model) else []) + ([COLOUR_MODULE] if colour_basis_of(model) else []) \
        + ([LENS_MODULE] if lens_basis_of(model) else [])


def lens_basis_of(model: nn.Module) -> bool:
    """Whether a generator (or a peft model over one) reads the lens basis."""
    from base_gan.models import unwrap

    return bool(getattr(getattr(unwrap(model), "config", None), "lens_basis", False))


def saved_lens_basis(folder: Path) -> bool:
    """Whether a saved adapter trained the lens basis's ``head.lens``."""
    return LENS_MODULE in (read_adapter_config(folder).get("modules_to_save") or [])


def colour_basis_of(model: nn.Module) -> int:
    """The degree of the colour basis a generator (or a peft model over one) reads, 0 without."""
    from base_gan.models import unwrap

    return int(getattr(getattr(unwrap(model), "config", None), "colour_basis", 0) or 0)


def saved_colour_basis(folder: Path) -> int:
    """The degree of the colour basis a saved adapter trained ``head.colour`` for, 0 without (from its shape)."""
    from safetensors import safe_open

    from base_gan.generator import COLOUR_DEGREES, colour_terms

    if COLOUR_MODULE not in (read_adapter_config(folder).get("modules_to_save") or []):
        return 0
    with safe_open(str(Path(folder) / ADAPTER_WEIGHTS), framework="pt") as f:
        name = next((k for k in f.keys() if f".{COLOUR_MODULE}." in k), None)  # noqa: SIM118
        terms = f.get_slice(name).get_shape()[1] if name else None
    degree = next((d for d in COLOUR_DEGREES if len(colour_terms(d)) == terms), None)
    if degree is None:
        raise FactoryError(f"{folder}: its {COLOUR_MODULE} conv reads {terms} channels, no colour basis's count")
    return degree


def lora_parameters(peft_model: nn.Module) -> list[nn.Parameter]:
    """The trainable parameters of a wrapped model: the LoRA factors (and the modules it trains whole)."""
    return [p for n, p in peft_model.named_parameters()
            if p.requires_grad and ("lora_" in n or "modules_to_save" in n)]


def screen_of(model: nn.Module) -> dict[str, Any] | None:
    """``{"screen_waves": [[fy, fx], ...], "screen_size": n}`` (and ``"screen_lattice": [[fy, fx, offset], ...]``
    when it reads a lattice's distance planes) of a generator (or a peft model over one) that reads screen waves,
    else None."""
    from base_gan.models import unwrap

    config = getattr(unwrap(model), "config", None)
    if not getattr(config, "screen_waves", None):
        return None
    return _screen(config)


def _screen(data: Mapping[str, Any]) -> dict[str, Any]:
    """``screen_of``'s dict from a generator's config or a ``screen.json`` (KeyError without waves)."""
    screen = {"screen_waves": [list(map(float, w)) for w in data["screen_waves"]],
              "screen_size": None if data.get("screen_size") is None else int(data["screen_size"])}
    if data.get("screen_lattice"):
        screen["screen_lattice"] = [list(map(float, w)) for w in data["screen_lattice"]]
    return screen


def with_screen(model: nn.Module, screen: dict[str, Any] | None) -> nn.Module:
    """``model`` given the stem's ``waves`` conv for ``screen`` (``screen_of``'s form; zero at the start), or
    ``model`` itself for None."""
    from base_gan.generator import with_screen_waves

    if not screen:
        return model
    return with_screen_waves(model, screen["screen_waves"], screen["screen_size"], screen.get("screen_lattice"))


def with_extras(model: nn.Module, screen: dict[str, Any] | None, colour_basis: int,
                lens: bool = False) -> nn.Module:
    """``model`` given the convs a LoRA run trains whole beside its factors, each zero at the start: the stem's
    ``waves`` conv for ``screen`` (``screen_of``'s form), the colour basis's ``head.colour`` of degree
    ``colour_basis`` and with ``lens`` the lens basis's ``head.lens``; a conv the model already has is kept, and
    ``model`` itself comes back when it needs none."""
    from base_gan.generator import with_colour_basis, with_lens_basis

    if not screen_of(model):
        model = with_screen(model, screen)
    if not colour_basis_of(model):
        model = with_colour_basis(model, colour_basis)
    return with_lens_basis(model, lens)


def saved_screen(folder: Path) -> dict[str, Any] | None:
    """The screen a saved adapter trained its ``waves`` conv for (``screen.json``), else None."""
    path = Path(folder) / SCREEN_FILE
    if not path.is_file():
        return None
    try:
        return _screen(json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise FactoryError(f"{path}: not a screen file ({type(exc).__name__}: {exc})") from None


def count_adapter_params(peft_model: nn.Module) -> int:
    return sum(p.numel() for p in lora_parameters(peft_model))


def save_adapter(peft_model: nn.Module, folder: Path) -> Path:
    """Write ``adapter_config.json`` + ``adapter_model.safetensors`` (peft's format), each file atomically."""
    # peft 0.21 warns that 1-D lora_B tensors look like unsharded ZeRO-3/FSDP exports; lora_B *biases* are 1-D
    # by design, so that warning is silenced when they are the only 1-D LoRA tensors
    bias_only = all(p.dim() >= 2 or n.endswith(".bias") for n, p in peft_model.named_parameters() if "lora_" in n)
    with warnings.catch_warnings():
        if bias_only:
            warnings.filterwarnings("ignore", message=r".*LoRA tensor\(s\) have invalid shape")
        atomic_save_pretrained(
            peft_model.save_pretrained, folder, last=ADAPTER_CONFIG, keep=(ADAPTER_WEIGHTS, ADAPTER_CONFIG)
        )
    screen = screen_of(peft_model)
    if screen:
        atomic_write_json(Path(folder) / SCREEN_FILE, screen)
    else:
        (Path(folder) / SCREEN_FILE).unlink(missing_ok=True)
    return Path(folder)


def is_adapter(folder: Path) -> bool:
    folder = Path(folder)
    return (folder / ADAPTER_CONFIG).is_file() and (folder / ADAPTER_WEIGHTS).is_file()


def read_adapter_config(folder: Path) -> dict[str, Any]:
    folder = Path(folder)
    if not is_adapter(folder):
        raise FactoryError(f"{folder}: not a LoRA adapter (expected {ADAPTER_CONFIG} and {ADAPTER_WEIGHTS})")
    try:
        return json.loads((folder / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise FactoryError(f"{folder / ADAPTER_CONFIG}: not valid JSON ({exc})") from None


def adapter_module_ranks(folder: Path) -> dict[str, int]:
    """Module name -> rank of a saved adapter (its layout), sorted by module name."""
    cfg = read_adapter_config(folder)
    if cfg.get("peft_type") != "LORA":
        raise FactoryError(f"{folder}: peft_type is {cfg.get('peft_type')!r}, expected LORA")
    targets = cfg.get("target_modules") or []
    if isinstance(targets, str):
        raise FactoryError(f"{folder}: target_modules is a pattern; expected the list of module names")
    pattern = cfg.get("rank_pattern") or {}
    return {m: int(pattern.get(m, cfg.get("r", 8))) for m in sorted(targets)}


def adapter_param_count(folder: Path) -> int:
    """The number of values a saved adapter holds (read from the safetensors header only)."""
    import math

    from safetensors import safe_open

    with safe_open(str(Path(folder) / ADAPTER_WEIGHTS), framework="pt") as f:
        return sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())  # noqa: SIM118  safe_open has keys(), not __iter__


def layout_of_adapter(folder: Path) -> LoraLayout:
    """The LoraLayout a saved adapter was made with (groups and per-group ranks)."""
    ranks: dict[str, set[int]] = {}
    for module, r in adapter_module_ranks(folder).items():
        g = group_of(module)
        if g is None:
            raise FactoryError(f"{folder}: adapted module {module!r} is in no known layer group")
        ranks.setdefault(g, set()).add(r)
    mixed = [g for g, rs in ranks.items() if len(rs) > 1]
    if mixed:
        raise FactoryError(f"{folder}: group(s) {', '.join(mixed)} mix ranks; not a factory layout")
    per = {g: rs.pop() for g, rs in ranks.items()}
    return LoraLayout(list(per), ranks=per, bias=bool(read_adapter_config(folder).get("lora_bias", False)))


def load_adapter(base_model: nn.Module, folder: Path, trainable: bool = False, screen: dict[str, Any] | None = None,
                 colour_basis: int = 0, lens: bool = False):
    """``PeftModel.from_pretrained`` onto ``base_model`` (modified in place), with a clear error.

    An adapter saved with a screen (``screen.json``), or ``screen`` (``screen_of``'s form) given for one saved
    without (its ``waves`` conv then starts at zero), first gets the base the stem's ``waves`` conv (on a copy);
    likewise the colour basis's ``head.colour`` for one saved with it, or ``colour_basis`` (a degree) given, and the
    lens basis's ``head.lens`` for one saved with it or ``lens`` given.
    """
    from peft import PeftModel

    read_adapter_config(folder)
    saved = saved_screen(folder)
    if saved and screen and screen != saved:
        raise FactoryError(f"{folder}: the adapter was trained for the screen {saved}, not {screen}")
    screen = saved or screen
    saved_degree = saved_colour_basis(folder)
    if saved_degree and colour_basis and colour_basis != saved_degree:
        raise FactoryError(f"{folder}: the adapter was trained with a colour basis of degree {saved_degree}, "
                           f"not {colour_basis}")
    colour_basis = saved_degree or colour_basis
    lens = lens or saved_lens_basis(folder)
    try:
        if not screen and not colour_basis and not lens:
            return PeftModel.from_pretrained(base_model, str(folder), is_trainable=trainable)
        return _load_with_extras(base_model, folder, trainable, screen, colour_basis, lens)
    except (RuntimeError, ValueError, KeyError, OSError) as exc:
        raise FactoryError(
            f"{folder}: adapter does not fit this base ({type(exc).__name__}: {str(exc).splitlines()[0][:300]})"
        ) from None


def _load_with_extras(base_model: nn.Module, folder: Path, trainable: bool, screen: dict[str, Any] | None,
                      colour_basis: int, lens: bool = False):
    """The adapter on a copy of ``base_model`` given the stem's ``waves`` conv (``screen``), the colour basis's conv
    and/or the lens basis's, each as peft's ``modules_to_save``: the adapter's own trained copy when it has one, else
    the new conv (zero)."""
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict
    from safetensors.torch import load_file

    base_model = with_extras(base_model, screen, colour_basis, lens)
    config = LoraConfig.from_pretrained(str(folder))
    config.modules_to_save = extra_modules(base_model)
    config.base_model_name_or_path = None
    config.inference_mode = not trainable
    model = get_peft_model(base_model, config)
    state = load_file(str(Path(folder) / ADAPTER_WEIGHTS))
    for module in config.modules_to_save:  # peft needs each: an adapter saved without starts at zero
        original = model.get_submodule(f"base_model.model.{module}").original_module.weight
        state.setdefault(f"base_model.model.{module}.weight", original)
    loaded = set_peft_model_state_dict(model, state)
    if loaded.unexpected_keys:
        raise KeyError(f"unexpected tensors {loaded.unexpected_keys[:3]}")
    return model if trainable else model.eval()


def merge(peft_model: nn.Module) -> nn.Module:
    """The base with the adapter folded into its weights (``merge_and_unload``): a plain generator."""
    return peft_model.merge_and_unload()
