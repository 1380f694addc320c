"""``factory base ...``: the shared base GAN. For now ``info`` (parameters and MACs per layer group)."""

from __future__ import annotations

import click

ARCHS = ("e2gan", "pix2pix")


@click.group("base")
def base_group() -> None:
    """The shared base GAN (text-conditioned, mobile-sized) and the pix2pix baseline."""


@base_group.command("info")
@click.option("--size", type=int, default=256, show_default=True, help="Square input size in pixels.")
@click.option("--ngf", type=int, default=None, help="Generator width (default: the architecture's own).")
@click.option("--arch", type=click.Choice(ARCHS), default="e2gan", show_default=True)
@click.option("--text-len", type=int, default=16, show_default=True,
              help="Text tokens fed to the cross-attention while counting (e2gan only).")
def info_cmd(size: int, ngf: int | None, arch: str, text_len: int) -> None:
    """Print parameters and GMACs per layer group and in total for one SIZE x SIZE image."""
    from factory.errors import FactoryError

    if size <= 0:
        raise FactoryError(f"--size must be positive, got {size}")
    from base_gan.complexity import measure

    if arch == "e2gan":
        from base_gan.generator import STRIDE, GeneratorConfig, build_generator

        if size % STRIDE:
            raise FactoryError(f"--size {size} is not a multiple of the generator stride {STRIDE}")
        try:
            config = GeneratorConfig(**({} if ngf is None else {"ngf": ngf}), image_size=size)
        except ValueError as exc:
            raise FactoryError(str(exc)) from None
        model = build_generator(config)
        report = measure(model, size, text_len=text_len, text_dim=config.text_dim)
        note = f"e2gan generator, ngf {config.ngf}, {size}x{size}, {text_len} text tokens"
    else:
        from base_gan.pix2pix import Pix2PixConfig, build_pix2pix

        if size % 4:
            raise FactoryError(f"--size {size} is not a multiple of the pix2pix stride 4")
        config = Pix2PixConfig(**({} if ngf is None else {"ngf": ngf}), image_size=size)
        model = build_pix2pix(config)
        report = measure(model, size)
        published = measure(model, size, transposed_conv="output")
        note = f"pix2pix ResNet-9, ngf {config.ngf}, {size}x{size}"
    click.echo(note)
    click.echo(report.table())
    if arch == "pix2pix":
        click.echo(f"(counting ConvTranspose over output positions, as the published 56.8 GMACs does: "
                   f"{published.gmacs:.3f} GMACs)")
    click.echo(f"{report.params / 1e6:.3f}M parameters, {report.gmacs:.3f} GMACs")


def register(cli: click.Group) -> None:
    cli.add_command(base_group)
