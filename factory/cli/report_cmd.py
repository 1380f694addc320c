"""``factory report``: rebuild a concept's HTML report from what its run wrote."""

from __future__ import annotations

import click

from factory.pipeline.session import Session


@click.command("report")
@click.argument("concept")
@click.pass_obj
def report_cmd(session: Session, concept: str) -> None:
    """Rebuild <workspace>/reports/<CONCEPT>.html (self-contained: images inlined) and print its path."""
    from factory.pipeline.report import build_report

    click.echo(f"report: {build_report(session.workspace, concept)}")


def register(cli: click.Group) -> None:
    cli.add_command(report_cmd)
