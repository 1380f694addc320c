"""Benchmark: throughput of ``factory batch`` with 1 vs 2 workers, local and Ray (issue 8).

Runs the same batch of N classic concepts (held out of the shipped models) four times, each in a
fresh workspace: local executor with 1 and 2 workers, Ray (a local loopback instance started by
``factory batch``) with 1 and 2 workers; writes concepts per minute and the 2-worker / 1-worker
ratio to ``bench/results/batch.{json,md}``.

    python bench/batch_throughput.py                  # 8 concepts, --seconds 10 each
    python bench/batch_throughput.py --concepts 4 --seconds 5
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from concepts.cards import builtin_cards
from factory.core.atomic import atomic_write_json, atomic_write_text
from factory.pipeline.assets import manifest

REPO = Path(__file__).resolve().parents[1]


def _rel(path: Path) -> str:
    """A path as recorded in results: relative to the repository when inside it."""
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--concepts", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=10.0, help="fine-tune budget per concept")
    ap.add_argument("--synth-pairs", type=int, default=48)
    ap.add_argument("--export-size", type=int, default=128)
    ap.add_argument("--work", type=Path, default=REPO / "bench" / "work" / "batch")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    ap.add_argument("--executors", default="local,ray")
    args = ap.parse_args()

    m = manifest() or {}
    seen = set(m.get("base", {}).get("concepts", [])) | set(m.get("weightgen", {}).get("concepts", []))
    pool = [c.name for c in builtin_cards() if c.teacher.kind == "classic" and c.name not in seen]
    concepts = sorted(pool)[: args.concepts]
    listing = args.work / "concepts.txt"
    args.work.mkdir(parents=True, exist_ok=True)
    listing.write_text("\n".join(concepts) + "\n")
    rows = []
    for executor in args.executors.split(","):
        for workers in (1, 2):
            ws = args.work / f"{executor}-{workers}"
            shutil.rmtree(ws, ignore_errors=True)
            cmd = [sys.executable, "-m", "factory", "--workspace", str(ws), "batch", str(listing), "--executor",
                   executor, "--workers", str(workers), "--seconds", str(args.seconds), "--synth-pairs",
                   str(args.synth_pairs), "--export-size", str(args.export_size)]
            print(f"{executor}, {workers} worker(s): {len(concepts)} concepts ...", flush=True)
            load = os.getloadavg()[0]
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
            wall = time.perf_counter() - t0
            summary = json.loads((ws / "reports" / "batch.json").read_text())
            rows.append({"executor": executor, "workers": workers, "wall_seconds": round(wall, 1),
                         "done": summary["done"], "failed": summary["failed"], "returncode": proc.returncode,
                         "concepts_per_minute": round(summary["done"] / wall * 60, 3), "load_average_before": load})
            print(f"  {wall:.0f} s, {summary['done']} done, {summary['failed']} failed", flush=True)
    ratios = {}
    for executor in args.executors.split(","):
        one, two = (next(r for r in rows if r["executor"] == executor and r["workers"] == w) for w in (1, 2))
        ratios[executor] = round(one["wall_seconds"] / two["wall_seconds"], 2)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=REPO).stdout.strip()
    result = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "commit": commit,
              "command": "python bench/batch_throughput.py " + " ".join(sys.argv[1:]), "cores": os.cpu_count(),
              "concepts": concepts, "settings": vars(args) | {"work": _rel(args.work), "out": _rel(args.out)},
              "rows": rows, "speedup_2_vs_1_worker": ratios}
    lines = [f"# factory batch throughput ({result['date']}, commit {commit}, {os.cpu_count()} cores)", "",
             f"Command: `{result['command']}`; {len(concepts)} concepts ({', '.join(concepts)}), "
             f"`--seconds {args.seconds} --synth-pairs {args.synth_pairs} --export-size {args.export_size}` each.", "",
             "| executor | workers | wall s | done | concepts / min |", "| --- | ---: | ---: | ---: | ---: |"]
    lines += [f"| {r['executor']} | {r['workers']} | {r['wall_seconds']:.0f} | {r['done']} | "
              f"{r['concepts_per_minute']:.2f} |" for r in rows]
    lines += ["", "2 workers vs 1 (wall-time ratio): " + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items())]
    atomic_write_json(args.out / "batch.json", result)
    atomic_write_text(args.out / "batch.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
