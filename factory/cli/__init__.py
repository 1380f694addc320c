"""The ``factory`` command line: one click group; each pipeline stage adds its commands from its own module.

Every command body is a thin call into the library (``factory.pipeline.steps``, ``factory.pipeline.run``,
...); command modules import heavy libraries (torch, diffusers) inside the command bodies so that
``factory --help`` stays fast, and no command module imports another (shared option declarations live
in ``teacher_options``, which is not a command module).
"""

from __future__ import annotations

import errno
import sys

import click

from factory import __version__
from factory.core.errors import FactoryError
from factory.core.workspace import DEFAULT_WORKSPACE, WORKSPACE_ENV, Workspace
from factory.pipeline.session import Session


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--workspace",
    type=click.Path(file_okay=False),
    envvar=WORKSPACE_ENV,
    default=DEFAULT_WORKSPACE,
    show_default=True,
    help=f"Folder for data, models, editors and reports (env {WORKSPACE_ENV}).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for every random choice.")
@click.version_option(__version__, prog_name="factory")
@click.pass_context
def cli(ctx: click.Context, workspace: str, seed: int) -> None:
    """editfactory: turn a text description of an image edit into a tiny GAN for phones.

    \b
    Pipeline:  synth (teacher makes pairs) -> base GAN -> per-concept LoRA
               -> weight generator -> export (ONNX fp32/int8/.ort) -> apply
    """
    ctx.obj = Session(workspace=Workspace.from_option(workspace), seed=seed)


def _register() -> None:
    """Add the commands of every ``factory/cli/*_cmd.py`` module (each defines ``register(cli)``)."""
    import importlib
    import pkgutil

    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.endswith("_cmd"):
            importlib.import_module(f"{__name__}.{info.name}").register(cli)


_register()


def main() -> None:
    """Console entry point: user errors (and a full disk) become one line on stderr and exit code 2."""
    try:
        code = cli.main(standalone_mode=False)  # ctx.exit(N) comes back as the return value here
    except FactoryError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        click.echo(f"error: the disk is full ({exc.filename or 'while writing'}); free some space and run the same "
                   "command again (finished outputs are kept, the rest resumes)", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    if isinstance(code, int) and code:
        sys.exit(code)
