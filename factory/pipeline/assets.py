"""The pretrained base GAN and weight generator shipped inside the package (``factory/pretrained/``),
and how a workspace finds the base and weight generator a command uses.

The shipped assets make the main job work on a fresh machine without training either model: a
workspace that has no base or weight generator of its own uses these. ``factory pretrain train``
makes them (``factory.pipeline.pretrain``); ``manifest.json`` records its command, the concepts each
model saw and the classic concepts held out of both (so ``factory run`` on one of those shows a
truly new concept)::

    pretrained/manifest.json
    pretrained/editfactory-base/       a diffusers model folder (config.json + weights) + training.json
    pretrained/editfactory-weightgen/  denoiser/ (float16), scheduler/, tokenizer.json/.safetensors,
                                       training.json, dataset.json/.safetensors (the training adapters)

Shipped files name no path of the machine that made them (``install`` keeps folder names only).
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from factory.core.atomic import atomic_folder, atomic_write_json
from factory.core.errors import FactoryError
from factory.core.files import read_json
from factory.core.workspace import Workspace

PRETRAINED_DIR = Path(__file__).resolve().parents[1] / "pretrained"
PRETRAINED_ENV = "FACTORY_PRETRAINED"  # another folder of the same layout, or "none" to use no shipped assets
MANIFEST = "manifest.json"
BASE_NAME = "editfactory-base"
WEIGHTGEN_NAME = "editfactory-weightgen"
DEFAULT_NAME = "default"
MAX_BYTES = 30_000_000  # the package's budget for shipped weights


def pretrained_dir() -> Path | None:
    """The folder of shipped assets in use (``$FACTORY_PRETRAINED`` overrides; ``none`` turns them off)."""
    value = os.environ.get(PRETRAINED_ENV)
    if value is not None and value.strip().lower() in ("", "none", "off", "0"):
        return None
    folder = Path(value).expanduser() if value else PRETRAINED_DIR
    return folder if (folder / MANIFEST).is_file() else None


def manifest() -> dict[str, Any] | None:
    folder = pretrained_dir()
    return read_json(folder / MANIFEST) if folder else None


def pretrained_base() -> Path | None:
    """The shipped base folder, or None when there is none."""
    from base_gan.models import is_model_folder

    folder = pretrained_dir()
    return folder / BASE_NAME if folder is not None and is_model_folder(folder / BASE_NAME) else None


def pretrained_weightgen() -> Path | None:
    """The shipped weight-generator folder, or None when there is none."""
    from weight_generator.train import is_weightgen

    folder = pretrained_dir()
    return folder / WEIGHTGEN_NAME if folder is not None and is_weightgen(folder / WEIGHTGEN_NAME) else None


def heldout_concepts() -> list[str]:
    """Classic concepts kept out of the shipped base's and weight generator's training."""
    m = manifest()
    return list(m.get("heldout", [])) if m else []


# -- what a workspace uses ---------------------------------------------------------------------------
def resolve_base(workspace: Workspace, name: str | os.PathLike | None = None) -> Path:
    """A base folder: ``name`` as a folder or ``<workspace>/base/<name>/``; without a name (or for
    ``default``) the workspace's ``default`` base, else the shipped pretrained base."""
    from base_gan.models import is_model_folder

    folder = Path(name) if name and Path(name).is_dir() else workspace.base(str(name or DEFAULT_NAME))
    if is_model_folder(folder):
        return folder
    if name in (None, DEFAULT_NAME, BASE_NAME) and pretrained_base() is not None:
        return pretrained_base()
    raise FactoryError(f"base '{name or DEFAULT_NAME}' not found ({folder} holds no trained generator) and no "
                       "pretrained base is shipped; train one with `factory base train --name NAME` or pass its folder")


