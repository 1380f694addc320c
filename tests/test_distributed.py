"""Data-parallel training on 2 CPU processes (gloo), launched by ``accelerate launch`` or ``--processes 2``: the
base and the weight generator train what 1 process trains with the same global batch, 2 processes save the
family adapters 1 process saves, and a 2-process checkpoint resumes with 1 process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch
from conftest import run_factory
from safetensors.torch import load_file

from base_gan.distributed import Parallel
from factory.core.training_loop import latest_checkpoint
from factory.core.workspace import Workspace
from factory.pipeline.steps import train_base

# the discriminator's BatchNorm would normalize each process's slice on CPUs (SyncBatchNorm needs GPUs):
# InstanceNorm makes every sample's computation independent of how the global batch is split
ARGS = dict(size=32, ngf=8, pairs=8, batch=4, checkpoint_every=100, seed=0, disc_norm="instance")
CLI = ["base", "train", "--concepts", "sepia,negative", "--size", "32", "--ngf", "8", "--pairs", "8", "--batch", "4",
       "--checkpoint-every", "100", "--disc-norm", "instance"]


def accelerate_launch(workspace, *args: str) -> subprocess.CompletedProcess:
    """``accelerate launch --multi_gpu --num_processes 2 -m factory ...`` as a user of accelerate runs it
    (torchrun underneath: --multi_gpu works on CPUs, with gloo; --cpu would start one process)."""
    proc = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "factory",
                           "--workspace", str(workspace), *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def weights(ws: Workspace, name: str) -> dict[str, torch.Tensor]:
    return load_file(latest_checkpoint(ws.base(name)) / "generator.safetensors")


def assert_close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=2e-5, msg=k)


def test_two_processes_train_what_one_does_and_resume_with_one(tmp_path):
    torch.set_num_threads(1)
    ws = Workspace(tmp_path / "ws")
    train_base("sepia,negative", workspace=ws, name="one", steps=5, progress=False, **ARGS)
    launched = accelerate_launch(ws.root, *CLI, "--steps", "5", "--name", "two")
    assert launched.stdout.count("base train:") == 1  # one summary, from process 0
    assert json.loads((ws.base("two") / "training.json").read_text())["processes"] == 2
    one_log = json.loads((latest_checkpoint(ws.base("one")) / "state.json").read_text())["history"]
    two_log = json.loads((latest_checkpoint(ws.base("two")) / "state.json").read_text())["history"]
    for a, b in zip(one_log, two_log, strict=True):  # the losses of the global batch, step by step
        assert abs(a["l1"] - b["l1"]) < 1e-4 and abs(a["loss_g"] - b["loss_g"]) < 1e-3
    assert_close(weights(ws, "one"), weights(ws, "two"))
    at5 = weights(ws, "one")

    # the 2-process checkpoint goes on in 1 process, as the 1-process run goes on
    train_base("sepia,negative", workspace=ws, name="one", steps=8, progress=False, **ARGS)
    run_factory(ws.root, *CLI, "--steps", "8", "--name", "two", timeout=300)
    assert json.loads((ws.base("two") / "training.json").read_text())["steps_done"] == 8
    assert_close(weights(ws, "one"), weights(ws, "two"))
    assert any((at5[k] - v).abs().max() > 1e-5 for k, v in weights(ws, "one").items())  # training moved them


def test_a_global_batch_splits_evenly_or_is_refused():
    import pytest

    from factory.core.errors import FactoryError

    assert Parallel(1, 2).shard(list(range(6))) == [1, 3, 5]
    with pytest.raises(FactoryError, match="does not split evenly"):
        Parallel(0, 4).shard(list(range(6)))


def test_family_adapters_and_the_weight_generator_on_two_processes(tmp_path):
    """Batched family adapters: 2 processes (chunks dealt out) save the adapters 1 process saves. The weight
    generator: 2 processes train what 1 does with the same global batch; the 2-process checkpoint goes on in 1."""
    import shutil

    from base_gan.generator import build_generator
    from base_gan.models import save_model
    from factory.pipeline.steps import family_weights, train_weightgen

    torch.set_num_threads(1)
    base = tmp_path / "tiny-base"
    save_model(build_generator(seed=1, ngf=8, image_size=32), base)
    one, two = Workspace(tmp_path / "one"), Workspace(tmp_path / "two")
    family = dict(layers="up2,head", rank=2, steps=3, per_concept=2, chunk=2, pairs=8)
    ds = family_weights(4, workspace=one, base=str(base), name="wg", **family)
    run_factory(two.root, "weightgen", "family", "4", "--base", str(base), "--name", "wg", "--layers", "up2,head",
                "--rank", "2", "--steps", "3", "--per-concept", "2", "--chunk", "2", "--pairs", "8",
                "--processes", "2", timeout=300)
    assert len(ds) == 4
    for concept in ds.concepts:  # chunk 0 was trained by process 0, chunk 1 by process 1
        a = load_file(one.lora(concept) / "adapter_model.safetensors")
        b = load_file(two.lora(concept) / "adapter_model.safetensors")
        assert_close(a, b)
        assert any(v.abs().max() > 0 for k, v in a.items() if "lora_B" in k)  # trained, not peft's zero B

    shutil.rmtree(two.weightgen("wg"))
    shutil.copytree(one.weightgen("wg"), two.weightgen("wg"))  # the very same dataset for both runs
    tiny = dict(block_size=32, batch=4, checkpoint_every=2)
    cli = ["weightgen", "train", "--name", "wg", "--block-size", "32", "--batch", "4", "--checkpoint-every", "2"]
    train_weightgen(workspace=one, name="wg", steps=4, progress=False, **tiny)
    out = run_factory(two.root, *cli, "--steps", "4", "--processes", "2", timeout=300).stdout
    assert out.count("weightgen train:") == 1  # one summary, from process 0
    assert json.loads((two.weightgen("wg") / "training.json").read_text())["processes"] == 2

    def state(ws: Workspace) -> tuple[list[dict], dict[str, torch.Tensor]]:
        ckpt = latest_checkpoint(ws.weightgen("wg"))
        return json.loads((ckpt / "state.json").read_text())["history"], load_file(ckpt / "model.safetensors")

    (log1, w1), (log2, w2) = state(one), state(two)
    for a, b in zip(log1, log2, strict=True):
        assert abs(a["loss"] - b["loss"]) < 1e-4 * max(1.0, abs(a["loss"]))
    assert_close(w1, w2)
    train_weightgen(workspace=one, name="wg", steps=6, resume=True, progress=False, **tiny)
    run_factory(two.root, *cli, "--steps", "6", "--resume", timeout=300)
    (log1, w1), (log2, w2) = state(one), state(two)
    assert len(log2) == 6 and json.loads((two.weightgen("wg") / "training.json").read_text())["steps_done"] == 6
    assert_close(w1, w2)
