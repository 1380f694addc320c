"""A tiny pretrained-assets folder (32 px base + weight generator) installed with ``factory pretrain install``."""

from __future__ import annotations

from pathlib import Path

import torch
from conftest import run_factory
from test_weightgen import make_adapter

from base_gan.generator import build_generator
from base_gan.models import save_model
from factory.core.workspace import Workspace
from weight_generator.dataset import collect_workspace
from weight_generator.train import WeightGenSettings, WeightGenTrainer

GEN = dict(ngf=8, image_size=32)
GROUPS = ["down2", "xattn", "up1"]
TEXTS = {"warm": "give it a warm golden tone", "cold": "make it cold and blue", "grey": "make it black and white",
         "sketch": "turn it into a pencil sketch"}
BASE_CONCEPTS = ["golden-hour"]  # recorded as the tiny base's training concepts
HELDOUT = ["autumn"]


def make_tiny_pretrained(root: Path) -> Path:
    """Build the tiny base, four adapters and a weight generator under ``root`` and install them."""
    ws = Workspace(root / "ws")
    base_dir = ws.base("tiny")
    save_model(build_generator(seed=1, **GEN), base_dir, {"concepts": BASE_CONCEPTS})
    for i, (concept, text) in enumerate(TEXTS.items()):
        make_adapter(ws.lora(concept), base_dir, text, seed=i + 1, groups=GROUPS)
    out = ws.weightgen("tiny")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        settings = WeightGenSettings(block_size=32, channels=(8, 16, 16), width=32, depth=2, emb_dim=16, heads=2,
                                     lr=2e-3, warmup=1, steps=20, batch=4, checkpoint_every=1000)
        dataset = collect_workspace(ws)
        dataset.save(out)  # as `factory weightgen collect` leaves it: the baselines (--init mean/ridge) read it
        trainer = WeightGenTrainer(out, dataset, settings, text_cache=ws.text_cache)
        trainer.train()
        trainer.save_final()
    finally:
        torch.set_num_threads(threads)
    dest = root / "pretrained"
    r = run_factory(ws.root, "pretrain", "install", "--base", str(base_dir), "--weightgen", str(out),
                    "--heldout", ",".join(HELDOUT), "--recipe", "tests/tiny_assets.py", "--dest", str(dest))
    assert "installed" in r.stdout
    return dest