def find_weightgen(workspace: Workspace, name: str | None = None) -> Path:
    """``<workspace>/weightgen/<name>/``; without a name, ``default`` or else the only trained one, or else
    the shipped pretrained weight generator."""
    from weight_generator.train import is_weightgen

    if name:
        folder = workspace.weightgen(name)
        if not is_weightgen(folder):
            raise FactoryError(f"weight generator '{name}' not found ({folder} holds none); "
                               "train it with `factory weightgen train --name NAME`")
        return folder
    root = workspace.root / "weightgen"
    trained = sorted(p for p in root.iterdir() if is_weightgen(p)) if root.is_dir() else []
    if is_weightgen(workspace.weightgen(DEFAULT_NAME)):
        return workspace.weightgen(DEFAULT_NAME)
    if len(trained) == 1:
        return trained[0]
    if not trained:
        shipped = pretrained_weightgen()
        if shipped is not None:
            return shipped
        raise FactoryError(f"no trained weight generator under {root}; run `factory weightgen collect` and "
                           "`factory weightgen train` first")
    raise FactoryError(f"several weight generators under {root} ({', '.join(p.name for p in trained)}) and none "
                       f"named '{DEFAULT_NAME}'; train one with --name {DEFAULT_NAME}")


# -- installing new shipped assets --------------------------------------------------------------------
def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _copy_base(base_dir: Path, out: Path) -> dict[str, Any]:
    """The base, float16-exact (``round_to_float16_``: a filter pack then stores it losslessly in float16)."""
    from base_gan.models import CONFIG, TRAINING, load_model, round_to_float16_, save_model

    save_model(round_to_float16_(load_model(base_dir)), out)
    shutil.copyfile(base_dir / CONFIG, out / CONFIG)
    training = read_json(base_dir / TRAINING) or {}
    atomic_write_json(out / TRAINING, training)
    return training


def _copy_weightgen(weightgen_dir: Path, out: Path, half_dataset: bool) -> dict[str, Any]:
    """The weight generator with its denoiser in float16 and every path reduced to the shipped names."""
    import torch
    from safetensors.torch import load_file, save_file

    from base_gan.models import TRAINING, load_model, save_model
    from weight_generator.dataset import DATASET_META, DATASET_WEIGHTS, embed_instructions
    from weight_generator.hypernet import HYPERNET_DIR
    from weight_generator.tokenize import TOKENIZER_CONFIG, TOKENIZER_STATS
    from weight_generator.train import DENOISER_DIR, DENOISERS, SCHEDULER_DIR

    out.mkdir()
    save_model(load_model(weightgen_dir / DENOISER_DIR, tuple(DENOISERS.values())).half(), out / DENOISER_DIR)
    shutil.copytree(weightgen_dir / SCHEDULER_DIR, out / SCHEDULER_DIR)
    tok = json.loads((weightgen_dir / TOKENIZER_CONFIG).read_text(encoding="utf-8"))
    tok["adapter_config"]["base_model_name_or_path"] = None
    atomic_write_json(out / TOKENIZER_CONFIG, tok)
    shutil.copyfile(weightgen_dir / TOKENIZER_STATS, out / TOKENIZER_STATS)
    training = dict(read_json(weightgen_dir / TRAINING) or {}, base=BASE_NAME, stored_dtype="float16")
    atomic_write_json(out / TRAINING, training)
    if (weightgen_dir / DATASET_META).is_file():
        meta = json.loads((weightgen_dir / DATASET_META).read_text(encoding="utf-8"))
        meta["base"] = BASE_NAME
        meta["adapter_config"]["base_model_name_or_path"] = None
        meta["sources"] = [{k: v for k, v in src.items() if k != "folder"} for src in meta.get("sources", [])]
        w = load_file(str(weightgen_dir / DATASET_WEIGHTS))["weights"]
        w = (w.to(torch.float16) if half_dataset else w.to(torch.float32)).contiguous()
        save_file({"weights": w}, str(out / DATASET_WEIGHTS))
        atomic_write_json(out / DATASET_META, meta)
        training["dataset_dtype"] = "float16" if half_dataset else "float32"
        embed_instructions(out)  # the text baselines of a new workspace read these instead of encoding every text
    if (weightgen_dir / HYPERNET_DIR).is_dir():  # the Text-to-LoRA hypernetwork (--init hypernet)
        shutil.copytree(weightgen_dir / HYPERNET_DIR, out / HYPERNET_DIR)
        hyper_training = out / HYPERNET_DIR / TRAINING
        if hyper_training.is_file():  # the base it was trained through, by its shipped name
            atomic_write_json(hyper_training, dict(read_json(hyper_training) or {}, base=BASE_NAME))
    return training


