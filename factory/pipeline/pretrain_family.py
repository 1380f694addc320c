"""``factory pretrain family``: shipped assets trained on the concept family (issue 15's recipe).

Resumable by stage, in a workspace of its own (``--workspace``); each stage resumes from its own
checkpoints, so a run cut off by a session's end continues where it stopped:

1. base: ``base_concepts`` concepts sampled from the concept family's training region (``concepts.family``,
   cards written to the workspace), ``base_pairs`` pairs each at ``size`` px, trained for ``base_minutes``
   with ``text_dropout`` (an empty or unrelated text learns the unchanged photo), optionally FiLM and
   coordinate channels (``base/family-base/``);
2. adapters: ``adapters`` family concepts, their LoRA ``B`` and biases trained in batches of ``chunk`` over
   one shared frozen ``lora_A`` on the frozen base (``factory.lora.batched``), ``adapter_steps`` each at
   ``adapter_size`` px, into one weight dataset; in a workspace of their own (``adapters/``: the concepts
   they share with the base have pairs at another size there);
3. weight generator: the ``variant`` denoiser trained on that dataset for ``weightgen_minutes``
   (``adapters/weightgen/family-weightgen/``), and the Text-to-LoRA hypernetwork (``hypernet_steps``, 0 for
   none) trained through the frozen base on the same concepts' pairs, in its ``hypernet/`` (``--init
   hypernet``);
4. with ``install``: both become the shipped assets (or go to ``dest``), the command in the manifest. The
   protocol's validation and test concepts are recorded as held out (no family concept is a named card).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from factory.core.errors import FactoryError
from factory.core.workspace import Workspace
from factory.evaluation.protocol import concept_split
from factory.pipeline.pretrain import recipe_command

BASE_NAME = "family-base"
WEIGHTGEN_NAME = "family-weightgen"
#: the weight dataset's own workspace inside the recipe's
ADAPTERS_DIR = "adapters"
Log = Callable[[str], None]


@dataclass
class FamilyPretrainOptions:
    """The family recipe's settings; ``command()`` spells them as the ``factory pretrain family`` command."""

    base_concepts: int = 300
    base_pairs: int = 32
    size: int = 128
    ngf: int = 32
    film: bool = True
    coords: bool = False
    text_dropout: float = 0.1
    base_minutes: float = 75.0
    batch: int = 8
    adapters: int = 1024  # chosen on the leave-out's validation draws over 512 (bench/accelerators.py --train-first)
    adapter_pairs: int = 32
    adapter_size: int = 64
    adapter_steps: int = 300
    per_concept: int = 2
    adapter_lr: float = 3e-3
    chunk: int = 32
    layers: str = "down1,up2,head"
    rank: int = 4
    variant: str = "joint"
    recipe_tokens: bool = True  # chosen on the leave-out's validation draws (bench/accelerators.py)
    weightgen_minutes: float = 15.0
    hypernet_steps: int = 2000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.base_concepts < 2 or self.adapters < 2:
            raise FactoryError("the family recipe needs at least 2 base concepts and 2 adapters")
        if self.size % 16 or self.adapter_size % 16:
            raise FactoryError(f"--size {self.size} and --adapter-size {self.adapter_size} must be multiples of 16")
        if not 0 <= self.text_dropout < 1:
            raise FactoryError(f"--text-dropout {self.text_dropout}: expected a share in [0, 1)")

    def command(self) -> str:
        """The exact ``factory pretrain family`` command for these settings (defaults spelled out)."""
        return recipe_command(self, "family")


def heldout_concepts() -> list[str]:
    """What the family recipe never trains on and the manifest lists as held out: the protocol's validation
    and test concepts."""
    split = concept_split()
    return sorted({*split.of("validation"), *split.of("test")})


def base_stage(ws: Workspace, opts: FamilyPretrainOptions, log: Log, progress: bool = True) -> Path:
    """The base on ``base_concepts`` family concepts (resumes its checkpoints; skipped when saved)."""
    from base_gan.models import is_model_folder
    from factory.pipeline.steps import train_base

    out = ws.base(BASE_NAME)
    if is_model_folder(out):
        return out
    log(f"pretrain family base: {opts.base_concepts} family concepts x {opts.base_pairs} pairs at {opts.size} px, "
        f"{opts.base_minutes:g} min (text dropout {opts.text_dropout:g}, film {opts.film}, coords {opts.coords})")
    return train_base(f"family:{opts.base_concepts}", workspace=ws, name=BASE_NAME, size=opts.size, ngf=opts.ngf,
                      film=opts.film, coords=opts.coords, pairs=opts.base_pairs, seed=opts.seed, log=log,
                      progress=progress, steps=10**9, seconds=opts.base_minutes * 60, batch=opts.batch,
                      decay_from=1.0, checkpoint_every=500, text_dropout=opts.text_dropout)


def adapters_workspace(ws: Workspace) -> Workspace:
    """Where the weight dataset's cards, pairs (at ``adapter_size``), adapters and weight generator live."""
    return Workspace(ws.root / ADAPTERS_DIR)


