"""Stable Diffusion teachers through diffusers: ``instruct-pix2pix`` and ``sdedit`` (img2img).

Both load their pipeline eagerly with ``from_pretrained(model)``, where ``model`` is a Hugging Face Hub id
or a local folder written by ``save_pretrained``; a model that cannot be loaded fails at once with a
one-line :class:`FactoryError` naming it and saying what to pass instead.

Parameters (a card's ``teacher:`` mapping merged with CLI overrides; a value of None means "default"):

``instruct-pix2pix`` (``StableDiffusionInstructPix2PixPipeline``)
    model ``timbrooks/instruct-pix2pix``; guidance_scale 7.5 (text; <= 1 turns both guidances off);
    image_guidance_scale 1.5 (>= 1; lower it for stronger edits, raise it to keep more of the source);
    steps 20; negative_prompt.

``sdedit`` (``StableDiffusionImg2ImgPipeline``)
    model ``stabilityai/sd-turbo``: a distilled SD 2.1 that edits in 1-4 steps without classifier-free
    guidance, so hundreds of pairs take minutes on one GPU (it works at 512 px best; check its licence
    for your use). Hence the defaults of its model card's img2img example: guidance_scale 0.0, steps 2,
    strength 0.5 (1 denoising step; raise steps to 4 for 2).
    For a regular Stable Diffusion model pass guidance_scale ~7.5 and steps ~30-50.
    strength in (0, 1] trades structure (low) for edit strength (high), 0.3-0.8 is the useful range;
    the pipeline runs int(steps x strength) denoising steps, which must be >= 1 (refused otherwise,
    never silently bumped). prompt: the text the image is pushed towards (default: the instruction;
    a description of the result, "a watercolor painting", usually works better than an order).

Both: batch_size 4; device "auto" (CUDA if available, else CPU) or "cpu"/"cuda"/"cuda:N"/"mps";
dtype "auto" (float16 on CUDA, float32 elsewhere) or "float32"/"float16"/"bfloat16".

Every image gets its own ``torch.Generator`` (on the CPU, so the noise is the same on any device) seeded
with its pair's seed, so one pair can be regenerated alone. Images whose safety check fails (when the
model folder has a safety checker) come back as None instead of a black image.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import math
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from PIL import Image

from factory.core.errors import FactoryError
from factory.teachers.base import Teacher

if TYPE_CHECKING:
    import torch
    from diffusers import DiffusionPipeline

#: image sides handed to a pipeline are multiples of this (and of the VAE's scale factor)
SIZE_MULTIPLE = 8

_DTYPE_NAMES = {
    "float32": "float32",
    "fp32": "float32",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
}

_OFFLINE_HINT = "pass --model /path/to/a/diffusers/pipeline/folder, or use --teacher classic for the offline recipes"


# ---------------------------------------------------------------- parameter checking


def _check_number(
    params: dict[str, Any], key: str, where: str, *, minimum: float, maximum: float | None = None,
    min_inclusive: bool = True, integer: bool = False,
) -> float | int:
    value = params[key]
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        raise FactoryError(f"{where}: teacher parameter '{key}' must be {kind}, got {value!r}")
    too_low = value < minimum if min_inclusive else value <= minimum
    if too_low or (maximum is not None and value > maximum):
        low = f">= {minimum}" if min_inclusive else f"> {minimum}"
        bounds = low if maximum is None else f"{low} and <= {maximum}"
        raise FactoryError(f"{where}: teacher parameter '{key}' must be {bounds}, got {value!r}")
    return int(value) if integer else float(value)


def _check_text(params: dict[str, Any], key: str, where: str, *, optional: bool) -> str | None:
    value = params[key]
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip():
        raise FactoryError(f"{where}: teacher parameter '{key}' must be a non-empty string, got {value!r}")
    return value


def _resolve_device(value: str, where: str) -> str:
    import torch

    if value == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(value)
    except (RuntimeError, TypeError):
        raise FactoryError(
            f"{where}: teacher parameter 'device' {value!r} is not a torch device (use auto, cpu, cuda, cuda:N or mps)"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise FactoryError(
            f"{where}: teacher parameter 'device' is {value!r} but CUDA is not available here (use device auto or cpu)"
        )
    return str(device)


def _resolve_dtype(value: str, device: str, where: str) -> str:
    if value == "auto":
        return "float16" if device.startswith("cuda") else "float32"
    if value not in _DTYPE_NAMES:
        raise FactoryError(
            f"{where}: teacher parameter 'dtype' {value!r} is unknown "
            f"(known: auto, {', '.join(sorted(set(_DTYPE_NAMES.values())))})"
        )
    return _DTYPE_NAMES[value]


# ---------------------------------------------------------------- loading


def _hub_offline() -> bool:
    from huggingface_hub import constants

    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"} or bool(
        constants.HF_HUB_OFFLINE
    )


def _is_hub_id(model: str) -> bool:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if os.path.isabs(model) or model.startswith((".", "~")):
        return False
    try:
        validate_repo_id(model)
    except HFValidationError:
        return False
    return True


def _in_hub_cache(model: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(model, "model_index.json"), str)


def _reason(err: BaseException) -> str:
    """The root cause of ``err`` on one short line (diffusers wraps e.g. a DNS failure in a cache error)."""
    seen = {id(err)}
    while (inner := err.__cause__ or err.__context__) is not None and id(inner) not in seen:
        seen.add(id(inner))
        err = inner
    text = f"{type(err).__name__}: {' '.join(str(err).split())}"
    return text if len(text) <= 160 else text[:157] + "..."


def _load_failure_message(model: str, local_path: Path | None, err: BaseException) -> str:
    """One line naming ``model``, what went wrong and what to pass instead."""
    if local_path is not None:
        if not (local_path / "model_index.json").is_file():
            return (
                f"model '{model}' is a folder but not a diffusers pipeline (no model_index.json): "
                "pass --model a folder written by a pipeline's save_pretrained, or a Hugging Face Hub id"
            )
        return (
            f"model '{model}' could not be loaded as a diffusers pipeline ({_reason(err)}): "
            "pass --model a complete diffusers pipeline folder or a Hugging Face Hub id"
        )
    if not _is_hub_id(model):
        return (
            f"model '{model}' not found: no such folder, and it is not a Hugging Face Hub id: "
            "pass --model /path/to/a/diffusers/pipeline/folder or a Hub id like owner/name"
        )
    if _hub_offline():
        return f"model '{model}' not found locally (no network and not in the Hugging Face cache): {_OFFLINE_HINT}"
    if not _in_hub_cache(model):
        return (
            f"model '{model}' not found locally (not in the Hugging Face cache) and could not be downloaded "
            f"({_reason(err)}): check the id and your network (huggingface-cli login for gated models), "
            f"or {_OFFLINE_HINT}"
        )
    return (
        f"model '{model}' is in the Hugging Face cache but could not be loaded ({_reason(err)}): "
        f"download it again, or {_OFFLINE_HINT}"
    )


@contextlib.contextmanager
def _quiet_loading() -> Iterator[None]:
    """Hide diffusers'/transformers' per-component loading bars, keep Hub download bars (they matter)."""
    import huggingface_hub.utils as hub_utils
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_on = diffusers_logging.is_progress_bar_enabled()
    transformers_on = transformers_logging.is_progress_bar_enabled()
    hub_on = not hub_utils.are_progress_bars_disabled()
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()  # also turns the Hub's bars off: turn them back on
    if hub_on:
        hub_utils.enable_progress_bars()
    try:
        yield
    finally:
        if diffusers_on:
            diffusers_logging.enable_progress_bar()
        if transformers_on:
            transformers_logging.enable_progress_bar()  # this switches the Hub's bars too: restore them after
        if hub_on:
            hub_utils.enable_progress_bars()
        elif not hub_utils.are_progress_bars_disabled():
            hub_utils.disable_progress_bars()


def _dtype_keyword() -> str:
    """Recent diffusers take ``dtype=`` and deprecate (with a warning) the older ``torch_dtype=``."""
    try:
        module = importlib.import_module("diffusers.utils.deprecation_utils")
    except ImportError:
        return "torch_dtype"
    return "dtype" if hasattr(module, "_resolve_dtype") else "torch_dtype"  # present since the rename


#: the pipelines a model folder may declare (``model_index.json``'s ``_class_name``), by family
SD_CLASSES = frozenset({"StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline",
                        "StableDiffusionInstructPix2PixPipeline"})
XL_CLASSES = frozenset({"StableDiffusionXLPipeline", "StableDiffusionXLImg2ImgPipeline",
                        "StableDiffusionXLInstructPix2PixPipeline"})
#: the pipeline each teacher runs, per family
PIPELINES = {
    ("sdedit", "sd"): "StableDiffusionImg2ImgPipeline",
    ("sdedit", "xl"): "StableDiffusionXLImg2ImgPipeline",
    ("instruct-pix2pix", "sd"): "StableDiffusionInstructPix2PixPipeline",
    ("instruct-pix2pix", "xl"): "StableDiffusionXLInstructPix2PixPipeline",
}


@dataclass(frozen=True)
class ModelInfo:
    """What a model's small config files say, read before any weight is downloaded or loaded."""

    model: str
    local_path: Path | None
    pipeline: str                 # model_index.json's _class_name
    family: str                   # "sd" (1.x/2.x, small variants, sd-turbo) or "xl" (SDXL, sdxl-turbo)
    unet_in_channels: int
    revision: str | None          # the Hub commit of the files (None for a local folder)


