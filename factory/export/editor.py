"""The whole export of a concept's editor: build, check, and install ``editors/<concept>/`` atomically.

``export_editor(ExportRequest(...))`` merges the LoRA, bakes the text in, writes editor.onnx (and
int8, fp16, .ort), runs the checks (torch/onnxruntime parity, int8 PSNR vs fp32 on held-out images,
the mobile delegates), measures latency, chooses how full-size photos are edited (guided or tiled,
measured on held-out photos: ``factory.export.fullsize``), and writes card.json. A failed check raises a one-line
FactoryError and installs nothing (the candidate card is kept beside the editor folder).
``pix2pix_reference`` exports pix2pix ResNet-9 the same way for latency comparisons.
"""

from __future__ import annotations

import copy
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from base_gan.models import WEIGHTS, BaseGAN
from base_gan.output_curves import OutputCurves
from factory.core.atomic import atomic_folder, atomic_write_json
from factory.core.errors import FactoryError
from factory.core.files import sha256_file
from factory.export.onnx_export import (
    FRAME_CONTRACT,
    INPUT_CONTRACT,
    OPSET,
    OUTPUT_CONTRACT,
    POSITION_CONTRACT,
    EditorModule,
    export_onnx,
    merge_adapter,
    set_metadata,
    text_condition,
    torch_vs_onnx,
)
from factory.lora.output_calibration import saved_output_curves
from factory.runtime.position import FRAME_NAME

PARITY_MAX_ABS = 1e-3  # on the [-1, 1] scale: 1/8 of a grey level (1 level = 2/255 = 7.8e-3)
# int8 vs fp32, mean PSNR over held-out images. Quantization error is unrelated to the student's own
# error against its teacher, so the two add as variances: a student 24 dB from its teacher (RMS 0.063)
# with int8 30 dB from fp32 (RMS 0.032) ends 23.0 dB from the teacher, i.e. int8 costs at most ~1 dB
# there, and less for weaker students. Below 30 dB the loss becomes visible in the teacher comparison.
INT8_MIN_PSNR_DB = 30.0
CALIBRATION_IMAGES = 32
HELD_OUT_IMAGES = 16


@dataclass
class ExportImages:
    """Square RGB uint8 images at the export size: calibration (train sources) and held-out (test)."""

    calibration: list[np.ndarray]
    held_out: list[np.ndarray]
    held_out_targets: list[np.ndarray] | None
    origin: str


def _square(rgb: np.ndarray, size: int) -> np.ndarray:
    from factory.core.images import center_square, crop_and_resize

    return crop_and_resize(rgb, center_square(rgb.shape), size)


