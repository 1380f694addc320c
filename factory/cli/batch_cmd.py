"""``factory batch``: many concepts through ``factory run``, locally or on a Ray cluster."""

from __future__ import annotations

import click

from factory.cli.teacher_options import teacher_options
from factory.pipeline.run_options import INIT_CHOICES
from factory.pipeline.session import Session

#: ``factory run`` options a batch passes on to every concept
RUN_OPTIONS = ("--teacher", "--model", "--device", "--dtype", "--prompt", "--negative-prompt", "--images", "--base",
               "--init", "--synth-pairs", "--pairs", "--seconds", "--steps", "--export-size")


@click.command("batch")
@click.argument("concepts", nargs=-1, required=True)
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: worker processes on this machine; ray: one Ray task per concept.")
@click.option("--workers", type=click.IntRange(1), default=1, show_default=True,
              help="Concepts run at once (local; with GPUs, worker k uses GPU k mod their count unless --device "
                   "says otherwise), or CPUs of the local Ray instance started when no --address.")
@click.option("--address", help="Ray cluster address (e.g. 10.0.0.5:6379 or ray://...); the workspace must be on "
                                "a filesystem every node mounts at the same path. Default: a local instance.")
@click.option("--cpus-per-job", type=click.FloatRange(0, min_open=True), default=1.0, show_default=True,
              help="Ray: CPUs each concept's task reserves (also its torch threads).")
@click.option("--gpus-per-job", type=click.FloatRange(0), default=0.0, show_default=True,
              help="Ray: GPUs each concept's task reserves (diffusion teachers use CUDA when they get one).")
@click.option("--teacher", type=click.Choice(["classic", "instruct-pix2pix", "sdedit", "pairs"]))
@click.option("--model", help="Diffusers model of a diffusion teacher.")
@teacher_options
@click.option("--images", type=click.Path(exists=True, file_okay=False), help="Source photos for every concept.")
@click.option("--base", help="Base for every concept (default: the workspace's, else the shipped one).")
@click.option("--init", type=click.Choice(INIT_CHOICES))
@click.option("--synth-pairs", type=click.IntRange(4))
@click.option("--pairs", type=click.IntRange(1))
@click.option("--seconds", type=click.FloatRange(0, min_open=True), help="Fine-tune budget per concept.")
@click.option("--steps", type=click.IntRange(1))
@click.option("--export-size", type=click.IntRange(16))
@click.pass_obj
def batch_cmd(session: Session, concepts: tuple[str, ...], executor: str, workers: int, address: str | None,
              cpus_per_job: float, gpus_per_job: float, **run_opts) -> None:
    """Run `factory run` for every concept in CONCEPTS: card names, .yaml cards, folders of cards,
    instruction texts, or .txt files with one of those per line.

    \b
    One concept failing (bad card, teacher error, out of memory) is recorded with its error and
    does not stop the others. Writes <workspace>/reports/batch.json and batch.html (status, time,
    quality, sizes, links) and <workspace>/editors/manifest.json (every editor with its name,
    instruction and checksums, for a mobile app), after every finished concept. Running the same
    batch again skips the concepts already done and retries the rest.
    """
    from factory.pipeline.batch import BatchOptions, read_targets, run_batch

    targets = read_targets(concepts)
    run_args: list[str] = []
    for name in RUN_OPTIONS:
        value = run_opts.get(name.lstrip("-").replace("-", "_"))
        if value is not None:
            run_args += [name, str(value)]
    if executor == "local" and address:
        raise click.UsageError("--address is for --executor ray")
    opts = BatchOptions(executor=executor, workers=workers, address=address, cpus_per_job=cpus_per_job,
                        gpus_per_job=gpus_per_job, run_args=run_args, seed=session.seed)
    summary = run_batch(session.workspace, targets, opts, log=lambda m: click.echo(m, err=True))
    click.echo(f"batch: {summary['done']} done, {summary['failed']} failed of {len(targets)} in "
               f"{summary['wall_seconds']:.0f} s -> {summary['report']} (app manifest {summary['manifest']})")
    if summary["failed"]:
        click.get_current_context().exit(1)  # exit code 1: the batch finished, some concepts failed


def register(cli: click.Group) -> None:
    cli.add_command(batch_cmd)