def _config_file(model: str, local_path: Path | None, name: str) -> Path:
    if local_path is not None:
        return local_path / name
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(model, name, local_files_only=_hub_offline()))


def inspect_model(model: str) -> ModelInfo:
    """Read ``model_index.json`` and the UNet's ``config.json`` (a few KB; no weights) and refuse,
    in one line, a pipeline the teachers cannot run (another family, no UNet)."""
    import json

    from huggingface_hub.errors import EntryNotFoundError

    local_path = Path(os.path.expanduser(model))
    local_path = local_path if local_path.is_dir() else None

    def read(name: str) -> tuple[dict[str, Any], Path]:
        try:
            path = _config_file(model, local_path, name)
            return json.loads(path.read_text(encoding="utf-8")), path
        except (OSError, ValueError, EntryNotFoundError) as err:
            raise FactoryError(_load_failure_message(model, local_path, err)) from err

    index, index_file = read("model_index.json")
    name = str(index.get("_class_name", "?"))
    if name in XL_CLASSES or "text_encoder_2" in index:
        family = "xl"
    elif name in SD_CLASSES:
        family = "sd"
    else:
        raise FactoryError(
            f"model '{model}' is a {name}: the teachers run Stable Diffusion 1.x/2.x (and small variants such as "
            "BK-SDM), sd-turbo, InstructPix2Pix and SDXL / sdxl-turbo pipelines"
        )
    unet = read("unet/config.json")[0]
    snapshot = index_file.parent
    revision = snapshot.name if local_path is None and snapshot.parent.name == "snapshots" else None
    return ModelInfo(model, local_path, name, family, int(unet.get("in_channels", 4)), revision)


