"""``factory weightgen collect|train|sample``: the weight generator (a concept's LoRA from its text)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import click

from factory.cli import Context, pass_ctx
from factory.errors import FactoryError


def _names(spec: str | None) -> list[str]:
    return [s.strip() for s in spec.split(",") if s.strip()] if spec else []


@click.group("weightgen")
def weightgen_group() -> None:
    """The weight generator: a diffusion model that generates a concept's LoRA from its text, block by block.

    \b
    collect  gather (instruction, adapter) pairs from <workspace>/loras/ into a weight dataset
    train    train the denoiser on it (DDPM), with checkpoints and --resume
    sample   write the adapter generated for a text as a peft adapter folder
    """


@weightgen_group.command("collect")
@click.option("--name", default="default", show_default=True, help="Written to <workspace>/weightgen/<name>/.")
@click.option("--concepts", "spec", help="Comma-separated concepts (default: every adapter under <workspace>/loras/).")
@click.option("--exclude", help="Comma-separated concepts to leave out (e.g. held-out concepts).")
@pass_ctx
def collect_cmd(ctx: Context, name: str, spec: str | None, exclude: str | None) -> None:
    """Gather the workspace's adapters (one layout) and their instructions into a weight dataset."""
    from weight_generator.dataset import collect_workspace

    ds = collect_workspace(ctx.workspace, _names(spec) or None, _names(exclude))
    out = ds.save(ctx.workspace.weightgen(name))
    click.echo(f"weightgen collect: {len(ds)} adapters ({', '.join(ds.concepts)}), {ds.layout.numel} values each, "
               f"{len(ds.layout.keys)} tensors -> {out}")


@weightgen_group.command("train")
@click.option("--name", default="default", show_default=True, help="The weight dataset/model in <workspace>/weightgen/<name>/.")
@click.option("--variant", type=click.Choice(["joint", "block"]), default="joint", show_default=True,
              help="joint: all blocks of an adapter denoised together with attention across blocks; block: each "
                   "block on its own (1-D U-Net with the block index as a condition).")
@click.option("--epochs", type=click.IntRange(1), help="Passes over the data (block: every block; joint: every adapter). "
              "Default: --steps.")
@click.option("--steps", type=click.IntRange(1), default=2000, show_default=True, help="Total steps when --epochs is not given.")
@click.option("--seconds", type=float, help="Wall-clock budget; stops at whichever comes first.")
@click.option("--block-size", type=click.IntRange(4), default=256, show_default=True)
@click.option("--stats", type=click.Choice(["element", "tensor"]), default="element", show_default=True,
              help="Normalization: per-tensor scale with a per-element mean (element) or a per-tensor mean (tensor).")
@click.option("--prediction", type=click.Choice(["sample", "epsilon", "v_prediction"]), default="sample",
              show_default=True, help="What the denoiser predicts: x0 (sample), the noise, or v.")
