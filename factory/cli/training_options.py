"""The fine-tune's training options, shared by ``finetune`` and ``run`` (not a command).

Their defaults are the chosen constants of ``factory.lora.options`` (AUGMENT, SCREEN, ...), written out here so the
CLI starts without importing torch; ``tests/test_lora.py`` ties each to its constant.
"""

from __future__ import annotations

from collections.abc import Callable

import click

#: ``--decay-over``, ``--augment``, ``--screen``, ``--screen-scale``, ``--screen-windows``, ``--screen-harmonics``,
#: ``--screen-lattice``, ``--readout``, ``--colour-basis``, ``--ema`` and ``--output-curves``, in the order ``--help``
#: lists them
OPTIONS = [
    click.option("--decay-over", type=click.Choice(["steps", "budget"]), default="steps", show_default=True,
                 help="How the learning rate decays: over the last half of --steps, or over the second half of "
                      "the --seconds budget (with a seconds budget the step schedule is rarely reached; "
                      "bench/results/tune_choice.md: a small gain for every way on validation concepts)."),
    click.option("--augment/--no-augment", default=False, show_default=True,
                 help="Random flip and resized crop of every training pair. Off by default: a crop moves and "
                      "rescales what the teacher drew at fixed pixel positions and sizes, a flip reverses a "
                      "directional edit (bench/results/tune_choice-augment.md: 1.2-2.0 dB better without it on "
                      "validation concepts)."),
    click.option("--screen", type=click.Choice(["auto", "off"]), default="auto", show_default=True,
                 help="auto: when the teacher draws a fixed screen (halftone dots, pixel blocks: peaks in the "
                      "spectrum of what stays in place across the pairs), give the student position channels "
                      "at its waves (bench/results/structural-screen.md); off: never."),
    click.option("--screen-scale", type=click.FloatRange(1), default=16.0, show_default=True,
                 help="With a screen and a classic teacher: also train on windows of the pairs rescaled up to "
                      "this factor, the recipe run at each scale, so the dots keep their shape on full-size "
                      "photos (bench/results/fullsize-scales.md); 1: the pairs' size only."),
    click.option("--screen-windows", type=click.Choice(["pairs", "photo"]), default="pairs", show_default=True,
                 help="Where --screen-scale's windows come from: pairs: the pair's own source upscaled (at 16x a "
                      "128 px window holds 8 px of detail); photo: the same window cut from the photo the pair was "
                      "cut from, at the photo's own resolution (the detail a full-size photo has), for every pair "
                      "whose photo can be read again; level or behind on newsprint "
                      "(bench/results/fullsize-windows-validation.md)."),
    click.option("--screen-harmonics/--no-screen-harmonics", default=True, show_default=True,
                 help="With a screen: position channels also at its second harmonics (each wave doubled, the "
                      "sum and difference of two), so round dots and square blocks keep their shape on "
                      "full-size photos (bench/results/fullsize-harmonics-validation.md)."),
    click.option("--screen-lattice/--no-screen-lattice", default=True, show_default=True,
                 help="With a screen: also the distance planes of its lattice (where in its cell each pixel "
                      "sits), so round dots keep their shape on full-size photos "
                      "(bench/results/fullsize-lattice-validation-centred.md)."),
    click.option("--readout/--no-readout", default=True, show_default=True,
                 help="Before training, solve the head's last conv (head.conv3) by ridge regression on the "
                      "training pairs, written into the LoRA (or the weights), a few seconds charged to the "
                      "budget; skipped when the LoRA does not adapt the head (bench/results/readout_start.md, "
                      "tune_choice-readout.md)."),
    click.option("--colour-basis", type=click.IntRange(0, 5), default=3, show_default=True,
                 help="The colour basis: every monomial of the source pixel's R, G, B up to this degree (19 at 3, "
                      "55 at 5), read by a 1x1 conv (head.colour) into the edit and solved with the readout, so a "
                      "per-pixel colour map (curves, channel mixes, tints) is fitted in closed form before the first "
                      "step (bench/results/tune_choice-colour.md); a LoRA run trains that conv whole. 0: none."),
    click.option("--lens-basis/--no-lens-basis", default=True, show_default=True,
                 help="The lens basis: the photo's 8 neighbours per channel (a blur, a sharpening) and its colour "
                      "times radial gain planes (a vignette), read by a 1x1 conv (head.lens) into the edit and "
                      "solved with the readout, so what a per-pixel colour map cannot hold is fitted in closed form "
                      "before the first step (bench/results/tune_choice-lens.md); a LoRA run trains that conv whole. "
                      "Its radial planes are about the photo's centre: the editor takes each pixel's place in the "
                      "photo (an input 'frame'), so a full-size photo edited in tiles gets one vignette."),
    click.option("--ema", type=click.FloatRange(0, 1, max_open=True), default=0.9, show_default=True,
                 help="Evaluate and keep the moving average of the weights with this decay (0.9: about the last "
                      "10 steps), not the last step's weights: a GAN's held-out quality swings from step to step "
                      "(bench/results/tune_choice-ema.md); 0: off."),
    click.option("--output-curves/--no-output-curves", default=True, show_default=True,
                 help="After training, fit colour curves on the training pairs from the student's output (nine: "
                      "one per channel pair), from its output and the photo (eighteen), or from the photo alone "
                      "(nine) to the targets, and keep the best kind (saved with the adapter, baked into the "
                      "exported editor) when, fitted on 3/4 of the training photos, it beats the raw output on the "
                      "other 1/4 and stretches the output at most 8x "
                      "(bench/results/output-calibration-validation-photo-only.md). 1-3 s at each evaluation."),
]


def training_options(command: Callable) -> Callable:
    """Add the fine-tune's training options (``OPTIONS``) to ``command``."""
    for option in reversed(OPTIONS):
        command = option(command)
    return command
