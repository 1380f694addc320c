"""onnxruntime-web for the browser editor: installed from the npm registry by the project's own setup.

``factory/web/package.json`` pins the exact version (``package-lock.json`` the whole tree);
``make web`` (part of ``make install``/``demo``/``test``) runs ``python -m factory.web.vendor``, which
runs ``npm ci`` in ``factory/web/`` and copies the few files the page loads into ``static/vendor/``
(gitignored): the wasm-only UMD bundle, its ES-module wasm loader (also the worker script of the
multi-threaded build) and the SIMD + threads WebAssembly binary. Nothing is fetched from a CDN at
run time. ``factory web`` checks them with ``check_vendor`` and names this command when they are missing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from factory.core.errors import FactoryError

WEB_DIR = Path(__file__).resolve().parent
STATIC_DIR = WEB_DIR / "static"
VENDOR_DIR = STATIC_DIR / "vendor"
PACKAGE = "onnxruntime-web"
#: the files the page needs, from node_modules/onnxruntime-web/dist/ (wasm backend only: no WebGL/WebGPU build)
ORT_FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
STAMP = "VERSION.json"
INSTALL_HINT = "run `make web` (it runs `npm ci` in factory/web/ and copies onnxruntime-web into static/vendor/)"


def pinned_version() -> str:
    """The exact onnxruntime-web version ``package.json`` pins."""
    deps = json.loads((WEB_DIR / "package.json").read_text(encoding="utf-8"))["dependencies"]
    return deps[PACKAGE]


def check_vendor(folder: Path = VENDOR_DIR) -> str:
    """The installed onnxruntime-web version; FactoryError (naming the install command) when a file is
    missing or the copy is of another version than the pinned one."""
    missing = [name for name in (*ORT_FILES, STAMP) if not (folder / name).is_file()]
    if missing:
        raise FactoryError(f"onnxruntime-web is not installed for the browser editor ({', '.join(missing)} missing "
                           f"in {folder}): {INSTALL_HINT}")
    installed = json.loads((folder / STAMP).read_text(encoding="utf-8")).get(PACKAGE)
    if installed != pinned_version():
        raise FactoryError(f"{folder} holds onnxruntime-web {installed}, factory/web/package.json pins "
                           f"{pinned_version()}: {INSTALL_HINT}")
    return installed


def install_vendor(log=print) -> Path:
    """``npm ci`` in factory/web/ (exact versions from package-lock.json), then copy the page's files to
    static/vendor/ with a VERSION.json naming the version."""
    npm = shutil.which("npm")
    if npm is None:
        raise FactoryError("npm not found: the browser editor needs Node.js 18+ with npm to install onnxruntime-web "
                           "from the npm registry (e.g. `apt-get install nodejs npm`), then run `make web`")
    proc = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"], cwd=WEB_DIR,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise FactoryError(f"`npm ci` in {WEB_DIR} failed: {(proc.stderr or proc.stdout).strip()[-800:]}")
    dist = WEB_DIR / "node_modules" / PACKAGE / "dist"
    VENDOR_DIR.mkdir(parents=True, exist_ok=True)
    for name in ORT_FILES:
        shutil.copyfile(dist / name, VENDOR_DIR / name)
    meta = json.loads((dist.parent / "package.json").read_text(encoding="utf-8"))
    stamp = {PACKAGE: meta["version"], "license": meta.get("license"), "files": list(ORT_FILES)}
    (VENDOR_DIR / STAMP).write_text(json.dumps(stamp, indent=1) + "\n", encoding="utf-8")
    log(f"onnxruntime-web {meta['version']}: {', '.join(ORT_FILES)} -> {VENDOR_DIR}")
    return VENDOR_DIR


def main() -> None:
    try:
        install_vendor()
        check_vendor()
    except FactoryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
