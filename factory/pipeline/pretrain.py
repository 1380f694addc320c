"""``factory pretrain train``: the recipe of the shipped pretrained base GAN and weight generator.

Resumable by stage, in a workspace of its own (``--workspace``):

1. concepts: the held-out classic concepts (given) and a seeded draw of ``train_concepts`` training
   concepts from the other classic cards; pairs for all of them (``pairs`` each at ``size`` px);
2. base: trained on the ``base_concepts`` most representative training concepts (k-means over their
   text embeddings) for ``base_minutes`` (``base/pretrain-base/``);
3. adapters: one zero-init LoRA per training concept on the frozen base, one layout for all
   (``layers`` at ``rank``), ``lora_seconds`` each (``loras/<concept>/``);
4. weight generator: the adapters collected into a weight dataset and the ``variant`` denoiser
   trained on it for ``weightgen_minutes`` (``weightgen/pretrain-weightgen/``);
5. with ``install``: both copied into the package's shipped assets (or ``dest``), the command in the
   manifest, so ``factory pretrain info`` prints how they were made.
"""

from __future__ import annotations

import random
import shlex
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from concepts.cards import builtin_cards, find_card
from factory.core.errors import FactoryError
from factory.core.workspace import Workspace
from factory.evaluation.protocol import concept_split

BASE_NAME = "pretrain-base"
WEIGHTGEN_NAME = "pretrain-weightgen"


def recipe_command(opts: Any, subcommand: str) -> str:
    """``factory --seed S pretrain SUBCOMMAND`` with every other field of the options dataclass ``opts`` spelled
    out as its option (booleans as ``--name`` / ``--no-name``)."""
    parts = ["factory", "--seed", str(opts.seed), "pretrain", subcommand]
    for f in fields(opts):
        if f.name == "seed":
            continue
        flag, value = f.name.replace("_", "-"), getattr(opts, f.name)
        if isinstance(value, bool):
            parts.append(f"--{flag}" if value else f"--no-{flag}")
        else:
            parts += [f"--{flag}", str(value)]
    return shlex.join(parts)


@dataclass
class PretrainOptions:
    """The recipe's settings; ``command()`` spells them as the ``factory pretrain train`` command."""

    heldout: str = "autumn,cyanotype,day-to-night,pastel,watercolor"
    train_concepts: int = 30
    pairs: int = 120
    size: int = 128
    ngf: int = 32
    base_concepts: int = 12
    base_minutes: float = 18.0
    batch: int = 8
    layers: str = "down1,down2,attn,xattn,ff,up1,up2"
    rank: int = 4
    lora_seconds: float = 40.0
    lora_steps: int = 2000
    variant: str = "joint"
    weightgen_minutes: float = 4.0
    joint_width: int = 128
    joint_depth: int = 4
    seed: int = 0

    def command(self) -> str:
        """The exact ``factory pretrain train`` command for these settings (defaults spelled out)."""
        return recipe_command(self, "train")

    def heldout_names(self) -> list[str]:
        return sorted(find_card(c).name for c in self.heldout.split(",") if c.strip())


def choose_concepts(opts: PretrainOptions) -> tuple[list[str], list[str]]:
    """(training concepts, held-out concepts): a seeded draw from the classic cards that are not held out."""
    heldout = opts.heldout_names()
    rest = sorted(c.name for c in builtin_cards() if c.teacher.kind == "classic" and c.name not in heldout)
    random.Random(opts.seed + 1).shuffle(rest)
    if opts.train_concepts > len(rest):
        raise FactoryError(
            f"--train-concepts {opts.train_concepts}: only {len(rest)} classic concepts are not held out"
        )
    train = sorted(rest[: opts.train_concepts])
    concept_split().refuse_in_training(train, f"factory pretrain train --seed {opts.seed}")
    return train, heldout


