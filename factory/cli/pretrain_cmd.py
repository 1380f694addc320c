"""``factory pretrain``: the shipped pretrained base and weight generator: what they are, the recipe that
makes them, and installing new ones."""

from __future__ import annotations

from pathlib import Path

import click

from factory.cli.parallel_options import processes_option
from factory.pipeline.pretrain_family import FamilyPretrainOptions
from factory.pipeline.session import Session

#: the family recipe's defaults (the shipped assets' command), shown by `factory pretrain family --help`
FAMILY = FamilyPretrainOptions()


@click.group("pretrain")
def pretrain() -> None:
    """The pretrained base GAN and weight generator shipped in the package (used when a workspace
    has none of its own).

    \b
    `factory pretrain family` is their recipe: a base on hundreds of concept-family texts with text
    dropout, a weight dataset of batched family adapters, the weight generator and the Text-to-LoRA
    hypernetwork on it; --install makes the result the shipped assets. `factory pretrain train` is the
    first shipped assets' recipe (named classic concepts). `factory pretrain info` prints the command
    that made the shipped ones.
    """


def _some(names: list[str], shown: int = 12) -> str:
    """The first ``shown`` names, and how many more (a family recipe trains on hundreds; the manifest has all)."""
    more = len(names) - shown
    return ", ".join(names[:shown]) + (f", ... ({more} more in manifest.json)" if more > 0 else "")


@pretrain.command("info")
def info() -> None:
    """Print the shipped assets' manifest: recipe, concepts, held-out concepts, sizes."""
    from factory.core.errors import FactoryError
    from factory.pipeline.assets import manifest, pretrained_dir

    m = manifest()
    if m is None:
        raise FactoryError("no pretrained assets are installed (or FACTORY_PRETRAINED=none)")
    b, w = m["base"], m["weightgen"]
    click.echo(f"folder: {pretrained_dir()}")
    click.echo(f"recipe: {m['recipe']}")
    if m.get("recipe_now"):
        click.echo(f"the same recipe today: {m['recipe_now']}")
    click.echo(f"created: {m['created']}")
    click.echo(f"base: {b['folder']} ({b['bytes'] / 1e6:.1f} MB), {b['generator'].get('_class_name')} ngf "
               f"{b['generator'].get('ngf')} at {b['generator'].get('image_size')} px, trained on "
               f"{len(b['concepts'])} concepts: {_some(b['concepts'])}")
    click.echo(f"weight generator: {w['folder']} ({w['bytes'] / 1e6:.1f} MB, {w['variant']}, {w['stored_dtype']}), "
               f"{len(w['concepts'])} training adapters: {_some(w['concepts'])}")
    click.echo(f"held out of both (try `factory run` on one): {', '.join(m['heldout'])}")


@pretrain.command("train")
@click.option("--heldout", default="autumn,cyanotype,day-to-night,pastel,watercolor", show_default=True,
              help="Comma-separated classic concepts kept out of the base and the weight generator.")
@click.option("--train-concepts", type=click.IntRange(2), default=30, show_default=True,
              help="Classic concepts (a seeded draw) with one training adapter each.")
@click.option("--pairs", type=click.IntRange(4), default=120, show_default=True, help="Pairs per concept.")
@click.option("--size", type=click.IntRange(16), default=128, show_default=True, help="Training resolution.")
@click.option("--ngf", type=click.IntRange(4), default=32, show_default=True, help="Base generator width.")
@click.option("--base-concepts", type=click.IntRange(1), default=12, show_default=True,
              help="K representative training concepts the base trains on.")
@click.option("--base-minutes", type=float, default=18.0, show_default=True)
@click.option("--batch", type=click.IntRange(1), default=8, show_default=True)
@click.option("--layers", default="down1,down2,attn,xattn,ff,up1,up2", show_default=True,
              help="The adapters' layer groups (one layout for all).")
@click.option("--rank", type=click.IntRange(1), default=4, show_default=True)
@click.option("--lora-seconds", type=float, default=40.0, show_default=True, help="Budget of each adapter.")
@click.option("--lora-steps", type=click.IntRange(1), default=2000, show_default=True, help="Step cap of each adapter.")
@click.option("--variant", type=click.Choice(["joint", "block"]), default="joint", show_default=True)
@click.option("--weightgen-minutes", type=float, default=4.0, show_default=True)
@click.option("--joint-width", type=click.IntRange(8), default=128, show_default=True)
@click.option("--joint-depth", type=click.IntRange(2), default=4, show_default=True)
@click.option("--install", is_flag=True, help="Install the result as the package's shipped assets.")
@click.option("--dest", type=click.Path(file_okay=False, path_type=Path),
              help="With --install: install here instead of the package's factory/pretrained/.")
@click.pass_obj
def train_cmd(session: Session, install: bool, dest: Path | None, **options) -> None:
    """Run (or resume) the shipped assets' recipe in --workspace (each finished stage is kept)."""
    from factory.pipeline.pretrain import PretrainOptions
    from factory.pipeline.pretrain import pretrain as run_pretrain

    result = run_pretrain(session.workspace, PretrainOptions(seed=session.seed, **options), install=install,
                          dest=dest, log=click.echo)
    _report("pretrain", result, len(result["train"]))


def _report(what: str, result: dict, adapters: int) -> None:
    """The two closing lines of a recipe: what it made (and installed), and the command that makes it again."""
    installed = f"; installed {result['manifest']['total_bytes'] / 1e6:.1f} MB" if "manifest" in result else ""
    click.echo(f"{what}: base {result['base']}, weight generator {result['weightgen']} ({adapters} adapters)"
               + installed)
    click.echo(f"recipe: {result['command']}")