#: loaded pipelines by (class, model, device, dtype): cards whose teachers differ only in their parameters
#: share one pipeline (one copy of the model on the GPU)
_PIPELINES: dict[tuple[str, str, str, str], DiffusionPipeline] = {}


def load_pipeline(pipeline_class: type[DiffusionPipeline], info: ModelInfo, *, device: str,
                  dtype: str) -> DiffusionPipeline:
    """``pipeline_class.from_pretrained`` on ``device``, once per (class, model, device, dtype): a Hub id (at
    the revision ``inspect_model`` read) or a local folder, one code path. In float16 the ``fp16`` weight
    variant is tried first (half the download), then the full weights.

    Offline (``HF_HUB_OFFLINE``) only the local cache is consulted. Failures that mean "this model is
    not loadable" become a one-line :class:`FactoryError`; anything else propagates.
    """
    import torch
    from huggingface_hub.errors import EntryNotFoundError
    from safetensors import SafetensorError

    key = (pipeline_class.__name__, info.model, device, dtype)
    if key in _PIPELINES:
        return _PIPELINES[key]
    source = str(info.local_path) if info.local_path else info.model
    kwargs: dict[str, Any] = {_dtype_keyword(): getattr(torch, dtype), "local_files_only": _hub_offline()}
    if info.revision:
        kwargs["revision"] = info.revision
    errors = (OSError, ValueError, EntryNotFoundError, SafetensorError)
    try:
        with _quiet_loading():
            if dtype == "float16":
                try:
                    pipe = pipeline_class.from_pretrained(source, variant="fp16", **kwargs)
                except errors:  # no fp16 variant files: the full weights, cast on load
                    pipe = pipeline_class.from_pretrained(source, **kwargs)
            else:
                pipe = pipeline_class.from_pretrained(source, **kwargs)
    except errors as err:
        raise FactoryError(_load_failure_message(info.model, info.local_path, err)) from err
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    pipe.editfactory_scheduler = copy.deepcopy(pipe.scheduler)  # as loaded: teachers sharing it copy this one
    _PIPELINES[key] = pipe
    return pipe


