"""Benchmark: a multi-concept base GAN vs pix2pix-from-scratch at equal wall time (issue 3).

Trains the E2GAN-shaped base on N classic concepts at 128 px for a wall-clock budget, then the
pix2pix ResNet-9 from scratch on one of those concepts for the same budget, and writes per-concept
held-out PSNR/SSIM next to the identity baseline (the source itself) to
``bench/results/base_gan.{json,md}``. Test photos are never used in training.

    python bench/base_vs_pix2pix.py --minutes 10            # full run (about 2 x minutes)
    python bench/base_vs_pix2pix.py --minutes 0.5 --pairs 24 --concepts 3   # smoke
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

from base_gan.complexity import count_params
from base_gan.models import model_spec
from base_gan.train import Trainer, TrainSettings
from concepts.cards import find_card
from factory.core.atomic import atomic_write_json, atomic_write_text
from factory.core.workspace import Workspace
from factory.data.card_pairs import PhotoCache, TeacherCache, make_pairs
from factory.evaluation.heldout import evaluate_to_files, text_conditioned

DEFAULT_CONCEPTS = ["pencil-sketch", "golden-hour", "cartoon", "sepia", "cool-blue", "hdr", "film-noir", "pastel"]


def synth_all(ws: Workspace, concepts: list[str], pairs: int, size: int, seed: int) -> None:
    """The first ``pairs`` pairs of every concept (its card's own teacher; kept when already there)."""
    teachers, photos = TeacherCache(), PhotoCache()
    for name in concepts:
        make_pairs(ws, find_card(name), pairs, size, seed, teachers=teachers, photos=photos)


LOADS: dict[str, list[float]] = {}  # 1-minute load average before and after each training run


def train(ws: Workspace, name: str, concepts: list[str], settings: TrainSettings) -> tuple[Trainer, float]:
    trainer = Trainer(ws.base(name), [ws.data(c) for c in concepts], settings, text_cache=ws.text_cache)
    LOADS[name] = [os.getloadavg()[0]]
    started = time.perf_counter()
    trainer.train()
    elapsed = time.perf_counter() - started
    LOADS[name].append(os.getloadavg()[0])
    trainer.save_final({"concepts": concepts, "instructions": trainer.data.instructions})
    return trainer, elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0, help="training budget of EACH model")
    ap.add_argument("--concepts", type=int, default=8)
    ap.add_argument("--pairs", type=int, default=200, help="pairs per concept (train + test)")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--ngf", type=int, default=32)
    ap.add_argument("--workspace", type=Path, default=Path("bench/work/base_gan"))
    ap.add_argument("--out", type=Path, default=Path("bench/results"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    ws = Workspace(args.workspace)
    concepts = DEFAULT_CONCEPTS[: args.concepts]
    synth_all(ws, concepts, args.pairs, args.size, args.seed)
    budget = args.minutes * 60
    big = 10**9

    base_settings = TrainSettings(generator={"arch": "e2gan", "ngf": args.ngf, "image_size": args.size},
                                  steps=big, seconds=budget, batch=args.batch, seed=args.seed, decay_from=1.0,
                                  checkpoint_every=500)
    base, base_time = train(ws, "bench-base", concepts, base_settings)
    p2p_concept = concepts[0]
    p2p_settings = TrainSettings(generator={"arch": "pix2pix", "image_size": args.size}, disc_nf=64,
                                 steps=big, seconds=budget, batch=args.batch, seed=args.seed, decay_from=1.0,
                                 checkpoint_every=500)
    p2p, p2p_time = train(ws, "bench-pix2pix", [p2p_concept], p2p_settings)

    rows = []
    for c in concepts:
        instruction = base.data.instructions[base.data.concepts.index(c)]
        edit = text_conditioned(base.final_model().eval(), instruction, ws.text_cache)
        r = evaluate_to_files(edit, ws.data(c), args.out / "base_gan", f"base-{c}")
        rows.append({"concept": c, "model": "base (all concepts)", **_figures(r)})
        if c == p2p_concept:
            r = evaluate_to_files(lambda x: p2p.final_model().eval()(x), ws.data(c), args.out / "base_gan",
                                  f"pix2pix-{c}")
            rows.append({"concept": c, "model": "pix2pix ResNet-9 (this concept only)", **_figures(r)})

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    summary = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit, "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, CPU",
        "command": "python bench/base_vs_pix2pix.py " + " ".join(f"--{k} {v}" for k, v in vars(args).items()
                                                       if k not in ("workspace", "out")),
        "size": args.size, "concepts": concepts, "pairs_per_concept": args.pairs,
        "load_average_before_after": LOADS,
        "base": {"generator": model_spec(base.G), "seconds": round(base_time, 1), "steps": base.state.step,
                 "params": count_params(base.G),
                 "images_per_second": round(base.state.step * args.batch / base_time, 2)},
        "pix2pix": {"concept": p2p_concept, "seconds": round(p2p_time, 1), "steps": p2p.state.step,
                    "params": count_params(p2p.G),
                    "images_per_second": round(p2p.state.step * args.batch / p2p_time, 2)},
        "rows": rows,
    }
    atomic_write_json(args.out / "base_gan.json", summary)
    atomic_write_text(args.out / "base_gan.md", _markdown(summary))
    print(_markdown(summary))


def _figures(r: dict) -> dict:
    return {"psnr": round(r["student"]["psnr"], 2), "ssim": round(r["student"]["ssim"], 3),
            "identity_psnr": round(r["identity"]["psnr"], 2), "identity_ssim": round(r["identity"]["ssim"], 3),
            "test_pairs": r["test_pairs"]}


def _markdown(s: dict) -> str:
    lines = [f"# Base GAN benchmark ({s['size']} px, {s['date']}, commit {s['commit']}, {s['machine']})", "",
             f"Command: `{s['command']}`", "",
             f"1-minute load average before/after each run (2 cores; other jobs ran too): "
             f"{s['load_average_before_after']}", "",
             f"- base: {s['base']['params'] / 1e6:.2f}M params, {s['base']['steps']} steps in {s['base']['seconds']} s "
             f"({s['base']['images_per_second']} img/s) on {len(s['concepts'])} concepts",
             f"- pix2pix: {s['pix2pix']['params'] / 1e6:.2f}M params, {s['pix2pix']['steps']} steps in "
             f"{s['pix2pix']['seconds']} s ({s['pix2pix']['images_per_second']} img/s) on "
             f"{s['pix2pix']['concept']}", "",
             "| concept | model | PSNR | SSIM | identity PSNR | identity SSIM | test pairs |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in s["rows"]:
        lines.append(f"| {r['concept']} | {r['model']} | {r['psnr']} | {r['ssim']} | {r['identity_psnr']} | "
                     f"{r['identity_ssim']} | {r['test_pairs']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
