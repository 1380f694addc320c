"""``factory synth``: a teacher makes paired data for one or more concepts."""

from __future__ import annotations

from pathlib import Path

import click

from factory.pipeline.session import Session


@click.command()
@click.argument("concepts", nargs=-1, required=True)
@click.option("-n", "--num", "n", type=click.IntRange(1), default=200, show_default=True,
              help="Pairs per concept (train and test together).")
@click.option(
    "--size", type=click.IntRange(16), default=256, show_default=True, help="Side of the square pairs in pixels."
)
@click.option(
    "--images",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Folder of source photos (recursive). For --teacher pairs: the folder of pairs. "
    "Default: scikit-image's bundled photos with a fixed train/test split.",
)
@click.option(
    "--teacher",
    type=click.Choice(["classic", "instruct-pix2pix", "sdedit", "pairs"]),
    help="Override the card's teacher.",
)
@click.option("--model", help="Diffusers model: a Hub id or a local pipeline folder.")
@click.option("--steps", type=click.IntRange(1), help="Diffusion steps.")
@click.option("--guidance-scale", type=float, help="Text guidance (SD-Turbo: 0).")
@click.option("--image-guidance-scale", type=float, help="InstructPix2Pix image guidance (>= 1; lower edits more).")
@click.option("--strength", type=float, help="SDEdit strength (0.3-0.8 keeps structure).")
@click.option("--batch-size", type=click.IntRange(1), help="Images per teacher call.")
@click.option(
    "--test-fraction",
    type=click.FloatRange(0, 0.9),
    default=0.1,
    show_default=True,
    help="Share of --images photos held out as the test split (by photo, never by crop).",
)
@click.pass_obj
def synth(session: Session, concepts: tuple[str, ...], n: int, size: int, images: Path | None, teacher: str | None,
          test_fraction: float, **overrides) -> None:
    """Make paired data (source, teacher target) for CONCEPTS (card names or .yaml paths).

    Writes data/<concept>/source/*.png, target/*.png and manifest.jsonl in the workspace.
    Resumable: a second run adds only the missing pairs; a killed run loses nothing written.
    """
    import time

    from factory.pipeline.steps import synthesize

    started = time.perf_counter()
    results = synthesize(concepts, n, size, workspace=session.workspace, images=images, teacher=teacher,
                         overrides=overrides, test_fraction=test_fraction, seed=session.seed)
    _report(results, time.perf_counter() - started)


def _report(results: list, seconds: float) -> None:
    """What the teacher declined, the unreadable inputs, and the one-line summary."""
    skipped = sorted({s for r in results for s in r.skipped})
    for r in results:
        if r.refused:
            click.echo(f"{r.concept}: the teacher declined {len(r.refused)} pair(s): {', '.join(r.refused)}", err=True)
    if skipped:
        click.echo(f"skipped {len(skipped)} unreadable file(s):", err=True)
        for path, reason in skipped:
            click.echo(f"  {path}: {reason}", err=True)
    total, new = sum(r.total for r in results), sum(r.new for r in results)
    where = results[0].folder if len(results) == 1 else results[0].folder.parent
    click.echo(f"synth: {len(results)} concept(s), {total} pairs ({new} new, {total - new} kept, "
               f"{len(skipped)} file(s) skipped) in {seconds:.1f} s -> {where}")


def register(cli: click.Group) -> None:
    cli.add_command(synth)