# ---------------------------------------------------------------- image plumbing


def _working_size(height: int, width: int, multiple: int, native: int = 0) -> tuple[int, int]:
    """The (height, width) a pipeline runs at: the source's, scaled up (aspect kept) so its shorter side is at
    least ``native`` (the model's native resolution: below it Stable Diffusion's outputs fall apart), each side
    rounded to a multiple of ``multiple`` (at least one)."""
    scale = native / min(height, width)
    if scale <= 1:  # the source's size, rounded down (never above the source)
        return max(multiple, height // multiple * multiple), max(multiple, width // multiple * multiple)
    return (max(multiple, round(height * scale / multiple) * multiple),
            max(multiple, round(width * scale / multiple) * multiple))


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0.0, 1.0) * 255.0).round().astype(np.uint8)


def _check_sources(sources: list[np.ndarray], seeds: list[int]) -> None:
    if len(sources) != len(seeds):
        raise ValueError(f"{len(sources)} sources but {len(seeds)} seeds")
    for i, src in enumerate(sources):
        if not (isinstance(src, np.ndarray) and src.dtype == np.uint8 and src.ndim == 3 and src.shape[2] == 3):
            raise ValueError(f"source {i} must be an HxWx3 uint8 RGB array, got {getattr(src, 'shape', type(src))}")


# ---------------------------------------------------------------- teachers


