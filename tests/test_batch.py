"""``factory batch``: three tiny concepts (one broken) on the local executor and on a local Ray instance;
failures isolated, reruns repeat only what is not done, a killed batch loses nothing finished."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_factory

from base_gan.distributed import free_port
from factory.core.files import sha256_file

RUN = ["--seconds", "2", "--synth-pairs", "16", "--export-size", "32", "--steps", "6"]
BROKEN = """name: broken-card
instruction: make it broken
teacher:
  kind: classic
  recipe:
    - op: no_such_operation
"""


@pytest.fixture
def concepts(tmp_path: Path) -> list[str]:
    broken = tmp_path / "cards" / "broken-card.yaml"
    broken.parent.mkdir()
    broken.write_text(BROKEN)
    listing = tmp_path / "concepts.txt"
    listing.write_text(f"# two good concepts and a broken card\nsepia\n\nnegative\n{broken}\n")
    return [str(listing)]


def env_for(tiny_pretrained: Path) -> dict[str, str]:
    return {**os.environ, "FACTORY_PRETRAINED": str(tiny_pretrained), "OMP_NUM_THREADS": "1"}


def check_first_batch(ws: Path, proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 1, proc.stderr  # some concept failed
    summary = json.loads((ws / "reports" / "batch.json").read_text())
    by = {Path(r["target"]).stem: r for r in summary["concepts"]}
    assert [by[c]["status"] for c in ("sepia", "negative", "broken-card")] == ["done", "done", "failed"]
    assert "no_such_operation" in by["broken-card"]["error"]
    for c in ("sepia", "negative"):
        assert Path(by[c]["report"]).is_file() and by[c]["quality"]["editor_int8"]["psnr"] > 0
    manifest = json.loads((ws / "editors" / "manifest.json").read_text())
    assert sorted(e["name"] for e in manifest["editors"]) == ["negative", "sepia"]
    for e in manifest["editors"]:
        for name, f in e["files"].items():
            assert sha256_file(ws / "editors" / f["path"]) == f["sha256"], name
        assert e["instruction"] and e["input"]["value_range"]
    page = (ws / "reports" / "batch.html").read_text()
    assert "2 done, 1 failed" in page and 'href="sepia.html"' in page
    return by


def check_rerun(ws: Path, proc: subprocess.CompletedProcess, first: dict) -> None:
    assert "2 already done, running 1" in proc.stderr
    summary = json.loads((ws / "reports" / "batch.json").read_text())
    by = {Path(r["target"]).stem: r for r in summary["concepts"]}
    assert by["broken-card"]["attempts"] == 2 and by["broken-card"]["status"] == "failed"
    for c in ("sepia", "negative"):
        assert by[c]["attempts"] == 1 and by[c]["seconds"] == first[c]["seconds"], "not run again"


def batch(ws: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "factory", "--workspace", str(ws), "batch", *args, *RUN]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)


def test_local_batch_isolates_failures_and_reruns_only_them(tiny_pretrained, concepts, workspace):
    env = env_for(tiny_pretrained)
    first = check_first_batch(workspace, batch(workspace, env, *concepts, "--workers", "2"))
    check_rerun(workspace, batch(workspace, env, *concepts, "--workers", "2"), first)


def test_ray_batch_on_a_local_loopback_instance(tiny_pretrained, concepts, workspace, tmp_path):
    pytest.importorskip("ray", reason="Ray is the optional extra editfactory[ray] (installed by `make test`)")
    ray_bin = str(Path(sys.executable).with_name("ray"))
    port = free_port()
    home = tmp_path / "home"  # Ray keeps an auth token in ~/.ray: a private home makes the test hermetic
    home.mkdir()
    env = {**env_for(tiny_pretrained), "RAY_USAGE_STATS_ENABLED": "0", "HOME": str(home)}
    start = subprocess.run([ray_bin, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
                            "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats"],
                           capture_output=True, text=True, env=env, timeout=300)
    # Ray's default temp dir (/tmp/ray): the driver finds the head's session (and auth token) there
    assert start.returncode == 0, start.stderr[-2000:]
    try:
        address = f"127.0.0.1:{port}"
        first = check_first_batch(workspace, batch(workspace, env, *concepts, "--executor", "ray",
                                                   "--address", address, "--workers", "2"))
        summary = json.loads((workspace / "reports" / "batch.json").read_text())
        assert summary["ray"]["address"] == address and summary["ray"]["resources"]["CPU"] == 2
        check_rerun(workspace, batch(workspace, env, *concepts, "--executor", "ray", "--address", address), first)
    finally:
        subprocess.run([ray_bin, "stop", "--force"], capture_output=True, env=env, timeout=120)


def test_killed_batch_loses_nothing_finished(tiny_pretrained, workspace):
    env = env_for(tiny_pretrained)
    targets = ["sepia", "negative", "cool-blue"]
    cmd = [sys.executable, "-m", "factory", "--workspace", str(workspace), "batch", *targets, *RUN]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    summary_file = workspace / "reports" / "batch.json"
    deadline = time.time() + 600
    done: list[str] = []
    while time.time() < deadline and proc.poll() is None:
        if summary_file.is_file():
            data = json.loads(summary_file.read_text())
            done = [r["target"] for r in data["concepts"] if r.get("status") == "done"]
            if done:
                break
        time.sleep(0.5)
    assert done and proc.poll() is None, "the batch should be part way when killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    card = Path(json.loads(summary_file.read_text())["concepts"][targets.index(done[0])]["editor"]) / "card.json"
    stamp = card.stat().st_mtime_ns
    time.sleep(1.0)
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr
    assert f"{len(done)} already done, running {3 - len(done)}" in r.stderr
    data = json.loads(summary_file.read_text())
    assert [x["status"] for x in data["concepts"]] == ["done"] * 3
    assert card.stat().st_mtime_ns == stamp, "a finished concept was not redone"


def test_batch_refuses_bad_input(workspace, tmp_path):
    r = run_factory(workspace, "batch", str(tmp_path / "missing.txt"), check=False)
    assert r.returncode == 2 and "concept list not found" in r.stderr
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n\n")
    r = run_factory(workspace, "batch", str(empty), check=False)
    assert r.returncode == 2 and "no concepts to run" in r.stderr
    r = run_factory(workspace, "batch", "sepia", "--address", "127.0.0.1:1", check=False)
    assert r.returncode == 2 and "--address is for --executor ray" in r.stderr


def test_local_workers_take_gpus_round_robin_one_job_per_gpu(monkeypatch):
    import threading

    from factory.pipeline.batch import gpu_for, run_local, visible_gpus

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")
    gpus = visible_gpus()
    assert gpus == ["2", "5"]
    busy: set[str] = set()
    lock = threading.Lock()
    used: list[str] = []

    def job(target: str, slot: int) -> dict:
        gpu = gpu_for(slot, gpus, [])
        with lock:
            assert gpu not in busy, f"two jobs on GPU {gpu} at once"
            busy.add(gpu)
            used.append(gpu)
        time.sleep(0.05)
        with lock:
            busy.discard(gpu)
        return {"target": target, "status": "done", "gpu": gpu}

    records: list[dict] = []
    run_local([f"c{i}" for i in range(6)], job, 2, records.append)
    assert len(records) == 6 and set(used) == {"2", "5"}
    assert gpu_for(1, gpus, ["--device", "cuda:0"]) is None  # the user's --device stands
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert visible_gpus() == [] and gpu_for(0, [], []) is None
