"""What ``factory run`` is asked for."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from factory.core.errors import FactoryError
from factory.pipeline.run_state import STAGES

#: where a run's LoRA starts (``factory.pipeline.steps.INITS`` plus auto and zero-init ``base``)
INIT_CHOICES = ("auto", "weightgen", "hypernet", "mean", "ridge", "retrieval", "recipe", "recipe+weightgen", "base")
#: what ``auto`` starts from when the weight generator fits the base (else zero-init ``base``)
AUTO_INIT = "weightgen"


@dataclass
class RunOptions:
    """What ``factory run`` was asked for."""

    target: str                      # a card name, a card .yaml path, or the instruction text of a new concept
    teacher: str | None = None       # override the card's teacher (and the teacher of a new card)
    model: str | None = None         # diffusers model for a diffusion teacher (Hub id or local folder)
    device: str | None = None        # diffusion teacher: device, dtype, prompt, negative prompt (None: the card's)
    dtype: str | None = None
    prompt: str | None = None
    negative_prompt: str | None = None
    images: Path | None = None       # source photos (default: scikit-image's, fixed split)
    base: str | None = None          # base name/folder (default: the workspace's 'default', else the shipped one)
    init: str = "auto"               # one of INIT_CHOICES
    n_pairs: int = 120               # pairs to synthesize (train + test)
    pairs: int | None = None         # K training pairs for the fine-tune (clustered)
    seconds: float = 120.0           # fine-tune wall-clock budget
    steps: int = 100_000             # fine-tune step cap
    eval_every: int = 20
    export_size: int = 256
    int8: bool = True
    ort: bool = True
    stop_after: str | None = None
    zero_shot: bool = False          # no teacher data, no training: the starting adapter is the editor
    tune: str = "lora"               # lora: the LoRA on the frozen base; all: the start merged, every weight trained
    decay_over: str = "steps"        # the fine-tune's LR decay: over its steps, or over its seconds budget
    augment: bool = False            # the fine-tune's random flip and resized crop of its pairs (AUGMENT)
    screen: str = "auto"             # position channels for a fixed screen in the pairs (SCREEN): auto | off
    screen_scale: float = 16.0       # with a screen: also train on windows rescaled up to this factor (SCREEN_SCALE)
    screen_windows: str = "pairs"    # where those windows come from: the pairs or their photos (SCREEN_WINDOWS)
    screen_harmonics: bool = True    # with a screen: position channels at its second harmonics too (SCREEN_HARMONICS)
    screen_lattice: bool = True      # with a screen: its lattice's distance planes too (SCREEN_LATTICE)
    readout: bool = True             # head.conv3 solved on the training pairs before the fine-tune (READOUT)
    ema: float = 0.9                 # the weights' moving average evaluated and kept (EMA)
    colour_basis: int = 3            # the colour monomials' degree read by head.colour (COLOUR_BASIS; 0: none)
    lens_basis: bool = True          # the photo's neighbours and radial gain planes read by head.lens (LENS_BASIS)
    output_curves: bool = True       # colour curves from the student's output to the targets (OUTPUT_CURVES)
    seed: int = 0

    def teacher_overrides(self) -> dict[str, str | None]:
        """The teacher parameters given on the command line (None: the card's value, else the default)."""
        return {"model": self.model, "device": self.device, "dtype": self.dtype, "prompt": self.prompt,
                "negative_prompt": self.negative_prompt}

    def validate(self) -> None:
        if self.stop_after is not None and self.stop_after not in STAGES:
            raise FactoryError(f"--stop-after {self.stop_after}: expected one of {', '.join(STAGES)}")
        if self.init not in INIT_CHOICES:
            raise FactoryError(f"--init {self.init}: expected one of {', '.join(INIT_CHOICES)}")
        if self.zero_shot and self.init == "base":
            raise FactoryError("--zero-shot --init base: a zero-shot editor needs a starting adapter "
                               "(--init auto, weightgen, mean, ridge or retrieval)")
        if self.tune not in ("lora", "all"):
            raise FactoryError(f"--tune {self.tune}: expected lora or all")
        if self.decay_over not in ("steps", "budget"):
            raise FactoryError(f"--decay-over {self.decay_over}: expected steps or budget")
        if self.zero_shot and self.tune == "all":
            raise FactoryError("--zero-shot --tune all: a zero-shot editor trains nothing (drop one of them)")
        if self.seconds <= 0 or self.steps < 1 or self.n_pairs < 4:
            raise FactoryError("--seconds must be > 0, --steps >= 1 and --synth-pairs >= 4")
