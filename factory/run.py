"""``factory run``: one concept from text (or a card) to a checked mobile editor and its report.

Stages, in order (each records what it was run with in ``<workspace>/runs/<concept>/state.json``
and is skipped when that record matches and its outputs are there):

1. card      the concept card (a built-in or workspace card, or a new one written from the text);
2. synth     the teacher's pairs at the base's resolution (``factory synth``; resumable itself);
3. init      the starting adapter: sampled by the weight generator from the concept text
             (the workspace's own or the shipped pretrained one), else zero-init LoRA;
4. finetune  the LoRA on the frozen base (``factory finetune``; resumes its own checkpoints);
5. export    fp32 + int8 ONNX and .ort files, checked (``factory export``);
6. eval      the exported editors on the concept's held-out test pairs, next to the identity baseline;
7. report    ``<workspace>/reports/<concept>.html`` (``factory report``).

A stage's fingerprint includes the fingerprint of the stage before, so changing an early input
redoes everything after it; a longer fine-tune budget continues the saved fine-tune.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from factory.atomic import atomic_write_json
from factory.concepts import SLUG_RE, ConceptCard, builtin_cards, create_card, find_card, list_cards, slugify
from factory.errors import FactoryError
from factory.locks import exclusive_lock
from factory.workspace import Workspace

STAGES = ("card", "synth", "init", "finetune", "export", "eval", "report")
STATE = "state.json"
#: the LoRA layout of a zero-init run when no weight generator fixes one (the pretrained weight
#: generator's layout; see bench/weightgen.py)
DEFAULT_LAYERS = "down1,down2,attn,xattn,ff,up1,up2"
DEFAULT_RANK = 4

Log = Callable[[str], None]


@dataclass
class RunOptions:
    """What ``factory run`` was asked for."""

    target: str                      # a card name, a card .yaml path, or the instruction text of a new concept
    teacher: str | None = None       # override the card's teacher (and the teacher of a new card)
    model: str | None = None         # diffusers model for a diffusion teacher (Hub id or local folder)
    images: Path | None = None       # source photos (default: scikit-image's, fixed split)
    base: str | None = None          # base name/folder (default: the workspace's 'default', else the shipped one)
    init: str = "auto"               # auto | weightgen | base
    n_pairs: int = 120               # pairs to synthesize (train + test)
    pairs: int | None = None         # K training pairs for the fine-tune (clustered)
    seconds: float = 120.0           # fine-tune wall-clock budget
    steps: int = 100_000             # fine-tune step cap
    eval_every: int = 20
    export_size: int = 256
    int8: bool = True
    ort: bool = True
    stop_after: str | None = None
    seed: int = 0


def run_dir(ws: Workspace, concept: str) -> Path:
    return ws.root / "runs" / concept


def _digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _file_digest(path: Path) -> str:
    from factory.pair_store import sha256_file

    return sha256_file(path)[:16]


class RunState:
    """``runs/<concept>/state.json``: per stage, its fingerprint, budget, time and outputs."""

    def __init__(self, folder: Path):
        self.path = folder / STATE
        self.data: dict[str, Any] = json.loads(self.path.read_text(encoding="utf-8")) if self.path.is_file() \
            else {"stages": {}}

    def get(self, stage: str) -> dict[str, Any] | None:
        return self.data["stages"].get(stage)

    def up_to_date(self, stage: str, fingerprint: str, budget: Any = None) -> bool:
        rec = self.get(stage)
        return bool(rec and rec.get("fingerprint") == fingerprint and rec.get("budget") == budget
                    and all(Path(p).exists() for p in rec.get("outputs", [])))

    def record(self, stage: str, fingerprint: str, seconds: float, outputs: list[Path], info: dict | None = None,
               budget: Any = None) -> None:
        self.data["stages"][stage] = {"fingerprint": fingerprint, "budget": budget, "seconds": round(seconds, 2),
                                      "outputs": [str(p) for p in outputs], "info": info or {},
                                      "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        atomic_write_json(self.path, self.data)

    def forget_after(self, stage: str) -> None:
        """Drop the records of the stages after ``stage`` (their inputs changed)."""
        for later in STAGES[STAGES.index(stage) + 1:]:
            self.data["stages"].pop(later, None)


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


def _card_digest(card: ConceptCard) -> str:
    return _file_digest(card.path) if card.path and Path(card.path).is_file() else _digest(card.name)


# -- 2. synth -----------------------------------------------------------------------------------------
def synth_stage(ws: Workspace, card: ConceptCard, opts: RunOptions, size: int, log: Log) -> dict[str, Any]:
    from tqdm import tqdm

    from factory.synth import SYNTH_META, synthesize
    from factory.teachers import make_teacher, teacher_params

    folder = ws.data(card.name)
    kind = opts.teacher or card.teacher.kind
    if kind == "pairs":
        from factory.pairs_import import import_pairs

        if opts.images is None:
            raise FactoryError(f"{card.name}: the pairs teacher needs --images DIR (train_A/ + train_B/, or A|B images)")
        found, total, added = import_pairs(folder, opts.images, size, 0.1)
        atomic_write_json(folder / SYNTH_META, {"concept": card.name, "instruction": card.instruction,
                                         "teacher": {"kind": "pairs", "format": found.format, "origin": str(opts.images)},
                                         "size": size, "origin": str(opts.images), "seed": None})
        return {"pairs": total, "new": added, "teacher": "pairs"}
    from factory.photos import default_photos, folder_photos

    params = teacher_params(card.teacher.kind, card.teacher.params, kind, {"model": opts.model})
    photos = folder_photos(opts.images, 0.1) if opts.images else default_photos()
    if photos.skipped:
        log(f"synth: skipped {len(photos.skipped)} unreadable file(s): "
            + "; ".join(f"{p}: {why}" for p, why in photos.skipped[:5]))
    teacher = make_teacher(kind, params, source=str(card.path or card.name))
    with tqdm(total=opts.n_pairs, desc=f"synth {card.name}", unit="pair", leave=False) as bar:
        result = synthesize(folder, card.name, card.instruction, teacher, photos, opts.n_pairs, size, opts.seed,
                            progress=bar.update)
    if result.refused:
        log(f"synth: the teacher declined {len(result.refused)} pair(s)")
    return {"pairs": result.total, "new": result.new, "teacher": kind}


# -- 3. init -----------------------------------------------------------------------------------------
def init_stage(ws: Workspace, card: ConceptCard, base_dir: Path, opts: RunOptions, log: Log) -> dict[str, Any]:
    """Sample the weight generator's adapter for the concept text into runs/<concept>/init/ (or zero-init)."""
    from weight_generator.sample import find_weightgen, generate_init_adapter

    out = run_dir(ws, card.name) / "init"
    if opts.init == "base":
        return {"init": "base", "why": "--init base (zero-init LoRA)"}
    try:
        folder = find_weightgen(ws)
        started = time.perf_counter()
        generate_init_adapter(ws, card.instruction, base_dir, out, seed=opts.seed)
    except FactoryError as exc:
        if opts.init == "weightgen":
            raise
        log(f"init: no usable weight generator ({exc}); starting from zero-init LoRA")
        return {"init": "base", "why": str(exc)}
    seconds = time.perf_counter() - started
    return {"init": str(out), "weightgen": str(folder), "sample_seconds": round(seconds, 3),
            "why": "adapter sampled by the weight generator from the concept text"}