@click.option("--batch", type=click.IntRange(1), help="Blocks per step (block, default 64) or adapters per step (joint, default 4).")
@click.option("--lr", type=float, default=3e-4, show_default=True)
@click.option("--ema", type=float, help="Keep an EMA of the denoiser with this decay (e.g. 0.999) and save it.")
@click.option("--checkpoint-every", type=click.IntRange(1), default=200, show_default=True)
@click.option("--resume", is_flag=True, help="Continue from the newest checkpoint (same options; a longer budget is fine).")
@click.option("--restart", is_flag=True, help="Discard existing checkpoints and start over.")
@pass_ctx
def train_cmd(ctx: Context, name: str, variant: str, epochs: int | None, steps: int, seconds: float | None,
              block_size: int, stats: str, prediction: str, batch: int | None, lr: float, ema: float | None,
              checkpoint_every: int, resume: bool, restart: bool) -> None:
    """Train the weight generator on <workspace>/weightgen/<name>/'s dataset (DDPM, diffusers' scheduler)."""
    from tqdm import tqdm

    from weight_generator.dataset import WeightDataset
    from weight_generator.train import CHECKPOINTS, WeightGenSettings, WeightGenTrainer, latest_checkpoint

    if resume and restart:
        raise FactoryError("--resume and --restart exclude each other")
    out = ctx.workspace.weightgen(name)
    dataset = WeightDataset.load(out)
    try:
        settings = WeightGenSettings(variant=variant, block_size=block_size, stats=stats, prediction_type=prediction,
                                     steps=steps, seconds=seconds, batch=batch, lr=lr, ema=ema,
                                     checkpoint_every=checkpoint_every, seed=ctx.seed)
        trainer = WeightGenTrainer(out, dataset, settings, text_cache=ctx.workspace.text_cache)
    except ValueError as exc:
        raise FactoryError(f"weightgen train: {exc}") from None
    if epochs:
        settings.steps = epochs * trainer.steps_per_epoch
    if restart:
        shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
    ckpt = latest_checkpoint(out)
    if ckpt is not None and not resume:
        raise FactoryError(f"{out} has checkpoints (newest {ckpt.name}); pass --resume to continue "
                           "or --restart to start over")
    if resume and trainer.resume():
        click.echo(f"resuming {out} from step {trainer.state.step}")
    started = time.perf_counter()
    with tqdm(total=settings.steps, initial=trainer.state.step, desc=f"weightgen {name}", unit="step") as bar:
        def show(log: dict) -> None:
            bar.update(1)
            bar.set_postfix(loss=f"{log['loss']:.4f}")

        state = trainer.train(progress=show)
    trainer.save_final()
    click.echo(f"weightgen train: {variant} denoiser on {len(dataset)} adapters x {trainer.tokenizer.n_blocks} blocks "
               f"of {block_size}, step {state.step} ({state.step / trainer.steps_per_epoch:.1f} epochs), "
               f"{time.perf_counter() - started:.0f} s this run, loss {state.history[-1]['loss'] if state.history else float('nan'):.4f} -> {out}")


@weightgen_group.command("sample")
@click.argument("text")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Folder for the peft adapter.")
@click.option("--name", default=None, help="Weight generator in <workspace>/weightgen/<name>/ (default: 'default' "
              "or the only one).")
@click.option("--steps", type=click.IntRange(1), default=1, show_default=True,
              help="DDIM steps (1 = one-step x0 prediction, the estimate of the adapter given the text; "
                   "more steps draw a sample with more detail and cost).")
@click.option("--seed", "seed", type=int, help="Noise seed (default: the global --seed).")
@pass_ctx
def sample_cmd(ctx: Context, text: str, out_dir: str, name: str | None, steps: int, seed: int | None) -> None:
    """Generate the adapter for TEXT and write it to --out (adapter_config.json + adapter_model.safetensors)."""
    import torch

    from weight_generator.baselines import distance_table
    from weight_generator.dataset import WeightDataset
    from weight_generator.sample import WeightGenerator, find_weightgen
    from weight_generator.tokenize import flatten, read_adapter

    folder = find_weightgen(ctx.workspace, name)
    gen = WeightGenerator.load(folder, text_cache=ctx.workspace.text_cache)
    started = time.perf_counter()
    out = gen.sample_to_folder(text, Path(out_dir), steps=steps, seed=ctx.seed if seed is None else seed)
    seconds = time.perf_counter() - started
    note = ""
    try:
        ds = WeightDataset.load(folder)
        tensors, _ = read_adapter(out)
        vec = flatten(tensors, ds.layout).to(torch.float32)
        table = distance_table({"generated": vec}, ds, gen.tokenizer.scale_vector())
        row = table["rows"][0]
        note = (f"; nearest training adapter {row['nearest_training']} at {row['distance_to_nearest']:.3f} "
                f"(typical between training adapters {table['typical']['train_nearest_median']:.3f})")
    except FactoryError:
        pass
    click.echo(f"weightgen sample: '{text}' in {steps} step(s), {seconds:.2f} s{note} -> {out}")


def register(cli: click.Group) -> None:
    cli.add_command(weightgen_group)
