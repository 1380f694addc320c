"""``factory bench-editor``: CPU latency of an exported editor next to pix2pix ResNet-9 exported the same way."""

from __future__ import annotations

from pathlib import Path

import click

from factory.pipeline.session import Session


@click.command("bench-editor")
@click.argument("editor")
@click.option("--size", type=click.IntRange(16), default=256, show_default=True, help="Square input side.")
@click.option("--threads", type=click.IntRange(1), default=2, show_default=True, help="onnxruntime intra-op threads.")
@click.option("--runs", type=click.IntRange(3), default=30, show_default=True, help="Timed runs per model (median).")
@click.option("--warmup", type=click.IntRange(0), default=5, show_default=True, help="Untimed runs first.")
@click.option("--pix2pix/--no-pix2pix", default=True, show_default=True,
              help="Also time pix2pix ResNet-9 (random weights; exported and quantized once, cached in the workspace).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="JSON file to write (default <workspace>/reports/bench-editor/<editor>-<size>.json).")
@click.pass_obj
def bench_editor(session: Session, editor: str, size: int, threads: int, runs: int, warmup: int, pix2pix: bool,
                 out: Path | None) -> None:
    """Median latency per image (batch 1, after warm-up) of EDITOR's fp32 and int8 (and fp16) models on
    this CPU, side by side with pix2pix ResNet-9. EDITOR: an editor folder, a .onnx file, or a concept name."""
    from factory.pipeline.steps import bench_editor as run_bench

    report, path = run_bench(editor, workspace=session.workspace, size=size, threads=threads, runs=runs,
                             warmup=warmup, pix2pix=pix2pix, out=out)
    table = ", ".join(f"{k} {v['per_image_ms']:.1f} ms" for k, v in report["models"].items())
    speed = "".join(f"; {p} speed-up vs pix2pix {report[f'speedup_vs_pix2pix_{p}']:.1f}x"
                    for p in ("fp32", "int8") if f"speedup_vs_pix2pix_{p}" in report)
    click.echo(f"bench-editor {Path(report['editor']).parent.name} at {size}x{size}, {threads} thread(s), load "
               f"{report['load_average_1min']['before']:.2f}: {table}{speed} -> {path}")


def register(cli: click.Group) -> None:
    cli.add_command(bench_editor)
