"""``factory base train``: train the shared base GAN on many concepts (or the pix2pix baseline on one)."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict

import click

from factory.cli import Context, pass_ctx
from factory.errors import FactoryError

#: settings a resumed run may change (a longer budget); any other difference is refused
RESUMABLE_CHANGES = {"steps", "seconds", "checkpoint_every", "keep_checkpoints"}


def resolve_concepts(spec: str, ctx: Context) -> list[str]:
    """``A,B,C`` or ``auto:K`` (K representative classic concepts by k-means on their text embeddings)."""
    from factory.concepts import find_card, list_cards

    if spec.startswith("auto:"):
        from base_gan.concept_selection import representative_concepts
        from factory.text_encoder import TextEncoder

        try:
            k = int(spec.split(":", 1)[1])
        except ValueError:
            raise FactoryError(f"--concepts {spec}: expected auto:K with K a whole number") from None
        pool = [c for c in list_cards(ctx.workspace) if c.teacher.kind == "classic"]
        emb = TextEncoder.from_name("minilm", cache_dir=ctx.workspace.text_cache).pooled(
            [c.instruction for c in pool])
        return representative_concepts([c.name for c in pool], emb.numpy(), k, seed=ctx.seed)
    names = [s.strip() for s in spec.split(",") if s.strip()]
    return [find_card(n, ctx.workspace).name for n in names]


def ensure_data(ctx: Context, concepts: list[str], pairs: int, size: int) -> None:
    """Synthesize pairs (with each card's own teacher) for concepts that have none yet."""
    from factory.concepts import find_card
    from factory.pair_store import read_manifest
    from factory.photos import default_photos
    from factory.synth import synthesize
    from factory.teachers import make_teacher

    missing = [c for c in concepts if not read_manifest(ctx.workspace.data(c))]
    photos = default_photos() if missing else None
    for name in missing:
        card = find_card(name, ctx.workspace)
        click.echo(f"no pairs for {name} yet: synthesizing {pairs} at {size} px with its {card.teacher.kind} teacher")
        teacher = make_teacher(card.teacher.kind, card.teacher.params, source=str(card.path or name))
        synthesize(ctx.workspace.data(name), name, card.instruction, teacher, photos, pairs, size, ctx.seed)


def register(cli: click.Group) -> None:
    base = cli.commands["base"]

    @base.command("train")
    @click.option("--concepts", "spec", required=True,
                  help="Comma-separated concept names, or auto:K for K representative classic concepts (k-means).")
    @click.option("--name", default="default", show_default=True, help="Saved as <workspace>/base/<name>/.")
    @click.option("--arch", type=click.Choice(["e2gan", "pix2pix"]), default="e2gan", show_default=True,
                  help="e2gan: the text-conditioned base; pix2pix: the ResNet-9 baseline on one concept.")
    @click.option("--size", type=int, default=128, show_default=True, help="Training resolution (pairs are made at it when missing).")
    @click.option("--steps", type=click.IntRange(1), default=2000, show_default=True)
    @click.option("--seconds", type=float, help="Wall-clock budget; stops at whichever of --steps/--seconds comes first.")
    @click.option("--batch", type=click.IntRange(1), default=8, show_default=True)
    @click.option("--ngf", type=int, help="Generator width (default: the architecture's own).")
    @click.option("--lr", type=float, default=2e-4, show_default=True)
    @click.option("--l1-weight", type=float, default=100.0, show_default=True)
    @click.option("--gan-loss", type=click.Choice(["lsgan", "hinge"]), default="lsgan", show_default=True)
    @click.option("--lpips-weight", type=float, default=0.0, show_default=True,
                  help="LPIPS loss weight; needs the LPIPS backbone weights in the torch cache.")
    @click.option("--fm-weight", type=float, default=0.0, show_default=True, help="Discriminator feature matching.")
    @click.option("--ema", type=float, help="Keep an EMA of the generator with this decay (e.g. 0.999) and save it.")
    @click.option("--pairs", type=click.IntRange(2), default=200, show_default=True,
                  help="Pairs to synthesize for a concept that has none yet.")
    @click.option("--checkpoint-every", type=click.IntRange(1), default=200, show_default=True)
    @click.option("--restart", is_flag=True, help="Discard existing checkpoints instead of resuming from them.")
    @pass_ctx
    def train(ctx: Context, spec: str, name: str, arch: str, size: int, steps: int, seconds: float | None, batch: int,
              ngf: int | None, lr: float, l1_weight: float, gan_loss: str, lpips_weight: float, fm_weight: float,
              ema: float | None, pairs: int, checkpoint_every: int, restart: bool) -> None:
        """Train a base GAN on many concepts at once; each sample carries its own concept text.

        Resumes from the last checkpoint of <workspace>/base/<name>/ unless --restart.
        """
        from tqdm import tqdm

        from base_gan.train import CHECKPOINTS, Trainer, TrainSettings, latest_checkpoint

        concepts = resolve_concepts(spec, ctx)
        if arch == "pix2pix" and len(concepts) != 1:
            raise FactoryError("--arch pix2pix trains the baseline on exactly one concept")
        if size % 16:
            raise FactoryError(f"--size {size} is not a multiple of 16 (the generator's stride)")
        ensure_data(ctx, concepts, pairs, size)
        gen = {"arch": arch, "image_size": size, **({"ngf": ngf} if ngf else {})}
        settings = TrainSettings(generator=gen, disc_nf=64 if arch == "pix2pix" else 32, steps=steps, seconds=seconds,
                                 batch=batch, lr=lr, l1_weight=l1_weight, gan_loss=gan_loss, lpips_weight=lpips_weight,
                                 fm_weight=fm_weight, ema=ema, checkpoint_every=checkpoint_every, seed=ctx.seed)
        out = ctx.workspace.base(name)
        if restart:
            shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
        ckpt = latest_checkpoint(out)
        if ckpt is not None:
            old = json.loads((ckpt / "state.json").read_text())["settings"]
            changed = sorted(k for k, v in asdict(settings).items() if old.get(k) != v and k not in RESUMABLE_CHANGES)
            if changed:
                raise FactoryError(f"{out}: its checkpoints were trained with different {', '.join(changed)}; "
                                   "pass the same options to resume, --restart to start over, or another --name")
        trainer = Trainer(out, [ctx.workspace.data(c) for c in concepts], settings,
                          text_cache=ctx.workspace.text_cache)
        if trainer.resume():
            click.echo(f"resuming {out} from step {trainer.state.step}")
        started = time.perf_counter()
        with tqdm(total=steps, initial=trainer.state.step, desc=f"train {name}", unit="step") as bar:
            def show(log: dict) -> None:
                bar.update(1)
                bar.set_postfix(l1=f"{log['l1']:.3f}", g=f"{log['loss_g']:.2f}", d=f"{log['loss_d']:.3f}")

            state = trainer.train(progress=show)
        trainer.save_final({"concepts": concepts, "instructions": trainer.data.instructions,
                            "text_encoder": settings.text_encoder})
        click.echo(f"base train: {arch} on {len(concepts)} concept(s) ({', '.join(concepts)}), step {state.step}, "
                   f"{time.perf_counter() - started:.0f} s this run -> {out}")
