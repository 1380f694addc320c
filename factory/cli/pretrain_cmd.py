"""``factory pretrain``: what the shipped pretrained base and weight generator are, and installing new ones."""

from __future__ import annotations

from pathlib import Path

import click

from factory.cli import Context, pass_ctx


def register(cli: click.Group) -> None:
    @cli.group("pretrain")
    def pretrain() -> None:
        """The pretrained base GAN and weight generator shipped in the package (used when a workspace
        has none of its own).

        \b
        They are made by one command, the weight-generator benchmark, which trains the base on classic
        concepts, one LoRA per training concept and the weight generator, measures them on held-out
        concepts, and installs them:
          python bench/weightgen.py --install   (budgets: see `factory pretrain info`)
        """

    @pretrain.command("info")
    def info() -> None:
        """Print the shipped assets' manifest: recipe, concepts, held-out concepts, sizes."""
        from factory.errors import FactoryError
        from factory.pretrained import manifest, pretrained_dir

        m = manifest()
        if m is None:
            raise FactoryError("no pretrained assets are installed (or FACTORY_PRETRAINED=none)")
        click.echo(f"folder: {pretrained_dir()}")
        click.echo(f"recipe: {m['recipe']}")
        click.echo(f"created: {m['created']}")
        b, w = m["base"], m["weightgen"]
        click.echo(f"base: {b['folder']} ({b['bytes'] / 1e6:.1f} MB), {b['generator']}, trained on "
                   f"{len(b['concepts'])} concepts: {', '.join(b['concepts'])}")
        click.echo(f"weight generator: {w['folder']} ({w['bytes'] / 1e6:.1f} MB, {w['variant']}, {w['stored_dtype']}), "
                   f"{len(w['concepts'])} training adapters: {', '.join(w['concepts'])}")
        click.echo(f"held out of both (try `factory run` on one): {', '.join(m['heldout'])}")

    @pretrain.command("install")
    @click.option("--base", "base", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
                  help="A trained base folder (generator.safetensors + config.json).")
    @click.option("--weightgen", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
                  help="A weight generator trained on adapters of that base.")
    @click.option("--heldout", required=True, help="Comma-separated classic concepts neither model saw.")
    @click.option("--recipe", required=True, help="The command that trained them (recorded in the manifest).")
    @click.option("--dest", type=click.Path(file_okay=False, path_type=Path),
                  help="Install here instead of the package's factory/pretrained/.")
    @pass_ctx
    def install_cmd(ctx: Context, base: Path, weightgen: Path, heldout: str, recipe: str, dest: Path | None) -> None:
        """Install a base and weight generator as the shipped pretrained assets (weight generator in fp16)."""
        from factory.pretrained import PRETRAINED_DIR, install

        m = install(base, weightgen, recipe, [c.strip() for c in heldout.split(",") if c.strip()],
                    dest or PRETRAINED_DIR)
        click.echo(f"pretrain: installed {m['total_bytes'] / 1e6:.1f} MB -> {dest or PRETRAINED_DIR}")
