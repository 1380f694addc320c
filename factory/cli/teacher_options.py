"""The diffusion teacher's runtime options, shared by ``synth``, ``run`` and ``batch`` (not a command)."""

from __future__ import annotations

from collections.abc import Callable

import click

#: option name -> the teacher parameter it sets
TEACHER_OPTIONS = {"device": "device", "dtype": "dtype", "prompt": "prompt", "negative_prompt": "negative_prompt"}


def teacher_options(command: Callable) -> Callable:
    """Add ``--device``, ``--dtype``, ``--prompt`` and ``--negative-prompt`` (each overrides the card's value)."""
    for option in reversed([
        click.option("--device", help="Diffusion teacher device: auto (CUDA when there is one), cpu, cuda, cuda:N, "
                                      "mps."),
        click.option("--dtype", type=click.Choice(["auto", "float32", "float16", "bfloat16"]),
                     help="Diffusion teacher precision (auto: float16 on CUDA, float32 elsewhere)."),
        click.option("--prompt", help="SDEdit: the text the image is pushed towards (default: the instruction; "
                                      "a description of the result often works better than an order)."),
        click.option("--negative-prompt", help="Diffusion teacher: what the result should not look like."),
    ]):
        command = option(command)
    return command
