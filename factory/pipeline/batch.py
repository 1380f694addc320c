"""``factory batch``: ``factory run`` for many concepts, on local worker processes or a Ray cluster.

Every concept is one job: a ``factory run`` subprocess (its output in ``batches/logs/<slug>.log``),
so a concept that fails, however it fails (a bad card, a teacher error, an out-of-memory kill),
is recorded with its error and cannot take the others down. Executors:

* ``local``: a pool of ``--workers`` threads, each driving one subprocess at a time;
* ``ray``: one Ray task per concept (``num_cpus``/``num_gpus`` per task), connecting to
  ``--address`` or starting a local instance on loopback. The workspace path must be the same on
  every node (a shared filesystem); each task writes straight into it.

``<workspace>/reports/batch.json`` is rewritten (atomically) after every finished concept, so a
batch killed half way loses nothing that was finished; running the batch again skips concepts
recorded as done whose editor and report are still there, and retries failed or missing ones.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import queue
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from factory.core.errors import FactoryError
from factory.core.files import read_json
from factory.core.workspace import Workspace
from factory.pipeline.run_state import run_dir, trained_dir

BATCH_JSON = "batch.json"
LIST_SUFFIXES = (".txt", ".list")


# -- what to run -------------------------------------------------------------------------------------
def read_targets(args: Iterable[str]) -> list[str]:
    """Concepts from the command line: card names, card .yaml paths, folders of cards, instruction texts,
    and text files (.txt/.list) with one of those per line (blank lines and # comments skipped)."""
    out: list[str] = []
    for arg in args:
        path = Path(arg)
        if path.suffix in LIST_SUFFIXES:
            if not path.is_file():
                raise FactoryError(f"{arg}: concept list not found")
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except UnicodeDecodeError:
                raise FactoryError(f"{arg}: not a UTF-8 text file (one concept per line)") from None
            out += [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
        elif path.is_dir():
            cards = sorted(str(p) for p in path.glob("*.y*ml"))
            if not cards:
                raise FactoryError(f"{arg}: no concept cards (*.yaml) in this folder")
            out += cards
        else:
            out.append(arg.strip())
    seen: set[str] = set()
    unique = [t for t in out if t and not (t in seen or seen.add(t))]
    if not unique:
        raise FactoryError("no concepts to run: pass card names, .yaml cards, instruction texts or a .txt list")
    return unique


def slug(target: str) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", Path(target).stem.lower() if target.endswith((".yaml", ".yml")) else target.lower())
    return s.strip("-")[:60] or "concept"


# -- one job -----------------------------------------------------------------------------------------
def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: the job gets SIGTERM when the batch process dies, so a killed batch leaves no orphans."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _last_error(log_text: str) -> str:
    lines = [ln.strip() for ln in log_text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    if errors:
        return errors[-1][len("error:"):].strip()
    tail = [ln for ln in lines if not ln.startswith(("finetune ", "synth "))]  # progress bars
    return (tail or lines or ["no output"])[-1][-500:]


def visible_gpus() -> list[str]:
    """The CUDA devices this process may use (``CUDA_VISIBLE_DEVICES`` when set), as ids to hand on."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [g.strip() for g in listed.split(",") if g.strip() and g.strip() != "-1"]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def gpu_for(slot: int, gpus: list[str], run_args: list[str]) -> str | None:
    """The GPU worker ``slot`` runs on: round-robin over ``gpus``; None without GPUs or with an explicit
    ``--device`` (the user's choice stands)."""
    if not gpus or "--device" in run_args:
        return None
    return gpus[slot % len(gpus)]


def run_job(workspace: str, target: str, run_args: list[str], seed: int, threads: int,
            gpu: str | None = None) -> dict[str, Any]:
    """Run ``factory run TARGET`` in a subprocess (on ``gpu`` only, when given) and return its record (never
    raises for the job's own failure)."""
    ws = Workspace(Path(workspace))
    logs = ws.root / "batches" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    name = slug(target)
    log_path, summary = logs / f"{name}.log", logs / f"{name}.summary.json"
    summary.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "factory", "--workspace", str(ws.root), "--seed", str(seed), "run", target,
           *run_args, "--summary-json", str(summary)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    started = time.time()
    with open(log_path, "w", encoding="utf-8") as log:
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                              preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
    seconds = time.time() - started
    record: dict[str, Any] = {"target": target, "seconds": round(seconds, 1), "log": str(log_path),
                              "returncode": proc.returncode, "host": os.uname().nodename, "gpu": gpu}
    if proc.returncode == 0 and summary.is_file():
        out = json.loads(summary.read_text(encoding="utf-8"))
        record.update(status="done", concept=out["concept"], editor=out["editor"], report=out["report"])
        record.update(figures(ws, out["concept"]))
        return record
    text = log_path.read_text(encoding="utf-8", errors="replace")
    if proc.returncode < 0:
        sig = signal.Signals(-proc.returncode).name
        why = f"killed by {sig}" + (" (out of memory?)" if sig == "SIGKILL" else "")
    else:
        why = _last_error(text)
    record.update(status="failed", error=why)
    return record


def figures(ws: Workspace, concept: str) -> dict[str, Any]:
    """Quality, sizes and latency of a finished concept, from its run's files."""
    out: dict[str, Any] = {}
    ev = read_json(run_dir(ws, concept) / "eval.json")
    if ev:
        out["quality"] = {k: ev[k] for k in ("identity", "editor_fp32", "editor_int8") if k in ev}
    card = read_json(ws.editor(concept) / "card.json")
    if card:
        out["instruction"] = card["instruction"]
        out["sizes"] = card["files"]
        out["latency_ms"] = {k: round(v["median_ms"], 2) for k, v in card["latency_ms"].items()
                             if isinstance(v, dict) and "median_ms" in v}
    m = read_json(trained_dir(ws, concept) / "metrics.json")
    if m and "adapter_params" in m:
        out["adapter_params"] = m["adapter_params"]
    return out


# -- executors -------------------------------------------------------------------------------------
Job = Callable[[str, int], dict[str, Any]]  # (target, worker slot) -> record


def run_local(targets: list[str], job: Job, workers: int,
              on_done: Callable[[dict], None]) -> None:
    """``job(target, slot)`` for every target on ``workers`` threads; ``slot`` (0..workers-1) is the worker's, held
    for the job's whole run (so a GPU given per slot serves one job at a time)."""
    slots: queue.Queue[int] = queue.Queue()
    for k in range(workers):
        slots.put(k)

    def in_slot(target: str) -> dict[str, Any]:
        slot = slots.get()
        try:
            return job(target, slot)
        finally:
            slots.put(slot)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(in_slot, t): t for t in targets}
        for fut in as_completed(futures):
            try:
                on_done(fut.result())
            except Exception as exc:  # the job's own failures are records; this is the pool failing
                on_done({"target": futures[fut], "status": "failed", "error": f"{type(exc).__name__}: {exc}"})


def run_ray(targets: list[str], workspace: str, run_args: list[str], seed: int, workers: int, address: str | None,
            cpus_per_job: float, gpus_per_job: float, on_done: Callable[[dict], None]) -> dict[str, Any]:
    try:
        import ray
    except ImportError:
        raise FactoryError("--executor ray needs Ray: pip install 'editfactory[ray]'") from None
    started_here = address is None
    if started_here:  # a private local instance on loopback, as many CPUs as --workers
        ray.init(num_cpus=workers * cpus_per_job, include_dashboard=False, _node_ip_address="127.0.0.1",
                 log_to_driver=False, configure_logging=False)
    else:
        try:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
        except Exception as exc:
            raise FactoryError(f"cannot connect to the Ray cluster at {address}: {exc}") from None
    try:
        threads = max(1, int(cpus_per_job))
        task = ray.remote(num_cpus=cpus_per_job, num_gpus=gpus_per_job, max_retries=0)(run_job)
        refs = {task.remote(workspace, t, run_args, seed, threads): t for t in targets}
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1)
            target = refs.pop(ready[0])
            try:
                on_done(ray.get(ready[0]))
            except Exception as exc:  # the task itself died (worker crash, node lost)
                on_done({"target": target, "status": "failed", "error": f"Ray task failed: {type(exc).__name__}: "
                                                                       f"{str(exc).strip().splitlines()[0][:300]}"})
        return {"address": address or "local (started by factory batch)",
                "nodes": len(ray.nodes()), "resources": ray.cluster_resources()}
    finally:
        ray.shutdown()


# -- the batch -------------------------------------------------------------------------------------
@dataclass
class BatchOptions:
    executor: str = "local"          # local | ray
    workers: int = 1
    address: str | None = None
    cpus_per_job: float = 1.0
    gpus_per_job: float = 0.0
    run_args: list[str] = field(default_factory=list)
    seed: int = 0


def previous_records(ws: Workspace) -> dict[str, dict]:
    data = read_json(ws.reports / BATCH_JSON)
    return {r["target"]: r for r in (data or {}).get("concepts", [])}


def still_done(record: dict | None) -> bool:
    return bool(record and record.get("status") == "done" and record.get("report")
                and Path(record["report"]).is_file() and Path(record.get("editor", "")).is_dir())


def run_batch(ws: Workspace, targets: list[str], opts: BatchOptions, log: Callable[[str], None] = print) -> dict:
    """Run every target not already done; returns the batch summary (also written to reports/)."""
    from factory.pipeline.batch_summary import write_summary

    if opts.workers < 1:
        raise FactoryError("--workers must be at least 1")
    if opts.executor not in ("local", "ray"):
        raise FactoryError(f"--executor {opts.executor}: expected local or ray")
    ws.root.mkdir(parents=True, exist_ok=True)
    records = previous_records(ws)
    todo = [t for t in targets if not still_done(records.get(t))]
    for t in targets:
        if t not in todo:
            records[t]["skipped_this_time"] = True
    started = time.time()
    meta: dict[str, Any] = {"executor": opts.executor, "workers": opts.workers, "run_args": opts.run_args,
                            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "targets": targets}
    log(f"batch: {len(targets)} concept(s), {len(targets) - len(todo)} already done, running {len(todo)} "
        f"on {opts.executor} with {opts.workers} worker(s)")

    def save() -> dict:
        meta["wall_seconds"] = round(time.time() - started, 1)
        return write_summary(ws, [records[t] for t in targets if t in records], meta)

    def on_done(rec: dict) -> None:
        prev = records.get(rec["target"], {})
        rec["attempts"] = prev.get("attempts", 0) + 1
        records[rec["target"]] = rec
        save()
        state = "done" if rec["status"] == "done" else f"FAILED: {rec.get('error')}"
        log(f"  {rec['target']}: {state} ({rec.get('seconds', 0):.0f} s)")

    for t in todo:
        records.setdefault(t, {"target": t})
        records[t].pop("skipped_this_time", None)
        records[t].update(status="pending")
    save()
    workspace = str(ws.root.resolve())
    if opts.executor == "local":
        threads = max(1, (os.cpu_count() or 1) // opts.workers)
        gpus = visible_gpus()
        meta["gpus"] = gpus
        run_local(todo, lambda t, slot: run_job(workspace, t, opts.run_args, opts.seed, threads,
                                                gpu_for(slot, gpus, opts.run_args)), opts.workers, on_done)
    else:
        meta["ray"] = run_ray(todo, workspace, opts.run_args, opts.seed, opts.workers, opts.address,
                              opts.cpus_per_job, opts.gpus_per_job, on_done)
    meta["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    meta["ran"] = len(todo)
    return save()