class DiffusionTeacher(Teacher):
    """Shared machinery: parameter checking, loading, batching, seeding, resizing, safety results."""

    #: input channels of the UNet this pipeline needs (8 for InstructPix2Pix: noise + source latents)
    unet_in_channels: ClassVar[int] = 4
    defaults: ClassVar[dict[str, Any]] = {}
    common_defaults: ClassVar[dict[str, Any]] = {
        "batch_size": 4,
        "device": "auto",
        "dtype": "auto",
        "negative_prompt": None,
    }

    def __init__(self, settings: dict[str, Any]) -> None:
        """Check the model's configs, then load its pipeline, for already-checked ``settings`` (use
        :meth:`from_params`)."""
        import diffusers

        self.settings = settings
        self.batch_size = settings["batch_size"]
        self.info = inspect_model(settings["model"])
        self._check_model(self.info.unet_in_channels)  # before any weight is downloaded or loaded
        self.pipe = load_pipeline(getattr(diffusers, PIPELINES[(self.kind, self.info.family)]), self.info,
                                  device=settings["device"], dtype=settings["dtype"])
        self.scheduler = copy.deepcopy(self.pipe.editfactory_scheduler)  # its own: the pipeline may be shared
        vae_scale = int(getattr(self.pipe, "vae_scale_factor", 1))
        self.size_multiple = math.lcm(SIZE_MULTIPLE, vae_scale)
        sample = self.pipe.unet.config.sample_size
        #: the model's native resolution in pixels (sources are run at least at it)
        self.native_size = (max(sample) if isinstance(sample, (list, tuple)) else int(sample)) * vae_scale
        self.notes: dict[str, Any] = {}
        self._check_schedule()
        self.declined: dict[int, str] = {}  # after edit(): why each None result was declined

    def _check_schedule(self) -> None:
        """Refuse or correct a schedule that would not do this teacher's job (see SDEditTeacher)."""

    @classmethod
    def from_params(cls, params: dict[str, Any], source: str = "") -> DiffusionTeacher:
        """Check ``params`` (unknown keys, ranges and types refused with their name and ``source``), then load."""
        where = source or f"teacher {cls.kind}"
        params = dict(params)
        kind = params.pop("kind", None)
        if kind not in (None, cls.kind):
            raise FactoryError(f"{where}: teacher kind '{kind}' given to the {cls.kind} teacher")
        allowed = {**cls.common_defaults, **cls.defaults}
        unknown = sorted(set(params) - set(allowed))
        if unknown:
            raise FactoryError(
                f"{where}: unknown {cls.kind} teacher parameter(s) {', '.join(map(repr, unknown))} "
                f"(known: {', '.join(sorted(allowed))})"
            )
        merged = {key: default if params.get(key) is None else params[key] for key, default in allowed.items()}
        return cls(cls._check(merged, where))

    @classmethod
    def _check(cls, params: dict[str, Any], where: str) -> dict[str, Any]:
        settings = {
            "model": _check_text(params, "model", where, optional=False),
            "steps": _check_number(params, "steps", where, minimum=1, integer=True),
            "guidance_scale": _check_number(params, "guidance_scale", where, minimum=0.0),
            "negative_prompt": _check_text(params, "negative_prompt", where, optional=True),
            "batch_size": _check_number(params, "batch_size", where, minimum=1, integer=True),
        }
        for key in ("device", "dtype"):
            _check_text(params, key, where, optional=False)
        settings["device"] = _resolve_device(params["device"], where)
        settings["dtype"] = _resolve_dtype(params["dtype"], settings["device"], where)
        return settings

    def _check_model(self, in_channels: int) -> None:
        """Refuse a pipeline whose UNet cannot do this teacher's job."""

    def describe(self) -> dict[str, Any]:
        import diffusers

        return {
            "kind": self.kind,
            **self.settings,
            "pipeline": type(self.pipe).__name__,
            "scheduler": type(self.scheduler).__name__,
            "revision": self.info.revision or "local folder",
            "working_size_at_least": self.native_size,
            **self.notes,
            "diffusers": diffusers.__version__,
        }

    def _run(self, images: list[Image.Image], instruction: str, generators: list[torch.Generator]):
        """Call the pipeline on one batch; returns its output (``images`` as floats in [0, 1])."""
        raise NotImplementedError

    def _call(self, images: list[Image.Image], instruction: str, generators: list[torch.Generator],
              size: tuple[int, int]):
        """``_run`` with this teacher's scheduler in the (possibly shared) pipeline; out of memory is one line
        saying what to lower."""
        import torch

        self.pipe.scheduler = self.scheduler
        try:
            return self._run(images, instruction, generators)
        except torch.OutOfMemoryError:
            raise FactoryError(
                f"out of {self.settings['device']} memory running {self.settings['model']} on {len(images)} "
                f"image(s) at {size[1]}x{size[0]} in {self.settings['dtype']}: lower --batch-size (now "
                f"{self.batch_size})" + (", use --dtype float16" if self.settings["dtype"] == "float32" else "")
                + ", or use a smaller model"
            ) from None

    def edit(self, sources: list[np.ndarray], instruction: str, seeds: list[int]) -> list[np.ndarray | None]:
        """Edit each source with its own seed; None where the safety checker flagged the result."""
        import torch

        _check_sources(sources, seeds)
        results: list[np.ndarray | None] = [None] * len(sources)
        self.declined = {}
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, src in enumerate(sources):
            size = _working_size(src.shape[0], src.shape[1], self.size_multiple, self.native_size)
            by_size.setdefault(size, []).append(i)
        for (height, width), indices in by_size.items():
            for start in range(0, len(indices), self.batch_size):
                batch = indices[start : start + self.batch_size]
                images = [
                    Image.fromarray(sources[i]).resize((width, height), Image.Resampling.BICUBIC)
                    if sources[i].shape[:2] != (height, width)
                    else Image.fromarray(sources[i])
                    for i in batch
                ]
                generators = [torch.Generator(device="cpu").manual_seed(int(seeds[i])) for i in batch]
                output = self._call(images, instruction, generators, (height, width))
                flagged = getattr(output, "nsfw_content_detected", None) or [False] * len(batch)
                for i, image, refused in zip(batch, output.images, flagged):
                    if refused:
                        self.declined[i] = "flagged by the model's safety checker"
                        continue
                    if not np.isfinite(image).all():
                        self.declined[i] = (f"non-finite output (NaN or inf) in {self.settings['dtype']}"
                                            + ("; try --dtype float32" if self.settings["dtype"] != "float32" else ""))
                        continue
                    target = _to_uint8(image)
                    if target.shape[:2] != sources[i].shape[:2]:
                        size = (sources[i].shape[1], sources[i].shape[0])
                        target = np.asarray(Image.fromarray(target).resize(size, Image.Resampling.BICUBIC))
                    results[i] = target
        return results


