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
import importlib
import math
import os
from collections.abc import Iterator
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


def load_pipeline(pipeline_class: type[DiffusionPipeline], model: str, *, device: str, dtype: str) -> DiffusionPipeline:
    """``pipeline_class.from_pretrained(model)`` on ``device``: a Hub id or a local folder, one code path.

    Offline (``HF_HUB_OFFLINE``) only the local cache is consulted. Failures that mean "this model is
    not loadable" become a one-line :class:`FactoryError`; anything else propagates.
    """
    import torch
    from huggingface_hub.errors import EntryNotFoundError
    from safetensors import SafetensorError

    local_path = Path(os.path.expanduser(model))
    local_path = local_path if local_path.is_dir() else None
    kwargs = {_dtype_keyword(): getattr(torch, dtype), "local_files_only": _hub_offline()}
    try:
        with _quiet_loading():
            pipe = pipeline_class.from_pretrained(str(local_path) if local_path else model, **kwargs)
    except (OSError, ValueError, EntryNotFoundError, SafetensorError) as err:
        raise FactoryError(_load_failure_message(model, local_path, err)) from err
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


# ---------------------------------------------------------------- image plumbing


def _working_size(height: int, width: int, multiple: int) -> tuple[int, int]:
    """The largest (height, width) <= the source's that are multiples of ``multiple`` (at least one)."""
    return max(multiple, height // multiple * multiple), max(multiple, width // multiple * multiple)


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

    pipeline_class_name: ClassVar[str] = ""
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
        """Load the pipeline for already-checked ``settings`` (use :meth:`from_params`)."""
        import diffusers

        self.settings = settings
        self.batch_size = settings["batch_size"]
        self.pipe = load_pipeline(
            getattr(diffusers, self.pipeline_class_name),
            settings["model"],
            device=settings["device"],
            dtype=settings["dtype"],
        )
        self._check_model(self.pipe.unet.config.in_channels)
        self.size_multiple = math.lcm(SIZE_MULTIPLE, int(getattr(self.pipe, "vae_scale_factor", 1)))

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
            "scheduler": type(self.pipe.scheduler).__name__,
            "diffusers": diffusers.__version__,
        }

    def _run(self, images: list[Image.Image], instruction: str, generators: list[torch.Generator]):
        """Call the pipeline on one batch; returns its output (``images`` as floats in [0, 1])."""
        raise NotImplementedError

    def edit(self, sources: list[np.ndarray], instruction: str, seeds: list[int]) -> list[np.ndarray | None]:
        """Edit each source with its own seed; None where the safety checker flagged the result."""
        import torch

        _check_sources(sources, seeds)
        results: list[np.ndarray | None] = [None] * len(sources)
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, src in enumerate(sources):
            by_size.setdefault(_working_size(src.shape[0], src.shape[1], self.size_multiple), []).append(i)
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
                output = self._run(images, instruction, generators)
                flagged = output.nsfw_content_detected or [False] * len(batch)
                for i, image, refused in zip(batch, output.images, flagged):
                    if refused:
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
    pipeline_class_name = "StableDiffusionInstructPix2PixPipeline"
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
    pipeline_class_name = "StableDiffusionImg2ImgPipeline"
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
