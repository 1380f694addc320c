"""``factory lora ...``: the layer probe (which groups a concept LoRA should adapt) and adapter info."""

from __future__ import annotations

from pathlib import Path

import click

from factory.cli import Context, pass_ctx


@click.group("lora")
def lora_group() -> None:
    """Per-concept LoRA adapters on the base GAN: layer probe and adapter inspection."""


@lora_group.command("probe")
@click.argument("concepts", nargs=-1, required=True)
@click.option("--base", "base", required=True, help="Base name in <workspace>/base/, or its folder.")
@click.option("--steps", type=click.IntRange(1), default=100, show_default=True, help="Steps of each probe run.")
@click.option("--rank", type=click.IntRange(1), default=4, show_default=True, help="LoRA rank of every probe run.")
@click.option("--fraction", type=click.FloatRange(0, 1, min_open=True), default=0.9, show_default=True,
              help="--layers auto keeps the smallest ranked prefix reaching this share of the all-groups gain.")
@click.option("--groups", help="Groups to probe (default: all).")
@click.option("--lora-bias/--no-lora-bias", default=True, show_default=True, help="peft lora_bias in every probe run.")
@click.option("--batch", type=click.IntRange(1), default=8, show_default=True)
@click.option("--lr", type=float, default=3e-3, show_default=True)
@click.option("--synth-pairs", type=click.IntRange(4), default=200, show_default=True,
              help="Pairs to synthesize for a concept that has none yet.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Default <workspace>/loras/_probe/<base>/ (where `finetune --layers auto` looks).")
@pass_ctx
def probe_cmd(ctx: Context, concepts: tuple[str, ...], base: str, steps: int, rank: int, fraction: float,
              groups: str | None, lora_bias: bool, batch: int, lr: float, synth_pairs: int, out: Path | None) -> None:
    """Score each layer group by the held-out gain of adapting it alone, over CONCEPTS.

    Writes probe.json and probe.md (ranked table, combined-gain prefixes, the chosen set and
    E2GAN's set for comparison).
    """
    from base_gan.finetune import FinetuneOptions, load_base, probe_path, settings_for
    from base_gan.layer_probe import probe_layers, write_probe
    from factory.cli.base_train_cmd import ensure_data
    from factory.cli.finetune_cmd import base_size, resolve_base
    from factory.concepts import find_card

    base_dir = resolve_base(ctx, base)
    names = [find_card(c, ctx.workspace).name for c in concepts]
    ensure_data(ctx, names, synth_pairs, base_size(base_dir))
    _, meta = load_base(base_dir)
    settings = settings_for(meta, FinetuneOptions(batch=batch, lr=lr, seed=ctx.seed), steps, None)
    result = probe_layers(base_dir, [ctx.workspace.data(n) for n in names], settings, ctx.workspace.text_cache,
                          rank=rank, fraction=fraction, groups=groups.split(",") if groups else None, seed=ctx.seed,
                          bias=lora_bias)
    out = out or probe_path(ctx.workspace, base_dir).parent
    json_path, md_path = write_probe(result, out)
    top = ", ".join(f"{r['group']} {r['mean_gain_db']:+.2f}" for r in result["ranking"][:4])
    click.echo(f"lora probe on {len(names)} concept(s), {len(result['runs'])} runs in {result['seconds']:.0f} s: "
               f"top {top} dB; chosen {','.join(result['chosen'])} -> {json_path} and {md_path.name}")


@lora_group.command("info")
@click.argument("adapter", type=click.Path(file_okay=False, exists=True, path_type=Path))
def info_cmd(adapter: Path) -> None:
    """Layout of a saved adapter: adapted modules, ranks and parameter count."""
    from safetensors import safe_open

    from base_gan.lora import ADAPTER_WEIGHTS, adapter_module_ranks, layout_of_adapter

    ranks = adapter_module_ranks(adapter)
    with safe_open(str(adapter / ADAPTER_WEIGHTS), framework="pt") as f:
        n = sum(_prod(f.get_slice(k).get_shape()) for k in f.keys())
    for module, r in ranks.items():
        click.echo(f"{module:16s} rank {r}")
    click.echo(f"{adapter}: {layout_of_adapter(adapter).describe()}; {len(ranks)} modules, {n} parameters")


def _prod(shape) -> int:
    out = 1
    for s in shape:
        out *= int(s)
    return out


def register(cli: click.Group) -> None:
    cli.add_command(lora_group)
