"""The pipeline's steps as a library a notebook can call: the same functions the ``factory`` CLI runs.

Every function takes ``workspace`` (a folder, a ``Workspace`` or None for ``$FACTORY_WORKSPACE`` /
``./factory-workspace``), resolves names (cards, bases, weight generators) the way the CLI does,
loads each model once and calls the stage that does the work::

    import factory
    factory.synthesize(["sepia"], n=40, size=64, workspace="ws")
    base = factory.train_base(["sepia"], name="tiny", size=64, steps=50, workspace="ws")
    metrics = factory.finetune("sepia", base="tiny", layers="head", rank=2, steps=20, workspace="ws")
    card = factory.export_editor("sepia", size=64, workspace="ws")
    edited = factory.Editor("ws/editors/sepia").edit([photo])
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from concepts.cards import find_card, list_cards
from factory.core.configs import check_known
from factory.core.errors import FactoryError
from factory.core.workspace import Workspace
from factory.data.card_pairs import PairsResult, PhotoCache, TeacherCache, ensure_pairs, make_pairs

Log = Callable[[str], None]
WorkspaceLike = str | os.PathLike | Workspace | None


def workspace_of(workspace: WorkspaceLike) -> Workspace:
    return workspace if isinstance(workspace, Workspace) else Workspace.from_option(workspace)


def _quiet(_msg: str) -> None:
    pass


# -- pairs --------------------------------------------------------------------------------------------
def synthesize(concepts: Iterable[str], n: int = 200, size: int = 256, *, workspace: WorkspaceLike = None,
               images: str | os.PathLike | None = None, teacher: str | None = None,
               overrides: dict[str, Any] | None = None, test_fraction: float = 0.1, seed: int = 0,
               progress: bool = True, shards: int = 1, shard: tuple[int, int] | None = None,
               log: Log = _quiet) -> list[PairsResult]:
    """The teacher's pairs for each concept (card names or .yaml paths) in ``<workspace>/data/<concept>/``;
    resumable (a second call adds only what is missing). ``shards=N`` spreads each concept over N processes
    (``factory.pipeline.sharded_synth``); ``shard=(k, N)`` makes only shard k (what each of them runs)."""
    from tqdm import tqdm

    ws = workspace_of(workspace)
    cards = [find_card(c, ws) for c in concepts]
    if shards > 1:
        if shard is not None:
            raise FactoryError("--shards N runs every shard; --shard K/N is one of them: pass one")
        from factory.data.pair_store import read_manifest
        from factory.pipeline.sharded_synth import synthesize_sharded

        results = []
        for card in cards:
            before = len(read_manifest(ws.data(card.name)))
            total = synthesize_sharded(ws, card.name, n, size, shards, seed=seed,
                                       target=str(card.path) if card.path else card.name,
                                       images=Path(images) if images else None, teacher=teacher,
                                       overrides=overrides, test_fraction=test_fraction, log=log)
            results.append(PairsResult(card.name, ws.data(card.name), teacher or card.teacher.kind, total,
                                       total - before))
        return results
    teachers, photos = TeacherCache(), PhotoCache(Path(images) if images else None, test_fraction)
    results = []
    for card in cards:
        teachers.for_card(card, teacher, overrides)  # load (or refuse) the teacher before the progress bar
        with tqdm(total=n, desc=f"synth {card.name}", unit="pair", leave=False, disable=not progress) as bar:
            results.append(make_pairs(ws, card, n, size, seed, images=images, teacher=teacher, overrides=overrides,
                                      test_fraction=test_fraction, teachers=teachers, photos=photos,
                                      progress=bar.update, shard=shard))
    return results


def resolve_concepts(spec: str | Iterable[str], workspace: WorkspaceLike = None, seed: int = 0) -> list[str]:
    """``"A,B,C"`` (or a list) as card names, ``"auto:K"``: K representative classic concepts (k-means over
    their MiniLM text embeddings, E2GAN's recipe), or ``"family:N"``: N concepts sampled from the concept
    family's training region (``concepts.family``; their cards are written to the workspace)."""
    ws = workspace_of(workspace)
    if isinstance(spec, str) and spec.startswith("family:"):
        from concepts.family import family_cards

        try:
            n = int(spec.split(":", 1)[1])
        except ValueError:
            raise FactoryError(f"--concepts {spec}: expected family:N with N a whole number") from None
        return [c.name for c in family_cards(ws, n, seed)]
    if isinstance(spec, str) and spec.startswith("auto:"):
        from base_gan.concept_selection import representative_concepts
        from factory.text.encoder import TextEncoder

        try:
            k = int(spec.split(":", 1)[1])
        except ValueError:
            raise FactoryError(f"--concepts {spec}: expected auto:K with K a whole number") from None
        pool = [c for c in list_cards(ws) if c.teacher.kind == "classic"]
        emb = TextEncoder.from_name("minilm", cache_dir=ws.text_cache).pooled([c.instruction for c in pool])
        return representative_concepts([c.name for c in pool], emb.numpy(), k, seed=seed)
    names = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else [str(s).strip() for s in spec]
    return [find_card(n, ws).name for n in names if n]


# -- the base -----------------------------------------------------------------------------------------
def train_base(concepts: str | Iterable[str], *, workspace: WorkspaceLike = None, name: str = "default",
               arch: str = "e2gan", size: int = 128, ngf: int | None = None, film: bool = False, coords: bool = False,
               pairs: int = 200, restart: bool = False, seed: int = 0, log: Log = _quiet, progress: bool = True,
               **settings: Any) -> Path:
    """Train a base GAN on many concepts at once (``auto:K`` or names; each sample carries its own
    concept text), or ``arch="pix2pix"`` on exactly one; resumes ``<workspace>/base/<name>/`` unless
    ``restart``. ``settings`` are ``base_gan.train.TrainSettings`` fields (steps, seconds, batch, lr, ...)."""
    from base_gan.distributed import parallel
    from base_gan.train import Trainer, TrainSettings
    from factory.core.progress import BudgetBar
    from factory.core.training_loop import CHECKPOINTS

    ws = workspace_of(workspace)
    par = parallel()  # a data-parallel group (`--processes N`, accelerate launch, torchrun) or one process
    if not par.main:
        par.barrier()  # process 0 writes the cards and pairs first
    names = resolve_concepts(concepts, ws, seed)
    if arch == "pix2pix" and len(names) != 1:
        raise FactoryError("--arch pix2pix trains the baseline on exactly one concept")
    if size % 16:
        raise FactoryError(f"--size {size} is not a multiple of 16 (the generator's stride)")
    check_known(TrainSettings, settings, "train_base")
    if par.main:
        ensure_pairs(ws, names, pairs, size, seed, log)
        par.barrier()
    else:
        log = _quiet
        progress = False
    if film and arch != "e2gan":
        raise FactoryError("--film conditions the e2gan generator; pix2pix has no text input")
    if coords and arch != "e2gan":
        raise FactoryError("--coords adds coordinate channels to the e2gan generator only")
    from base_gan.generator import SCREEN_PERIODS

    spec = {"arch": arch, "image_size": size, **({"ngf": ngf} if ngf else {}), **({"film": True} if film else {}),
            **({"screen_periods": list(SCREEN_PERIODS)} if coords else {})}
    s = TrainSettings(generator=spec, disc_nf=64 if arch == "pix2pix" else 32, seed=seed, **settings)
    out = ws.base(name)
    if restart and par.main:
        shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
    par.barrier()
    trainer = Trainer(out, [ws.data(c) for c in names], s, text_cache=ws.text_cache)
    if trainer.resume():
        log(f"resuming {out} from step {trainer.state.step}")
    with BudgetBar(f"train {name}", s.steps, s.seconds, trainer.state.step, trainer.state.seconds,
                   disable=not progress) as bar:
        trainer.train(progress=lambda e: bar.update(e["step"], e["seconds"], l1=f"{e['l1']:.3f}",
                                                    g=f"{e['loss_g']:.2f}", d=f"{e['loss_d']:.3f}"))
    trainer.save_final({"concepts": names, "instructions": trainer.data.instructions})
    return out


def load_base(base: str | os.PathLike | None = None, workspace: WorkspaceLike = None):
    """The base GAN a name or folder stands for (``default``: the workspace's, else the shipped one), loaded."""
    from base_gan.models import BaseGAN
    from factory.pipeline.assets import resolve_base

    return BaseGAN.load(resolve_base(workspace_of(workspace), base))


# -- per-concept LoRA ---------------------------------------------------------------------------------
def generate_adapter(text: str, out_dir: str | os.PathLike, *, workspace: WorkspaceLike = None,
                     name: str | None = None, base: str | os.PathLike | None = None, steps: int = 1,
                     seed: int = 0) -> Path:
    """The weight generator's LoRA for ``text`` as a peft adapter folder. The weight generator is the
    workspace's (``name``, or ``default``, or the only one), else the shipped one; with ``base`` it must
    have been trained on adapters of that base."""
    from factory.pipeline.assets import find_weightgen, resolve_base
    from weight_generator.dataset import same_base
    from weight_generator.sample import WeightGenerator

    ws = workspace_of(workspace)
    folder = find_weightgen(ws, name)
    gen = WeightGenerator.load(folder, text_cache=ws.text_cache)
    if base is not None:
        base_dir = resolve_base(ws, base)
        if not same_base(gen.base, base_dir):
            raise FactoryError(f"{folder}: this weight generator was trained on adapters of base '{gen.base}', "
                               f"not {base_dir}; fine-tune with that base or retrain it")
    return gen.sample_to_folder(text, out_dir, steps=steps, seed=seed)


#: what a per-concept LoRA can start from besides zero-init: the weight generator or one of its baselines
INITS = ("weightgen", "hypernet", "mean", "ridge", "retrieval", "recipe", "recipe+weightgen")


def initial_adapter(kind: str, text: str, out_dir: str | os.PathLike, *, workspace: WorkspaceLike = None,
                    name: str | None = None, base: str | os.PathLike | None = None, seed: int = 0) -> Path:
    """A starting LoRA for ``text`` as a peft adapter folder: ``weightgen`` (sampled by the weight generator),
    ``hypernet`` (the Text-to-LoRA hypernetwork in its folder) or a baseline over its training adapters
    (``mean``, ``ridge`` from the text embedding, ``retrieval`` of the nearest training text, ``recipe``: ridge
    from the concept family's parse of the text and its embedding), or ``recipe+weightgen``: the mean of the recipe
    adapter and the weight generator's mean sample. ``init.json`` in the folder says which and from what."""
    import time

    from factory.core.atomic import atomic_write_json
    from factory.pipeline.assets import find_weightgen, resolve_base
    from weight_generator.baselines import baseline_vector, save_vector_adapter
    from weight_generator.dataset import WeightDataset, dataset_base, same_base

    if kind not in INITS:
        raise FactoryError(f"unknown init '{kind}': expected one of {', '.join(INITS)}")
    ws = workspace_of(workspace)
    started = time.perf_counter()
    if kind == "weightgen":
        out = generate_adapter(text, out_dir, workspace=ws, name=name, base=base, seed=seed)
        info: dict = {}
    elif kind == "hypernet":
        from weight_generator.hypernet import HYPERNET_DIR, hypernet_adapter, load_hypernet

        folder = find_weightgen(ws, name)
        net, layout = load_hypernet(folder / HYPERNET_DIR)
        trained_on = dataset_base(folder)
        target = resolve_base(ws, base)
        if trained_on is not None and not same_base(trained_on, target):
            raise FactoryError(f"{folder}: its hypernetwork was trained through base '{trained_on}', not {target}")
        out = hypernet_adapter(net, load_base(target, ws).model, layout, text, Path(out_dir), ws.text_cache)
        info = {"weightgen": str(folder), "hypernet": str(folder / HYPERNET_DIR)}
    else:
        folder = find_weightgen(ws, name)
        dataset = WeightDataset.load(folder)
        if base is not None and not same_base(dataset.base, resolve_base(ws, base)):
            raise FactoryError(f"{folder}: its training adapters were fine-tuned on base '{dataset.base}', "
                               f"not {resolve_base(ws, base)}")
        if kind == "recipe+weightgen":
            from weight_generator.baselines import recipe_weightgen_adapter
            from weight_generator.sample import WeightGenerator

            gen = WeightGenerator.load(folder, text_cache=ws.text_cache)
            vector, info = recipe_weightgen_adapter(text, dataset, gen, cache_dir=ws.text_cache)
        else:
            vector, info = baseline_vector(kind, text, dataset, cache_dir=ws.text_cache)
        out = save_vector_adapter(vector, dataset, out_dir)
        info["weightgen"] = str(folder)
    atomic_write_json(out / "init.json", {"init": kind, "instruction": text, "seed": seed,
                                          "seconds": round(time.perf_counter() - started, 3), **info})
    return out


def finetune(concept: str, *, workspace: WorkspaceLike = None, base: str | os.PathLike | None = "default",
             options: Any = None, out_dir: str | os.PathLike | None = None, restart: bool = False,
             synth_pairs: int = 200, quiet: bool = False, log: Log = print, **option_values: Any) -> dict[str, Any]:
    """Fine-tune ``concept`` on the frozen base with a peft LoRA (``init``: base, scratch, full, weightgen, mean, ridge,
    retrieval or an adapter folder); returns its metrics. ``option_values`` are ``FinetuneOptions`` fields
    (layers, rank, steps, seconds, ...). Pairs are synthesized first when the concept has none."""
    from factory.lora.finetune import default_out_dir
    from factory.lora.finetune import finetune as run_finetune
    from factory.lora.options import FinetuneOptions

    ws = workspace_of(workspace)
    check_known(FinetuneOptions, option_values, "finetune")
    opts = replace(options or FinetuneOptions(), **option_values)
    name = find_card(concept, ws).name
    loaded = load_base(base, ws).require_e2gan()
    ensure_pairs(ws, [name], synth_pairs, loaded.image_size, opts.seed, log)
    out = Path(out_dir) if out_dir is not None else None
    if opts.init in INITS:
        from factory.data.dataset import concept_instruction

        init_dir = (out or default_out_dir(ws, name, opts)) / "init"
        try:
            initial_adapter(opts.init, concept_instruction(ws.data(name)), init_dir, workspace=ws,
                            base=loaded.folder, seed=opts.seed)
        except FactoryError as exc:
            raise FactoryError(f"--init {opts.init}: {exc}") from None
        opts = replace(opts, init=str(init_dir))
    return run_finetune(ws, name, loaded, opts, out_dir=out, restart=restart, quiet=quiet, log=log)


def probe_layers(concepts: Iterable[str], *, workspace: WorkspaceLike = None, base: str | os.PathLike = "default",
                 steps: int = 100, rank: int = 4, fraction: float = 0.9, groups: str | None = None,
                 lora_bias: bool = True, batch: int = 8, lr: float = 3e-3, synth_pairs: int = 200,
                 out: str | os.PathLike | None = None, seed: int = 0, log: Log = _quiet) -> tuple[dict, Path, Path]:
    """Score each layer group by the validation gain of adapting it alone, over ``concepts``; writes
    probe.json and probe.md (default: where ``finetune --layers auto`` looks for this base)."""
    from factory.lora.options import FinetuneOptions
    from factory.lora.plan import probe_path
    from factory.lora.probe import probe_layers as run_probe
    from factory.lora.probe import write_probe

    ws = workspace_of(workspace)
    loaded = load_base(base, ws).require_e2gan()
    names = [find_card(c, ws).name for c in concepts]
    ensure_pairs(ws, names, synth_pairs, loaded.image_size, seed, log)
    settings = FinetuneOptions(batch=batch, lr=lr, seed=seed).train_settings(loaded, steps, None)
    result = run_probe(loaded, [ws.data(n) for n in names], settings, ws.text_cache, rank=rank, fraction=fraction,
                       groups=groups.split(",") if groups else None, seed=seed, bias=lora_bias)
    json_path, md_path = write_probe(result, Path(out) if out else probe_path(ws, loaded).parent)
    return result, json_path, md_path


# -- evaluation and export ----------------------------------------------------------------------------
def evaluate_model(concept: str, model: str | os.PathLike, *, workspace: WorkspaceLike = None,
                   out: str | os.PathLike | None = None) -> dict[str, Any]:
    """A trained generator (a base name in the workspace or a model folder) on ``concept``'s test pairs:
    PSNR, SSIM, L1 (LPIPS when available) next to the identity baseline; writes a JSON and a grid PNG."""
    from base_gan.models import load_model
    from factory.data.dataset import concept_instruction
    from factory.evaluation.heldout import evaluate_to_files, text_conditioned

    ws = workspace_of(workspace)
    folder = Path(model) if Path(model).is_dir() else ws.base(str(model))
    generator = load_model(folder)
    data_dir = ws.data(concept)
    edit = text_conditioned(generator, concept_instruction(data_dir), ws.text_cache)
    out_dir = Path(out) if out else ws.reports / "eval"
    return evaluate_to_files(edit, data_dir, out_dir, f"{concept}-{folder.name}", {"model": str(folder)})


def _adapter_and_base(ws: Workspace, concept: str, adapter: str | os.PathLike | None,
                      base: str | os.PathLike | None) -> tuple[Path | None, str, Path]:
    """(adapter folder or None, a note on it, base folder) for an export: the LoRA given or the workspace's,
    merged into the base given, else the base it was fine-tuned on (its metrics.json), else ``default``."""
    from factory.core.files import read_json
    from factory.lora.adapters import is_adapter
    from factory.pipeline.assets import resolve_base

    if adapter is not None:
        adapter_dir = Path(adapter)
        if not is_adapter(adapter_dir):
            raise FactoryError(f"{adapter_dir}: not a LoRA adapter folder (no adapter_config.json)")
        note = f"LoRA {adapter_dir} merged"
    elif is_adapter(ws.lora(concept)):
        adapter_dir, note = ws.lora(concept), f"LoRA {ws.lora(concept)} merged"
    else:
        adapter_dir, note = None, (f"no LoRA for '{concept}' (none in {ws.lora(concept)}): the base alone, "
                                   "text-conditioned")
    recorded = (read_json(adapter_dir / "metrics.json") or {}).get("base") if adapter_dir else None
    trained_on = Path(recorded) if isinstance(recorded, str) and recorded else None
    base_dir = trained_on if base is None and trained_on is not None and trained_on.is_dir() else resolve_base(ws, base)
    if trained_on is not None and trained_on.resolve() != base_dir.resolve():
        note += f" (note: it was fine-tuned on {trained_on}, merging into {base_dir})"
    return adapter_dir, note, base_dir


def _export_instruction(ws: Workspace, concept: str) -> str:
    """The text an editor bakes in: the one its pairs were made from, else its card's."""
    from factory.data.dataset import concept_instruction

    data_dir = ws.data(concept)
    return (concept_instruction(data_dir) if (data_dir / "synth.json").is_file()
            else find_card(concept, ws).instruction)


def export_editor(concept: str, *, workspace: WorkspaceLike = None, base: str | os.PathLike | None = None,
                  adapter: str | os.PathLike | None = None, size: int = 256, int8: bool = True, fp16: bool = False,
                  ort: bool = False, threads: int | None = None, min_int8_psnr: float | None = None,
                  allow_cpu_fallback: bool = False, full_size: bool = True, log: Log = _quiet) -> dict[str, Any]:
    """Export ``concept``'s editor to ``<workspace>/editors/<concept>/`` (LoRA merged, text baked in; fp32,
    int8, optionally fp16 and .ort), checked; returns its card.json. Fails and installs nothing when
    torch/onnxruntime parity, int8 quality or the mobile check fails. ``full_size`` measures how full-size
    photos are best edited (guided or tiled) on held-out photos; without it the card says tiled."""
    from base_gan.models import BaseGAN
    from factory.export.editor import INT8_MIN_PSNR_DB, ExportRequest
    from factory.export.editor import export_editor as run_export
    from factory.pipeline.manifest import write_manifest

    ws = workspace_of(workspace)
    adapter_dir, note, base_dir = _adapter_and_base(ws, concept, adapter, base)
    log(f"{note}; base {base_dir}")
    data_dir = ws.data(concept)
    instruction = _export_instruction(ws, concept)
    req = ExportRequest(concept=concept, base=BaseGAN.load(base_dir), adapter_dir=adapter_dir, adapter_note=note,
                        instruction=instruction, data_dir=data_dir, out_dir=ws.editor(concept), size=size,
                        int8=int8, fp16=fp16, ort=ort, threads=threads, allow_cpu_fallback=allow_cpu_fallback,
                        min_int8_psnr=INT8_MIN_PSNR_DB if min_int8_psnr is None else min_int8_psnr,
                        text_cache=ws.text_cache, full_size=full_size)
    card = run_export(req, log=log)
    write_manifest(ws)  # editors/manifest.json lists the new editor
    return card



def export_pack(concepts: Iterable[str], name: str, *, workspace: WorkspaceLike = None,
                base: str | os.PathLike | None = None, precision: str = "fp32", size: int = 256,
                images: int = 4, threads: int | None = None, log: Log = _quiet) -> dict[str, Any]:
    """A filter pack of ``concepts`` in ``<workspace>/packs/<name>/``: the base once, per concept only its LoRA
    and text, merged when onnxruntime loads it; each concept checked against its standalone editor graph on
    ``images`` held-out images. Returns pack.json."""
    from base_gan.models import BaseGAN
    from factory.export.editor import export_images
    from factory.export.pack import PackConcept, build_pack, write_pack
    from factory.runtime.editor import to_input

    ws = workspace_of(workspace)
    concepts = list(dict.fromkeys(concepts))
    chosen, members, held_out = None, [], {}
    for concept in concepts:
        adapter_dir, note, base_dir = _adapter_and_base(ws, concept, None, base)
        if chosen is None:
            chosen = base_dir
        elif base_dir.resolve() != chosen.resolve():
            raise FactoryError(f"'{concept}' was fine-tuned on {base_dir}, the pack's first concept on {chosen}: "
                               "a pack holds concepts of one base (pass --base to merge them all into one)")
        data_dir = ws.data(concept)
        members.append(PackConcept(concept, _export_instruction(ws, concept), adapter_dir))
        held_out[concept] = to_input(export_images(data_dir, size, n_calibration=1, n_held_out=images).held_out)
        log(f"{concept}: {note}")
    if chosen is None:
        raise FactoryError("a pack needs at least one concept")
    base_gan = BaseGAN.load(chosen)
    parts = build_pack(base_gan, members, size=size, precision=precision, text_cache=ws.text_cache)
    return write_pack(parts, ws.pack(name), name, held_out, precision, base_gan, threads=threads, log=log)

# -- the weight generator -----------------------------------------------------------------------------
def collect_weights(*, workspace: WorkspaceLike = None, name: str = "default", concepts: Iterable[str] = (),
                    exclude: Iterable[str] = ()):
    """The workspace's adapters (one layout; all, or ``concepts``, minus ``exclude``) and their instructions
    as a weight dataset in ``<workspace>/weightgen/<name>/``."""
    from weight_generator.dataset import collect_workspace

    ws = workspace_of(workspace)
    ds = collect_workspace(ws, list(concepts) or None, list(exclude))
    ds.save(ws.weightgen(name))
    return ds


def family_weights(n: int, *, workspace: WorkspaceLike = None, base: str | os.PathLike | None = "default",
                   name: str = "family", layers: str = "down1,up2,head", rank: int = 4, lora_bias: bool = True,
                   steps: int = 300, per_concept: int = 4, lr: float = 3e-3, chunk: int = 32, pairs: int = 64,
                   size: int | None = None, seed: int = 0, log: Log = _quiet):
    """A weight dataset of ``n`` concept-family adapters trained in batches over one frozen lora_A on the
    frozen base (``factory.pipeline.weight_dataset``; pairs at ``size`` px, default the base's), saved to
    ``<workspace>/weightgen/<name>/``; resumable."""
    from base_gan.distributed import parallel
    from factory.lora.adapters import LoraLayout
    from factory.lora.batched import AdapterTraining
    from factory.pipeline.weight_dataset import family_weight_dataset

    par = parallel()  # chunks dealt out over a data-parallel group (`--processes N`), or one process
    ws = workspace_of(workspace)
    loaded = load_base(base, ws).require_e2gan()
    layout = LoraLayout([g.strip() for g in layers.split(",") if g.strip()], ranks=rank, bias=lora_bias)
    settings = AdapterTraining(steps=steps, per_concept=per_concept, lr=lr, seed=seed)
    ds = family_weight_dataset(ws, loaded, n, layout, settings, pairs=pairs, seed=seed, chunk=chunk, size=size,
                               log=log if par.main else _quiet)
    if par.main:
        ds.save(ws.weightgen(name))
    par.barrier()
    return ds


def train_weightgen(*, workspace: WorkspaceLike = None, name: str = "default", epochs: int | None = None,
                    resume: bool = False, restart: bool = False, seed: int = 0, progress: bool = True,
                    log: Log = _quiet, **settings: Any):
    """Train the weight generator on ``<workspace>/weightgen/<name>/``'s dataset (DDPM); ``settings`` are
    ``WeightGenSettings`` fields. Existing checkpoints need ``resume`` (continue) or ``restart`` (discard).
    Returns the finished trainer."""
    from base_gan.distributed import parallel
    from factory.core.configs import from_dict
    from factory.core.progress import BudgetBar
    from factory.core.training_loop import CHECKPOINTS, latest_checkpoint
    from weight_generator.dataset import WeightDataset
    from weight_generator.train import WeightGenSettings, WeightGenTrainer

    if resume and restart:
        raise FactoryError("--resume and --restart exclude each other")
    par = parallel()  # a data-parallel group (`--processes N`, accelerate launch, torchrun) or one process
    if not par.main:
        log, progress = _quiet, False
    ws = workspace_of(workspace)
    out = ws.weightgen(name)
    s = from_dict(WeightGenSettings, {**settings, "seed": seed}, "weightgen train")
    trainer = WeightGenTrainer(out, WeightDataset.load(out), s, text_cache=ws.text_cache)
    if epochs:
        s.steps = epochs * trainer.steps_per_epoch
    if restart and par.main:
        shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
    par.barrier()
    ckpt = latest_checkpoint(out)
    if ckpt is not None and not resume:
        raise FactoryError(f"{out} has checkpoints (newest {ckpt.name}); pass --resume to continue "
                           "or --restart to start over")
    if resume and trainer.resume():
        log(f"resuming {out} from step {trainer.state.step}")
    with BudgetBar(f"weightgen {name}", s.steps, s.seconds, trainer.state.step, trainer.state.seconds,
                   disable=not progress) as bar:
        trainer.train(progress=lambda e: bar.update(e["step"], e["seconds"], loss=f"{e['loss']:.4f}"))
    trainer.save_final()
    return trainer


def sample_note(weightgen: Path, adapter_dir: Path) -> str:
    """How far a generated adapter is from the weight generator's nearest training adapter ('' without a dataset)."""
    import torch

    from weight_generator.baselines import distance_table
    from weight_generator.dataset import WeightDataset
    from weight_generator.tokenize import WeightTokenizer, flatten, read_adapter

    try:
        ds = WeightDataset.load(weightgen)
    except FactoryError:
        return ""
    tensors, _ = read_adapter(adapter_dir)
    table = distance_table({"generated": flatten(tensors, ds.layout).to(torch.float32)}, ds,
                           WeightTokenizer.load(weightgen).scale_vector())
    row = table["rows"][0]
    return (f"nearest training adapter {row['nearest_training']} at {row['distance_to_nearest']:.3f} "
            f"(typical between training adapters {table['typical']['train_nearest_median']:.3f})")


# -- timing an exported editor ------------------------------------------------------------------------
def bench_editor(editor: str | os.PathLike, *, workspace: WorkspaceLike = None, size: int = 256, threads: int = 2,
                 runs: int = 30, warmup: int = 5, pix2pix: bool = True, out: str | os.PathLike | None = None
                 ) -> tuple[dict[str, Any], Path]:
    """Median latency per image (batch 1) of an editor's fp32/int8/fp16 models on this CPU, next to pix2pix
    ResNet-9 exported the same way (cached in the workspace); written to a JSON report."""
    import platform

    from factory.core.atomic import atomic_write_json
    from factory.runtime.editor import EDITOR_FILES, locate_editor
    from factory.runtime.latency import benchmark

    ws = workspace_of(workspace)
    if size % 16:
        raise FactoryError(f"--size {size} is not a multiple of the editor stride 16")
    fp32 = locate_editor(editor, ws.root, "fp32")
    models = {"editor_fp32": fp32}
    for precision in ("int8", "fp16"):
        sibling = fp32.with_name(EDITOR_FILES[precision])
        if fp32.name == EDITOR_FILES["fp32"] and sibling.is_file():
            models[f"editor_{precision}"] = sibling
    if pix2pix:
        from factory.export.editor import pix2pix_reference

        ref = pix2pix_reference(ws.root / "cache" / "bench" / f"pix2pix-resnet9-{size}", size)
        models.update({f"pix2pix_{k}": v for k, v in ref.items()})
    load_before = os.getloadavg()[0]
    results = benchmark(models, size, threads, runs=runs, warmup=warmup)
    report: dict[str, Any] = {
        "editor": str(fp32), "size": size, "threads": threads, "batch": 1, "runs": runs, "warmup": warmup,
        "load_average_1min": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
        "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "models": results}
    ms = {k: v["per_image_ms"] for k, v in results.items()}
    for precision in ("fp32", "int8"):
        if f"editor_{precision}" in ms and f"pix2pix_{precision}" in ms:
            report[f"speedup_vs_pix2pix_{precision}"] = round(ms[f"pix2pix_{precision}"] / ms[f"editor_{precision}"], 2)
    if "editor_int8" in results:
        report["editor_int8_size_ratio"] = round(results["editor_int8"]["bytes"] / results["editor_fp32"]["bytes"], 4)
    name = fp32.parent.name if fp32.name == EDITOR_FILES["fp32"] else fp32.stem
    path = Path(out) if out else ws.reports / "bench-editor" / f"{name}-{size}.json"
    atomic_write_json(path, report)
    return report, path
