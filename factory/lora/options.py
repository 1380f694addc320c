"""What ``factory finetune`` is asked for, with its defaults and checks (shared by the planner and the trainer)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from base_gan.generator import COLOUR_DEGREES
from base_gan.models import BaseGAN, model_spec
from base_gan.train import TrainSettings
from factory.core.errors import FactoryError
from factory.lora.adapters import is_adapter, parse_groups
from factory.lora.rank_search import DEFAULT_CANDIDATES, DEFAULT_TOLERANCE_DB

# Defaults measured on a small base (64 px, ngf 16), 400 steps, batch 8, held-out 'autumn' / 'watercolor'
# test PSNR: LoRA (res,xattn,head @ rank 4) lr 3e-3 with lora_bias 32.06 / 14.48 dB, without 29.37 / 13.93;
# lr 1e-2 unstable (27.56 / 14.21). Scratch lr 1e-3 30.86 / 16.43 dB vs pix2pix's 2e-4 28.68 / 15.35, so the
# from-scratch comparison gets the better of the two.
LORA_BIAS = True  # a bias on every lora_B (peft lora_bias): few parameters, lets an adapter shift colours
ADAPTER_LR = 3e-3  # LoRA B starts at zero and needs a larger step than full training
SCRATCH_LR = 1e-3  # full training of the same architecture from random weights
#: --init full: chosen on validation concepts (bench/results/full_lr.md: 25.61 dB mean vs 25.45 at 1e-4, 21.58 at 1e-3)
FULL_LR = 3e-4
#: --tune all (the start merged, every weight trained): chosen on validation concepts at 90 s
#: (bench/results/tune_choice.md: 29.40 dB mean vs 28.58 at FULL_LR's 3e-4, 27.75 for the LoRA at ADAPTER_LR)
TUNE_LR = 1e-3
#: the random flip and resized crop of the pairs, off: chosen on validation concepts at 90 s
#: (bench/results/tune_choice-augment.md: every way gains without it, LoRA 28.98 dB mean vs 27.75, every weight
#: 31.41 vs 29.40, scratch 30.09 vs 28.44; a crop moves and rescales what the teacher drew at fixed pixel positions
#: and sizes, and a flip reverses a directional edit such as emboss)
AUGMENT = False
#: position channels for a concept whose teacher draws a fixed screen (halftone dots, pixel blocks), fitted to its
#: training pairs (``factory.data.screen_fit``); a concept without one trains exactly as with "off"
SCREEN = "auto"
SCREENS = ("auto", "off")
#: a screen concept with a classic teacher also trains on windows of its pairs rescaled up to this factor, the
#: recipe run at each scale (``factory.data.multiscale``), so the dots keep their shape and edges on bigger photos;
#: chosen on the validation concept newsprint (bench/results/fullsize-scales-validation.md: the best native and 12 MP
#: tiled PSNR of 1, 8, 16 and 32)
SCREEN_SCALE = 16.0
#: where those windows' pixels come from (``factory.data.multiscale.WINDOW_SOURCES``): the pair's source upscaled
#: ("pairs"), or the photo it was cut from at the photo's own resolution ("photo"); on the validation concept
#: newsprint photo is level or behind (bench/results/fullsize-windows-validation.md), so pairs stays
SCREEN_WINDOWS = "pairs"
#: a screen's position channels also at its second harmonics (``factory.data.screen_fit.with_harmonics``): the dots'
#: round shape; chosen on the validation concept newsprint (bench/results/fullsize-harmonics-validation.md)
SCREEN_HARMONICS = True
#: a screen's lattice distance planes too (``base_gan.lattice``: where in its cell each pixel sits), from the
#: fitted waves' lattice (``factory.data.screen_fit.fit_lattice``); chosen on the validation concept newsprint
#: (bench/results/fullsize-lattice-validation-centred.md)
SCREEN_LATTICE = True
#: the readout start (``factory.lora.readout``): head.conv3 solved in closed form on the training pairs before the
#: fine-tune trains anything; chosen on validation concepts (bench/results/tune_choice-readout.md: the generated
#: start's LoRA at 90 s, mean 28.86 dB with it against 28.02 without, scratch 26.92)
READOUT = True
#: the moving average of the weights (decay) that a fine-tune evaluates and keeps, 0: the weights as they are; chosen
#: on validation concepts (bench/results/tune_choice-ema.md: every way gains from it at 90 s)
EMA = 0.9
#: the colour basis (``base_gan.generator.COLOUR_DEGREES``, 0: none): the source pixel's colour monomials read by
#: ``head.colour``, which the readout start solves with ``head.conv3``; chosen on validation concepts
#: (bench/results/tune_choice-colour.md: the readout LoRA at 90 s, mean 34.72 dB with it against 29.75 without,
#: every weight tuned 36.24 against 31.32; both groups gain)
COLOUR_BASIS = 3
#: the lens basis (``base_gan.generator.LENS_PLANES``): the photo's 8 neighbours per channel and its colour times radial
#: gain planes, read by ``head.lens`` and solved by the readout with ``head.colour``; chosen on validation concepts
#: (bench/results/tune_choice-lens.md: the readout LoRA at 90 s on seven concepts with a blur or a vignette, mean
#: 45.05 dB with it against 38.03 without; -0.05 (53.18 against 53.23) dB on four without either)
LENS_BASIS = True
#: output calibration (``factory.lora.output_calibration``): colour curves of the student's output (and of the photo)
#: to the targets, fitted on the training pairs after the fine-tune and kept where they help photos the fit did not
#: see; chosen on validation concepts (bench/results/output-calibration-validation-photo.md: +2.10 dB mean over 18
#: editors, 15 colour and 3 structural, none below its raw output; curves of the output alone +1.19)
OUTPUT_CURVES = True
#: the kinds of output curves the rule tries (``output_calibration.KINDS``), comma-separated; the photo's curves alone
#: added on validation concepts (bench/results/output-calibration-validation-photo-only.md: +3.61 dB mean over the
#: 18 editors against +2.10 without them; faded-matte +10.4 to +11.5 dB, one cyanotype editor -1.81)
CURVE_KINDS = "output,output+photo,photo"
#: the quarters of the training photos the rule holds out in turn to score each kind (``output_calibration.FOLDS``);
#: chosen on validation concepts (bench/results/output-calibration-validation-folds.md: all four, +4.15 dB mean over
#: the 18 editors, min +0.00, against +3.61, min -0.03, for the last quarter alone)
CURVE_FOLDS = 4
#: options added after runs were recorded, with the value every run before them had (resume and reuse read them so)
ADDED_LATER = {"tune": "lora", "decay_over": "steps", "augment": True, "screen": "off", "screen_scale": 1.0,
               "screen_harmonics": False, "screen_lattice": False, "readout": False, "warmup": 0, "ema": 0.0,
               "colour_basis": 0, "lens_basis": False, "screen_windows": "pairs",
               "output_curves": False, "curve_kinds": "output,output+photo", "curve_folds": 1}
#: options that change a run only when another is on (their option -> that one): a run with it off records none
ONLY_WITH = {"curve_kinds": "output_curves", "curve_folds": "output_curves"}
#: the inits that train the whole generator (saved as a model folder in loras/<concept>/<init>/), not a LoRA
FULL_INITS = ("scratch", "full")
#: what a fine-tune from an adapter start trains: the LoRA on the frozen base, or every weight with the adapter merged
TUNES = ("lora", "all")


def curve_rule(kinds: str, folds: int) -> str:
    """The output curves' rule in one string, as results name it: the kinds, then ``/folds`` unless one quarter."""
    return kinds if folds == 1 else f"{kinds}/{folds}"


