"""``factory run``: one concept from text (or a card) to a checked mobile editor and its report.

Stages, in order (each records what it was run with in ``<workspace>/runs/<concept>/state.json``
and is skipped when that record matches and its outputs are there):

1. card      the concept card (a built-in or workspace card, or a new one written from the text);
2. synth     the teacher's pairs at the base's resolution (``factory synth``; resumable itself);
3. init      the starting adapter: sampled by the weight generator from the concept text
             (the workspace's own or the shipped pretrained one), else zero-init LoRA;
4. finetune  the LoRA on the frozen base (``factory finetune``; resumes its own checkpoints); with
             ``--tune all`` the start merged into the base and every weight trained (``loras/<concept>/tuned/``);
             with ``--zero-shot`` there is no synth and no fine-tune: the starting adapter is the LoRA;
5. export    fp32 + int8 ONNX and .ort files, checked (``factory export``);
6. eval      the exported editors on the concept's held-out test pairs, next to the identity baseline;
7. report    ``<workspace>/reports/<concept>.html`` (``factory report``).

A stage's fingerprint includes the fingerprint of the stage before, so changing an early input
redoes everything after it; a longer fine-tune budget continues the saved fine-tune. The base is
loaded once and serves the init, finetune and export stages.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from concepts.cards import ConceptCard
from factory.core.locks import exclusive_lock
from factory.core.workspace import Workspace
from factory.pipeline import run_stages as st
from factory.pipeline.run_options import RunOptions
from factory.pipeline.run_state import STAGES, RunState, digest, file_digest, run_dir

Log = Callable[[str], None]


@dataclass
class RunResult:
    concept: str
    report: Path | None
    editor: Path
    stages: dict[str, str] = field(default_factory=dict)  # stage -> "ran" | "skipped"
    seconds: float = 0.0


def run(ws: Workspace, opts: RunOptions, log: Log = print) -> RunResult:
    """Run (or resume) every stage for one concept; see the module docstring."""
    opts.validate()
    started = time.perf_counter()
    card = st.resolve_card(ws, opts.target, opts.teacher, log)
    with exclusive_lock(run_dir(ws, card.name) / ".lock", f"another `factory run` is working on '{card.name}' in "
                                                          f"{ws.root}; wait for it to finish (or stop it)"):
        chain = _Chain(ws, opts, card, log)
        report = chain.run_all()
        return RunResult(card.name, report, ws.editor(card.name), chain.done, time.perf_counter() - started)


class _Chain:
    """The stages of one run, each skipped when its record in state.json is up to date."""

    def __init__(self, ws: Workspace, opts: RunOptions, card: ConceptCard, log: Log) -> None:
        from base_gan.models import BaseGAN
        from factory.pipeline.assets import resolve_base

        self.ws, self.opts, self.card, self.log = ws, opts, card, log
        self.concept = card.name
        self.state = RunState(run_dir(ws, card.name))
        self.done: dict[str, str] = {}
        self.base = BaseGAN.load(resolve_base(ws, opts.base))

    def stage(self, name: str, fingerprint: str, body: Callable[[], tuple[list[Path], dict]],
              budget: Any = None) -> dict:
        rec = self.state.get(name)
        if self.state.up_to_date(name, fingerprint, budget):
            self.log(f"{name}: up to date, skipped")
            self.done[name] = "skipped"
            return rec["info"]
        if rec and rec.get("fingerprint") != fingerprint:
            self.state.forget_after(name)
        t0 = time.perf_counter()
        outputs, info = body()
        self.state.record(name, fingerprint, time.perf_counter() - t0, outputs, info, budget)
        self.done[name] = "ran"
        return info

    def run_all(self) -> Path | None:
        """Every stage up to ``--stop-after``; the report's path, or None when stopped early."""
        for name in STAGES:
            getattr(self, f"_{name}")()
            if self.opts.stop_after == name:
                return None
        return self.ws.reports / f"{self.concept}.html"

    # -- the stages, in order; each extends the fingerprint of the one before --------------------------
    def _card(self) -> None:
        card, opts = self.card, self.opts
        path = Path(card.path) if card.path else None
        self.fp = digest("card", file_digest(path) if path and path.is_file() else digest(card.name),
                         opts.teacher, opts.model, opts.prompt, opts.negative_prompt)
        self.stage("card", self.fp, lambda: ([path] if path else [], {
            "name": card.name, "instruction": card.instruction, "path": str(card.path), "teacher": card.teacher.kind}))

    def _synth(self) -> None:
        opts, size = self.opts, self.base.image_size
        if opts.zero_shot:  # no teacher data: pairs made earlier, if any, still serve the evaluation
            self.fp = digest(self.fp, "synth", "zero-shot")
            self.log("synth: skipped (--zero-shot: no teacher data)")
            self.done["synth"] = "skipped"
            return
        self.fp = digest(self.fp, "synth", str(opts.images), opts.n_pairs, size, opts.seed)
        info = self.stage("synth", self.fp, lambda: ([self.ws.data(self.concept) / "manifest.jsonl"],
                                                     st.synth_stage(self.ws, self.card, opts, size, self.log)))
        self.log(f"synth: {info['pairs']} pairs in {self.ws.data(self.concept)}")

    def _init(self) -> None:
        init, sha = self.opts.init, self.base.sha256
        self.fp = digest(self.fp, "init", init, sha[:16], st.weightgen_digest(self.ws, init, sha, self.card))

        def body() -> tuple[list[Path], dict]:
            info = st.init_stage(self.ws, self.card, self.base, self.opts, self.log)
            return ([Path(info["init"])] if info["init"] != "base" else []), info

        self.init = self.stage("init", self.fp, body)
        kind = self.init.get("kind", "weightgen")
        self.log("init: " + ("zero-init LoRA" if self.init["init"] == "base" else
                             f"weight generator {self.init['weightgen']}" if kind == "weightgen" else
                             f"recipe ridge and weight generator {self.init['weightgen']}" if kind == "recipe+weightgen"
                             else f"{kind} baseline over {self.init['weightgen']}'s training adapters"))

    def _finetune(self) -> None:
        if self.opts.zero_shot:
            self.fp = digest(self.fp, "finetune", "zero-shot")
            self.trained = self.ws.lora(self.concept)
            self.weights = self.trained / "adapter_model.safetensors"
            self.stage("finetune", self.fp, lambda: (
                [self.weights], st.zero_shot_stage(self.ws, self.card, self.base, self.init)))
            self.log(f"finetune: none (--zero-shot): the starting adapter is the editor's LoRA ({self.trained})")
            return
        ft = st.finetune_options(self.opts, self.init["init"])
        kept = {k: v for k, v in ft.as_record().items() if k not in ("steps", "seconds")}
        self.fp = digest(self.fp, "finetune", kept)
        rec = self.state.get("finetune")
        restart = bool(rec and rec["fingerprint"] != self.fp)
        self.trained, self.weights = st.trained_files(self.ws, self.concept, ft)
        info = self.stage("finetune", self.fp, lambda: (
            [self.weights, self.trained / "metrics.json"],
            st.finetune_stage(self.ws, self.concept, self.base, ft, restart, self.log)),
            budget=[self.opts.steps, self.opts.seconds])
        what = "every weight" if ft.trains_all else "LoRA"
        self.log(f"finetune ({what}): {info['steps']} steps in {info['seconds']:.0f} s, "
                 f"test PSNR {info['test_psnr']:.2f} dB")

    def _export(self) -> None:
        opts = self.opts
        self.fp = digest(self.fp, "export", file_digest(self.weights), opts.export_size, opts.int8, opts.ort)
        self.stage("export", self.fp, lambda: ([self.ws.editor(self.concept) / "card.json"],
                                               st.export_stage(self.ws, self.card, self.base, opts, self.log,
                                                               self.trained)))

    def _eval(self) -> None:
        self.fp = digest(self.fp, "eval", file_digest(self.ws.editor(self.concept) / "card.json"))

        def body() -> tuple[list[Path], dict]:
            result = st.eval_stage(self.ws, self.concept, self.log, zero_shot=self.opts.zero_shot)
            return [run_dir(self.ws, self.concept) / "eval.json"], {k: v for k, v in result.items() if k != "grid"}

        self.stage("eval", self.fp, body)

    def _report(self) -> None:
        from factory.pipeline.report import build_report

        self.fp = digest(self.fp, "report", file_digest(run_dir(self.ws, self.concept) / "eval.json"))
        self.stage("report", self.fp, lambda: ([build_report(self.ws, self.concept)], {}))
