"""``factory bench-editor``: CPU latency of an exported editor next to pix2pix ResNet-9 exported the same way."""

from __future__ import annotations

from pathlib import Path

import click

from factory.cli import Context, pass_ctx


def register(cli: click.Group) -> None:
    @cli.command("bench-editor")
    @click.argument("editor")
    @click.option("--size", type=click.IntRange(16), default=256, show_default=True, help="Square input side.")
    @click.option("--threads", type=click.IntRange(1), default=2, show_default=True, help="onnxruntime intra-op threads.")
    @click.option("--runs", type=click.IntRange(3), default=30, show_default=True, help="Timed runs per model (median).")
    @click.option("--warmup", type=click.IntRange(0), default=5, show_default=True, help="Untimed runs first.")
    @click.option("--pix2pix/--no-pix2pix", default=True, show_default=True,
                  help="Also time pix2pix ResNet-9 (random weights; exported and quantized once, cached in the workspace).")
    @click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
                  help="JSON file to write (default <workspace>/reports/bench-editor/<editor>-<size>.json).")
    @pass_ctx
    def bench_editor(ctx: Context, editor: str, size: int, threads: int, runs: int, warmup: int, pix2pix: bool,
                     out: Path | None) -> None:
        """Median latency per image (batch 1, after warm-up) of EDITOR's fp32 and int8 (and fp16) models on
        this CPU, side by side with pix2pix ResNet-9. EDITOR: an editor folder, a .onnx file, or a concept name."""
        import os
        import platform

        from factory.atomic import atomic_write_json
        from factory.errors import FactoryError
        from factory.runtime import EDITOR_FILES, benchmark, locate_editor

        fp32 = locate_editor(editor, ctx.workspace.root, "fp32")
        models = {"editor_fp32": fp32}
        for precision in ("int8", "fp16"):
            sibling = fp32.with_name(EDITOR_FILES[precision])
            if fp32.name == EDITOR_FILES["fp32"] and sibling.is_file():
                models[f"editor_{precision}"] = sibling
        if pix2pix:
            from factory.export.editor import pix2pix_reference

            ref = pix2pix_reference(ctx.workspace.root / "cache" / "bench" / f"pix2pix-resnet9-{size}", size)
            models.update({f"pix2pix_{k}": v for k, v in ref.items()})
        if size % 16:
            raise FactoryError(f"--size {size} is not a multiple of the editor stride 16")
        load_before = os.getloadavg()[0]
        results = benchmark(models, size, threads, runs=runs, warmup=warmup)
        report = {
            "editor": str(fp32), "size": size, "threads": threads, "batch": 1, "runs": runs, "warmup": warmup,
            "load_average_1min": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
            "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "models": results,
        }
        ms = {k: v["per_image_ms"] for k, v in results.items()}
        for precision in ("fp32", "int8"):
            if f"editor_{precision}" in ms and f"pix2pix_{precision}" in ms:
                report[f"speedup_vs_pix2pix_{precision}"] = round(ms[f"pix2pix_{precision}"] / ms[f"editor_{precision}"], 2)
        if "editor_int8" in results:
            report["editor_int8_size_ratio"] = round(results["editor_int8"]["bytes"] / results["editor_fp32"]["bytes"], 4)
        name = fp32.parent.name if fp32.name == EDITOR_FILES["fp32"] else fp32.stem
        out = out or ctx.workspace.reports / "bench-editor" / f"{name}-{size}.json"
        atomic_write_json(out, report)
        table = ", ".join(f"{k} {v:.1f} ms" for k, v in ms.items())
        speed = "".join(f"; {p} speed-up vs pix2pix {report[f'speedup_vs_pix2pix_{p}']:.1f}x"
                        for p in ("fp32", "int8") if f"speedup_vs_pix2pix_{p}" in report)
        click.echo(f"bench-editor {name} at {size}x{size}, {threads} thread(s), load {load_before:.2f}: {table}{speed} -> {out}")
