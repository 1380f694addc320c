"""``factory lora ...``: the layer probe (which groups a concept LoRA should adapt) and adapter info."""

from __future__ import annotations

from pathlib import Path

import click

from factory.pipeline.session import Session


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
@click.pass_obj
def probe_cmd(session: Session, concepts: tuple[str, ...], out: Path | None, **options) -> None:
    """Score each layer group by the held-out gain of adapting it alone, over CONCEPTS.

    Writes probe.json and probe.md (ranked table, combined-gain prefixes, the chosen set and
    E2GAN's set for comparison).
    """
    from factory.pipeline.steps import probe_layers

    result, json_path, md_path = probe_layers(concepts, workspace=session.workspace, out=out, seed=session.seed,
                                              log=click.echo, **options)
    top = ", ".join(f"{r['group']} {r['mean_gain_db']:+.2f}" for r in result["ranking"][:4])
    click.echo(f"lora probe on {len(result['concepts'])} concept(s), {len(result['runs'])} runs in "
               f"{result['seconds']:.0f} s: top {top} dB; chosen {','.join(result['chosen'])} -> {json_path} "
               f"and {md_path.name}")


@lora_group.command("info")
@click.argument("adapter", type=click.Path(file_okay=False, exists=True, path_type=Path))
def info_cmd(adapter: Path) -> None:
    """Layout of a saved adapter: adapted modules, ranks and parameter count."""
    from factory.lora.adapters import adapter_module_ranks, adapter_param_count, layout_of_adapter

    ranks = adapter_module_ranks(adapter)
    for module, r in ranks.items():
        click.echo(f"{module:16s} rank {r}")
    click.echo(f"{adapter}: {layout_of_adapter(adapter).describe()}; {len(ranks)} modules, "
               f"{adapter_param_count(adapter)} parameters")


def register(cli: click.Group) -> None:
    cli.add_command(lora_group)