@dataclass
class FinetuneOptions:
    """What ``factory finetune`` was asked for (``None`` = automatic or the init adapter's own)."""

    init: str = "base"                 # base | scratch | full | a folder with a peft adapter
    layers: str | None = None          # None/"auto" or "group,group,..."
    rank: str | int | None = None      # None/"auto" or N
    lora_bias: bool | None = None      # None: LORA_BIAS for a new LoRA, the init adapter's own otherwise
    pairs: int | None = None           # K training pairs (None: all of the train split)
    select: str = "cluster"            # cluster | random
    steps: int = 1000
    seconds: float | None = None
    batch: int = 8
    lr: float | None = None            # None: ADAPTER_LR for LoRA, SCRATCH_LR for --init scratch
    disc_nf: int = 32
    eval_every: int = 50
    eval_seconds: float | None = None  # evaluate every N training seconds instead of every eval_every steps
    checkpoint_every: int = 200
    search_steps: int = 100            # steps of every probe / rank-search run
    probe_rank: int = 4
    auto_fraction: float = 0.9
    rank_candidates: tuple[int, ...] = DEFAULT_CANDIDATES
    rank_tolerance: float = DEFAULT_TOLERANCE_DB
    rank_mode: str = "global"          # global | group
    probe_table: str | None = None     # a probe.json to take --layers auto from (default: the base's)
    max_fraction: float | None = None  # --rank auto: skip ranks whose adapter exceeds this share of the generator
    seed: int = 0
    tune: str = "lora"                 # lora | all: after an adapter start, the LoRA only or every weight
    decay_over: str = "steps"          # steps | budget: the LR decays over the last half of the steps (or seconds)
    augment: bool = AUGMENT            # random flip and resized crop of every training pair
    screen: str = SCREEN               # auto: the screen waves fitted to the pairs (when there is a screen) | off
    screen_scale: float = SCREEN_SCALE  # with a screen: also train on windows rescaled up to this factor (1: off)
    screen_windows: str = SCREEN_WINDOWS  # with screen_scale > 1: the windows cut from the pairs or their photos
    screen_harmonics: bool = SCREEN_HARMONICS  # with a screen: position channels at its second harmonics too
    screen_lattice: bool = SCREEN_LATTICE  # with a screen: its lattice's distance planes too
    readout: bool = READOUT            # head.conv3 solved on the training pairs before training (factory.lora.readout)
    warmup: int = 0                    # LR rising over the first N steps; 0: tried, no gain (tune_choice-warmup.md)
    ema: float = EMA                   # evaluate and keep an exponential moving average of the weights (decay; 0: off)
    colour_basis: int = COLOUR_BASIS   # the colour monomials' degree read by head.colour (0: none)
    lens_basis: bool = LENS_BASIS      # the source's neighbours and radial gain planes read by head.lens
    output_curves: bool = OUTPUT_CURVES  # colour curves fitted from the output to the targets (output_calibration)
    curve_kinds: str = CURVE_KINDS     # with output_curves: the kinds of curves the rule may keep
    curve_folds: int = CURVE_FOLDS     # with output_curves: the quarters of the photos the rule holds out in turn

    def unused(self) -> set[str]:
        """The options that do not change this run: those of ``ONLY_WITH`` whose option is off."""
        return {k for k, on in ONLY_WITH.items() if not getattr(self, on)}

    def as_record(self) -> dict:
        """The options as a resume fingerprint records them: those in ``ADDED_LATER`` only when not at their
        defaults (they came later, and a run saved before them still resumes), none that is ``unused``."""
        from factory.core.configs import to_dict

        skip = self.unused()
        return {k: v for k, v in to_dict(self).items()
                if k not in skip and not (k in ADDED_LATER and v == ADDED_LATER[k])}

    @property
    def kind(self) -> str:
        return self.init if self.init in ("base", *FULL_INITS) else "adapter"

    @property
    def trains_all(self) -> bool:
        """Every weight of the generator trained (saved as a model folder, not an adapter)."""
        return self.kind in FULL_INITS or self.tune == "all"

    @property
    def out_name(self) -> str:
        """The sub-folder of ``loras/<concept>/`` a whole-generator run is saved in."""
        return self.kind if self.kind in FULL_INITS else "tuned"

    def bias(self) -> bool:
        return LORA_BIAS if self.lora_bias is None else self.lora_bias

    def learning_rate(self) -> float:
        if self.lr is not None:
            return self.lr
        if self.tune == "all":
            return TUNE_LR
        return {"scratch": SCRATCH_LR, "full": FULL_LR}.get(self.init, ADAPTER_LR)

    def train_settings(self, base: BaseGAN, steps: int, seconds: float | None) -> TrainSettings:
        return TrainSettings(generator=model_spec(base.model), disc_nf=self.disc_nf, steps=steps, seconds=seconds,
                             batch=self.batch, lr=self.learning_rate(), seed=self.seed,
                             checkpoint_every=self.checkpoint_every, decay_over=self.decay_over,
                             augment=self.augment, warmup=self.warmup,
                             ema=self.ema or None)

    def validate(self) -> None:
        """Refuse bad options before anything runs (FactoryError naming the option)."""
        from factory.lora.pair_selection import SELECT_METHODS

        if self.layers not in (None, "auto"):
            parse_groups(self.layers)
        if self.rank not in (None, "auto") and (not str(self.rank).isdigit() or int(self.rank) < 1):
            raise FactoryError(f"--rank {self.rank}: expected auto or a whole number >= 1")
        if self.select not in SELECT_METHODS:
            raise FactoryError(f"--select {self.select}: expected one of {', '.join(SELECT_METHODS)}")
        if self.rank_mode not in ("global", "group"):
            raise FactoryError(f"--rank-mode {self.rank_mode}: expected global or group")
        if self.kind == "adapter" and not is_adapter(Path(self.init)):
            raise FactoryError(f"--init {self.init}: not a LoRA adapter folder (expected adapter_config.json and "
                               "adapter_model.safetensors), nor base, scratch, full or weightgen")
        if self.decay_over not in ("steps", "budget"):
            raise FactoryError(f"--decay-over {self.decay_over}: expected steps or budget")
        if not 0 <= self.ema < 1:
            raise FactoryError(f"--ema {self.ema}: expected a decay in [0, 1) (0: off)")
        if self.colour_basis not in (0, *COLOUR_DEGREES):
            raise FactoryError(f"--colour-basis {self.colour_basis}: expected 0 (none) or a degree among "
                               f"{', '.join(map(str, COLOUR_DEGREES))}")
        if self.warmup < 0:
            raise FactoryError(f"--warmup {self.warmup}: expected a number of steps >= 0")
        if self.screen not in SCREENS:
            raise FactoryError(f"--screen {self.screen}: expected one of {', '.join(SCREENS)}")
        if not self.screen_scale >= 1:
            raise FactoryError(f"--screen-scale {self.screen_scale}: expected a factor >= 1 (1: the pairs' size only)")
        if self.tune not in TUNES:
            raise FactoryError(f"--tune {self.tune}: expected one of {', '.join(TUNES)}")
        if self.tune == "all" and self.kind != "adapter":
            raise FactoryError(f"--tune all trains every weight after an adapter start (weightgen, auto, an adapter "
                               f"folder...), not --init {self.init}" + (" (--init full already trains every weight "
                                                                         "of the base)" if self.init == "base" else ""))
        if self.kind in FULL_INITS and (self.layers not in (None, "auto") or self.rank not in (None, "auto")):
            raise FactoryError(f"--layers/--rank apply to LoRA fine-tunes, not to --init {self.kind} (full training)")
