"""Training the base GAN: loss falls, checkpoints resume exactly, auto:K selection, `factory eval` outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from base_gan.models import WEIGHTS, is_float16_exact, load_model, read_training
from base_gan.train import Trainer, TrainSettings
from concepts.cards import find_card
from factory.core.images import read_image
from factory.core.training_loop import latest_checkpoint
from factory.core.workspace import Workspace
from factory.data.card_pairs import make_pairs
from factory.data.dataset import PairedDataset

TINY = {"arch": "e2gan", "ngf": 8, "heads": 2, "image_size": 32}


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Workspace:
    ws = Workspace(tmp_path_factory.mktemp("ws"))
    for name in ("sepia", "negative"):
        make_pairs(ws, find_card(name), 24, 32, seed=0)
    return ws


def make_trainer(ws: Workspace, out: Path, **kw) -> Trainer:
    settings = TrainSettings(**{"generator": TINY, "disc_nf": 8, "batch": 4, "checkpoint_every": 2, **kw})
    return Trainer(out, [ws.data("sepia"), ws.data("negative")], settings, text_cache=ws.text_cache)


def test_loss_falls(tiny_data: Workspace, tmp_path: Path) -> None:
    trainer = make_trainer(tiny_data, tmp_path / "run", steps=120, checkpoint_every=1000, lr=3e-3)
    state = trainer.train()
    l1 = [h["l1"] for h in state.history]
    assert state.step == 120 and len(l1) == 120
    assert np.mean(l1[-10:]) < 0.7 * np.mean(l1[:10]), (np.mean(l1[:10]), np.mean(l1[-10:]))


def test_resume_gives_the_same_next_steps(tiny_data: Workspace, tmp_path: Path) -> None:
    straight = make_trainer(tiny_data, tmp_path / "a", steps=4)
    straight.train()

    interrupted = make_trainer(tiny_data, tmp_path / "b", steps=2)
    interrupted.train()  # "killed" after the checkpoint at step 2
    assert latest_checkpoint(tmp_path / "b").name == "step-0000002"
    resumed = make_trainer(tiny_data, tmp_path / "b", steps=4)
    assert resumed.resume() and resumed.state.step == 2
    resumed.train()
    assert [h["l1"] for h in resumed.state.history] == [h["l1"] for h in straight.state.history]
    for (name, a), b in zip(straight.G.state_dict().items(), resumed.G.state_dict().values()):
        assert torch.equal(a, b), name


def test_evaluations_between_steps_leave_the_training_unchanged(tiny_data: Workspace, tmp_path: Path) -> None:
    """A reference's curve is evaluated between steps (the model run, global random numbers drawn): the weights
    it reaches by a step must not depend on how often it was evaluated."""
    quiet = make_trainer(tiny_data, tmp_path / "a", steps=6, checkpoint_every=1000)
    quiet.train()
    watched = make_trainer(tiny_data, tmp_path / "b", steps=6, checkpoint_every=1000)
    seen = []

    def evaluate(state) -> bool:
        seen.append(state.step)
        torch.rand(3), np.random.rand(3)
        with torch.no_grad():
            watched.final_model()(torch.rand(2, 3, 32, 32), watched.text_tokens[:1].expand(2, -1, -1),
                                  watched.text_mask[:1].expand(2, -1))
        return False

    watched.train(eval_every=2, on_eval=evaluate)
    assert seen == [2, 4, 6]
    for (name, a), b in zip(quiet.G.state_dict().items(), watched.G.state_dict().values()):
        assert torch.equal(a, b), name


def test_a_diverging_run_goes_back_to_a_snapshot_at_half_the_rate(tiny_data: Workspace, tmp_path: Path) -> None:
    def blown_up(trainer: Trainer) -> Trainer:
        """At step 55 the head's last bias jumps by 1e3: the output leaves the image range as a diverging run's does."""
        train_step = trainer.train_step

        def step(k: int) -> dict[str, float]:
            if k == 54:
                with torch.no_grad():
                    trainer.G.head.conv3.bias.add_(1e3)
            return train_step(k)

        trainer.train_step = step
        return trainer

    unguarded = blown_up(make_trainer(tiny_data, tmp_path / "off", steps=64, lr=1e-3, decay_from=1.0,
                                      checkpoint_every=1000, rollback_l1=None))
    unguarded.train()
    assert unguarded.state.history[-1]["l1"] > 10 and not unguarded.state.rollbacks

    guarded = blown_up(make_trainer(tiny_data, tmp_path / "on", steps=64, lr=1e-3, decay_from=1.0,
                                    checkpoint_every=20))
    seen: dict[int, dict[str, torch.Tensor]] = {}
    guarded.train(progress=lambda log: seen.setdefault(int(log["step"]), guarded._generator_state()))
    # the step that diverged ends on the weights of the older of the two snapshots (steps 25 and 50), and the run goes
    # on from there
    assert [r["step"] for r in guarded.state.rollbacks] == [55] and guarded.state.rollbacks[0]["l1"] > 4
    for name, value in seen[25].items():
        assert torch.equal(seen[55][name], value), name
    assert guarded.state.step == 64 and max(h["l1"] for h in guarded.state.history[55:]) < 1
    assert [g["lr"] for g in guarded.opt_g.param_groups] == [5e-4]
    # a resumed run keeps its halved rate
    resumed = make_trainer(tiny_data, tmp_path / "on", steps=68, lr=1e-3, decay_from=1.0, checkpoint_every=20)
    assert resumed.resume() and resumed.state.rollbacks == guarded.state.rollbacks
    resumed.train()
    assert [g["lr"] for g in resumed.opt_g.param_groups] == [5e-4]


def test_decay_over_the_budget_brings_the_rate_down_by_the_last_second(tiny_data: Workspace, tmp_path: Path) -> None:
    rates: dict[str, list[float]] = {}
    for over in ("steps", "budget"):
        trainer = make_trainer(tiny_data, tmp_path / over, steps=10**6, seconds=3.0, lr=1e-3, checkpoint_every=10**6,
                               decay_over=over)
        seen = rates.setdefault(over, [])
        trainer.train(progress=lambda _, t=trainer, seen=seen: seen.append(t.opt_g.param_groups[0]["lr"]))
    assert set(rates["steps"]) == {1e-3}  # a million steps: the step schedule never reaches its decay
    budget = rates["budget"]
    assert budget[0] == 1e-3 and budget[-1] < 0.2e-3 and budget == sorted(budget, reverse=True), budget


def test_warmup_raises_the_rate_linearly_then_holds_it(tiny_data: Workspace, tmp_path: Path) -> None:
    trainer = make_trainer(tiny_data, tmp_path / "warm", steps=8, lr=1e-3, decay_from=1.0, warmup=4,
                           checkpoint_every=10**6)
    seen: list[float] = []
    trainer.train(progress=lambda _: seen.append(trainer.opt_g.param_groups[0]["lr"]))
    assert seen == pytest.approx([0.25e-3, 0.5e-3, 0.75e-3, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3])
    assert [g["lr"] for g in trainer.opt_d.param_groups] == [1e-3]  # the discriminator warms up alike


def test_without_augmentation_every_sample_is_a_stored_pair_pixel_for_pixel(tiny_data: Workspace,
                                                                            tmp_path: Path) -> None:
    stored = PairedDataset([tiny_data.data("sepia"), tiny_data.data("negative")], split="train")
    pairs = [(it["source"], it["target"]) for it in (stored[i] for i in range(len(stored)))]

    def is_stored(src: torch.Tensor, tgt: torch.Tensor) -> bool:
        return any(torch.equal(src, a) and torch.equal(tgt, b) for a, b in pairs)

    still = make_trainer(tiny_data, tmp_path / "still", steps=1, augment=False)
    moved = make_trainer(tiny_data, tmp_path / "moved", steps=1)
    for step in range(3):
        a, b = still._batch(step), moved._batch(step)
        assert all(is_stored(s, t) for s, t in zip(a["source"], a["target"], strict=True))
        assert not all(is_stored(s, t) for s, t in zip(b["source"], b["target"], strict=True))  # cropped, flipped


def test_final_model_loads_back(tiny_data: Workspace, tmp_path: Path) -> None:
    trainer = make_trainer(tiny_data, tmp_path / "c", steps=2, ema=0.9)
    trainer.train()
    trainer.save_final({"concepts": ["sepia", "negative"]})
    model, training = load_model(tmp_path / "c"), read_training(tmp_path / "c")
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    tok, mask = trainer.text_tokens[:1], trainer.text_mask[:1]
    # the saved model is the EMA's, float16-exact (what a float16 filter pack stores losslessly)
    assert is_float16_exact(model.parameters())
    for saved, ema in zip(model.parameters(), trainer.ema.module.parameters(), strict=True):
        assert torch.equal(saved, ema.detach().half().float())
    with torch.no_grad():
        assert torch.allclose(model(x, tok, mask), trainer.ema.module.eval()(x, tok, mask), atol=5e-3)
    assert model.config.ngf == 8 and training["settings"]["ema"] == 0.9


def test_cli_train_eval_and_resume(workspace: Path, factory_cli) -> None:
    args = ["base", "train", "--concepts", "sepia,negative", "--size", "32", "--ngf", "8", "--batch", "2",
            "--pairs", "12", "--checkpoint-every", "2", "--name", "tiny"]
    out = factory_cli(*args, "--steps", "2")
    assert "step 2" in out.stdout and (workspace / "base" / "tiny" / WEIGHTS).is_file()
    out = factory_cli(*args, "--steps", "4")
    assert "resuming" in out.stdout and "step 4" in out.stdout
    refused = factory_cli(*args, "--steps", "6", "--lr", "1e-3", check=False)
    assert refused.returncode == 2 and "lr" in refused.stderr

    out = factory_cli("eval", "sepia", "--model", "tiny")
    result = json.loads((workspace / "reports" / "eval" / "sepia-tiny.json").read_text())
    assert result["test_pairs"] > 0 and result["student"]["psnr"] > 0 and result["identity"]["ssim"] > 0
    assert result["lpips"] == "measured" or result["lpips"].startswith("unavailable")
    grid = read_image(workspace / "reports" / "eval" / "sepia-tiny.png")
    assert grid.shape[1] == 3 * 32 and grid.shape[0] == 32 * min(4, result["test_pairs"])


def test_auto_k_picks_distinct_representatives(workspace: Path) -> None:
    from base_gan.concept_selection import representative_concepts

    names = ["a", "b", "c", "d", "e", "f"]
    emb = np.array([[1, 0], [0.98, 0.05], [0, 1], [0.05, 0.99], [-1, 0], [-0.97, -0.1]], dtype=np.float32)
    picked = representative_concepts(names, emb, 3, seed=0)
    assert len(set(picked)) == 3
    groups = [{"a", "b"}, {"c", "d"}, {"e", "f"}]
    assert all(len(g & set(picked)) == 1 for g in groups)


def test_pix2pix_needs_one_concept(factory_cli) -> None:
    out = factory_cli("base", "train", "--concepts", "sepia,negative", "--arch", "pix2pix", check=False)
    assert out.returncode == 2 and "exactly one concept" in out.stderr


def test_text_dropout_teaches_the_identity_for_no_text(tiny_data: Workspace, tmp_path: Path) -> None:
    from base_gan.train import NULL_TEXTS

    settings = TrainSettings(generator={**TINY, "film": True}, disc_nf=8, batch=8, steps=150, lr=3e-3,
                             checkpoint_every=1000, text_dropout=0.5)
    trainer = Trainer(tmp_path / "drop", [tiny_data.data("negative")], settings, text_cache=tiny_data.text_cache)
    trainer.train()
    batch = trainer._batch(10**6)
    x = batch["source"]
    null = torch.full((len(x),), 1 + NULL_TEXTS.index(""))
    other = torch.full((len(x),), 1 + NULL_TEXTS.index("a photo of a cat on a sofa"))
    with torch.no_grad():
        edited = trainer.generate(trainer.G, x, torch.zeros(len(x), dtype=torch.long))
        no_text = trainer.generate(trainer.G, x, null)
        unrelated = trainer.generate(trainer.G, x, other)
    negative = -x  # the concept's edit, for reference
    assert (edited - negative).abs().mean() < 0.5 * (x - negative).abs().mean()  # the text gives the edit
    assert (no_text - x).abs().mean() < 0.25 * (edited - x).abs().mean()  # no text: the photo unchanged
    assert (unrelated - x).abs().mean() < 0.25 * (edited - x).abs().mean()
