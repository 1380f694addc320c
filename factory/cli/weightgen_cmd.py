"""``factory weightgen collect|family|train|sample``: the weight generator (a concept's LoRA from its text)."""

from __future__ import annotations

import click

from factory.cli.parallel_options import processes_option
from factory.pipeline.session import Session


def _names(spec: str | None) -> list[str]:
    return [s.strip() for s in spec.split(",") if s.strip()] if spec else []


@click.group("weightgen")
def weightgen_group() -> None:
    """The weight generator: a diffusion model that generates a concept's LoRA from its text, block by block.

    \b
    collect  gather (instruction, adapter) pairs from <workspace>/loras/ into a weight dataset
    family   train N concept-family adapters in batches (one frozen lora_A) into a weight dataset
    train    train the denoiser on it (DDPM), with checkpoints and --resume
    sample   write the adapter generated for a text as a peft adapter folder
    """


@weightgen_group.command("collect")
@click.option("--name", default="default", show_default=True, help="Written to <workspace>/weightgen/<name>/.")
@click.option("--concepts", "spec", help="Comma-separated concepts (default: every adapter under <workspace>/loras/).")
@click.option("--exclude", help="Comma-separated concepts to leave out (e.g. held-out concepts).")
@click.pass_obj
def collect_cmd(session: Session, name: str, spec: str | None, exclude: str | None) -> None:
    """Gather the workspace's adapters (one layout) and their instructions into a weight dataset."""
    from factory.pipeline.steps import collect_weights

    ds = collect_weights(workspace=session.workspace, name=name, concepts=_names(spec), exclude=_names(exclude))
    click.echo(f"weightgen collect: {len(ds)} adapters ({', '.join(ds.concepts)}), {ds.layout.numel} values each, "
               f"{len(ds.layout.keys)} tensors -> {session.workspace.weightgen(name)}")


@weightgen_group.command("family")
@click.argument("n", type=click.IntRange(2))
@click.option("--name", default="family", show_default=True, help="Written to <workspace>/weightgen/<name>/.")
@click.option("--base", default="default", show_default=True, help="The frozen base the adapters are trained on.")
@click.option("--layers", default="down1,up2,head", show_default=True, help="Adapted layer groups.")
@click.option("--rank", type=click.IntRange(1), default=4, show_default=True)
@click.option("--lora-bias/--no-lora-bias", default=True, show_default=True)
@click.option("--steps", type=click.IntRange(1), default=300, show_default=True, help="Training steps per adapter.")
@click.option("--per-concept", type=click.IntRange(1), default=4, show_default=True, help="Pairs per concept per step.")
@click.option("--lr", type=float, default=3e-3, show_default=True)
@click.option("--chunk", type=click.IntRange(1), default=32, show_default=True, help="Concepts trained in one batch.")
@click.option("--pairs", type=click.IntRange(4), default=64, show_default=True, help="Teacher pairs per concept.")
@processes_option("the chunks are dealt out round-robin (the same adapters as one process).")
@click.pass_obj
def family_cmd(session: Session, n: int, processes: int, **options) -> None:
    """Train N concept-family adapters (one shared frozen lora_A, trained in batches) into a weight dataset.

    Samples N concepts of the concept family's training region, writes their cards and pairs to the
    workspace, trains each adapter on the frozen base and collects them; a rerun continues, with any
    number of processes.
    """
    from base_gan.distributed import parallel, relaunch

    relaunch(processes)  # --processes N: this command as N processes of one group (then exits)

    from factory.pipeline.steps import family_weights

    ds = family_weights(n, workspace=session.workspace, seed=session.seed, log=click.echo, **options)
    if parallel().main:
        click.echo(f"weightgen family: {len(ds)} adapters, {ds.layout.numel} values each -> "
                   f"{session.workspace.weightgen(options['name'])}")


