"""``factory export``: a concept's LoRA merged into the base, text baked in, checked ONNX editors."""

from __future__ import annotations

from pathlib import Path

import click

from factory.pipeline.session import Session


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB"


@click.command("export")
@click.argument("concepts", nargs=-1, required=True, metavar="CONCEPT...")
@click.option("--pack", "pack", metavar="NAME",
              help="Write one filter pack of every CONCEPT to <workspace>/packs/NAME/ instead: the base once, "
                   "per concept only its LoRA and text (merged when onnxruntime loads it), each checked against "
                   "its standalone editor.")
@click.option("--pack-precision", type=click.Choice(["fp32", "fp16"]), default="fp32", show_default=True,
              help="How a pack stores its weights: fp32 (outputs equal the standalone editors') or fp16 "
                   "(half the bytes, within float16 rounding of them).")
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
@click.option("--full-size/--no-full-size", "full_size", default=True, show_default=True,
              help="Choose how full-size photos are edited (guided upsampling or native tiles) by PSNR against "
                   "the teacher at full resolution on a few held-out photos; recorded in card.json "
                   "(full_size). --no-full-size skips it: tiled.")
@click.pass_obj
def export(session: Session, concepts: tuple[str, ...], pack: str | None, pack_precision: str, base: str | None,
           adapter: Path | None, size: int, int8: bool, fp16: bool, ort_format: bool, threads: int | None,
           min_int8_psnr: float, allow_cpu_fallback: bool, full_size: bool) -> None:
    """Export CONCEPT's editor to <workspace>/editors/<concept>/ (editor.onnx, int8, card.json), or with
    --pack NAME several concepts as one filter pack in <workspace>/packs/NAME/.

    The editor takes float32 NCHW RGB in [-1, 1] (pixel / 127.5 - 1), any batch and any height and
    width that are multiples of 16, and returns the edited image in the same form. The export fails
    (and installs nothing) when torch/onnxruntime parity, int8 quality or the mobile check fails.
    """
    import time

    from factory.pipeline.steps import export_editor

    if pack:
        return _export_pack(session, concepts, pack, pack_precision, base, size, threads)
    if len(concepts) != 1:
        raise click.UsageError("one CONCEPT per editor; several concepts go into one filter pack with --pack NAME")
    concept = concepts[0]
    started = time.perf_counter()
    card = export_editor(concept, workspace=session.workspace, base=base, adapter=adapter, size=size, int8=int8,
                         fp16=fp16, ort=ort_format, threads=threads, min_int8_psnr=min_int8_psnr,
                         allow_cpu_fallback=allow_cpu_fallback, full_size=full_size,
                         log=lambda m: click.echo(f"  {m}", err=True))
    files, lat, mobile = card["files"], card["latency_ms"], card["checks"]["mobile"]
    parts = [f"editor.onnx {_mb(files['editor.onnx'])}"]
    if int8:
        q = card["checks"]["quality"]["int8_vs_fp32"]
        parts.append(f"int8 {_mb(files['editor.int8.onnx'])} ({card['int8_size_ratio']:.2f}x), "
                     f"{q['mean_db']:.1f} dB vs fp32")
    timing = ", ".join(f"{k} {lat[k]['median_ms']:.1f} ms" for k in ("fp32", "int8", "fp16") if k in lat)
    delegates = "NNAPI + CoreML take it whole" if mobile["passed"] else "partly on CPU (see card.json)"
    parts.append(f"full size: {card['full_size']['path']}")
    click.echo(f"export {concept}: {'; '.join(parts)}; parity {card['checks']['parity']['max_abs']:.1e}; "
               f"{delegates}; {timing} at {size} px; {time.perf_counter() - started:.1f} s -> "
               f"{session.workspace.editor(concept)}")


def _export_pack(session: Session, concepts: tuple[str, ...], name: str, precision: str, base: str | None,
                 size: int, threads: int | None) -> None:
    import time

    from factory.pipeline.steps import export_pack

    started = time.perf_counter()
    manifest = export_pack(concepts, name, workspace=session.workspace, base=base, precision=precision, size=size,
                           threads=threads, log=lambda m: click.echo(f"  {m}", err=True))
    per = [e["bytes"] for e in manifest["concepts"]]
    worst = max(manifest["checks"][e["name"]]["max_abs"] for e in manifest["concepts"])
    click.echo(f"pack {name}: {len(per)} concept(s), base {_mb(manifest['bytes']['base'])} once + "
               f"{max(per) / 1e3:.0f} KB per concept ({precision}); max abs {worst:.1e} vs the standalone editors; "
               f"{time.perf_counter() - started:.1f} s -> {session.workspace.pack(name)}")


def register(cli: click.Group) -> None:
    cli.add_command(export)