def train_base_stage(ws: Workspace, opts: PretrainOptions, train: list[str], log: Callable[[str], None]) -> Path:
    """The base on K representative training concepts (skipped when it is already saved)."""
    from base_gan.models import is_model_folder
    from factory.pipeline.steps import train_base
    from factory.text.encoder import TextEncoder

    out = ws.base(BASE_NAME)
    if is_model_folder(out):
        return out
    from base_gan.concept_selection import representative_concepts

    texts = [find_card(c).instruction for c in train]
    emb = TextEncoder.from_name("minilm", cache_dir=ws.text_cache).pooled(texts).numpy()
    chosen = representative_concepts(train, emb, min(opts.base_concepts, len(train)), seed=opts.seed)
    log(f"pretrain base: {', '.join(chosen)} for {opts.base_minutes} min")
    return train_base(
        chosen,
        workspace=ws,
        name=BASE_NAME,
        size=opts.size,
        ngf=opts.ngf,
        pairs=opts.pairs,
        seed=opts.seed,
        log=log,
        steps=10**9,
        seconds=opts.base_minutes * 60,
        batch=opts.batch,
        decay_from=1.0,
        checkpoint_every=500,
    )


def adapters_stage(ws: Workspace, opts: PretrainOptions, train: list[str], log: Callable[[str], None]) -> None:
    """One LoRA of the fixed layout per training concept (each skipped when finished)."""
    from factory.pipeline.steps import finetune

    for i, concept in enumerate(train):
        if (ws.lora(concept) / "metrics.json").is_file():
            continue
        log(f"pretrain adapter {i + 1}/{len(train)}: {concept}")
        finetune(
            concept,
            workspace=ws,
            base=ws.base(BASE_NAME),
            quiet=True,
            log=log,
            init="base",
            layers=opts.layers,
            rank=opts.rank,
            steps=opts.lora_steps,
            seconds=opts.lora_seconds,
            batch=opts.batch,
            eval_every=opts.lora_steps,
            checkpoint_every=200,
            seed=opts.seed,
        )


def weightgen_stage(ws: Workspace, opts: PretrainOptions, train: list[str], log: Callable[[str], None]) -> Path:
    """The weight dataset of the training adapters and the weight generator trained on it (resumes)."""
    from factory.core.training_loop import latest_checkpoint
    from factory.pipeline.steps import collect_weights, train_weightgen
    from weight_generator.train import is_weightgen

    out = ws.weightgen(WEIGHTGEN_NAME)
    if is_weightgen(out):
        return out
    collect_weights(workspace=ws, name=WEIGHTGEN_NAME, concepts=train)
    log(f"pretrain weight generator: {opts.variant} on {len(train)} adapters for {opts.weightgen_minutes} min")
    train_weightgen(
        workspace=ws,
        name=WEIGHTGEN_NAME,
        resume=latest_checkpoint(out) is not None,
        seed=opts.seed,
        log=log,
        variant=opts.variant,
        width=opts.joint_width,
        depth=opts.joint_depth,
        steps=10**9,
        seconds=opts.weightgen_minutes * 60,
        checkpoint_every=500,
    )
    return out


def pretrain(
    ws: Workspace,
    opts: PretrainOptions,
    install: bool = False,
    dest: Path | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run (or resume) the recipe; with ``install``, install the result as the shipped assets."""
    from factory.data.card_pairs import ensure_pairs

    train, heldout = choose_concepts(opts)
    log(f"pretrain: {len(train)} training concepts, held out {', '.join(heldout)}")
    ensure_pairs(ws, train + heldout, opts.pairs, opts.size, opts.seed, log)
    base = train_base_stage(ws, opts, train, log)
    adapters_stage(ws, opts, train, log)
    weightgen = weightgen_stage(ws, opts, train, log)
    result: dict[str, Any] = {
        "base": str(base),
        "weightgen": str(weightgen),
        "train": train,
        "heldout": heldout,
        "command": opts.command(),
    }
    if install:
        from factory.pipeline.assets import PRETRAINED_DIR
        from factory.pipeline.assets import install as install_assets

        result["manifest"] = install_assets(base, weightgen, opts.command(), heldout, dest or PRETRAINED_DIR)
    return result
