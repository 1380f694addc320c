"""``factory eval``: held-out quality of a trained student against the teacher's targets."""

from __future__ import annotations

from pathlib import Path

import click

from factory.cli import Context, pass_ctx


def register(cli: click.Group) -> None:
    @cli.command("eval")
    @click.argument("concept")
    @click.option("--model", required=True,
                  help="A base name in <workspace>/base/, or a folder with generator.safetensors + config.json.")
    @click.option("--out", type=click.Path(file_okay=False, path_type=Path),
                  help="Where to write <concept>-<model>.json and .png (default <workspace>/reports/eval).")
    @pass_ctx
    def eval_(ctx: Context, concept: str, model: str, out: Path | None) -> None:
        """PSNR, SSIM and L1 (LPIPS when available) on CONCEPT's test photos, next to the identity baseline.

        Also writes a grid PNG of source | teacher | student for a few test images.
        """
        from base_gan.checkpoint import load_generator
        from factory.dataset import concept_instruction
        from factory.evaluate import evaluate_to_files, text_conditioned

        folder = Path(model) if Path(model).is_dir() else ctx.workspace.base(model)
        generator, meta = load_generator(folder)
        data_dir = ctx.workspace.data(concept)
        edit = text_conditioned(generator, meta, concept_instruction(data_dir), ctx.workspace.text_cache)
        out = out or ctx.workspace.reports / "eval"
        result = evaluate_to_files(edit, data_dir, out, f"{concept}-{folder.name}", {"model": str(folder)})
        s, i = result["student"], result["identity"]
        click.echo(f"eval {concept} ({result['test_pairs']} test pairs): student PSNR {s['psnr']:.2f} dB, "
                   f"SSIM {s['ssim']:.3f}; identity PSNR {i['psnr']:.2f} dB, SSIM {i['ssim']:.3f}; "
                   f"LPIPS {result['lpips']} -> {out / (concept + '-' + folder.name)}.json")