# -- 4. finetune ---------------------------------------------------------------------------------------
def finetune_options(opts: RunOptions, init: str):
    from base_gan.finetune import FinetuneOptions

    zero = init == "base"
    return FinetuneOptions(init=init, layers=DEFAULT_LAYERS if zero else None, rank=DEFAULT_RANK if zero else None,
                           pairs=opts.pairs, steps=opts.steps, seconds=opts.seconds, eval_every=opts.eval_every,
                           seed=opts.seed)


# -- 6. eval -------------------------------------------------------------------------------------------
def eval_stage(ws: Workspace, concept: str, log: Log) -> dict[str, Any]:
    """The exported editors (fp32, int8) on the concept's test pairs at the data's size: PSNR/SSIM against
    the teacher next to the identity baseline; a source | teacher | editor grid image per test pair."""
    import numpy as np
    import torch

    from factory.atomic import atomic_write_png
    from factory.dataset import PairedDataset, to_uint8
    from factory.metrics import quality
    from factory.runtime import Editor

    ds = PairedDataset([ws.data(concept)], split="test")
    if len(ds) == 0:
        raise FactoryError(f"{ws.data(concept)}: no test pairs to evaluate on (the photos' test split is empty)")
    items = [ds[i] for i in range(len(ds))]
    src = torch.stack([it["source"] for it in items])
    tgt = torch.stack([it["target"] for it in items])
    editors = {"fp32": ws.editor(concept) / "editor.onnx", "int8": ws.editor(concept) / "editor.int8.onnx"}
    outputs = {}
    for name, path in editors.items():
        if path.is_file():
            ed = Editor(path)
            outputs[name] = torch.from_numpy(np.concatenate([ed.run(src[i:i + 8].numpy())
                                                             for i in range(0, len(src), 8)]))
    mean = lambda q: {k: round(float(v.mean()), 4) for k, v in q.items()}  # noqa: E731
    result: dict[str, Any] = {"test_pairs": len(ds), "size": int(src.shape[-1]), "identity": mean(quality(src, tgt))}
    for name, out in outputs.items():
        result[f"editor_{name}"] = mean(quality(out, tgt))
    grid_dir = run_dir(ws, concept) / "grid"
    grid_dir.mkdir(parents=True, exist_ok=True)
    shown = "fp32" if "fp32" in outputs else next(iter(outputs), None)
    rows = []
    for i in range(min(len(ds), 6)):
        row = []  # [label, png path] in display order
        for name, t in (("source", src[i]), ("teacher", tgt[i])) + (((f"editor ({shown})", outputs[shown][i]),)
                                                                        if shown else ()):
            path = grid_dir / f"{i:02d}-{name.split()[0]}.png"
            atomic_write_png(path, to_uint8(t))
            row.append([name, str(path)])
        rows.append(row)
    result["grid"] = rows
    atomic_write_json(run_dir(ws, concept) / "eval.json", result)
    e = result.get("editor_int8") or result.get("editor_fp32")
    if e:
        log(f"eval: editor PSNR {e['psnr']:.2f} dB / SSIM {e['ssim']:.3f} vs identity "
            f"{result['identity']['psnr']:.2f} dB / {result['identity']['ssim']:.3f} on {len(ds)} test pairs")
    return result