class InstructPix2PixTeacher(DiffusionTeacher):
    """InstructPix2Pix: follows the instruction text while image guidance keeps the source's structure."""

    kind = "instruct-pix2pix"
    unet_in_channels = 8
    defaults: ClassVar[dict[str, Any]] = {"model": "timbrooks/instruct-pix2pix", "guidance_scale": 7.5,
                                          "image_guidance_scale": 1.5, "steps": 20}

    @classmethod
    def _check(cls, params: dict[str, Any], where: str) -> dict[str, Any]:
        settings = super()._check(params, where)
        settings["image_guidance_scale"] = _check_number(params, "image_guidance_scale", where, minimum=1.0)
        return settings

    def _check_model(self, in_channels: int) -> None:
        if in_channels != self.unet_in_channels:
            raise FactoryError(
                f"model '{self.settings['model']}' is not an InstructPix2Pix model (its UNet takes {in_channels} input "
                f"channels, InstructPix2Pix needs {self.unet_in_channels}): pass an InstructPix2Pix pipeline such as "
                f"{self.defaults['model']}, or use --teacher sdedit for a text-to-image model"
            )

    def _run(self, images, instruction, generators):
        n = len(images)
        s = self.settings
        return self.pipe(
            prompt=[instruction] * n,
            image=images,
            num_inference_steps=s["steps"],
            guidance_scale=s["guidance_scale"],
            image_guidance_scale=s["image_guidance_scale"],
            negative_prompt=[s["negative_prompt"]] * n if s["negative_prompt"] else None,
            generator=generators,
            output_type="np",
        )


