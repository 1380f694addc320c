"""``factory synth``: a teacher makes paired data for one or more concepts."""

from __future__ import annotations

from pathlib import Path

import click

from factory.cli.teacher_options import teacher_options
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
@teacher_options
@click.option(
    "--test-fraction",
    type=click.FloatRange(0, 0.9),
    default=0.1,
    show_default=True,
    help="Share of --images photos held out as the test split (by photo, never by crop).",
)
@click.option("--shards", type=click.IntRange(1), default=1, show_default=True,
              help="Spread each concept over this many processes (one per GPU, round-robin, when there are GPUs); "
                   "the pairs are the same, byte for byte, as one process makes.")
@click.option("--shard", metavar="K/N",
              help="Make only shard K of N (0-based), e.g. one per machine sharing the workspace; the next plain "
                   "`factory synth` merges the finished shards.")
@click.pass_obj
def synth(session: Session, concepts: tuple[str, ...], n: int, size: int, images: Path | None, teacher: str | None,
          test_fraction: float, shards: int, shard: str | None, **overrides) -> None:
    """Make paired data (source, teacher target) for CONCEPTS (card names or .yaml paths).

    Writes data/<concept>/source/*.png, target/*.png and manifest.jsonl in the workspace.
    Resumable: a second run adds only the missing pairs; a killed run loses nothing written.
    """
    import time

    from factory.pipeline.steps import synthesize

    part = None
    if shard is not None:
        try:
            k, count = (int(v) for v in shard.split("/"))
        except ValueError:
            raise click.BadParameter(f"{shard!r}: expected K/N, e.g. 0/4", param_hint="--shard") from None
        if not 0 <= k < count:
            raise click.BadParameter(f"{shard!r}: expected 0 <= K < N", param_hint="--shard")
        part = (k, count)
    started = time.perf_counter()
    results = synthesize(concepts, n, size, workspace=session.workspace, images=images, teacher=teacher,
                         overrides=overrides, test_fraction=test_fraction, seed=session.seed, shards=shards,
                         shard=part, log=lambda m: click.echo(m, err=True))
    _report(results, time.perf_counter() - started)


def _report(results: list, seconds: float) -> None:
    """What the teacher declined, the unreadable inputs, and the one-line summary."""
    skipped = sorted({s for r in results for s in r.skipped})
    for r in results:
        by_reason: dict[str, list[str]] = {}
        for pair_id in r.refused:
            by_reason.setdefault(r.reasons.get(pair_id, "declined by the teacher"), []).append(pair_id)
        for reason, ids in by_reason.items():
            click.echo(f"{r.concept}: the teacher declined {len(ids)} pair(s), not stored ({reason}): "
                       f"{', '.join(ids)}", err=True)
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
