"""``factory data``: look at and export the paired data in the workspace."""

from __future__ import annotations

from pathlib import Path

import click

from factory.pipeline.session import Session


@click.group()
def data() -> None:
    """Inspect and export the paired data made by `factory synth`."""

@data.command("list")
@click.pass_obj
def list_(session: Session) -> None:
    """List the concepts that have pairs in the workspace."""
    from factory.data.pairs_export import data_summary

    root = session.workspace.root / "data"
    folders = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if not folders:
        click.echo(f"no paired data in {root}; run `factory synth CONCEPT`")
        return
    click.echo(f"{'concept':28} {'pairs':>5} {'train':>5} {'test':>5} {'size':>5}  teacher")
    for folder in folders:
        s = data_summary(folder)
        click.echo(
            f"{s['concept']:28} {s['pairs']:5d} {s['train']:5d} {s['test']:5d} {s['size'] or '?':>5}  {s['teacher']}"
        )


@data.command("export")
@click.argument("concept")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["pix2pix", "img2img-turbo"]),
    required=True,
    help="pix2pix: aligned A|B jpgs in train/ test/; img2img-turbo: train_A/ train_B/ + prompts json.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Output folder (default: <workspace>/exports/<concept>-<format>).",
)
@click.pass_obj
def export(session: Session, concept: str, fmt: str, out: Path | None) -> None:
    """Write CONCEPT's pairs in a format other tools read."""
    from factory.data.pairs_export import data_summary, export_pairs

    data_dir = session.workspace.data(concept)
    out = out or session.workspace.root / "exports" / f"{concept}-{fmt}"
    n = export_pairs(data_dir, out, fmt, data_summary(data_dir)["instruction"] or concept)
    click.echo(f"data export: {n} pairs of {concept} as {fmt} -> {out}")


def register(cli: click.Group) -> None:
    cli.add_command(data)
