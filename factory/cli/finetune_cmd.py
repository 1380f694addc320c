"""``factory finetune``: a concept's LoRA on the frozen base (or full training from scratch, for comparison)."""

from __future__ import annotations

from pathlib import Path

import click

from factory.cli.training_options import training_options
from factory.core.errors import FactoryError
from factory.pipeline.session import Session


def parse_rank(value: str | None) -> str | int | None:
    if value is None or value == "auto":
        return value
    try:
        r = int(value)
    except ValueError:
        raise FactoryError(f"--rank {value}: expected auto or a whole number >= 1") from None
    if r < 1:
        raise FactoryError(f"--rank {value}: expected auto or a whole number >= 1")
    return r


def parse_candidates(value: str) -> tuple[int, ...]:
    try:
        out = tuple(sorted({int(v) for v in value.split(",") if v.strip()}))
    except ValueError:
        raise FactoryError(f"--rank-candidates {value}: expected whole numbers like 1,2,4,8,16") from None
    if not out or out[0] < 1:
        raise FactoryError(f"--rank-candidates {value}: expected whole numbers >= 1")
    return out


@click.command("finetune")
@click.argument("concept")
@click.option("--base", "base", default="default", show_default=True,
              help="Base name in <workspace>/base/, or its folder; 'default' falls back to the shipped "
                   "pretrained base when the workspace has none.")
@click.option("--init", "init", default="base", show_default=True,
              help="base (zero-init LoRA on the base), scratch (full training from random weights, for "
                   "comparison), full (every weight of the base fine-tuned, no LoRA), weightgen (LoRA predicted "
                   "from the concept text), a baseline over the weight generator's training adapters (mean, "
                   "ridge from the text embedding, retrieval of the nearest text, recipe: ridge from the "
                   "family ops, levels and pairs of ops the text names and its embedding), recipe+weightgen (the mean "
                   "of the recipe adapter and the weight generator's), or an adapter folder.")
@click.option("--tune", type=click.Choice(["lora", "all"]), default="lora", show_default=True,
              help="After an adapter start: lora trains the adapter on the frozen base; all merges it into the "
                   "base and trains every weight (lr 1e-3; a whole generator per concept, saved in .../tuned/).")
@training_options
@click.option("--layers", default=None,
              help="auto (layer probe) or comma-separated groups: stem,down1,res,down2,attn,xattn,ff,up1,up2,head. "
                   "Default: auto for --init base, the adapter's own otherwise.")
@click.option("--rank", default=None, help="auto (rank search) or N. Default: auto for --init base.")
@click.option("--lora-bias/--no-lora-bias", default=None,
              help="Train a bias on every LoRA B (peft lora_bias; merges into the base biases). "
                   "Default: on for a new LoRA, the adapter's own for an adapter init.")
@click.option("--pairs", type=click.IntRange(1), help="Train on K pairs picked by --select (default: all).")
@click.option("--select", type=click.Choice(["cluster", "random"]), default="cluster", show_default=True,
              help="cluster: nearest to k-means centres of the base encoder's features; random: uniform.")
@click.option("--steps", type=click.IntRange(1), default=1000, show_default=True)
@click.option("--seconds", type=float,
              help="Wall-clock training budget; stops at whichever of --steps/--seconds first.")
@click.option("--batch", type=click.IntRange(1), default=8, show_default=True)
@click.option("--lr", type=float,
              help="Learning rate (default 3e-3 for LoRA, 1e-3 for --init scratch, 3e-4 for --init full, 1e-3 "
                   "for --tune all).")
@click.option("--eval-every", type=click.IntRange(1), default=50, show_default=True,
              help="Steps between held-out PSNR points of the curve.")
@click.option("--eval-seconds", type=click.FloatRange(0, min_open=True),
              help="Instead: a held-out point every this many training seconds (one cadence for runs that differ "
                   "in step cost).")
@click.option("--checkpoint-every", type=click.IntRange(1), default=200, show_default=True)
@click.option("--search-steps", type=click.IntRange(1), default=100, show_default=True,
              help="Steps of each layer-probe / rank-search run.")
@click.option("--rank-candidates", default="1,2,4,8,16", show_default=True)
@click.option("--rank-tolerance", type=float, default=0.2, show_default=True,
              help="Keep the smallest rank within this many dB of the best (validation PSNR).")
@click.option("--max-fraction", type=click.FloatRange(0, 1, min_open=True),
              help="--rank auto: skip ranks whose adapter exceeds this share of the generator's parameters "
                   "(e.g. 0.02).")
@click.option("--rank-mode", type=click.Choice(["global", "group"]), default="global", show_default=True,
              help="One rank for all groups, or refine each group's rank (peft rank_pattern).")
@click.option("--probe-table", type=click.Path(dir_okay=False),
              help="probe.json for --layers auto (default: <workspace>/loras/_probe/<base>/probe.json if present).")
@click.option("--synth-pairs", type=click.IntRange(4), default=200, show_default=True,
              help="Pairs to synthesize when the concept has no data yet.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Output folder (default <workspace>/loras/<concept>/, or .../scratch/, .../full/ or "
                   ".../tuned/ for --init scratch, --init full or --tune all).")
@click.option("--restart", is_flag=True, help="Discard checkpoints of an earlier run instead of resuming.")
@click.pass_obj
def finetune_cmd(session: Session, concept: str, base: str, rank: str | None, rank_candidates: str,
                 synth_pairs: int, out: Path | None, restart: bool, **options) -> None:
    """Fine-tune CONCEPT on the frozen base with a peft LoRA (saved in peft's format).

    \b
    Writes <workspace>/loras/<concept>/: adapter_config.json + adapter_model.safetensors,
    metrics.json (layers and why, rank-search table, pairs used, test figures), curve.csv and
    curve.png (held-out PSNR vs training seconds), samples.png, and output_curves.json when the
    output curves are kept (--output-curves). Resumes an interrupted run.
    For one adapter layout across concepts (the weight generator needs it) pass
    --layers GROUPS --rank N.
    """
    from factory.pipeline.steps import finetune

    m = finetune(concept, workspace=session.workspace, base=base, out_dir=out, restart=restart,
                 synth_pairs=synth_pairs, log=click.echo, rank=parse_rank(rank),
                 rank_candidates=parse_candidates(rank_candidates), seed=session.seed, **options)
    t, tr = m["test"], m["training"]
    what = ({"scratch": "full training from scratch", "full": "every weight of the base fine-tuned"}.get(m["init"])
            or ("every weight, from the base with its start adapter merged" if "layout" not in m else None)
            or f"LoRA {_layout(m)} ({m['adapter_params']} params, {100 * m['adapter_fraction']:.2f}% of the generator)")
    click.echo(f"finetune {m['concept']}: {what} on {len(m['pairs']['train'])} pairs, {tr['steps']} steps in "
               f"{tr['seconds']:.0f} s (+{m['search_seconds']:.0f} s search): "
               f"test PSNR {t['student']['psnr']:.2f} dB "
               + (f"({t['uncalibrated']['psnr']:.2f} before its output curves) " if "uncalibrated" in t else "")
               + f"(base zero-shot {t['base_zero_shot']['psnr']:.2f}, identity {t['identity']['psnr']:.2f}) "
               f"-> {m['out_dir']}")


def register(cli: click.Group) -> None:
    cli.add_command(finetune_cmd)


def _layout(m: dict) -> str:
    from factory.lora.adapters import LoraLayout

    return LoraLayout(**m["layout"]).describe()
