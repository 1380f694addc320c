"""``factory run``: the main job, from a concept's text (or card) to a mobile editor and its report."""

from __future__ import annotations

from pathlib import Path

import click

from factory.cli.teacher_options import teacher_options
from factory.cli.training_options import training_options
from factory.pipeline.run_options import INIT_CHOICES
from factory.pipeline.session import Session


@click.command("run")
@click.argument("concept")
@click.option("--images", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder of source photos (default: scikit-image's bundled photos, fixed train/test split). "
                   "For --teacher pairs: the folder of pairs.")
@click.option("--teacher", type=click.Choice(["classic", "instruct-pix2pix", "sdedit", "pairs"]),
              help="Override the card's teacher; for a new text, the teacher of its new card "
                   "(default instruct-pix2pix; classic starts from the nearest built-in recipe).")
@click.option("--model", help="Diffusers model of a diffusion teacher: a Hub id or a local pipeline folder.")
@teacher_options
@click.option("--base", help="Base name in <workspace>/base/ or its folder (default: the workspace's "
                             "'default', else the shipped pretrained base).")
@click.option("--init", type=click.Choice(INIT_CHOICES), default="auto",
              show_default=True,
              help="auto: the start measured best on validation concepts for this base and weight generator "
                   "(its init_choice.json, which may hold a second choice for concepts taught by the concept "
                   "family's own recipe for their text, e.g. `factory concepts new TEXT --teacher classic` on a text "
                   "the family's grammar reads; without one, weightgen), else zero-init LoRA (base) when no weight "
                   "generator fits; weightgen: its sampled adapter; hypernet: the Text-to-LoRA hypernetwork "
                   "shipped with it; mean / ridge / retrieval: its baselines over the training adapters; "
                   "recipe: ridge from the concept family's ops, levels and pairs of ops the text names, with its "
                   "embedding (ridge on the embedding alone for a text outside the family's grammar, or a weight "
                   "dataset it hardly reads); recipe+weightgen: the mean of the recipe adapter and the weight "
                   "generator's mean of 8 samples.")
@click.option("--synth-pairs", type=click.IntRange(4), default=120, show_default=True,
              help="Pairs the teacher makes (train and test together).")
@click.option("--pairs", type=click.IntRange(1), help="Fine-tune on K training pairs (clustered; default all).")
@click.option("--seconds", type=click.FloatRange(0, min_open=True), default=120.0, show_default=True,
              help="Fine-tune wall-clock budget (a later run with more continues the saved fine-tune).")
@click.option("--steps", type=click.IntRange(1), default=100_000, show_default=True, help="Fine-tune step cap.")
@click.option("--eval-every", type=click.IntRange(1), default=20, show_default=True,
              help="Steps between held-out points of the training curve.")
@click.option("--export-size", type=click.IntRange(16), default=256, show_default=True,
              help="Side the editor is checked, calibrated and timed at.")
@click.option("--ort/--no-ort", default=True, show_default=True, help="Also write .ort files for mobile.")
@click.option("--stop-after", type=click.Choice(["card", "synth", "init", "finetune", "export", "eval"]),
              help="Stop after this stage (a later run resumes from the next one).")
@click.option("--zero-shot", is_flag=True,
              help="No teacher data and no training: the editor is the base with the starting adapter (--init) "
                   "for the text. Evaluated only when the concept already has teacher pairs.")
@click.option("--tune", type=click.Choice(["lora", "all"]), default="lora", show_default=True,
              help="lora: train the LoRA on the frozen base (the editor's per-concept part stays an adapter, as "
                   "filter packs need); all: merge the starting adapter into the base and train every weight, "
                   "better at an equal budget on validation and test concepts (bench/results/tune_choice.md), "
                   "but a whole generator per concept.")
@training_options
@click.option("--summary-json", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the run's outcome (concept, editor, report, stages, seconds) to this JSON file.")
@click.pass_obj
def run_cmd(session: Session, concept: str, images: Path | None, teacher: str | None, model: str | None,
            base: str | None, init: str, synth_pairs: int, pairs: int | None, seconds: float, steps: int,
            eval_every: int, export_size: int, ort: bool, stop_after: str | None, zero_shot: bool, tune: str,
            decay_over: str, augment: bool, screen: str, screen_scale: float, screen_windows: str,
            screen_harmonics: bool, screen_lattice: bool, readout: bool, colour_basis: int, lens_basis: bool,
            ema: float, output_curves: bool, summary_json: Path | None,
            device: str | None, dtype: str | None, prompt: str | None, negative_prompt: str | None) -> None:
    """Make a mobile editor for CONCEPT: a card name, or the edit as text ("make it a watercolor painting").

    \b
    Stages: card -> synth -> init (weight generator) -> finetune (LoRA, or every weight with --tune all)
    -> export (fp32, int8, .ort) -> eval -> report. Each stage is skipped when its output is there and up to date, so an
    interrupted run continues where it stopped. Prints where the editor and the report are.
    """
    from factory.pipeline.run import RunOptions, run

    opts = RunOptions(target=concept, teacher=teacher, model=model, images=images, base=base, init=init,
                      n_pairs=synth_pairs, pairs=pairs, seconds=seconds, steps=steps, eval_every=eval_every,
                      export_size=export_size, ort=ort, stop_after=stop_after, zero_shot=zero_shot, tune=tune,
                      decay_over=decay_over, augment=augment, screen=screen, screen_scale=screen_scale,
                      screen_windows=screen_windows, screen_harmonics=screen_harmonics, screen_lattice=screen_lattice,
                      readout=readout,
                      colour_basis=colour_basis, lens_basis=lens_basis, ema=ema, output_curves=output_curves,
                      device=device, dtype=dtype, prompt=prompt, negative_prompt=negative_prompt, seed=session.seed)
    result = run(session.workspace, opts, log=lambda m: click.echo(m, err=True))
    if summary_json is not None:
        from factory.core.atomic import atomic_write_json

        atomic_write_json(summary_json, {"concept": result.concept, "editor": str(result.editor),
                                         "report": str(result.report) if result.report else None,
                                         "stages": result.stages, "seconds": round(result.seconds, 2)})
    ran = [s for s, how in result.stages.items() if how == "ran"]
    click.echo(f"run {result.concept}: {len(ran)} stage(s) run ({', '.join(ran) or 'none'}), "
               f"{len(result.stages) - len(ran)} up to date, {result.seconds:.1f} s")
    if result.report is not None:
        click.echo(f"editor: {result.editor}")
        click.echo(f"report: {result.report}")
    else:
        click.echo(f"stopped after {stop_after}; run the same command without --stop-after to continue")


def register(cli: click.Group) -> None:
    cli.add_command(run_cmd)
