"""`factory synth` with the classic teacher: pairs, manifest, resume, crash safety, locking, determinism."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from factory.core.files import sha256_file
from factory.core.images import read_image
from factory.data.pair_store import PairStore, read_manifest
from tests.conftest import run_factory
from tests.test_images import make_bad_folder

BLUR_CARD = """\
name: test-blur
instruction: blur the photo softly
teacher:
  kind: classic
  recipe:
    - op: gaussian_blur
tags: [test]
"""
SLOW_CARD = """\
name: test-paint
instruction: paint it with flat soft colours
teacher:
  kind: classic
  recipe:
    - op: stylization
    - op: detail_enhance
tags: [test]
"""


def add_card(workspace: Path, text: str) -> str:
    (workspace / "concepts").mkdir(exist_ok=True)
    name = text.split("\n", 1)[0].split(": ", 1)[1]
    (workspace / "concepts" / f"{name}.yaml").write_text(text)
    return name


def check_folder(folder: Path) -> list[dict]:
    """Every listed pair is complete and intact; nothing unlisted or half-written is left behind."""
    records = read_manifest(folder)
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids))
    raw = (folder / "manifest.jsonl").read_text().splitlines()
    assert len(raw) == len(records), "manifest has torn or duplicate lines"
    for r in records:
        for k in ("source", "target"):
            assert sha256_file(folder / r[k]) == r["sha256"][k]
            read_image(folder / r[k])
    pngs = {p.relative_to(folder).as_posix() for p in folder.glob("*/*.png")}
    assert pngs == {r[k] for r in records for k in ("source", "target")}
    return records


def test_synth_writes_pairs_and_manifest(workspace: Path, factory_cli) -> None:
    name = add_card(workspace, BLUR_CARD)
    out = factory_cli("synth", name, "-n", "12", "--size", "48")
    assert "12 pairs (12 new" in out.stdout
    folder = workspace / "data" / name
    records = check_folder(folder)
    assert len(records) == 12
    r = records[0]
    assert set(r) >= {"id", "source", "target", "photo", "crop", "teacher", "seed", "sha256", "split"}
    assert r["teacher"]["kind"] == "classic" and r["teacher"]["recipe"][0]["op"] == "gaussian_blur"
    assert {x["split"] for x in records} == {"train", "test"}
    test_photos = {x["photo"] for x in records if x["split"] == "test"}
    train_photos = {x["photo"] for x in records if x["split"] == "train"}
    assert not test_photos & train_photos
    src, tgt = read_image(folder / r["source"]), read_image(folder / r["target"])
    assert src.shape == tgt.shape == (48, 48, 3) and not np.array_equal(src, tgt)

    again = factory_cli("synth", name, "-n", "15", "--size", "48")
    assert "15 pairs (3 new, 12 kept" in again.stdout
    assert len(check_folder(folder)) == 15


def test_same_seed_same_pairs(tmp_path: Path) -> None:
    hashes = []
    for run in ("a", "b"):
        ws = tmp_path / run
        ws.mkdir()
        name = add_card(ws, BLUR_CARD)
        run_factory(ws, "--seed", "7", "synth", name, "-n", "24", "--size", "32")
        hashes.append({r["id"]: r["sha256"] for r in read_manifest(ws / "data" / name)})
    assert hashes[0] == hashes[1]
    ws = tmp_path / "c"
    ws.mkdir()
    run_factory(ws, "--seed", "8", "synth", add_card(ws, BLUR_CARD), "-n", "24", "--size", "32")
    assert {r["id"]: r["sha256"] for r in read_manifest(ws / "data" / "test-blur")} != hashes[0]


def test_sigkill_mid_run_loses_nothing(workspace: Path) -> None:
    name = add_card(workspace, SLOW_CARD)
    folder = workspace / "data" / name
    n = 150
    cmd = [sys.executable, "-m", "factory", "--workspace", str(workspace), "synth", name, "-n", str(n), "--size", "96"]
    kills = 0
    for delay in (0.05, 0.13, 0.29):  # several kills at different moments, each after some pairs exist
        before = len(read_manifest(folder))
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while len(read_manifest(folder)) < before + 3 and proc.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(delay)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
        # what a killed run leaves is repaired on the next open: listed pairs intact, no orphans
        with PairStore(folder):
            pass
        done = check_folder(folder)
        assert before < len(done) <= n
    assert kills >= 2, "synth finished before it could be killed; make the workload heavier"
    run_factory(workspace, "synth", name, "-n", str(n), "--size", "96")
    records = check_folder(folder)
    assert sorted(r["id"] for r in records) == [f"{i:05d}" for i in range(n)]

    # the resumed data equals an uninterrupted run's
    fresh = workspace.parent / "fresh"
    fresh.mkdir()
    add_card(fresh, SLOW_CARD)
    run_factory(fresh, "synth", name, "-n", str(n), "--size", "96")
    again = read_manifest(fresh / "data" / name)
    assert {r["id"]: r["sha256"] for r in records} == {r["id"]: r["sha256"] for r in again}


def test_second_writer_is_refused(workspace: Path, factory_cli) -> None:
    name = add_card(workspace, BLUR_CARD)
    with PairStore(workspace / "data" / name):
        out = factory_cli("synth", name, "-n", "2", "--size", "32", check=False)
    assert out.returncode == 2
    assert "another factory process" in out.stderr and "Traceback" not in out.stderr


def test_bad_files_are_skipped_and_listed(workspace: Path, tmp_path: Path, factory_cli) -> None:
    make_bad_folder(tmp_path / "photos")
    name = add_card(workspace, BLUR_CARD)
    out = factory_cli("synth", name, "--images", str(tmp_path / "photos"), "-n", "8", "--size", "32")
    assert "3 file(s) skipped" in out.stdout
    for bad in ("corrupt.jpg", "empty.png", "notes.png"):
        assert bad in out.stderr
    used = {r["photo"] for r in read_manifest(workspace / "data" / name)}
    assert used == {"good.jpg", "deep.png", "alpha.png", "gray.bmp"}


def test_changed_teacher_is_refused(workspace: Path, factory_cli) -> None:
    name = add_card(workspace, BLUR_CARD)
    factory_cli("synth", name, "-n", "2", "--size", "32")
    card = workspace / "concepts" / f"{name}.yaml"
    card.write_text(BLUR_CARD.replace("- op: gaussian_blur", "- op: median"))
    out = factory_cli("synth", name, "-n", "4", "--size", "32", check=False)
    assert out.returncode == 2 and "different teacher" in out.stderr
    assert len(read_manifest(workspace / "data" / name)) == 2


def test_unknown_concept_is_a_clear_error(factory_cli) -> None:
    out = factory_cli("synth", "no-such-concept", "-n", "2", check=False)
    assert out.returncode == 2 and "no-such-concept" in out.stderr and "Traceback" not in out.stderr


def test_resume_ignores_runtime_settings_only(tmp_path: Path) -> None:
    from factory.core.errors import FactoryError
    from factory.data.synthesize import _check_meta

    teacher = {"kind": "sdedit", "model": "m", "strength": 0.5, "batch_size": 8, "device": "cuda", "dtype": "float16"}
    meta = {"teacher": teacher, "size": 64, "origin": "o", "seed": 0}
    (tmp_path / "synth.json").write_text(json.dumps(meta))
    _check_meta(tmp_path, dict(meta, teacher=dict(teacher, batch_size=2, device="cpu", dtype="float32")))
    with pytest.raises(FactoryError, match="different teacher"):
        _check_meta(tmp_path, dict(meta, teacher=dict(teacher, strength=0.6)))
    with pytest.raises(FactoryError, match="different size"):
        _check_meta(tmp_path, dict(meta, size=32))


def test_a_full_disk_is_one_line_and_a_rerun_completes(workspace: Path, monkeypatch) -> None:
    import errno

    from concepts.cards import find_card
    from factory.core.errors import FactoryError
    from factory.core.workspace import Workspace
    from factory.data import pair_store
    from factory.data.card_pairs import make_pairs

    ws = Workspace(workspace)
    name = add_card(workspace, BLUR_CARD)
    card = find_card(name, ws)
    real, writes = pair_store.atomic_write_bytes, []

    def fill_up(path, data):
        writes.append(path)
        if len(writes) > 6:  # three pairs fit, the fourth's first image does not
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, data)

    monkeypatch.setattr(pair_store, "atomic_write_bytes", fill_up)
    with pytest.raises(FactoryError) as err:
        make_pairs(ws, card, 6, 32, seed=0)
    message = str(err.value)
    assert "\n" not in message and "disk is full" in message and "kept the 3 complete pairs" in message
    assert len(check_folder(ws.data(name))) == 3
    monkeypatch.setattr(pair_store, "atomic_write_bytes", real)
    result = make_pairs(ws, card, 6, 32, seed=0)
    assert result.total == 6 and result.new == 3 and len(check_folder(ws.data(name))) == 6


def folder_bytes(folder: Path) -> dict[str, bytes]:
    """Every file of a data folder (its lock aside) by relative path."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".lock"}


