"""A weight dataset at scale: many concept-family adapters trained together on the frozen base.

1. ``n`` concepts sampled from the concept family's training region (``concepts.family``), each a
   classic recipe with the instruction that says it, written as cards in the workspace, and their
   teacher pairs at the base's size;
2. their LoRA ``B`` (and biases) trained against one shared, frozen ``lora_A``, ``chunk`` concepts per
   batch (``factory.lora.batched``: equal to one-at-a-time training), each for ``settings.steps``;
3. each adapter saved as a plain peft adapter in ``loras/<concept>/`` with ``metrics.json``
   (instruction, base, recipe, final training L1), then all collected into one weight dataset.

Resumable per chunk: a concept whose adapter is saved is not trained again, and its pairs are reused.
Data-parallel (``--processes N``, ``accelerate launch``, ``torchrun``): process 0 makes the cards and pairs,
then the chunks are dealt out round-robin (chunk i to process i mod N); an adapter's training does not
depend on the concepts that share its batch, so N processes save the adapters one process saves, and a run
cut off resumes with any number of processes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from base_gan.distributed import parallel
from base_gan.models import BaseGAN
from concepts.family import family_cards
from factory.core.atomic import atomic_write_json
from factory.core.errors import FactoryError
from factory.core.workspace import Workspace
from factory.lora.adapters import LoraLayout
from factory.lora.batched import AdapterTraining, train_adapters
from weight_generator.dataset import WeightDataset, collect_adapters, is_adapter_dir

Log = Callable[[str], None]


def family_weight_dataset(ws: Workspace, base: BaseGAN, n: int, layout: LoraLayout, settings: AdapterTraining, *,
                          pairs: int = 64, seed: int = 0, chunk: int = 32, size: int | None = None,
                          region: str = "train", log: Log = print) -> WeightDataset:
    """Sample ``n`` family concepts of ``region``, make their pairs (at ``size``, default the base's), train
    their adapters in batches of ``chunk`` on ``base`` (frozen) and return their weight dataset (see the
    module docstring)."""
    from factory.data.card_pairs import PhotoCache, TeacherCache, make_pairs

    if n < 2 or chunk < 1 or pairs < 4:
        raise FactoryError(f"a family weight dataset needs n >= 2, chunk >= 1 and pairs >= 4 "
                           f"(got n={n}, chunk={chunk}, pairs={pairs})")
    par = parallel()
    if par.main:
        cards = family_cards(ws, n, seed, region)
        teachers, photos = TeacherCache(), PhotoCache()
        for i, card in enumerate(cards):
            make_pairs(ws, card, pairs, size or base.image_size, seed, teachers=teachers, photos=photos)
            if (i + 1) % 50 == 0 or i + 1 == len(cards):
                log(f"pairs: {i + 1}/{len(cards)} family concepts")
    par.barrier()  # the cards and pairs are written
    if not par.main:
        cards = family_cards(ws, n, seed, region)
    todo = [c for c in cards if not is_adapter_dir(ws.lora(c.name))]
    par.barrier()  # every process has listed what is left before any adapter is saved
    starts = list(range(0, len(todo), chunk))
    for start in starts[par.rank::par.world]:
        part = todo[start:start + chunk]
        model, history = train_adapters(base.model, layout, [ws.data(c.name) for c in part], settings,
                                        ws.text_cache)
        for k, card in enumerate(part):
            folder = model.save(k, ws.lora(card.name))
            atomic_write_json(folder / "metrics.json", _metrics(card, base, layout, settings, history, k))
        done = len(cards) - len(todo) + start + len(part)
        log(f"adapters: {done}/{len(cards)} trained (chunk of {len(part)}, final mean L1 "
            f"{sum(history[-1]['l1']) / len(part):.4f})" + (f" [process {par.rank}]" if par.world > 1 else ""))
    par.barrier()  # every chunk is saved
    folders = [ws.lora(c.name) for c in cards]
    return collect_adapters(folders, [c.instruction for c in cards], [c.name for c in cards])


def _metrics(card, base: BaseGAN, layout: LoraLayout, settings: AdapterTraining, history: list[dict],
             k: int) -> dict[str, Any]:
    from factory.core.configs import to_dict

    tail = history[-min(10, len(history)):]
    return {"concept": card.name, "instruction": card.instruction, "base": str(Path(base.folder)),
            "recipe": card.teacher.params["recipe"], "trained": "batched (shared frozen lora_A)",
            "layout": to_dict(layout), "settings": to_dict(settings),
            "final_l1": sum(h["l1"][k] for h in tail) / len(tail)}
