"""``factory report``: rebuild a concept's HTML report from what its run wrote."""

from __future__ import annotations

import click

from factory.cli import Context, pass_ctx


def register(cli: click.Group) -> None:
    @cli.command("report")
    @click.argument("concept")
    @pass_ctx
    def report_cmd(ctx: Context, concept: str) -> None:
        """Rebuild <workspace>/reports/<CONCEPT>.html (self-contained: images inlined) and print its path."""
        from factory.report import build_report

        click.echo(f"report: {build_report(ctx.workspace, concept)}")