# -- the chain -----------------------------------------------------------------------------------------
@dataclass
class RunResult:
    concept: str
    report: Path | None
    editor: Path
    stages: dict[str, str]  # stage -> "ran" | "skipped"
    seconds: float


def run(ws: Workspace, opts: RunOptions, log: Log = print) -> RunResult:
    """Run (or resume) every stage for one concept; see the module docstring."""
    if opts.stop_after is not None and opts.stop_after not in STAGES:
        raise FactoryError(f"--stop-after {opts.stop_after}: expected one of {', '.join(STAGES)}")
    if opts.init not in ("auto", "weightgen", "base"):
        raise FactoryError(f"--init {opts.init}: expected auto, weightgen or base")
    if opts.seconds <= 0 or opts.steps < 1 or opts.n_pairs < 4:
        raise FactoryError("--seconds must be > 0, --steps >= 1 and --synth-pairs >= 4")
    started = time.perf_counter()
    card = resolve_card(ws, opts.target, opts.teacher, log)
    concept = card.name
    with exclusive_lock(run_dir(ws, concept) / ".lock", f"another `factory run` is working on '{concept}' in "
                                                       f"{ws.root}; wait for it to finish (or stop it)"):
        return _run_stages(ws, opts, card, started, log)


def _run_stages(ws: Workspace, opts: RunOptions, card: ConceptCard, started: float, log: Log) -> RunResult:
    from factory.pretrained import resolve_base

    concept = card.name
    folder = run_dir(ws, concept)
    state = RunState(folder)
    done: dict[str, str] = {}
    base_dir = resolve_base(ws, opts.base)
    base_cfg = json.loads((base_dir / "config.json").read_text(encoding="utf-8"))
    size = int(base_cfg["generator"].get("image_size", 128))

    def stage(name: str, fingerprint: str, body: Callable[[], tuple[list[Path], dict]], budget: Any = None) -> dict:
        rec = state.get(name)
        if state.up_to_date(name, fingerprint, budget):
            log(f"{name}: up to date, skipped")
            done[name] = "skipped"
            return rec["info"]
        if rec and rec.get("fingerprint") != fingerprint:
            state.forget_after(name)
        t0 = time.perf_counter()
        outputs, info = body()
        state.record(name, fingerprint, time.perf_counter() - t0, outputs, info, budget)
        done[name] = "ran"
        return info

    def stop(name: str) -> bool:
        return opts.stop_after == name

    def stopped() -> RunResult:
        return RunResult(concept, None, ws.editor(concept), done, time.perf_counter() - started)

    fp = _digest("card", _card_digest(card), opts.teacher, opts.model)
    stage("card", fp, lambda: ([card.path] if card.path else [], {"name": concept, "instruction": card.instruction,
                                                                   "path": str(card.path), "teacher": card.teacher.kind}))
    if stop("card"):
        return stopped()

    fp = _digest(fp, "synth", str(opts.images), opts.n_pairs, size, opts.seed)
    synth = stage("synth", fp, lambda: ([ws.data(concept) / "manifest.jsonl"],
                                        synth_stage(ws, card, opts, size, log)))
    log(f"synth: {synth['pairs']} pairs in {ws.data(concept)}")
    if stop("synth"):
        return stopped()

    base_digest = _file_digest(base_dir / "generator.safetensors")
    fp = _digest(fp, "init", opts.init, base_digest, _weightgen_digest(ws))

    def do_init():
        info = init_stage(ws, card, base_dir, opts, log)
        return ([Path(info["init"])] if info["init"] != "base" else []), info

    init = stage("init", fp, do_init)
    log(f"init: {'weight generator ' + init['weightgen'] if init['init'] != 'base' else 'zero-init LoRA'}")
    if stop("init"):
        return stopped()

    ft_opts = finetune_options(opts, init["init"])
    fp = _digest(fp, "finetune", {k: v for k, v in asdict(ft_opts).items() if k not in ("steps", "seconds")})
    restart = bool(state.get("finetune") and state.get("finetune")["fingerprint"] != fp)

    def do_finetune():
        from base_gan.finetune import finetune

        m = finetune(ws, concept, base_dir, ft_opts, restart=restart, log=log)
        out = ws.lora(concept)
        return [out / "adapter_model.safetensors", out / "metrics.json"], {
            "steps": m["training"]["steps"], "seconds": m["training"]["seconds"],
            "test_psnr": m["test"]["student"]["psnr"], "adapter_params": m["adapter_params"]}

    ft = stage("finetune", fp, do_finetune, budget=[opts.steps, opts.seconds])
    log(f"finetune: {ft['steps']} steps in {ft['seconds']:.0f} s, test PSNR {ft['test_psnr']:.2f} dB")
    if stop("finetune"):
        return stopped()

    fp = _digest(fp, "export", _file_digest(ws.lora(concept) / "adapter_model.safetensors"), opts.export_size,
                 opts.int8, opts.ort)

    def do_export():
        from factory.export.editor import ExportRequest, export_editor

        req = ExportRequest(concept=concept, base_dir=base_dir, adapter_dir=ws.lora(concept),
                            adapter_note=f"LoRA {ws.lora(concept)} merged", instruction=card.instruction,
                            data_dir=ws.data(concept), out_dir=ws.editor(concept), size=opts.export_size,
                            int8=opts.int8, ort=opts.ort, text_cache=ws.text_cache)
        card_json = export_editor(req, log=lambda m: log(f"export: {m}"))
        return [ws.editor(concept) / "card.json"], {"files": card_json["files"]}

    stage("export", fp, do_export)
    if stop("export"):
        return stopped()

    fp = _digest(fp, "eval", _file_digest(ws.editor(concept) / "card.json"))
    def do_eval():
        result = eval_stage(ws, concept, log)
        return [run_dir(ws, concept) / "eval.json"], {k: result[k] for k in result if k != "grid"}

    stage("eval", fp, do_eval)
    if stop("eval"):
        return stopped()

    from factory.report import build_report

    fp = _digest(fp, "report", _file_digest(run_dir(ws, concept) / "eval.json"))
    report_path = ws.reports / f"{concept}.html"
    stage("report", fp, lambda: ([build_report(ws, concept)], {}))
    return RunResult(concept, report_path, ws.editor(concept), done, time.perf_counter() - started)


def _weightgen_digest(ws: Workspace) -> str:
    """Which weight generator ``find_weightgen`` would use now (folder and weights), or 'none'."""
    from weight_generator.sample import find_weightgen

    try:
        folder = find_weightgen(ws)
    except FactoryError:
        return "none"
    w = folder / "model.safetensors"
    return _digest(str(folder), w.stat().st_size, w.stat().st_mtime_ns)
