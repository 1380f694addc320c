"""What each stage of ``factory run`` does (the chain and its bookkeeping are in ``factory.pipeline.run``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from concepts.cards import SLUG_RE, ConceptCard, builtin_cards, find_card, list_cards, slugify
from concepts.new_card import create_card
from factory.core.atomic import atomic_write_json, atomic_write_png
from factory.core.errors import FactoryError
from factory.core.workspace import Workspace
from factory.pipeline.run_options import AUTO_INIT
from factory.pipeline.run_state import run_dir

if TYPE_CHECKING:
    from base_gan.models import BaseGAN
    from factory.pipeline.run_options import RunOptions

Log = Callable[[str], None]
#: the LoRA layout of a zero-init run when no weight generator fixes one: the layout zero-init adapters
#: (rank 4, 300 steps) scored best with on 64 validation family concepts (``bench/results/layouts.md``)
DEFAULT_LAYERS = "stem,down1,up2,head"
DEFAULT_RANK = 4


# -- 1. card -----------------------------------------------------------------------------------------
def resolve_card(ws: Workspace, target: str, teacher: str | None, log: Log) -> ConceptCard:
    """The card for ``target``: a card name or path as is; otherwise ``target`` is the instruction of a
    new concept, whose card is reused if an earlier run wrote it, else written now."""
    text = " ".join(target.split())
    if not text:
        raise FactoryError("empty concept: pass a card name (see `factory concepts list`) or the edit as text, "
                           "e.g. \"make it a watercolor painting\"")
    if SLUG_RE.match(text) or text.endswith((".yaml", ".yml")):
        return find_card(text, ws)
    for card in list_cards(ws):  # the same instruction already has a card (built-in or from an earlier run)
        if card.instruction.lower() == text.lower() and (teacher is None or card.teacher.kind == teacher):
            return card
    kind = teacher or "instruct-pix2pix"
    if kind == "pairs":
        raise FactoryError("--teacher pairs needs a card (its pairs come from --images); run "
                           "`factory concepts new` first or pass a card name")
    created = create_card(text, teacher=kind, workspace=ws, name=_free_name(ws, slugify(text)))
    log(f"card: wrote {created.path} ({created.note})")
    return created.card


def _free_name(ws: Workspace, name: str) -> str:
    taken = {c.name for c in list_cards(ws)} | {c.name for c in builtin_cards()}
    if name not in taken:
        return name
    i = 2
    while f"{name}-{i}" in taken:
        i += 1
    return f"{name}-{i}"


# -- 2. synth ----------------------------------------------------------------------------------------
def synth_stage(ws: Workspace, card: ConceptCard, opts: RunOptions, size: int, log: Log) -> dict[str, Any]:
    from tqdm import tqdm

    from factory.data.card_pairs import TeacherCache, make_pairs

    teachers = TeacherCache()
    teachers.for_card(card, opts.teacher, opts.teacher_overrides())  # load (or refuse) it before the progress bar
    with tqdm(total=opts.n_pairs, desc=f"synth {card.name}", unit="pair", leave=False) as bar:
        result = make_pairs(ws, card, opts.n_pairs, size, opts.seed, images=opts.images, teacher=opts.teacher,
                            overrides=opts.teacher_overrides(), teachers=teachers, progress=bar.update)
    if result.skipped:
        log(f"synth: skipped {len(result.skipped)} unreadable file(s): "
            + "; ".join(f"{p}: {why}" for p, why in result.skipped[:5]))
    if result.refused:
        log(f"synth: the teacher declined {len(result.refused)} pair(s)")
    return {"pairs": result.total, "new": result.new, "teacher": result.teacher}


# -- 3. init -----------------------------------------------------------------------------------------
def auto_init(folder: Path, base_sha256: str, card: ConceptCard) -> tuple[str, dict[str, Any] | None]:
    """The start ``--init auto`` takes for ``card`` with the weight generator in ``folder`` and this base: the
    one recorded as best on validation concepts of its kind (``family``: taught by the family's own recipe for
    its text), else ``AUTO_INIT``; and the record it came from (None)."""
    from concepts.family import teaches_family_recipe
    from weight_generator.init_choice import chosen_init

    chosen = chosen_init(folder, base_sha256, family=teaches_family_recipe(card))
    return (chosen["init"] if chosen else AUTO_INIT), chosen


def init_stage(ws: Workspace, card: ConceptCard, base: BaseGAN, opts: RunOptions, log: Log) -> dict[str, Any]:
    """The concept's starting LoRA in runs/<concept>/init/: the weight generator's (``auto``, ``weightgen``) or
    a baseline's (``mean``, ``ridge``, ``retrieval``), or zero-init (``base``, or ``auto`` with no usable
    weight generator)."""
    import time

    from factory.pipeline.assets import find_weightgen
    from factory.pipeline.steps import initial_adapter

    if opts.init == "base":
        return {"init": "base", "why": "--init base (zero-init LoRA)"}
    kind, chosen = opts.init, None
    out = run_dir(ws, card.name) / "init"
    try:
        folder = find_weightgen(ws)
        if kind == "auto":
            kind, chosen = auto_init(folder, base.sha256, card)
        started = time.perf_counter()
        initial_adapter(kind, card.instruction, out, workspace=ws, base=base.folder, seed=opts.seed)
    except FactoryError as exc:
        if opts.init != "auto":
            raise
        log(f"init: no usable weight generator ({exc}); starting from zero-init LoRA")
        return {"init": "base", "why": str(exc)}
    why = {"weightgen": "adapter sampled by the weight generator from the concept text",
           "hypernet": "adapter written by the Text-to-LoRA hypernetwork from the concept text",
           "mean": "the mean of the weight generator's training adapters",
           "ridge": "ridge regression from the concept text's embedding to the training adapters",
           "retrieval": "the training adapter of the nearest text",
           "recipe": "ridge regression from the family ops, levels and pairs of ops the text names (parsed) and "
                      "its embedding to the training adapters",
           "recipe+weightgen": "the mean of the recipe ridge's adapter and the weight generator's mean sample"}[kind]
    if opts.init == "auto":
        of = "family concepts taught by their own recipe" if chosen and chosen.get("family") else "concepts"
        why += (f" (auto: the best start on validation {of}, {chosen.get('results', 'measured')})" if chosen
                else " (auto: no measured choice for this base)")
    return {"init": str(out), "kind": kind, "weightgen": str(folder),
            "sample_seconds": round(time.perf_counter() - started, 3), "why": why}


def weightgen_digest(ws: Workspace, init: str, base_sha256: str, card: ConceptCard) -> str:
    """Which weight generator ``find_weightgen`` would use now (folder, weights and, for ``--init auto``, the
    start ``auto_init`` takes for ``card``), or 'none'."""
    from factory.pipeline.assets import find_weightgen
    from factory.pipeline.run_state import digest
    from weight_generator.train import DENOISER_DIR

    try:
        folder = find_weightgen(ws)
    except FactoryError:
        return "none"
    w = folder / DENOISER_DIR / "diffusion_pytorch_model.safetensors"
    chosen = auto_init(folder, base_sha256, card)[1] if init == "auto" else None
    return digest(str(folder), w.stat().st_size, w.stat().st_mtime_ns, chosen["init"] if chosen else None)


# -- 4. finetune -------------------------------------------------------------------------------------
def finetune_options(opts: RunOptions, init: str):
    """The fine-tune a run asks for from its start ``init``: the LoRA (a zero-init one of ``DEFAULT_LAYERS`` when
    ``init`` is ``base``), or with ``--tune all`` every weight (the start merged; the base's own for ``base``)."""
    from factory.lora.options import FinetuneOptions

    zero = init == "base"
    training = dict(pairs=opts.pairs, steps=opts.steps, seconds=opts.seconds, eval_every=opts.eval_every,
                    seed=opts.seed, decay_over=opts.decay_over, augment=opts.augment, screen=opts.screen,
                    screen_scale=opts.screen_scale, screen_windows=opts.screen_windows,
                    screen_harmonics=opts.screen_harmonics,
                    screen_lattice=opts.screen_lattice, readout=opts.readout, ema=opts.ema,
                    colour_basis=opts.colour_basis, lens_basis=opts.lens_basis, output_curves=opts.output_curves)
    if opts.tune == "all":
        return FinetuneOptions(init="full" if zero else init, tune="lora" if zero else "all", **training)
    return FinetuneOptions(init=init, layers=DEFAULT_LAYERS if zero else None, rank=DEFAULT_RANK if zero else None,
                           **training)


def trained_files(ws: Workspace, concept: str, ft) -> tuple[Path, Path]:
    """(the folder the fine-tune ``ft`` writes, its weights file): ``loras/<concept>/`` and the adapter, or with
    ``--tune all`` ``loras/<concept>/tuned/`` (``full/`` from zero-init) and the whole generator."""
    from factory.lora.finetune import default_out_dir

    out = default_out_dir(ws, concept, ft)
    return out, out / ("diffusion_pytorch_model.safetensors" if ft.trains_all else "adapter_model.safetensors")


def finetune_stage(ws: Workspace, concept: str, base: BaseGAN, ft, restart: bool, log: Log) -> dict[str, Any]:
    """Run (or resume) the fine-tune ``ft`` (``finetune_options``) into its ``trained_files`` folder."""
    from factory.lora.finetune import finetune

    out, _ = trained_files(ws, concept, ft)
    m = finetune(ws, concept, base, ft, out_dir=out, restart=restart, log=log)
    return {"steps": m["training"]["steps"], "seconds": m["training"]["seconds"],
            "test_psnr": m["test"]["student"]["psnr"], "adapter_params": m.get("adapter_params"), "out": str(out),
            "tune": ft.tune}


def zero_shot_stage(ws: Workspace, card: ConceptCard, base: BaseGAN, init: dict[str, Any]) -> dict[str, Any]:
    """``--zero-shot``: the starting adapter, untrained, becomes the concept's LoRA (loras/<concept>/)."""
    import shutil

    from factory.core.atomic import atomic_folder

    if init["init"] == "base":
        raise FactoryError(f"--zero-shot: no starting adapter ({init.get('why', 'zero-init LoRA')}); a zero-shot "
                           "editor needs a weight generator for this base (see `factory pretrain info`)")
    with atomic_folder(ws.lora(card.name)) as tmp:
        for f in Path(init["init"]).iterdir():
            if f.is_file():
                shutil.copy2(f, tmp / f.name)
        atomic_write_json(tmp / "metrics.json", {
            "concept": card.name, "instruction": card.instruction, "base": str(base.folder), "zero_shot": True,
            "init": init.get("kind", "weightgen"), "init_adapter": init["init"],
            "training": {"steps": 0, "seconds": 0.0}, "pairs": {"train": []}})
    return {"zero_shot": True, "steps": 0, "seconds": 0.0, "init": init.get("kind", "weightgen")}


# -- 5. export ---------------------------------------------------------------------------------------
def export_stage(ws: Workspace, card: ConceptCard, base: BaseGAN, opts: RunOptions, log: Log,
                 trained: Path) -> dict[str, Any]:
    """The editor from the base with the LoRA in ``trained`` merged, or from ``trained`` itself when it holds a
    whole fine-tuned generator (``--tune all``)."""
    from base_gan.models import BaseGAN
    from factory.export.editor import ExportRequest, export_editor
    from factory.pipeline.manifest import write_manifest

    concept = card.name
    whole = not (trained / "adapter_model.safetensors").is_file()
    model, adapter = (BaseGAN.load(trained), None) if whole else (base, trained)
    note = f"every weight fine-tuned ({trained})" if whole else f"LoRA {adapter} merged"
    req = ExportRequest(concept=concept, base=model, adapter_dir=adapter, adapter_note=note,
                        instruction=card.instruction, data_dir=ws.data(concept), out_dir=ws.editor(concept),
                        size=opts.export_size, int8=opts.int8, ort=opts.ort, text_cache=ws.text_cache,
                        curves_dir=trained)
    files = export_editor(req, log=lambda m: log(f"export: {m}"))["files"]
    write_manifest(ws)  # editors/manifest.json lists the new editor
    return {"files": files}


# -- 6. eval -----------------------------------------------------------------------------------------
def eval_stage(ws: Workspace, concept: str, log: Log, zero_shot: bool = False) -> dict[str, Any]:
    """The exported editors (fp32, int8) on the concept's test pairs at the data's size: PSNR/SSIM against
    the teacher next to the identity baseline; a source | teacher | editor grid image per test pair."""
    from factory.data.dataset import to_uint8
    from factory.data.pair_store import read_manifest
    from factory.evaluation.heldout import HeldOutPairs, editor_edit
    from factory.evaluation.metrics import falls_short, learned
    from factory.runtime.editor import EDITOR_FILES, Editor

    if zero_shot and not read_manifest(ws.data(concept)):
        result = {"test_pairs": 0, "identity": None,
                  "why": "--zero-shot and no teacher pairs: quality not measured (run `factory synth` for them)"}
        atomic_write_json(run_dir(ws, concept) / "eval.json", result)
        log(f"eval: {result['why']}")
        return result
    held = HeldOutPairs(ws.data(concept), split="test")
    if len(held) == 0:
        raise FactoryError(f"{ws.data(concept)}: no test pairs to evaluate on (the photos' test split is empty)")
    outputs = {p: held.outputs(editor_edit(Editor(ws.editor(concept) / EDITOR_FILES[p]))) for p in ("fp32", "int8")
               if (ws.editor(concept) / EDITOR_FILES[p]).is_file()}
    round4 = lambda q: {k: round(v, 4) for k, v in q.items()}
    result: dict[str, Any] = {"test_pairs": len(held), "size": int(held.source.shape[-1]),
                              "identity": round4(held.identity())}
    for name, out in outputs.items():
        result[f"editor_{name}"] = round4(held.score_outputs(out, full=True))
    shown = "fp32" if "fp32" in outputs else next(iter(outputs), None)
    if shown:
        result["learned"] = learned(result[f"editor_{shown}"], result["identity"])
        result["short_of"] = falls_short(result[f"editor_{shown}"], result["identity"])
    grid_dir = run_dir(ws, concept) / "grid"
    rows = []
    for i in range(min(len(held), 6)):
        cells = [("source", held.source[i]), ("teacher", held.target[i])]
        if shown:
            cells.append((f"editor ({shown})", outputs[shown][i]))
        row = []
        for label, t in cells:
            path = grid_dir / f"{i:02d}-{label.split()[0]}.png"
            atomic_write_png(path, to_uint8(t))
            row.append([label, str(path)])
        rows.append(row)
    result["grid"] = rows
    atomic_write_json(run_dir(ws, concept) / "eval.json", result)
    if shown:
        e, i = result[f"editor_{shown}"], result["identity"]
        log(f"eval: {shown} editor PSNR {e['psnr']:.2f} dB / HaarPSI {e['haarpsi']:.3f} / GMSD {e['gmsd']:.3f} vs "
            f"identity {i['psnr']:.2f} dB / {i['haarpsi']:.3f} / {i['gmsd']:.3f} on {len(held)} test pairs: "
            + ("learned" if result["learned"] else "NOT learned: not better than the unchanged photo on "
               + ", ".join(f"{m.upper()} ({e[m]:.3g} vs {i[m]:.3g})" for m in result["short_of"])
               + " (learned = better on PSNR and on every structural metric)"))
    return result