def adapters_stage(ws: Workspace, opts: FamilyPretrainOptions, base: Path, log: Log):
    """The weight dataset: ``adapters`` batched family adapters on the frozen base (resumable per chunk)."""
    from factory.pipeline.steps import family_weights

    log(f"pretrain family adapters: {opts.adapters} concepts, {opts.adapter_steps} steps each at "
        f"{opts.adapter_size} px, layout {opts.layers} rank {opts.rank}")
    return family_weights(opts.adapters, workspace=ws, base=base, name=WEIGHTGEN_NAME, layers=opts.layers,
                          rank=opts.rank, steps=opts.adapter_steps, per_concept=opts.per_concept, lr=opts.adapter_lr,
                          chunk=opts.chunk, pairs=opts.adapter_pairs, size=opts.adapter_size, seed=opts.seed, log=log)


def weightgen_stage(ws: Workspace, opts: FamilyPretrainOptions, log: Log, progress: bool = True) -> Path:
    """The weight generator on the family weight dataset (resumes; skipped when saved)."""
    from factory.core.training_loop import latest_checkpoint
    from factory.pipeline.steps import train_weightgen
    from weight_generator.train import is_weightgen

    out = ws.weightgen(WEIGHTGEN_NAME)
    if is_weightgen(out):
        return out
    log(f"pretrain family weight generator: {opts.variant} for {opts.weightgen_minutes:g} min")
    train_weightgen(workspace=ws, name=WEIGHTGEN_NAME, resume=latest_checkpoint(out) is not None, seed=opts.seed,
                    log=log, progress=progress, variant=opts.variant, recipe_tokens=opts.recipe_tokens, steps=10**9,
                    seconds=opts.weightgen_minutes * 60, checkpoint_every=200)
    return out


def refuse_another_dataset(ws: Workspace, opts: FamilyPretrainOptions) -> None:
    """FactoryError, before anything is trained, when the workspace holds a finished weight generator of another
    number of adapters than ``opts.adapters``: the adapters stage would overwrite its dataset, and the weight
    generator stage would keep the old generator as done."""
    from base_gan.models import read_training
    from weight_generator.train import is_weightgen

    out = ws.weightgen(WEIGHTGEN_NAME)
    made = len(read_training(out).get("concepts", [])) if is_weightgen(out) else opts.adapters
    if made != opts.adapters:
        raise FactoryError(f"{out} holds a weight generator trained on {made} adapters; --adapters "
                           f"{opts.adapters} asks for another weight dataset. Move that folder away (or use "
                           "another --workspace) to train one on the new dataset")


def hypernet_stage(ws: Workspace, opts: FamilyPretrainOptions, base: Path, weightgen: Path, log: Log) -> Path | None:
    """The Text-to-LoRA hypernetwork on the weight dataset's concepts, through the frozen base (skipped when
    saved or with ``hypernet_steps`` 0); trained by process 0 only (a few minutes)."""
    from base_gan.distributed import parallel
    from base_gan.models import BaseGAN
    from factory.lora.adapters import layout_of_adapter
    from weight_generator.dataset import WeightDataset
    from weight_generator.hypernet import HYPERNET_DIR, HypernetTraining, save_hypernet, train_hypernet

    out = weightgen / HYPERNET_DIR
    if opts.hypernet_steps == 0 or (out / "config.json").is_file():
        return out if opts.hypernet_steps else None
    par = parallel()
    if par.main:
        log(f"pretrain family hypernetwork: {opts.hypernet_steps} steps through the frozen base")
        concepts = WeightDataset.load(weightgen).concepts
        layout = layout_of_adapter(ws.lora(concepts[0]))  # the weight dataset's layout, bias included
        settings = HypernetTraining(steps=opts.hypernet_steps, seed=opts.seed)
        net, history = train_hypernet(BaseGAN.load(base).model, layout, [ws.data(c) for c in concepts], settings,
                                      ws.text_cache)
        save_hypernet(net, layout, out, {**vars(settings), "concepts": len(concepts), "base": str(base),
                                         "l1_first": history[0]["l1"], "l1_last": history[-1]["l1"]})
    par.barrier()
    return out


def pretrain_family(ws: Workspace, opts: FamilyPretrainOptions, install: bool = False, dest: Path | None = None,
                    log: Log = print, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) the family recipe; with ``install``, install the result as the shipped assets. In a
    data-parallel group every stage splits its work over the processes, and process 0 logs and installs."""
    from base_gan.distributed import parallel

    par = parallel()
    if not par.main:
        log, progress, install = (lambda m: None), False, False
    weights_ws = adapters_workspace(ws)
    refuse_another_dataset(weights_ws, opts)
    base = base_stage(ws, opts, log, progress)
    dataset = adapters_stage(weights_ws, opts, base, log)
    weightgen = weightgen_stage(weights_ws, opts, log, progress)
    hypernet_stage(weights_ws, opts, base, weightgen, log)
    heldout = heldout_concepts()
    result: dict[str, Any] = {"base": str(base), "weightgen": str(weightgen), "adapters": len(dataset),
                              "heldout": heldout, "command": opts.command()}
    if install:
        from factory.pipeline.assets import PRETRAINED_DIR
        from factory.pipeline.assets import install as install_assets

        result["manifest"] = install_assets(base, weightgen, opts.command(), heldout, dest or PRETRAINED_DIR)
    return result