def shard_pids(workspace: Path) -> dict[int, int]:
    """pid of each running `factory synth --shard K/N` process of this workspace, by K."""
    found = {}
    for proc in Path("/proc").iterdir():
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"--shard" in args and str(workspace).encode() in args:
            found[int(args[args.index(b"--shard") + 1].split(b"/")[0])] = int(proc.name)
    return found


def test_sharded_synth_equals_one_process_byte_for_byte_and_survives_a_killed_shard(workspace: Path) -> None:
    name = add_card(workspace, SLOW_CARD)
    n, size = 120, 96
    single = workspace.parent / "single"
    single.mkdir()
    add_card(single, SLOW_CARD)
    run_factory(single, "synth", name, "-n", str(n), "--size", str(size))
    expected = folder_bytes(single / "data" / name)

    # two shards; shard 1 is killed part way: the other finishes, what shard 1 made is kept
    cmd = [sys.executable, "-m", "factory", "--workspace", str(workspace), "synth", name, "-n", str(n), "--size",
           str(size), "--shards", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    shard1 = workspace / "data" / name / "shards" / "1-of-2"
    deadline = time.time() + 120
    while len(read_manifest(shard1)) < 3 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    pids = shard_pids(workspace)
    assert 1 in pids, "shard 1 finished before it could be killed; make the workload heavier"
    os.kill(pids[1], signal.SIGKILL)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2 and "shard 1/2 killed by SIGKILL" in err and "run the same command again" in err
    kept = check_folder(workspace / "data" / name)
    assert len(kept) > n // 2  # shard 0's half and what shard 1 finished
    assert not (workspace / "data" / name / "shards").exists()

    r = run_factory(workspace, "synth", name, "-n", str(n), "--size", str(size), "--shards", "2")
    assert f"{n} pairs" in r.stdout
    check_folder(workspace / "data" / name)
    assert folder_bytes(workspace / "data" / name) == expected
