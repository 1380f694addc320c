"""``factory base info|train`` and ``factory eval``: the shared base GAN (and the pix2pix baseline)."""

from __future__ import annotations

from pathlib import Path

import click

from factory.cli.parallel_options import processes_option
from factory.pipeline.session import Session

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
    from base_gan.complexity import describe_architecture

    for line in describe_architecture(arch, size, ngf, text_len):
        click.echo(line)


@base_group.command("train")
@click.option("--concepts", "spec", required=True,
              help="Comma-separated concept names, auto:K for K representative classic concepts (k-means), "
                   "or family:N for N concepts sampled from the concept family (cards written to the workspace).")
@click.option("--name", default="default", show_default=True, help="Saved as <workspace>/base/<name>/.")
@click.option("--arch", type=click.Choice(ARCHS), default="e2gan", show_default=True,
              help="e2gan: the text-conditioned base; pix2pix: the ResNet-9 baseline on one concept.")
@click.option(
    "--size", type=int, default=128, show_default=True, help="Training resolution (pairs are made at it when missing)."
)
@click.option("--steps", type=click.IntRange(1), default=2000, show_default=True)
@click.option("--seconds", type=float, help="Wall-clock budget; stops at whichever of --steps/--seconds comes first.")
@click.option("--batch", type=click.IntRange(1), default=8, show_default=True)
@click.option("--ngf", type=int, help="Generator width (default: the architecture's own).")
@click.option("--lr", type=float, default=2e-4, show_default=True)
@click.option("--l1-weight", type=float, default=100.0, show_default=True)
@click.option("--gan-loss", type=click.Choice(["lsgan", "hinge"]), default="lsgan", show_default=True)
@click.option(
    "--lpips-weight",
    type=float,
    default=0.0,
    show_default=True,
    help="LPIPS loss weight; needs the LPIPS backbone weights in the torch cache.",
)
@click.option("--fm-weight", type=float, default=0.0, show_default=True, help="Discriminator feature matching.")
@click.option("--disc-norm", type=click.Choice(["batch", "instance", "none"]), default="batch", show_default=True,
              help="The discriminator's norm (batch: the pix2pix reference; with --processes on CPUs each process "
                   "normalizes its slice, instance trains exactly what one process does).")
@click.option("--ema", type=float, help="Keep an EMA of the generator with this decay (e.g. 0.999) and save it.")
@click.option(
    "--pairs",
    type=click.IntRange(2),
    default=200,
    show_default=True,
    help="Pairs to synthesize for a concept that has none yet.",
)
@click.option("--text-dropout", type=click.FloatRange(0, 1, max_open=True), default=0.0, show_default=True,
              help="Share of samples trained to leave the photo unchanged under an empty or unrelated text, so an "
                   "unknown text gives (near) the identity.")
@click.option("--film", is_flag=True, help="Also condition every stage on the pooled text (FiLM, zero-init).")
@click.option("--coords", is_flag=True,
              help="Append sin/cos of the pixel position (periods 4, 8, 16 px) to the input, so the generator can "
                   "place position-dependent patterns (a halftone screen, scanlines).")
@click.option("--checkpoint-every", type=click.IntRange(1), default=200, show_default=True)
@click.option("--restart", is_flag=True, help="Discard existing checkpoints instead of resuming from them.")
@processes_option("--batch is the global batch, split over them.")
@click.pass_obj
def train_cmd(
    session: Session, spec: str, name: str, arch: str, size: int, ngf: int | None, pairs: int, restart: bool,
    film: bool, coords: bool, processes: int, **settings
) -> None:
    """Train a base GAN on many concepts at once; each sample carries its own concept text.

    Resumes from the last checkpoint of <workspace>/base/<name>/ unless --restart. Checkpoints resume with
    any number of processes: N processes train the model one process trains with the same global batch.
    """
    import time

    from base_gan.distributed import parallel, relaunch

    relaunch(processes)  # --processes N: this command as N processes of one group (then exits)

    from base_gan.models import read_training
    from factory.pipeline.steps import train_base

    started = time.perf_counter()
    out = train_base(spec, workspace=session.workspace, name=name, arch=arch, size=size, ngf=ngf, film=film,
                     coords=coords, pairs=pairs, restart=restart, seed=session.seed, log=click.echo, **settings)
    if not parallel().main:  # under a launcher every process gets here; one summary
        return
    done = read_training(out)
    shown = ", ".join(done["concepts"][:6]) + (", ..." if len(done["concepts"]) > 6 else "")
    click.echo(
        f"base train: {arch} on {len(done['concepts'])} concept(s) ({shown}), step "
        f"{done['steps_done']}, {time.perf_counter() - started:.0f} s this run -> {out}"
    )


@click.command("eval")
@click.argument("concept")
@click.option(
    "--model", required=True, help="A base name in <workspace>/base/, or a folder holding a trained generator."
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to write <concept>-<model>.json and .png (default <workspace>/reports/eval).",
)
@click.pass_obj
def eval_cmd(session: Session, concept: str, model: str, out: Path | None) -> None:
    """Quality on CONCEPT's test photos next to the identity baseline: PSNR, SSIM, L1, PSNR at 1/4
    resolution, HaarPSI, FSIM, MS-SSIM, GMSD (LPIPS when available), and whether it is learned.

    Also writes a grid PNG of source | teacher | student for a few test images.
    """
    from factory.pipeline.steps import evaluate_model

    result = evaluate_model(concept, model, workspace=session.workspace, out=out)
    s, i = result["student"], result["identity"]
    figures = lambda q: ", ".join(f"{k} {q[k]:.3f}" for k in ("psnr", "ssim", "haarpsi", "fsim", "gmsd"))
    click.echo(f"eval {concept} ({result['test_pairs']} test pairs): student {figures(s)}; identity {figures(i)}; "
               f"{'learned' if result['learned'] else 'NOT learned'} (PSNR and every structural metric beat identity); "
               f"LPIPS {result['lpips']} -> {Path(result['grid']).with_suffix('.json')}")


def register(cli: click.Group) -> None:
    cli.add_command(base_group)
    cli.add_command(eval_cmd)