def install(base_dir: Path, weightgen_dir: Path, recipe: str, heldout: list[str], dest: Path = PRETRAINED_DIR,
            extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Copy a trained base and weight generator into ``dest`` (replacing what is there); returns the manifest.

    Refuses a weight generator trained on adapters of another base, a held-out name that is no built-in card
    or that either model saw, and a total over ``MAX_BYTES`` (the dataset drops to float16 first).
    """
    from base_gan.models import is_model_folder, read_training
    from concepts.cards import builtin_cards
    from weight_generator.dataset import same_base
    from weight_generator.train import is_weightgen

    base_dir, weightgen_dir, dest = Path(base_dir), Path(weightgen_dir), Path(dest)
    if not is_model_folder(base_dir):
        raise FactoryError(f"{base_dir}: not a trained base (a diffusers model folder)")
    if not is_weightgen(weightgen_dir):
        raise FactoryError(f"{weightgen_dir}: not a trained weight generator")
    base_training, wg_training = read_training(base_dir), read_training(weightgen_dir)
    if not same_base(wg_training.get("base"), base_dir):
        raise FactoryError(f"{weightgen_dir} was trained on adapters of base {wg_training.get('base')}, not {base_dir}")
    unknown = sorted(set(heldout) - {c.name for c in builtin_cards()})
    if unknown:
        raise FactoryError(f"held-out concept(s) {', '.join(unknown)} are not built-in cards (`factory concepts "
                           "list`); the manifest lists what a user can `factory run` as a new concept")
    wg_concepts = wg_training.get("concepts", [])
    seen = sorted(set(heldout) & (set(base_training.get("concepts", [])) | set(wg_concepts)))
    if seen:
        raise FactoryError(f"held-out concept(s) {', '.join(seen)} were in the training of the base or the weight "
                           "generator")
    with atomic_folder(dest) as tmp:
        _copy_base(base_dir, tmp / BASE_NAME)
        training = _copy_weightgen(weightgen_dir, tmp / WEIGHTGEN_NAME, half_dataset=False)
        if _folder_bytes(tmp) > MAX_BYTES and training.get("dataset_dtype") == "float32":
            shutil.rmtree(tmp / WEIGHTGEN_NAME)
            training = _copy_weightgen(weightgen_dir, tmp / WEIGHTGEN_NAME, half_dataset=True)
        sizes = {BASE_NAME: _folder_bytes(tmp / BASE_NAME), WEIGHTGEN_NAME: _folder_bytes(tmp / WEIGHTGEN_NAME)}
        total = sum(sizes.values())
        if total > MAX_BYTES:
            raise FactoryError(f"the pretrained assets take {total / 1e6:.1f} MB, over the {MAX_BYTES / 1e6:.0f} MB "
                               "budget; train a smaller weight generator")
        m = {"recipe": recipe, "created": datetime.now(UTC).isoformat(timespec="seconds"),
             "heldout": sorted(heldout),
             "base": {"folder": BASE_NAME, "trained_as": base_dir.name, "concepts": base_training.get("concepts", []),
                      "generator": read_json(base_dir / "config.json") or {}, "bytes": sizes[BASE_NAME]},
             "weightgen": {"folder": WEIGHTGEN_NAME, "trained_as": weightgen_dir.name, "concepts": wg_concepts,
                           "variant": training.get("variant"), "stored_dtype": "float16",
                           "dataset_dtype": training.get("dataset_dtype"), "bytes": sizes[WEIGHTGEN_NAME]},
             "total_bytes": total, **(extra or {})}
        atomic_write_json(tmp / MANIFEST, m)
    return m
