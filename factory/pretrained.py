"""The pretrained base GAN and weight generator shipped inside the package (``factory/pretrained/``).

They make the main job work on a fresh machine without training either model: a workspace that
has no base or weight generator of its own uses these. Both were trained by the project's own
code on the classic concept library and scikit-image's training photos; ``manifest.json`` records
the command that made them, the concepts each saw and the classic concepts held out of both
(so ``factory run`` on one of those shows a truly new concept).

``install`` copies a trained base and weight generator into a folder of this layout (the weight
generator's weights stored as float16 to keep the package small; they load back into float32):

    pretrained/manifest.json
    pretrained/editfactory-base/       generator.safetensors + config.json
    pretrained/editfactory-weightgen/  model.safetensors + config.json + tokenizer.json/.safetensors
                                       (+ dataset.json/.safetensors: the training adapters and texts)
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from factory.errors import FactoryError

PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"
PRETRAINED_ENV = "FACTORY_PRETRAINED"  # another folder of the same layout, or "none" to use no shipped assets
MANIFEST = "manifest.json"
BASE_NAME = "editfactory-base"
WEIGHTGEN_NAME = "editfactory-weightgen"
MAX_BYTES = 30_000_000  # the package's budget for shipped weights
WEIGHTGEN_FILES = ("model.safetensors", "config.json", "tokenizer.json", "tokenizer.safetensors")
BASE_FILES = ("generator.safetensors", "config.json")
DATASET_FILES = ("dataset.json", "dataset.safetensors")  # shipped with the weight generator when present


def pretrained_dir() -> Path | None:
    """The folder of shipped assets in use (``$FACTORY_PRETRAINED`` overrides; ``none`` turns them off)."""
    value = os.environ.get(PRETRAINED_ENV)
    if value is not None and value.strip().lower() in ("", "none", "off", "0"):
        return None
    folder = Path(value).expanduser() if value else PRETRAINED_DIR
    return folder if (folder / MANIFEST).is_file() else None


def manifest() -> dict[str, Any] | None:
    folder = pretrained_dir()
    return json.loads((folder / MANIFEST).read_text(encoding="utf-8")) if folder else None


def pretrained_base() -> Path | None:
    """The shipped base folder, or None when there is none."""
    folder = pretrained_dir()
    if folder is None or not all((folder / BASE_NAME / f).is_file() for f in BASE_FILES):
        return None
    return folder / BASE_NAME


def pretrained_weightgen() -> Path | None:
    """The shipped weight-generator folder, or None when there is none."""
    folder = pretrained_dir()
    if folder is None or not all((folder / WEIGHTGEN_NAME / f).is_file() for f in WEIGHTGEN_FILES):
        return None
    return folder / WEIGHTGEN_NAME


def heldout_concepts() -> list[str]:
    """Classic concepts kept out of the shipped base's and weight generator's training."""
    m = manifest()
    return list(m.get("heldout", [])) if m else []


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _copy_dataset(weightgen_dir: Path, out: Path, half: bool = False) -> str | None:
    """The weight dataset the generator was trained on (texts + adapters; for retrieval, the copy check and
    retraining), re-pointed at the shipped base; float16 when ``half``. Returns the stored dtype."""
    import torch
    from safetensors.torch import load_file, save_file

    if not all((weightgen_dir / f).is_file() for f in DATASET_FILES):
        return None
    meta = json.loads((weightgen_dir / "dataset.json").read_text(encoding="utf-8"))
    meta["base"] = BASE_NAME
    w = load_file(str(weightgen_dir / "dataset.safetensors"))["weights"]
    w = (w.to(torch.float16) if half else w.to(torch.float32)).contiguous()
    save_file({"weights": w}, str(out / "dataset.safetensors"))
    (out / "dataset.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return "float16" if half else "float32"


def install(base_dir: Path, weightgen_dir: Path, recipe: str, heldout: list[str], dest: Path = PRETRAINED_DIR,
            extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Copy a trained base and weight generator into ``dest`` (replacing what is there); returns the manifest.

    Refuses a weight generator trained on adapters of another base, a held-out concept that either
    model saw, and a total over ``MAX_BYTES``.
    """
    import torch
    from safetensors.torch import load_file, save_file

    base_dir, weightgen_dir, dest = Path(base_dir), Path(weightgen_dir), Path(dest)
    for folder, files in ((base_dir, BASE_FILES), (weightgen_dir, WEIGHTGEN_FILES)):
        missing = [f for f in files if not (folder / f).is_file()]
        if missing:
            raise FactoryError(f"{folder}: missing {', '.join(missing)}; is it a trained model folder?")
    base_cfg = json.loads((base_dir / "config.json").read_text(encoding="utf-8"))
    wg_cfg = json.loads((weightgen_dir / "config.json").read_text(encoding="utf-8"))
    from weight_generator.sample import same_base

    if not same_base(wg_cfg.get("base"), base_dir):
        raise FactoryError(f"{weightgen_dir} was trained on adapters of base {wg_cfg.get('base')}, not {base_dir}")
    wg_concepts = json.loads((weightgen_dir / "dataset.json").read_text(encoding="utf-8")).get("concepts", []) \
        if (weightgen_dir / "dataset.json").is_file() else []
    seen = sorted(set(heldout) & (set(base_cfg.get("concepts", [])) | set(wg_concepts)))
    if seen:
        raise FactoryError(f"held-out concept(s) {', '.join(seen)} were in the training of the base or the weight "
                           "generator")

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        (tmp / BASE_NAME).mkdir()
        for f in BASE_FILES:
            shutil.copyfile(base_dir / f, tmp / BASE_NAME / f)
        out = tmp / WEIGHTGEN_NAME
        out.mkdir()
        state = load_file(str(weightgen_dir / "model.safetensors"))
        half = {k: (v.to(torch.float16) if v.is_floating_point() else v).contiguous() for k, v in state.items()}
        save_file(half, str(out / "model.safetensors"))
        for f in ("tokenizer.json", "tokenizer.safetensors"):
            shutil.copyfile(weightgen_dir / f, out / f)
        wg_cfg["base"] = BASE_NAME  # the shipped pair: same_base() matches by folder name
        wg_cfg["stored_dtype"] = "float16"
        (out / "config.json").write_text(json.dumps(wg_cfg, indent=2) + "\n", encoding="utf-8")
        dataset_dtype = _copy_dataset(weightgen_dir, out)
        sizes = {BASE_NAME: _folder_bytes(tmp / BASE_NAME), WEIGHTGEN_NAME: _folder_bytes(out)}
        total = sum(sizes.values())
        if total > MAX_BYTES and dataset_dtype == "float32":
            dataset_dtype = _copy_dataset(weightgen_dir, out, half=True)
            sizes[WEIGHTGEN_NAME] = _folder_bytes(out)
            total = sum(sizes.values())
        if total > MAX_BYTES:
            raise FactoryError(f"the pretrained assets take {total / 1e6:.1f} MB, over the {MAX_BYTES / 1e6:.0f} MB "
                               "budget; train a smaller weight generator (--joint-width)")
        m = {"recipe": recipe, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
             "heldout": sorted(heldout),
             "base": {"folder": BASE_NAME, "trained_from": str(base_dir), "concepts": base_cfg.get("concepts", []),
                      "generator": base_cfg.get("generator"), "bytes": sizes[BASE_NAME]},
             "weightgen": {"folder": WEIGHTGEN_NAME, "trained_from": str(weightgen_dir), "concepts": wg_concepts,
                           "variant": wg_cfg.get("denoiser", {}).get("variant"), "stored_dtype": "float16",
                           "dataset_dtype": dataset_dtype,
                           "bytes": sizes[WEIGHTGEN_NAME]},
             "total_bytes": total, **(extra or {})}
        (tmp / MANIFEST).write_text(json.dumps(m, indent=2) + "\n", encoding="utf-8")
        old = None
        if dest.exists():
            old = dest.parent / f".{dest.name}.old"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(dest, old)
        os.chmod(tmp, 0o755)
        os.replace(tmp, dest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return m
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def resolve_base(workspace, name: str | None = None) -> Path:
    """A base folder: ``name`` as a folder or ``<workspace>/base/<name>/``; without a name (or for
    ``default``) the workspace's ``default`` base, else the shipped pretrained base."""
    if name and Path(name).is_dir():
        folder = Path(name)
    else:
        folder = workspace.base(name or "default")
    if (folder / "generator.safetensors").is_file():
        return folder
    if name in (None, "default", BASE_NAME) and pretrained_base() is not None:
        return pretrained_base()
    raise FactoryError(f"base '{name or 'default'}' not found ({folder} has no generator.safetensors) and no "
                       "pretrained base is shipped; train one with `factory base train --name NAME` or pass its folder")
