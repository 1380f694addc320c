"""``factory export``: a concept's LoRA merged into the base, text baked in, checked ONNX editors."""

from __future__ import annotations

from pathlib import Path

import click

from factory.cli import Context, pass_ctx


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB"


def _adapter_base(adapter_dir: Path | None) -> Path | None:
    """The base folder a LoRA was fine-tuned on, as ``factory finetune`` records it in metrics.json."""
    import json

    if adapter_dir is None or not (adapter_dir / "metrics.json").is_file():
        return None
    try:
        base = json.loads((adapter_dir / "metrics.json").read_text(encoding="utf-8")).get("base")
    except (json.JSONDecodeError, AttributeError):
        return None
    return Path(base) if isinstance(base, str) and base else None


def register(cli: click.Group) -> None:
    @cli.command("export")
    @click.argument("concept")
    @click.option("--base", "base",
                  help="A base name in <workspace>/base/, or a folder with generator.safetensors + config.json. "
                       "Default: the base the LoRA was fine-tuned on (its metrics.json), else 'default' (the shipped "
                       "pretrained base when the workspace has none).")
    @click.option("--adapter", type=click.Path(path_type=Path),
                  help="A peft LoRA folder (adapter_config.json + adapter_model.safetensors). "
                       "Default: <workspace>/loras/<concept>/ when it exists, else the base alone.")
    @click.option("--size", type=click.IntRange(16), default=256, show_default=True,
                  help="Side the editor is checked, calibrated and timed at (any multiple of 16 runs).")
    @click.option("--int8/--no-int8", default=True, show_default=True,
                  help="Also write editor.int8.onnx (static QDQ, calibrated on the concept's source images).")
    @click.option("--fp16", is_flag=True, help="Also write editor.fp16.onnx.")
    @click.option("--ort", "ort_format", is_flag=True,
                  help="Also write .ort files (fixed 1x3xSIZExSIZE input) and required_operators.config.")
    @click.option("--threads", type=click.IntRange(1), help="onnxruntime threads for checks and timing.")
    @click.option("--min-int8-psnr", type=float, default=30.0, show_default=True,
                  help="Fail unless int8 output is this close to fp32 (mean PSNR, dB) on held-out images.")
    @click.option("--allow-cpu-fallback", is_flag=True,
                  help="Export even if NNAPI / CoreML would not take the whole graph (listed in card.json).")
    @pass_ctx
    def export(ctx: Context, concept: str, base: str | None, adapter: Path | None, size: int, int8: bool, fp16: bool,
               ort_format: bool, threads: int | None, min_int8_psnr: float, allow_cpu_fallback: bool) -> None:
        """Export CONCEPT's editor to <workspace>/editors/<concept>/ (editor.onnx, int8, card.json).

        The editor takes float32 NCHW RGB in [-1, 1] (pixel / 127.5 - 1), any batch and any height and
        width that are multiples of 16, and returns the edited image in the same form. The export fails
        (and installs nothing) when torch/onnxruntime parity, int8 quality or the mobile check fails.
        """
        import time

        from factory.errors import FactoryError
        from factory.export.editor import ExportRequest, export_editor

        started = time.perf_counter()
        ws = ctx.workspace
        if adapter is not None:
            if not (adapter / "adapter_config.json").is_file():
                raise FactoryError(f"{adapter}: not a LoRA adapter folder (no adapter_config.json)")
            adapter_dir, note = adapter, f"LoRA {adapter} merged"
        elif (ws.lora(concept) / "adapter_config.json").is_file():
            adapter_dir, note = ws.lora(concept), f"LoRA {ws.lora(concept)} merged"
        else:
            adapter_dir, note = None, f"no LoRA for '{concept}' (none in {ws.lora(concept)}): the base alone, text-conditioned"
        trained_on = _adapter_base(adapter_dir)
        from factory.pretrained import resolve_base

        if base is None and trained_on is not None and trained_on.is_dir():
            base_dir = trained_on
        else:
            base_dir = resolve_base(ws, base)
        if trained_on is not None and trained_on.resolve() != base_dir.resolve():
            note += f" (note: it was fine-tuned on {trained_on}, merging into {base_dir})"
        click.echo(f"export {concept}: {note}; base {base_dir}", err=True)

        data_dir = ws.data(concept)
        if (data_dir / "synth.json").is_file():
            from factory.dataset import concept_instruction

            instruction = concept_instruction(data_dir)
        else:
            from factory.concepts import find_card

            instruction = find_card(concept, ws).instruction

        req = ExportRequest(concept=concept, base_dir=base_dir, adapter_dir=adapter_dir, adapter_note=note,
                            instruction=instruction, data_dir=data_dir, out_dir=ws.editor(concept), size=size,
                            int8=int8, fp16=fp16, ort=ort_format, threads=threads,
                            allow_cpu_fallback=allow_cpu_fallback, min_int8_psnr=min_int8_psnr,
                            text_cache=ws.text_cache)
        card = export_editor(req, log=lambda m: click.echo(f"  {m}", err=True))

        files = card["files"]
        parts = [f"editor.onnx {_mb(files['editor.onnx'])}"]
        if int8:
            q = card["checks"]["quality"]["int8_vs_fp32"]
            parts.append(f"int8 {_mb(files['editor.int8.onnx'])} ({card['int8_size_ratio']:.2f}x), "
                         f"{q['mean_db']:.1f} dB vs fp32")
        lat = card["latency_ms"]
        timing = ", ".join(f"{k} {lat[k]['median_ms']:.1f} ms" for k in ("fp32", "int8", "fp16") if k in lat)
        mobile = card["checks"]["mobile"]
        delegates = "NNAPI + CoreML take it whole" if mobile["passed"] else "partly on CPU (see card.json)"
        click.echo(f"export {concept}: {'; '.join(parts)}; parity {card['checks']['parity']['max_abs']:.1e}; "
                   f"{delegates}; {timing} at {size} px; {time.perf_counter() - started:.1f} s -> {req.out_dir}")