@weightgen_group.command("train")
@click.option(
    "--name", default="default", show_default=True, help="The weight dataset/model in <workspace>/weightgen/<name>/."
)
@click.option(
    "--variant",
    type=click.Choice(["joint", "block"]),
    default="joint",
    show_default=True,
    help="joint: all blocks of an adapter denoised together with attention across blocks; block: each "
    "block on its own (1-D U-Net with the block index as a condition).",
)
@click.option(
    "--epochs",
    type=click.IntRange(1),
    help="Passes over the data (block: every block; joint: every adapter). Default: --steps.",
)
@click.option(
    "--steps", type=click.IntRange(1), default=2000, show_default=True, help="Total steps when --epochs is not given."
)
@click.option("--seconds", type=float, help="Wall-clock budget; stops at whichever comes first.")
@click.option("--block-size", type=click.IntRange(4), default=256, show_default=True)
@click.option(
    "--stats",
    type=click.Choice(["element", "tensor"]),
    default="element",
    show_default=True,
    help="Normalization: per-tensor scale with a per-element mean (element) or a per-tensor mean (tensor).",
)
@click.option(
    "--prediction",
    type=click.Choice(["sample", "epsilon", "v_prediction"]),
    default="sample",
    show_default=True,
    help="What the denoiser predicts: x0 (sample), the noise, or v.",
)
@click.option(
    "--batch",
    type=click.IntRange(1),
    help="Blocks per step (block, default 64) or adapters per step (joint, default 4).",
)
@click.option("--lr", type=float, default=3e-4, show_default=True)
@click.option(
    "--recipe-tokens",
    is_flag=True,
    help="Also attend to one token per family op the concept grammar reads in the text (its op and level); "
    "texts outside the grammar get none.",
)
@click.option("--ema", type=float, help="Keep an EMA of the denoiser with this decay (e.g. 0.999) and save it.")
@click.option("--checkpoint-every", type=click.IntRange(1), default=200, show_default=True)
@click.option(
    "--resume", is_flag=True, help="Continue from the newest checkpoint (same options; a longer budget is fine)."
)
@click.option("--restart", is_flag=True, help="Discard existing checkpoints and start over.")
@processes_option("--batch is the global batch, split over them (checkpoints resume with any number).")
@click.pass_obj
def train_cmd(
    session: Session, name: str, epochs: int | None, prediction: str, resume: bool, restart: bool, processes: int,
    **settings
) -> None:
    """Train the weight generator on <workspace>/weightgen/<name>/'s dataset (DDPM, diffusers' scheduler)."""
    import time

    from base_gan.distributed import parallel, relaunch

    relaunch(processes)  # --processes N: this command as N processes of one group (then exits)

    from factory.pipeline.steps import train_weightgen

    started = time.perf_counter()
    t = train_weightgen(
        workspace=session.workspace,
        name=name,
        epochs=epochs,
        resume=resume,
        restart=restart,
        seed=session.seed,
        log=click.echo,
        prediction_type=prediction,
        **settings,
    )
    if not parallel().main:  # under a launcher every process gets here; one summary
        return
    loss = t.state.history[-1]["loss"] if t.state.history else float("nan")
    click.echo(
        f"weightgen train: {t.s.variant} denoiser on {len(t.dataset)} adapters x {t.tokenizer.n_blocks} "
        f"blocks of {t.s.block_size}, step {t.state.step} ({t.state.step / t.steps_per_epoch:.1f} epochs), "
        f"{time.perf_counter() - started:.0f} s this run, loss {loss:.4f} -> {t.out_dir}"
    )


@weightgen_group.command("sample")
@click.argument("text")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Folder for the peft adapter.")
@click.option(
    "--name",
    default=None,
    help="Weight generator in <workspace>/weightgen/<name>/ (default: 'default' or the only one).",
)
@click.option(
    "--steps",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="DDIM steps (1 = one-step x0 prediction, the estimate of the adapter given the text; "
    "more steps draw a sample with more detail and cost).",
)
@click.option("--seed", "seed", type=int, help="Noise seed (default: the global --seed).")
@click.pass_obj
def sample_cmd(session: Session, text: str, out_dir: str, name: str | None, steps: int, seed: int | None) -> None:
    """Generate the adapter for TEXT and write it to --out (adapter_config.json + adapter_model.safetensors)."""
    import time

    from factory.pipeline.assets import find_weightgen
    from factory.pipeline.steps import generate_adapter, sample_note

    started = time.perf_counter()
    out = generate_adapter(
        text, out_dir, workspace=session.workspace, name=name, steps=steps, seed=session.seed if seed is None else seed
    )
    seconds = time.perf_counter() - started
    note = sample_note(find_weightgen(session.workspace, name), out)
    click.echo(f"weightgen sample: '{text}' in {steps} step(s), {seconds:.2f} s{'; ' + note if note else ''} -> {out}")


def register(cli: click.Group) -> None:
    cli.add_command(weightgen_group)