class SDEditTeacher(DiffusionTeacher):
    """SDEdit (img2img): noise the source part way (``strength``) and denoise it towards the prompt."""

    kind = "sdedit"
    unet_in_channels = 4
    defaults: ClassVar[dict[str, Any]] = {"model": "stabilityai/sd-turbo", "strength": 0.5, "guidance_scale": 0.0,
                                          "steps": 2, "prompt": None}

    @classmethod
    def _check(cls, params: dict[str, Any], where: str) -> dict[str, Any]:
        settings = super()._check(params, where)
        strength = _check_number(params, "strength", where, minimum=0.0, maximum=1.0, min_inclusive=False)
        denoising_steps = int(settings["steps"] * strength)  # what diffusers' img2img runs
        if denoising_steps < 1:
            raise FactoryError(
                f"{where}: teacher parameters steps {settings['steps']} x strength {strength} give no denoising step "
                f"(img2img runs int(steps x strength)): raise 'steps' to at least {math.ceil(1 / strength)} "
                "or 'strength'"
            )
        settings["strength"] = strength
        settings["prompt"] = _check_text(params, "prompt", where, optional=True)
        return settings

    def first_timestep(self, scheduler) -> int:
        """The timestep img2img starts denoising from with these steps and strength (as diffusers' pipeline
        computes it: ``int(steps x strength)`` of the scheduler's ``steps`` timesteps, from the end)."""
        sched = copy.deepcopy(scheduler)
        steps = self.settings["steps"]
        sched.set_timesteps(steps)
        t_start = max(steps - min(int(steps * self.settings["strength"]), steps), 0)
        return int(sched.timesteps[t_start * sched.order])

    def _check_schedule(self) -> None:
        """SDEdit noises the source to ``strength`` of the schedule. With a ``leading``-spaced scheduler
        (PNDM / DDIM as plain SD 1.5 or BK-SDM ship them) few steps start near t=0 (sd-turbo's defaults: t=1
        of 1000), so every target would be the source through the VAE. Such a schedule is switched to
        ``trailing`` spacing when the scheduler has it, else refused; the first timestep is recorded."""
        total = int(self.scheduler.config.get("num_train_timesteps", 1000))
        wanted = self.settings["strength"] * total
        first = self.first_timestep(self.scheduler)
        if first < 0.5 * wanted:
            spacing = self.scheduler.config.get("timestep_spacing")
            fixed = None
            if spacing not in (None, "trailing"):
                fixed = type(self.scheduler).from_config(self.scheduler.config, timestep_spacing="trailing")
            if fixed is None or self.first_timestep(fixed) < 0.5 * wanted:
                raise FactoryError(
                    f"model '{self.settings['model']}': steps {self.settings['steps']} x strength "
                    f"{self.settings['strength']} start denoising at timestep {first} of {total} with its "
                    f"{type(self.scheduler).__name__} ({spacing or 'default'} spacing): the source would barely be "
                    f"noised; raise --steps (e.g. 30 for a regular Stable Diffusion model) or --strength"
                )
            note = (f"{type(self.scheduler).__name__} switched from {spacing} to trailing timestep spacing: "
                    f"{spacing} started at timestep {first} of {total}")
            print(f"teacher sdedit: {note}", file=sys.stderr)
            self.notes["schedule_note"] = note
            self.scheduler, first = fixed, self.first_timestep(fixed)
        self.notes["first_timestep"] = first
        self.notes["timestep_spacing"] = self.scheduler.config.get("timestep_spacing")

    def _check_model(self, in_channels: int) -> None:
        if in_channels != self.unet_in_channels:
            hint = (
                "; it looks like an InstructPix2Pix model, use --teacher instruct-pix2pix" if in_channels == 8 else ""
            )
            raise FactoryError(
                f"model '{self.settings['model']}' is not a text-to-image model usable for img2img (its UNet takes "
                f"{in_channels} input channels, SDEdit needs {self.unet_in_channels}{hint}): pass a Stable Diffusion "
                f"text-to-image pipeline such as {self.defaults['model']}"
            )

    def _run(self, images, instruction, generators):
        n = len(images)
        s = self.settings
        return self.pipe(
            prompt=[s["prompt"] or instruction] * n,
            image=images,
            strength=s["strength"],
            num_inference_steps=s["steps"],
            guidance_scale=s["guidance_scale"],
            negative_prompt=[s["negative_prompt"]] * n if s["negative_prompt"] else None,
            generator=generators,
            output_type="np",
        )
