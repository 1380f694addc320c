"""``factory apply``: run an exported editor on images, folders and videos (onnxruntime + OpenCV, no torch)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import click

from factory.pipeline.session import Session


@click.command("apply")
@click.argument("editor")
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--out", required=True, type=click.Path(path_type=Path),
              help="Output folder (or an output file when the input is one image or video).")
@click.option("--batch", type=click.IntRange(1), default=4, show_default=True,
              help="Images, frames or tiles per onnxruntime call.")
@click.option("--path", "path", type=click.Choice(["auto", "guided", "tiled", "screen"]), default="auto",
              show_default=True,
              help="How photos larger than the editor's size are edited. auto: what the editor's card.json chose "
                   "at export (full_size: guided when it measured within 0.5 dB of the best native path), tiled "
                   "for a .onnx file "
                   "without a card; --size or --tile alone override it. guided: the editor at a low resolution "
                   "(--size, default the card's low_side, measured at export, or 512) and its colour edit applied "
                   "to the full-size photo (after colour curves fitted to it when the card says guided_curves): fast, "
                   "for colour edits. tiled: native resolution in overlapping tiles "
                   "(--tile): any edit. screen: for an editor with a screen (halftone dots) whose export kept a screen "
                   "render: the editor at a low resolution gives the ink, the dots are drawn at full resolution.")
@click.option("--size", type=click.IntRange(16),
              help="Edit at this longer side (a multiple of 16) and resize back (a preview); with --path guided, "
                   "the editor's resolution before guided upsampling.")
@click.option("--tile", type=click.IntRange(16),
              help="Tile side for native-resolution editing (a multiple of 16); default: the card's, else 512.")
@click.option("--finish/--no-finish", default=True, show_default=True,
              help="For an editor with a screen (halftone dots) whose card.json kept one: the tiled path's finish "
                   "on photos at least 4x its pairs' size (input blurred at a third of a screen cell, output "
                   "levels sharpened; beyond 12x edited at 12x and upscaled first; measured at export). "
                   "--no-finish runs the model alone at native resolution (on the screen path: at its low "
                   "resolution).")
@click.option("--precision", type=click.Choice(["fp32", "int8", "fp16"]), default="fp32", show_default=True,
              help="Which model of an editor folder to run.")
@click.option("--concept", help="With EDITOR a filter pack (a pack folder, or a pack name in <workspace>/packs/): "
                                 "the pack's concept to run.")
@click.option("--threads", type=click.IntRange(1), help="onnxruntime threads (default: all cores).")
@click.pass_obj
def apply(session: Session, editor: str, inputs: tuple[str, ...], out: Path, batch: int, path: str,
          size: int | None, tile: int | None, finish: bool, precision: str, concept: str | None,
          threads: int | None) -> None:
    """Edit images, folders (recursive) and videos with EDITOR (an editor folder, a .onnx/.ort file,
    a concept name exported to <workspace>/editors/, or a filter pack with --concept).

    Outputs keep each input's name, format and size (videos: frame count, fps and frame size; no
    audio), under OUT/<input folder name>/... for folders. Unreadable files are skipped and listed.
    Photos larger than the editor's size are edited at full size the way --path says.
    """
    from tqdm import tqdm

    from factory.runtime.apply import apply_files
    from factory.runtime.editor import open_editor
    from factory.runtime.fullsize import describe

    model = open_editor(editor, session.workspace.root, precision, concept, threads)
    how = describe(model.full_size if finish else replace(model.full_size, finish=None), path, size, tile)
    with tqdm(unit="img", desc=f"apply {model.describe()}", leave=False) as bar:
        def show(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        r = apply_files(model, inputs, out, size=size, batch=batch, tile=tile, path=path, finish=finish,
                        progress=show)
    if r.skipped:
        click.echo(f"skipped {len(r.skipped)} input(s):", err=True)
        for path, reason in r.skipped:
            click.echo(f"  {path}: {reason}", err=True)
    done = r.images + r.frames
    rate = f", {1000 * r.seconds / done:.1f} ms per image/frame" if done else ""
    click.echo(f"apply {model.describe()}: {r.images} image(s), {r.videos} video(s) ({r.frames} frames) in "
               f"{r.seconds:.1f} s{rate}; {len(r.skipped)} skipped; large images {how} -> {out}")


def register(cli: click.Group) -> None:
    cli.add_command(apply)
