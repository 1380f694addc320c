"""The machine's throughput at a moment: one fixed generator training step timed, so that runs made hours apart (a
scratch reference and the arms timed against it) can be seen to have had the same machine, or not.

The step is always the same work whatever the run trains: the shipped base's architecture (``NETWORK``; no text,
no screen, no colour basis), a batch of 8 random 128 px images of a fixed seed, L1 to a random target, Adam. A few
warm-up steps, then ``steps`` timed ones; the result is generator steps per second (a reference's own steps per
second are lower by its discriminator and data, but move with the machine in proportion). A probe at a process's
start reads lower than one after a long run in it (about 9-10 against 12 steps per second here at one hour): compare
a run's "before" with another's "before".

    python bench/throughput.py          # one probe, printed
"""

from __future__ import annotations

import time

import torch

from base_gan.models import build_model
from factory.evaluation.protocol import SIZE

BATCH, WARMUP = 8, 3
#: the shipped base's architecture as of this probe's first use (fixed here, so a new base does not move the probe)
NETWORK = {"arch": "e2gan", "ngf": 32, "n_res_enc": 2, "n_res_dec": 1, "text_dim": 384, "heads": 4, "ff_mult": 4,
           "act": "lrelu", "norm": "none", "output": "residual", "image_size": 128, "text_encoder": "minilm",
           "film": True}


def probe(steps: int = 40, size: int = SIZE, seed: int = 0) -> dict:
    """``{"steps_per_second", "steps", "batch", "size", "threads"}`` of the fixed generator step (module doc)."""
    model = build_model(**NETWORK, seed=seed).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    gen = torch.Generator().manual_seed(seed)
    x, y = (torch.rand(BATCH, 3, size, size, generator=gen) * 2 - 1 for _ in range(2))

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.l1_loss(model(x), y).backward()
        opt.step()

    for _ in range(WARMUP):
        step()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = time.perf_counter() - started
    return {"steps_per_second": round(steps / seconds, 3), "steps": steps, "batch": BATCH, "size": size,
            "threads": torch.get_num_threads()}


def probe_of(result: dict) -> str:
    """A results file's probes as text: "before / after" steps per second, or "not recorded" (made before them)."""
    probes = result.get("throughput_probe")
    if not probes:
        return "not recorded"
    return " / ".join(f"{probes[k]['steps_per_second']:.2f}" for k in ("before", "after") if k in probes)


if __name__ == "__main__":
    print(probe())
