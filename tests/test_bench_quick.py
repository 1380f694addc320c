"""CI smoke of the benchmark table: ``bench/run_all.py --quick`` completes and writes well-formed results.

It asserts the shape of what is written, not that any figure meets a goal (the quick budgets are
seconds long); the figures of record come from the full run (BENCHMARKS.md).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from base_gan.models import BaseGAN
from factory.pipeline.assets import pretrained_base, pretrained_weightgen
from weight_generator.init_choice import chosen_init

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(900)
def test_run_all_quick_writes_well_formed_results(tmp_path):
    if pretrained_base() is None:
        pytest.fail("no shipped pretrained assets in factory/pretrained/ (bench/run_all.py needs them)")
    out, work = tmp_path / "out", tmp_path / "work"
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "run_all.py"), "--quick", "--out", str(out),
                           "--workspace", str(work), "--arms", "scratch,full,zero,retrieval,generated,tuned,auto"],
                          capture_output=True, text=True, timeout=880,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads((out / "run_all.json").read_text())
    assert r["quick"] is True and r["commit"] and r["command"].startswith("python bench/run_all.py")
    assert r["reused_runs"] == []  # a new workspace: every arm trained by this run
    shipped = json.loads((REPO / "factory" / "pretrained" / "manifest.json").read_text())
    arms = ("scratch", "full", "zero", "retrieval", "generated", "tuned", "auto")
    auto = chosen_init(pretrained_weightgen(), BaseGAN.load(pretrained_base()).sha256)["init"]
    for row in r["concepts"]:
        assert row["concept"] not in shipped["base"]["concepts"] + shipped["weightgen"]["concepts"]
        assert set(row["costs"]) == {"load_base", "text_encoding", "retrieval", "weightgen_load_and_sample",
                                     "auto_start"}
        assert all(v > 0 for v in row["costs"].values())
        for seed in row["seeds"]:
            for arm in arms:
                cell = seed[arm]
                assert all(math.isfinite(cell[k]) for k in ("psnr_at_equal", "psnr_final", "haarpsi", "fsim", "gmsd"))
                assert cell["steps"] > 0
            # the full fine-tune and the zero-init LoRA both start as the base with the concept's text
            assert abs(seed["full"]["step0_psnr"] - seed["zero"]["step0_psnr"]) < 1e-3
            # the tuned arm starts as the generated LoRA, merged into the weights
            assert abs(seed["tuned"]["step0_psnr"] - seed["generated"]["step0_psnr"]) < 1e-3
            init = work / "runs" / row["concept"] / f"seed{seed['seed']}" / "init-auto" / "init.json"
            assert json.loads(init.read_text())["init"] == auto  # what `factory run` takes for a named concept
        assert (out / f"curves-{row['concept']}.png").stat().st_size > 1000
    for cells in r["summary"]["equal"].values():
        assert set(cells) == {*arms, "identity"} and all(cells[a]["psnr_final"]["n"] >= 1 for a in arms)
    lat = r["sizes"]["latency_ms_256"]
    assert set(lat) == {"editor_fp32", "editor_int8", "pix2pix_fp32", "pix2pix_int8"} and min(lat.values()) > 0
    assert r["sizes"]["params"]["adapter"] > 0 and r["weightgen"]["seconds_per_adapter"] > 0
    assert r["shared_pretraining"]["total_seconds"] > 0
    assert all(r["throughput_probe"][k]["steps_per_second"] > 0 for k in ("before", "after"))
    md = (out / "run_all.md").read_text()
    assert md.startswith("# editfactory benchmarks (QUICK") and "## 1. Protocol" in md and "## 3. Time to quality" in md
    assert not (work / "BENCHMARKS.md").exists() and "BENCHMARKS.md" not in os.listdir(out)
    assert "| start | PSNR at 0 s | PSNR at" in md
    (out / "run_all.md").unlink()  # --render rewrites the table from the results file alone
    subprocess.run([sys.executable, str(REPO / "bench" / "run_all.py"), "--quick", "--render", "--out", str(out)],
                   check=True, capture_output=True, timeout=120)
    assert (out / "run_all.md").read_text() == md
