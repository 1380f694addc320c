"""``factory synth``: a teacher makes paired data for one or more concepts."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from factory.cli import Context, pass_ctx

DIFFUSION_OPTIONS = ("model", "steps", "guidance_scale", "image_guidance_scale", "strength", "batch_size")


def _print_skipped(skipped: list[tuple[str, str]]) -> None:
    if skipped:
        click.echo(f"skipped {len(skipped)} unreadable file(s):", err=True)
        for path, reason in skipped:
            click.echo(f"  {path}: {reason}", err=True)


def register(cli: click.Group) -> None:
    @cli.command()
    @click.argument("concepts", nargs=-1, required=True)
    @click.option("-n", "--num", "n", type=click.IntRange(1), default=200, show_default=True,
                  help="Pairs per concept (train and test together).")
    @click.option("--size", type=click.IntRange(16), default=256, show_default=True, help="Side of the square pairs in pixels.")
    @click.option("--images", type=click.Path(exists=True, file_okay=False, path_type=Path),
                  help="Folder of source photos (recursive). For --teacher pairs: the folder of pairs. "
                       "Default: scikit-image's bundled photos with a fixed train/test split.")
    @click.option("--teacher", type=click.Choice(["classic", "instruct-pix2pix", "sdedit", "pairs"]),
                  help="Override the card's teacher.")
    @click.option("--model", help="Diffusers model: a Hub id or a local pipeline folder.")
    @click.option("--steps", type=click.IntRange(1), help="Diffusion steps.")
    @click.option("--guidance-scale", type=float, help="Text guidance (SD-Turbo: 0).")
    @click.option("--image-guidance-scale", type=float, help="InstructPix2Pix image guidance (>= 1; lower edits more).")
    @click.option("--strength", type=float, help="SDEdit strength (0.3-0.8 keeps structure).")
    @click.option("--batch-size", type=click.IntRange(1), help="Images per teacher call.")
    @click.option("--test-fraction", type=click.FloatRange(0, 0.9), default=0.1, show_default=True,
                  help="Share of --images photos held out as the test split (by photo, never by crop).")
    @pass_ctx
    def synth(ctx: Context, concepts: tuple[str, ...], n: int, size: int, images: Path | None, teacher: str | None,
              model: str | None, steps: int | None, guidance_scale: float | None, image_guidance_scale: float | None,
              strength: float | None, batch_size: int | None, test_fraction: float) -> None:
        """Make paired data (source, teacher target) for CONCEPTS (card names or .yaml paths).

        Writes data/<concept>/source/*.png, target/*.png and manifest.jsonl in the workspace.
        Resumable: a second run adds only the missing pairs; a killed run loses nothing written.
        """
        from tqdm import tqdm

        from factory.atomic import atomic_write_json
        from factory.concepts import find_card
        from factory.pairs_import import import_pairs
        from factory.photos import default_photos, folder_photos
        from factory.synth import SYNTH_META, synthesize
        from factory.teachers import make_teacher, teacher_params

        started = time.perf_counter()
        cards = [find_card(c, ctx.workspace) for c in concepts]
        overrides = dict(model=model, steps=steps, guidance_scale=guidance_scale,
                         image_guidance_scale=image_guidance_scale, strength=strength, batch_size=batch_size)
        totals, new, skipped, folders = 0, 0, [], []

        if (teacher or "") == "pairs" or (teacher is None and all(c.teacher.kind == "pairs" for c in cards)):
            if images is None:
                raise click.UsageError("--teacher pairs needs --images DIR (train_A/ + train_B/, or aligned A|B images)")
            for card in cards:
                folder = ctx.workspace.data(card.name)
                with tqdm(desc=f"import {card.name}", unit="pair", leave=False) as bar:
                    found, total, added = import_pairs(folder, images, size, test_fraction, progress=bar.update)
                atomic_write_json(folder / SYNTH_META, {"concept": card.name, "instruction": card.instruction,
                                                        "teacher": {"kind": "pairs", "format": found.format,
                                                                    "origin": str(images)},
                                                        "size": size, "origin": str(images), "seed": None})
                totals, new = totals + total, new + added
                skipped += found.skipped
                folders.append(folder)
        else:
            photos = folder_photos(images, test_fraction) if images else default_photos()
            skipped += photos.skipped
            teachers: dict[str, Any] = {}
            for card in cards:
                kind = teacher or card.teacher.kind
                params = teacher_params(card.teacher.kind, card.teacher.params, kind, overrides)
                key = repr((kind, sorted(params.items(), key=lambda kv: kv[0])))
                if key not in teachers:  # one pipeline load serves every concept with the same teacher
                    teachers[key] = make_teacher(kind, params, source=str(card.path or card.name))
                folder = ctx.workspace.data(card.name)
                with tqdm(total=n, desc=f"synth {card.name}", unit="pair", leave=False) as bar:
                    result = synthesize(folder, card.name, card.instruction, teachers[key], photos, n, size,
                                        ctx.seed, progress=bar.update)
                if result.refused:
                    click.echo(f"{card.name}: the teacher declined {len(result.refused)} pair(s): "
                               f"{', '.join(result.refused)}", err=True)
                totals, new = totals + result.total, new + result.new
                folders.append(folder)

        _print_skipped(skipped)
        where = folders[0] if len(folders) == 1 else folders[0].parent
        click.echo(f"synth: {len(cards)} concept(s), {totals} pairs ({new} new, {totals - new} kept, "
                   f"{len(skipped)} file(s) skipped) in {time.perf_counter() - started:.1f} s -> {where}")
