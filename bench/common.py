"""What every benchmark script shares: timestamped log lines, the provenance a results file records, writing a
results file with its markdown, and the photo shrunk to the pairs' size."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def log(msg: str) -> None:
    """One progress line with the wall-clock time, flushed (benchmarks run in the background with a log file)."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def git_commit() -> str:
    """The checked-out commit, short form ('' outside a git checkout), with ``+dirty`` when tracked files other
    than bench/results differ from it (the figures then come from code no commit holds)."""
    proc = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench/results"],
                           capture_output=True, text=True, cwd=REPO)
    return proc.stdout.strip() + ("+dirty" if proc.stdout.strip() and dirty.stdout.strip() else "")


def provenance(script: str) -> dict[str, object]:
    """Date, commit, the command as typed, the machine and its load: the header of every results file."""
    return {"date": datetime.now(UTC).isoformat(timespec="seconds"), "commit": git_commit(),
            "command": " ".join(["python", f"bench/{script}", *sys.argv[1:]]),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "load_average_1min": round(os.getloadavg()[0], 2)}


def write_results(out: Path, name: str, quick: bool, result: dict, markdown: str) -> Path:
    """``<out>/<name>.json`` and ``.md`` (``<name>-quick`` for a smoke run, so it never overwrites the figures);
    returns the markdown's path."""
    from factory.core.atomic import atomic_write_json, atomic_write_text

    name = f"{name}-quick" if quick else name
    atomic_write_json(out / f"{name}.json", result)
    atomic_write_text(out / f"{name}.md", markdown)
    return out / f"{name}.md"


def shrink_to_pairs(img, pair_size: int):
    """An HxWx3 image shrunk (area-averaged) so its short side is the pairs' size (full-size benchmarks score the
    photo there too)."""
    import cv2

    h, w = img.shape[:2]
    s = pair_size / min(h, w)
    return cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


def reference_curve_rule(settings: dict) -> str | None:
    """The output curves' rule a reference run (``bench/references.py``'s ``settings``) trained with, as
    ``factory.lora.options.curve_rule`` names it (None: no curves; a run recorded before the kinds or the folds were:
    those of then)."""
    from factory.lora.options import ADDED_LATER, curve_rule

    if not settings.get("output_curves"):
        return None
    return curve_rule(settings.get("curve_kinds", ADDED_LATER["curve_kinds"]),
                      settings.get("curve_folds", ADDED_LATER["curve_folds"]))


def arms_curve_rule(output_curves: bool) -> str | None:
    """The output curves' rule a fine-tune runs with by default (``factory.lora.options.curve_rule`` of its kinds and
    folds), None without the curves: what a reference must match to set the arms' target."""
    from factory.lora.options import CURVE_FOLDS, CURVE_KINDS, curve_rule

    return curve_rule(CURVE_KINDS, CURVE_FOLDS) if output_curves else None


def plateau_keys(output_curves: bool) -> tuple[str, ...]:
    """The curves whose plateau stops a reference (``bench/references.py``): with output curves, the calibrated PSNR
    and the student's own (``raw_psnr``), since the calibrated curve drops when the hold-out rule stops keeping the
    curves while the student still climbs; else the PSNR."""
    return ("psnr", "raw_psnr") if output_curves else ("psnr",)


def reference_stem(arch: str, concept: str, seed: int = 0) -> str:
    """The file stem (and run folder) of a reference run: ``<arch>-<concept>`` for seed 0, ``-seedN`` after it for
    another seed, so the first seed's files keep the names they had before there were several."""
    return f"{arch}-{concept}" if seed == 0 else f"{arch}-{concept}-seed{seed}"


def reference_order(ref: dict) -> tuple:
    """The order tables list reference runs in: by arch, concept, then seed (not by file name)."""
    return ref["arch"], ref["concept"], ref.get("seed", 0)


def stopped_before_plateau(result: dict, output_curves: bool) -> bool:
    """Whether a finished reference stopped at a plateau that does not hold under ``plateau_keys``: one stopped on
    its calibrated curve alone while the student climbed (it trains on from its checkpoint; its target is too low).
    A curve without a student's own PSNR (pix2pix's, whose recipe has no curves) is judged on its PSNR."""
    from factory.evaluation.curves import plateau
    from factory.evaluation.protocol import PLATEAU

    if result.get("stopped") != "plateau":
        return False
    rule, curve = result.get("plateau_rule", PLATEAU), result["curve"]
    keys = tuple(k for k in plateau_keys(output_curves) if all(k in r for r in curve))
    return plateau(curve, rule["min_gain_db"], rule["last_fraction"], rule["min_seconds"], keys) is None


def read_pairs(data: Path, split: str) -> tuple[list, list, list[str]]:
    """A concept data folder's ``split`` pairs: RGB sources, RGB targets and each pair's photo group."""
    import cv2

    from factory.data.pair_store import photo_group, read_manifest

    def read(rel: str):
        return cv2.cvtColor(cv2.imread(str(data / rel)), cv2.COLOR_BGR2RGB)

    records = [r for r in read_manifest(data) if r.get("split") == split]
    return ([read(r["source"]) for r in records], [read(r["target"]) for r in records],
            [photo_group(r) for r in records])


def provenance_line(result: dict) -> str:
    """``provenance``'s header as one markdown line: date, commit, command, machine."""
    return f"{result['date']}, commit `{result['commit']}`, `{result['command']}` ({result['machine']})"


def mean_sd_table(runs: list[dict], key: str = "scores") -> dict[str, dict[str, tuple[float, float]]]:
    """{label: {candidate: (mean, sd)}} over ``runs`` of each run's mean of ``run[key][label][candidate]`` (a list
    of per-photo figures), rounded to 2 decimals (sd 0 for one run)."""
    import statistics

    table: dict[str, dict[str, tuple[float, float]]] = {}
    for label in runs[0][key]:
        for name in runs[0][key][label]:
            per_run = [statistics.fmean(r[key][label][name]) for r in runs]
            sd = statistics.stdev(per_run) if len(per_run) > 1 else 0.0
            table.setdefault(label, {})[name] = (round(statistics.fmean(per_run), 2), round(sd, 2))
    return table