@pretrain.command("family")
@click.option("--base-concepts", type=click.IntRange(2), default=FAMILY.base_concepts, show_default=True,
              help="Concept-family concepts (training region) the base trains on.")
@click.option("--base-pairs", type=click.IntRange(4), default=FAMILY.base_pairs, show_default=True,
              help="Pairs per base concept.")
@click.option("--size", type=click.IntRange(16), default=FAMILY.size, show_default=True, help="The base's resolution.")
@click.option("--ngf", type=click.IntRange(4), default=FAMILY.ngf, show_default=True, help="Base generator width.")
@click.option("--film/--no-film", default=FAMILY.film, show_default=True, help="Pooled-text FiLM in the base.")
@click.option("--coords/--no-coords", default=FAMILY.coords, show_default=True, help="Coordinate channels in the base.")
@click.option("--text-dropout", type=click.FloatRange(0, 1, max_open=True), default=FAMILY.text_dropout,
              show_default=True,
              help="Share of samples trained to the unchanged photo under an empty or unrelated text.")
@click.option("--base-minutes", type=float, default=FAMILY.base_minutes, show_default=True)
@click.option("--batch", type=click.IntRange(1), default=FAMILY.batch, show_default=True)
@click.option("--adapters", type=click.IntRange(2), default=FAMILY.adapters, show_default=True,
              help="Family concepts with one adapter each in the weight dataset.")
@click.option("--adapter-pairs", type=click.IntRange(4), default=FAMILY.adapter_pairs, show_default=True)
@click.option("--adapter-size", type=click.IntRange(16), default=FAMILY.adapter_size, show_default=True,
              help="Resolution the adapters train at.")
@click.option("--adapter-steps", type=click.IntRange(1), default=FAMILY.adapter_steps, show_default=True)
@click.option("--per-concept", type=click.IntRange(1), default=FAMILY.per_concept, show_default=True,
              help="Samples per concept in each batched adapter step.")
@click.option("--adapter-lr", type=float, default=FAMILY.adapter_lr, show_default=True)
@click.option("--chunk", type=click.IntRange(1), default=FAMILY.chunk, show_default=True,
              help="Adapters trained together.")
@click.option("--layers", default=FAMILY.layers, show_default=True, help="The adapters' layer groups.")
@click.option("--rank", type=click.IntRange(1), default=FAMILY.rank, show_default=True)
@click.option("--variant", type=click.Choice(["joint", "block"]), default=FAMILY.variant, show_default=True)
@click.option("--recipe-tokens/--no-recipe-tokens", default=FAMILY.recipe_tokens, show_default=True,
              help="The weight generator also attends to one token per family op the grammar reads in the text "
                   "(the default: chosen on the leave-out's 64 validation concepts).")
@click.option("--weightgen-minutes", type=float, default=FAMILY.weightgen_minutes, show_default=True)
@click.option("--hypernet-steps", type=click.IntRange(0), default=FAMILY.hypernet_steps, show_default=True,
              help="Steps of the Text-to-LoRA hypernetwork shipped with the weight generator (0: none).")
@click.option("--install", is_flag=True, help="Install the result as the package's shipped assets.")
@click.option("--dest", type=click.Path(file_okay=False, path_type=Path),
              help="With --install: install here instead of the package's factory/pretrained/.")
@processes_option("each stage runs data-parallel (the base and the weight generator split --batch, the "
                  "adapters' chunks are dealt out).")
@click.pass_obj
def family_cmd(session: Session, install: bool, dest: Path | None, processes: int, **options) -> None:
    """Run (or resume) the concept-family recipe in --workspace: a base on family concepts with text
    dropout, a weight dataset of batched family adapters, the weight generator on it.

    Hours on a CPU at the defaults; every stage resumes from its checkpoints when run again (with any
    number of processes).
    """
    from base_gan.distributed import parallel, relaunch

    relaunch(processes)  # --processes N: this command as N processes of one group (then exits)

    from factory.pipeline.pretrain_family import pretrain_family

    result = pretrain_family(session.workspace, FamilyPretrainOptions(seed=session.seed, **options), install=install,
                             dest=dest, log=click.echo)
    if parallel().main:
        _report("pretrain family", result, result["adapters"])


@pretrain.command("install")
@click.option("--base", "base", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A trained base folder (a diffusers model folder).")
@click.option("--weightgen", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A weight generator trained on adapters of that base.")
@click.option("--heldout", required=True, help="Comma-separated classic concepts neither model saw.")
@click.option("--recipe", required=True, help="The command that trained them (recorded in the manifest).")
@click.option("--dest", type=click.Path(file_okay=False, path_type=Path),
              help="Install here instead of the package's factory/pretrained/.")
def install_cmd(base: Path, weightgen: Path, heldout: str, recipe: str, dest: Path | None) -> None:
    """Install a base and weight generator as the shipped pretrained assets (weight generator in fp16)."""
    from factory.pipeline.assets import PRETRAINED_DIR, install

    m = install(base, weightgen, recipe, [c.strip() for c in heldout.split(",") if c.strip()], dest or PRETRAINED_DIR)
    click.echo(f"pretrain: installed {m['total_bytes'] / 1e6:.1f} MB -> {dest or PRETRAINED_DIR}")


def register(cli: click.Group) -> None:
    cli.add_command(pretrain)
