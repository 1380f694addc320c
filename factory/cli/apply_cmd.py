"""``factory apply``: run an exported editor on images, folders and videos (onnxruntime + OpenCV, no torch)."""

from __future__ import annotations

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
@click.option("--size", type=click.IntRange(16),
              help="Edit at this longer side (a multiple of 16) and resize back; default: native resolution.")
@click.option("--tile", type=click.IntRange(16), default=1024, show_default=True,
              help="At native resolution, larger images are edited in overlapping tiles of this side.")
@click.option("--precision", type=click.Choice(["fp32", "int8", "fp16"]), default="fp32", show_default=True,
              help="Which model of an editor folder to run.")
@click.option("--threads", type=click.IntRange(1), help="onnxruntime threads (default: all cores).")
@click.pass_obj
def apply(session: Session, editor: str, inputs: tuple[str, ...], out: Path, batch: int, size: int | None,
          tile: int, precision: str, threads: int | None) -> None:
    """Edit images, folders (recursive) and videos with EDITOR (an editor folder, a .onnx/.ort file,
    or a concept name exported to <workspace>/editors/).

    Outputs keep each input's name, format and size (videos: frame count, fps and frame size; no
    audio), under OUT/<input folder name>/... for folders. Unreadable files are skipped and listed.
    """
    from tqdm import tqdm

    from factory.runtime.apply import apply_files
    from factory.runtime.editor import Editor, locate_editor

    model = Editor(locate_editor(editor, session.workspace.root, precision), threads)
    with tqdm(unit="img", desc=f"apply {model.describe()}", leave=False) as bar:
        def show(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        r = apply_files(model, inputs, out, size=size, batch=batch, tile=tile, progress=show)
    if r.skipped:
        click.echo(f"skipped {len(r.skipped)} input(s):", err=True)
        for path, reason in r.skipped:
            click.echo(f"  {path}: {reason}", err=True)
    done = r.images + r.frames
    rate = f", {1000 * r.seconds / done:.1f} ms per image/frame" if done else ""
    click.echo(f"apply {model.describe()}: {r.images} image(s), {r.videos} video(s) ({r.frames} frames) in "
               f"{r.seconds:.1f} s{rate}; {len(r.skipped)} skipped -> {out}")


def register(cli: click.Group) -> None:
    cli.add_command(apply)