def export_images(data_dir: Path, size: int, n_calibration: int = CALIBRATION_IMAGES,
                  n_held_out: int = HELD_OUT_IMAGES) -> ExportImages:
    """The concept's own sources (train split for calibration, test split held out, with targets);
    scikit-image's sample photos (fixed train/test split, random crops) when the concept has no pairs."""
    from factory.core.images import read_image
    from factory.data.dataset import pair_refs
    from factory.data.pair_store import read_manifest

    if read_manifest(data_dir):
        train = pair_refs(data_dir, "train")[:n_calibration]
        test = pair_refs(data_dir, "test")[:n_held_out]
        if not test:  # a concept made without a test split: hold out the last fifth of the train pairs
            k = max(1, len(train) // 5)
            test = train[-k:]
            train = train[:-k] or train  # a single pair calibrates and is held out
        held_out = [_square(read_image(r.source), size) for r in test]
        targets, reference = _teacher_at(data_dir, held_out, size)
        return ExportImages(
            calibration=[_square(read_image(r.source), size) for r in train], held_out=held_out,
            held_out_targets=targets or [_square(read_image(r.target), size) for r in test],
            origin=f"{data_dir} ({len(train)} train sources, {len(test)} test pairs; {reference})")
    return ExportImages(calibration=photo_crops("train", min(n_calibration, 16), size),
                        held_out=photo_crops("test", min(n_held_out, 8), size), held_out_targets=None,
                        origin="scikit-image sample photos (the concept has no pairs; run `factory synth` for its own)")


def _teacher_at(data_dir: Path, sources: list[np.ndarray], size: int) -> tuple[list[np.ndarray] | None, str]:
    """(the classic teacher run on ``sources`` at ``size``, its pixel sizes scaled from the pairs', or None; what
    the held-out targets are). A halftone screen or pixel blocks resized from the pairs' size are blurred versions
    of what the teacher draws at ``size``; a teacher that cannot run here keeps the pairs' targets, resized."""
    from factory.data.dataset import full_resolution_reference
    from factory.teachers.rescale import RescaleError, apply_recipe_at

    recipe, pair_size, _ = full_resolution_reference(data_dir)
    own = "targets: the pairs' own, resized to the export size when the pairs are another size"
    if recipe is None or pair_size == size:
        return None, own
    try:
        return [apply_recipe_at(s, recipe, size / pair_size) for s in sources], f"targets: the recipe at {size} px"
    except RescaleError:
        return None, own


def photo_crops(split: str, n: int, size: int, seed: int = 0) -> list[np.ndarray]:
    """``n`` random square crops of scikit-image's sample photos of ``split`` (train/test), resized to ``size``."""
    from factory.core.images import crop_and_resize, random_square
    from factory.data.photos import default_photos

    pool = default_photos().split(split)
    rng = np.random.default_rng(seed)
    return [
        crop_and_resize(p.rgb, random_square(p.rgb.shape, rng), size) for p in (pool[i % len(pool)] for i in range(n))
    ]


def psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-image PSNR (dB) of two [B, 3, H, W] batches in [-1, 1], on the [0, 1] scale after clipping."""
    ua = np.clip((a.astype(np.float64) + 1) / 2, 0, 1)
    ub = np.clip((b.astype(np.float64) + 1) / 2, 0, 1)
    mse = np.maximum(((ua - ub) ** 2).reshape(len(ua), -1).mean(1), 1e-12)
    return 10 * np.log10(1.0 / mse)


def _load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _stats(values: np.ndarray) -> dict[str, float]:
    return {"mean_db": round(float(values.mean()), 2), "min_db": round(float(values.min()), 2)}


@dataclass
class ExportRequest:
    """One editor to export: ``base`` (loaded once) + the LoRA in ``adapter_dir``, text baked in."""

    concept: str
    base: BaseGAN
    adapter_dir: Path | None
    adapter_note: str
    instruction: str
    data_dir: Path
    out_dir: Path
    size: int = 256
    int8: bool = True
    fp16: bool = False
    ort: bool = False
    threads: int | None = None
    allow_cpu_fallback: bool = False
    min_int8_psnr: float = INT8_MIN_PSNR_DB
    text_cache: Path | None = None
    full_size: bool = True  # measure guided vs tiled on held-out photos at full size (factory.export.fullsize)
    #: the folder whose output curves (factory.lora.output_calibration.CURVES_FILE) follow the generator; None: the
    #: adapter's own (a whole fine-tuned generator's folder when there is no adapter)
    curves_dir: Path | None = None


def _metadata(
    req: ExportRequest, base_sha: str, adapter_sha: str, stride: int, precision: str, input_shape: str
) -> dict[str, str]:
    from factory import __version__

    return {
        "concept": req.concept,
        "instruction": req.instruction,
        "precision": precision,
        "input_size": str(req.size),
        "stride": str(stride),
        "input_shape": input_shape,
        "input_layout": "NCHW float32 RGB",
        "value_range": "[-1, 1]",
        "pixel_to_input": "x / 127.5 - 1",
        "output_to_pixel": "round(clip((y + 1) * 127.5, 0, 255))",
        "factory_version": __version__,
        "base": req.base.name,
        "base_sha256": base_sha,
        "adapter": req.adapter_dir.name if req.adapter_dir else "none",
        "adapter_sha256": adapter_sha,
        "text_encoder": str(req.base.model.config.get("text_encoder", "none")),
        "generator_arch": req.base.arch,
    }


def export_editor(req: ExportRequest, log=print) -> dict[str, Any]:
    """Build, check and install ``req.out_dir``; returns card.json's content. Raises FactoryError on a failed check
    (the candidate card is then left in ``<out_dir>.failed-card.json``)."""
    import shutil

    import onnxruntime

    from factory import __version__

    model = copy.deepcopy(req.base.model)
    stride = int(getattr(model, "stride", 16))
    if req.size % stride:
        raise FactoryError(f"--size {req.size} is not a multiple of the generator stride {stride}")
    base_sha = sha256_file(req.base.folder / WEIGHTS)
    adapter_sha = "none"
    if req.adapter_dir is not None:
        adapter_sha = (
            sha256_file(req.adapter_dir / "adapter_model.safetensors")
            if (req.adapter_dir / "adapter_model.safetensors").is_file()
            else "none"
        )
        model = merge_adapter(model, req.adapter_dir)
    cond = text_condition(model, req.instruction, req.text_cache)
    knots = saved_output_curves(req.curves_dir or req.adapter_dir)
    module = EditorModule(model, *(cond or (None, None)), curves=OutputCurves(knots) if knots is not None else None)
    module.eval()
    if knots is not None:
        log(f"output curves from {req.curves_dir or req.adapter_dir} after the generator")

    images = export_images(req.data_dir, req.size)
    log(f"images: {images.origin}")

    failed = req.out_dir.parent / f"{req.out_dir.name}.failed-card.json"
    with atomic_folder(req.out_dir) as tmp:
        scratch = Path(tempfile.mkdtemp(prefix=f".{req.out_dir.name}.scratch.", suffix=".tmp", dir=req.out_dir.parent))
        try:
            card = _build(req, module, stride, base_sha, adapter_sha, images, tmp, scratch, log)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        card["versions"] = {
            "factory": __version__,
            "onnxruntime": onnxruntime.__version__,
            "onnx": onnx.__version__,
            "torch": torch.__version__,
            "opset": OPSET,
        }
        failures = card["checks"]["failures"]
        if failures:
            atomic_write_json(failed, card)
            raise FactoryError(
                f"export of '{req.concept}' failed its checks: {'; '.join(failures)} "
                f"(nothing installed; details in {failed})"
            )
        atomic_write_json(tmp / "card.json", card)
    failed.unlink(missing_ok=True)
    return card


def _build(
    req: ExportRequest,
    module: EditorModule,
    stride: int,
    base_sha: str,
    adapter_sha: str,
    images: ExportImages,
    tmp: Path,
    scratch: Path,
    log,
) -> dict[str, Any]:
    """Write every file of the editor into ``tmp`` (fixed-shape copies into ``scratch``) and run the checks;
    returns the card (failures listed)."""
    import cv2

    from factory.export.mobile_check import check_mobile, fixed_input_shape
    from factory.export.quantize import convert_fp16, convert_to_ort, quantize_int8
    from factory.lora.adapters import screen_of
    from factory.runtime.editor import Editor, to_input

    held_out = to_input(images.held_out)
    calibration = [to_input([im])[0] for im in images.calibration]
    failures: list[str] = []
    files: dict[str, Path] = {}

    def props(precision: str, shape: str = "dynamic") -> dict[str, str]:
        return _metadata(req, base_sha, adapter_sha, stride, precision, shape)

    # fp32 export + parity with torch (held-out batch at the export size, plus an odd batch/shape)
    fp32 = export_onnx(module, tmp / "editor.onnx", req.size)
    set_metadata(fp32, props("fp32"))
    files["editor.onnx"] = fp32
    odd = cv2.resize(
        images.held_out[0], (req.size + stride, max(stride, req.size - stride)), interpolation=cv2.INTER_AREA
    )
    other = to_input([odd, odd[:, ::-1]])  # batch 2, non-square: the dynamic axes work
    parity = torch_vs_onnx(
        module, fp32, [held_out[i : i + 4] for i in range(0, len(held_out), 4)] + [other], req.threads
    )
    parity_ok = parity.max_abs <= PARITY_MAX_ABS
    if not parity_ok:
        failures.append(f"torch vs onnxruntime max abs error {parity.max_abs:.2e} > {PARITY_MAX_ABS:.0e}")
    log(f"parity: max abs {parity.max_abs:.2e} over shapes {parity.shapes}")

    fp32_editor = Editor(fp32, req.threads)
    fp32_out = fp32_editor.run_batched(held_out, 4)
    checks: dict[str, Any] = {"parity": {**parity.to_dict(), "threshold_max_abs": PARITY_MAX_ABS, "passed": parity_ok}}
    quality: dict[str, Any] = {"held_out_images": len(held_out)}
    if images.held_out_targets is not None:
        targets = to_input(images.held_out_targets)
        quality["fp32_vs_teacher"] = _stats(psnr(fp32_out, targets))
        quality["identity_vs_teacher"] = _stats(psnr(held_out, targets))

    variants: dict[str, Path] = {"fp32": fp32}
    if req.int8:
        int8 = quantize_int8(fp32, tmp / "editor.int8.onnx", calibration)
        set_metadata(int8, props("int8"))
        files["editor.int8.onnx"] = variants["int8"] = int8
        int8_out = Editor(int8, req.threads).run_batched(held_out, 4)
        vs_fp32 = psnr(int8_out, fp32_out)
        ok = float(vs_fp32.mean()) >= req.min_int8_psnr
        quality["int8_vs_fp32"] = {
            **_stats(vs_fp32),
            "threshold_mean_db": req.min_int8_psnr,
            "passed": ok,
            "calibration_images": len(calibration),
        }
        if images.held_out_targets is not None:
            quality["int8_vs_teacher"] = _stats(psnr(int8_out, targets))
        if not ok:
            failures.append(
                f"int8 editor is {vs_fp32.mean():.1f} dB from fp32 on {len(held_out)} held-out images "
                f"(needs >= {req.min_int8_psnr:.0f} dB)"
            )
        log(f"int8: {vs_fp32.mean():.1f} dB PSNR vs fp32 (min {vs_fp32.min():.1f}) on {len(held_out)} held-out images")
    if req.fp16:
        fp16 = convert_fp16(fp32, tmp / "editor.fp16.onnx")
        set_metadata(fp16, props("fp16"))
        files["editor.fp16.onnx"] = variants["fp16"] = fp16
        fp16_out = Editor(fp16, req.threads).run_batched(held_out, 4)
        quality["fp16_vs_fp32"] = {
            **_stats(psnr(fp16_out, fp32_out)),
            "max_abs": float(np.abs(fp16_out - fp32_out).max()),
        }
    checks["quality"] = quality

    # mobile delegates, on fixed-shape copies (what an app runs and what the .ort files hold)
    shape = [1, 3, req.size, req.size]
    fixed_dir = scratch
    fixed: dict[str, Path] = {}
    for name, path in variants.items():
        if name == "fp16":  # from the fixed fp32 graph after folding (see check_mobile's optimize note)
            from onnxruntime.tools.onnx_model_utils import optimize_model

            folded = fixed_dir / "folded.onnx"
            optimize_model(fixed["fp32"], folded)
            fixed[name] = convert_fp16(folded, fixed_dir / path.name)
        else:
            fixed[name] = fixed_input_shape(path, fixed_dir / path.name, shape)
        set_metadata(fixed[name], props(name, "x".join(map(str, shape))))
    eps_for = {
        "fp32": ("nnapi", "coreml_mlprogram", "coreml_neuralnetwork"),
        "int8": ("nnapi", "coreml_mlprogram"),
        "fp16": ("coreml_mlprogram",),
    }
    # the delegate graphs are fp32 (NNAPI, CoreML) and fp16 (CoreML); the int8 QDQ graph is for CPUs:
    # NNAPI's EP takes QDQ groups only for a few op types (mobile_check.NNAPI_QDQ_OPS), so it is reported
    required = {"fp32": ("nnapi", "coreml_mlprogram"), "int8": (), "fp16": ()}
    mobile: dict[str, Any] = {
        "checked_shape": shape,
        "required": {k: list(v) for k, v in required.items() if k in variants},
    }
    mobile_ok = True
    for name, path in fixed.items():
        results = check_mobile(path, eps_for[name], optimize=name != "fp16")
        mobile[name] = {k: r.to_dict() for k, r in results.items()}
        for key in required[name]:
            if not results[key].takes_whole:
                mobile_ok = False
                msg = f"{name} {results[key].summary()}"
                if req.allow_cpu_fallback:
                    log(f"mobile (allowed): {msg}")
                else:
                    failures.append(msg)
        log("mobile " + name + ": " + "; ".join(r.summary() for r in results.values()))
    mobile["passed"] = mobile_ok
    mobile["allow_cpu_fallback"] = req.allow_cpu_fallback
    checks["mobile"] = mobile

    if req.ort:
        # fp16 stays .onnx: converting runs the CPU EP's optimizer, which rewrites fp16 ops it has no kernel for
        ort_sources = {k: v for k, v in fixed.items() if k != "fp16"}
        ort_files, config = convert_to_ort(list(ort_sources.values()), tmp)
        for p in ort_files + [config]:
            files[p.name] = p
        sample = held_out[:1]
        ort_parity = {}
        for name, p in zip(ort_sources, ort_files):
            a = Editor(p, req.threads).run(sample)
            b = Editor(variants[name], req.threads).run(sample)
            ort_parity[p.name] = float(np.abs(a - b).max())
        checks["ort"] = {"input_shape": shape, "optimization_style": "Runtime", "max_abs_vs_onnx": ort_parity}
        log(f".ort: {', '.join(p.name for p in ort_files)} + {config.name}")

    from factory.export.fullsize import measure_full_size, skipped_section

    if req.full_size and not failures:
        full_size = measure_full_size(fp32_editor, req.data_dir, req.size,
                                      quality.get("fp32_vs_teacher", {}).get("mean_db"), log=log,
                                      screen=screen_of(module.generator) if module.takes_position else None)
    else:  # skipped, or the export fails anyway
        full_size = skipped_section(req.size, stride, "a check failed" if failures else "skipped at export")

    latency = {
        "threads": req.threads or os.cpu_count(),
        "size": req.size,
        "batch": 1,
        "load_average_1min": _load_average(),
    }
    for name, path in variants.items():
        latency[name] = Editor(path, req.threads).latency(req.size, warmup=2, runs=10)
    sizes = {name: p.stat().st_size for name, p in files.items()}
    checks["failures"] = failures
    return {
        "concept": req.concept,
        "instruction": req.instruction,
        "base": {"path": str(req.base.folder), "sha256": base_sha, "generator": dict(req.base.model.config)},
        "adapter": {"path": str(req.adapter_dir), "sha256": adapter_sha} if req.adapter_dir else None,
        "adapter_note": req.adapter_note,
        "output_curves": module.curves is not None,
        "input": {**INPUT_CONTRACT, "stride": stride, "export_size": req.size},
        **({"position": {**POSITION_CONTRACT, "screen": screen_of(module.generator)}} if module.takes_position
           else {}),
        **({"frame": FRAME_CONTRACT} if FRAME_NAME in module.inputs else {}),
        "output": OUTPUT_CONTRACT,
        "files": sizes,
        "int8_size_ratio": round(sizes["editor.int8.onnx"] / sizes["editor.onnx"], 4) if req.int8 else None,
        "images": images.origin,
        "checks": checks,
        "latency_ms": latency,
        "full_size": full_size,
        "use": {
            "android": "editor.onnx / editor.ort with the NNAPI EP (whole graph); editor.int8 on the CPU EP",
            "ios": "editor.onnx / editor.fp16.onnx (or .ort) with the CoreML EP in MLProgram format",
            "desktop": "factory apply, or onnxruntime on editor.onnx / editor.int8.onnx",
        },
    }


# ---------------------------------------------------------------------------------------------
# the pix2pix ResNet-9 reference for latency, exported exactly like an editor


def pix2pix_reference(folder: Path, size: int = 256, int8: bool = True,
                      calibration_images: int = 16) -> dict[str, Path]:
    """pix2pix ResNet-9 (ngf 64, random weights, seed 0) as fp32 and static-QDQ int8 ONNX in ``folder``.

    Same exporter, opset, optimization and quantization settings as ``export_editor`` (calibrated on
    scikit-image photo crops at ``size``); reused when already there. Latency does not depend on weights.
    """
    from base_gan.pix2pix import build_pix2pix
    from factory.core.atomic import atomic_save_file
    from factory.export.quantize import quantize_int8
    from factory.runtime.editor import to_input

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"fp32": folder / "pix2pix.onnx"}
    module = EditorModule(build_pix2pix(seed=0, dropout=0.0)).eval()
    if not paths["fp32"].is_file():
        atomic_save_file(paths["fp32"], lambda tmp: export_onnx(module, Path(tmp), size))
        set_metadata(
            paths["fp32"], {"concept": "pix2pix-resnet9", "precision": "fp32", "stride": "4", "input_size": str(size)}
        )
    if int8:
        paths["int8"] = folder / "pix2pix.int8.onnx"
        if not paths["int8"].is_file():
            calibration = [to_input([im])[0] for im in photo_crops("train", calibration_images, size)]

            def write(tmp: str) -> None:
                quantize_int8(paths["fp32"], Path(tmp), calibration)
                set_metadata(
                    Path(tmp),
                    {"concept": "pix2pix-resnet9", "precision": "int8", "stride": "4", "input_size": str(size)},
                )

            atomic_save_file(paths["int8"], write)
    return paths
