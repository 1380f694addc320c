"""Benchmark: an editor in the browser (onnxruntime-web in headless Chromium) next to Python onnxruntime (issue 16).

The editor is the shipped pretrained base with an instruction baked in, exported by ``factory export``'s
ONNX code (fp32, what the page loads; the architecture of every ``factory run`` editor), or ``--editor``
(an editor folder or .onnx file). It is served by ``factory web``'s server (COOP/COEP headers, so the
page may use WebAssembly threads) to Debian's Chromium, headless, with a fake camera. At 256x256:

* Python onnxruntime: ``session.run`` on one 1x3x256x256 input, median of the runs after warm-up;
* browser, single image: the page's ``editfactory.bench`` (the same, in onnxruntime-web; ``performance.now``);
* browser, webcam loop: the page's live preview with a square crop at max side 256: capture, resize, tensor
  conversion, inference and drawing, frames per second over ``--seconds`` (the fake camera delivers at most
  30 frames/s, so the loop cannot show more).

Each at the browser's thread count (min(4, cores) when cross-origin isolated) and at 1 thread. Writes
``bench/results/web.{json,md}``; ``--quick`` (a smoke: few runs, one thread count) writes
``bench/results/smoke/web.{json,md}``.

    python bench/web.py            # ~2 minutes
    python bench/web.py --quick    # ~30 s
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
INSTRUCTION = "give it a warm golden evening light"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream", "--window-size=1280,900")


def _commit() -> str:
    proc = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    return proc.stdout.strip() or "unknown"


def _editor_from_base(ws, name: str) -> tuple[Path, dict]:
    """The shipped base with INSTRUCTION baked in, exported (fp32) to ``ws/editors/name/``, with a card."""
    from base_gan.models import BaseGAN
    from factory.export.onnx_export import (
        INPUT_CONTRACT,
        OUTPUT_CONTRACT,
        EditorModule,
        export_onnx,
        set_metadata,
        text_condition,
    )
    from factory.pipeline.assets import pretrained_base

    base_dir = pretrained_base()
    if base_dir is None:
        sys.exit("no shipped pretrained base (factory/pretrained/): pass --editor DIR")
    base = BaseGAN.load(base_dir)
    cond = text_condition(base.model, INSTRUCTION, ws.text_cache)
    folder = ws.editor(name)
    folder.mkdir(parents=True)
    path = export_onnx(EditorModule(base.model, *(cond or (None, None))), folder / "editor.onnx", 256)
    set_metadata(path, {"concept": name, "instruction": INSTRUCTION, "precision": "fp32", "stride": "16"})
    (folder / "card.json").write_text(json.dumps({"concept": name, "instruction": INSTRUCTION,
                                                  "input": {**INPUT_CONTRACT, "stride": 16, "export_size": 256},
                                                  "output": OUTPUT_CONTRACT}))
    params = sum(p.numel() for p in base.model.parameters())
    return path, {"source": f"shipped base {base_dir.name} + the instruction {INSTRUCTION!r}", "params": params}


def _editor_from_path(ws, name: str, given: Path) -> tuple[Path, dict]:
    from factory.export.onnx_export import INPUT_CONTRACT, OUTPUT_CONTRACT

    src = given / "editor.onnx" if given.is_dir() else given
    folder = ws.editor(name)
    folder.mkdir(parents=True)
    shutil.copyfile(src, folder / "editor.onnx")
    card = json.loads((given / "card.json").read_text()) if (given / "card.json").is_file() else {}
    card = {"instruction": card.get("instruction", ""), "input": card.get("input", {**INPUT_CONTRACT, "stride": 16}),
            "output": card.get("output", OUTPUT_CONTRACT)}
    (folder / "card.json").write_text(json.dumps(card))
    return folder / "editor.onnx", {"source": str(src)}


def python_ort(path: Path, size: int, threads: int, runs: int, warmup: int) -> dict:
    from factory.runtime.editor import make_session
    from factory.runtime.position import whole_photo_feeds

    sess = make_session(path, threads=threads)
    x = np.sin(np.arange(3 * size * size, dtype=np.float32) * 0.001).reshape(1, 3, size, size) * 0.9
    names = [i.name for i in sess.get_inputs()]  # a screen's position, a lens basis's frame: whole photos
    feeds = {names[0]: x, **whole_photo_feeds(names[1:], size, size)}
    times = []
    for i in range(warmup + runs):
        t0 = time.perf_counter()
        sess.run(None, feeds)
        if i >= warmup:
            times.append((time.perf_counter() - t0) * 1000)
    med = statistics.median(times)
    return {"runtime": "python", "mode": "single image", "threads": threads, "median_ms": round(med, 2),
            "mean_ms": round(statistics.fmean(times), 2), "fps": round(1000 / med, 2), "runs": runs}


def _browser(profile: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver_path):
        sys.exit("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_script_timeout(600)
    return driver


def _wait(driver, script: str, timeout: float = 120):
    end = time.monotonic() + timeout
    while not (value := driver.execute_script(f"return {script}")):
        if time.monotonic() > end:
            status = driver.execute_script("return document.getElementById('status').textContent")
            raise RuntimeError(f"timed out waiting for {script!r}; page status: {status!r}")
        time.sleep(0.05)
    return value


def browser_rows(driver, url: str, name: str, threads: int | None, size: int, runs: int, warmup: int,
                 seconds: float) -> list[dict]:
    """Single-image runs and the webcam loop in one page load (``threads`` None: the page's default)."""
    query = f"?max={size}&filter=editor:{name}" + (f"&threads={threads}" if threads else "")
    driver.get(url + query)
    _wait(driver, "window.editfactory && editfactory.current && document.body.dataset.state !== 'busy' "
                  "&& document.body.dataset.state !== 'loading'")
    r = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        f"editfactory.bench({{size: {size}, runs: {runs}, warmup: {warmup}}})"
        ".then(done, e => done({error: e.message}))")
    if "error" in r:
        raise RuntimeError(f"page bench failed: {r['error']}")
    used = r["threads"]
    rows = [{"runtime": "browser", "mode": "single image", "threads": used, "median_ms": round(r["median_ms"], 2),
             "mean_ms": round(r["mean_ms"], 2), "fps": round(1000 / r["median_ms"], 2), "runs": runs,
             "cross_origin_isolated": r["isolated"]}]
    driver.execute_script("document.getElementById('square').checked = true; document.getElementById('camera').click()")
    _wait(driver, "editfactory.camera && editfactory.camera.frames >= 3")
    f0, t0 = driver.execute_script("return [editfactory.camera.frames, performance.now()]")
    time.sleep(seconds)
    f1, t1, w, h, shown = driver.execute_script(
        "const c = editfactory.camera; return [c.frames, performance.now(), c.width, c.height, editfactory.fps]")
    driver.execute_script("editfactory.stopCamera()")
    fps = (f1 - f0) * 1000 / (t1 - t0)
    rows.append({"runtime": "browser", "mode": "webcam loop", "threads": used, "fps": round(fps, 2),
                 "median_ms": round(1000 / fps, 2) if fps else None, "frames": f1 - f0,
                 "seconds": round((t1 - t0) / 1000, 2), "frame": [w, h], "page_fps_readout": round(shown or 0, 2)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--editor", type=Path, help="an editor folder or .onnx (default: the shipped base, exported)")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=10.0, help="webcam loop measuring window")
    ap.add_argument("--quick", action="store_true", help="smoke: 5 runs, 3 s of webcam, one thread count")
    ap.add_argument("--out", type=Path, help="folder for web.json/web.md (default bench/results, --quick: "
                                             "bench/results/smoke)")
    args = ap.parse_args()
    if args.quick:
        args.runs, args.warmup, args.seconds = 5, 2, 3.0
    out = args.out or (RESULTS / "smoke" if args.quick else RESULTS)

    import onnxruntime

    from factory.core.atomic import atomic_write_json, atomic_write_text
    from factory.core.workspace import Workspace
    from factory.web.server import make_server, url_of
    from factory.web.vendor import check_vendor

    ort_web = check_vendor()
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="bench-web-"))
    ws = Workspace(work / "ws")
    name = "bench"
    try:
        path, model = (_editor_from_path(ws, name, args.editor) if args.editor else _editor_from_base(ws, name))
        server = make_server(ws, port=0, log_errors=lambda m: None)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        driver = _browser(work / "profile")
        load_before = os.getloadavg()
        try:
            rows = browser_rows(driver, url_of(server), name, None, args.size, args.runs, args.warmup, args.seconds)
            n = rows[0]["threads"]
            thread_counts = [n] if args.quick or n == 1 else [n, 1]
            if not args.quick and n != 1:
                rows += browser_rows(driver, url_of(server), name, 1, args.size, args.runs, args.warmup, args.seconds)
            version = driver.capabilities.get("browserVersion", "?")
        finally:
            driver.quit()
            server.shutdown()
            server.server_close()
        rows += [python_ort(path, args.size, t, args.runs, args.warmup) for t in thread_counts]
        load_after = os.getloadavg()
        model["bytes"] = path.stat().st_size
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def fps(runtime: str, mode: str, threads: int) -> float | None:
        return next((r["fps"] for r in rows if (r["runtime"], r["mode"], r["threads"]) == (runtime, mode, threads)),
                    None)

    ratios = {f"{t}_threads": {"browser_single_vs_python": round(fps("browser", "single image", t) /
                                                                 fps("python", "single image", t), 3),
                               "browser_webcam_vs_python": round(fps("browser", "webcam loop", t) /
                                                                 fps("python", "single image", t), 3)}
              for t in thread_counts}
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "commit": _commit(),
        "command": "python bench/web.py" + (" --quick" if args.quick else ""),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "chromium": version, "onnxruntime": onnxruntime.__version__, "onnxruntime_web": ort_web},
        "settings": {"size": args.size, "runs": args.runs, "warmup": args.warmup, "webcam_seconds": args.seconds,
                     "precision": "fp32"},
        "model": model,
        "load_average": {"before": [round(v, 2) for v in load_before], "after": [round(v, 2) for v in load_after]},
        "rows": rows,
        "ratios": ratios,
        "seconds": round(time.perf_counter() - started, 1),
    }
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "web.json", report)
    atomic_write_text(out / "web.md", markdown(report))
    print(markdown(report))


def markdown(r: dict) -> str:
    s, m = r["settings"], r["machine"]
    lines = [
        f"# The editor in the browser vs Python onnxruntime ({r['date']}{', QUICK smoke' if r['quick'] else ''})",
        "",
        f"{s['size']}x{s['size']} RGB, fp32, batch 1; {m['cpu']} ({m['cores']} cores); Chromium {m['chromium']} "
        f"(headless) with onnxruntime-web {m['onnxruntime_web']} (WebAssembly, SIMD), Python onnxruntime "
        f"{m['onnxruntime']} (CPU). Model: {r['model']['source']} ({r['model']['bytes'] / 1e6:.2f} MB). Single image: "
        f"median of {s['runs']} runs after {s['warmup']} warm-up; webcam loop: the page's live preview (fake camera, "
        f"square crop to {s['size']}x{s['size']}; capture, resize, conversion, inference and drawing) over "
        f"{s['webcam_seconds']:.0f} s, at most 30 frames/s (the camera's rate). Load average (1/5/15 min) before "
        f"{r['load_average']['before']}, after {r['load_average']['after']} "
        "(a load at the start can be the previous minute's work: the average lags).",
        "",
        "| runtime | mode | threads | ms per frame | frames/s |",
        "|---|---|---:|---:|---:|",
    ]
    for row in r["rows"]:
        ms = f"{row['median_ms']:.1f}" if row.get("median_ms") else "–"
        who = "Python onnxruntime" if row["runtime"] == "python" else "browser (onnxruntime-web)"
        lines.append(f"| {who} | {row['mode']} | {row['threads']} | {ms} | {row['fps']:.1f} |")
    lines.append("")
    for key, v in r["ratios"].items():
        lines.append(f"- {key.replace('_', ' ')}: browser single image at {v['browser_single_vs_python']:.2f}x "
                     f"Python's frames/s, webcam loop at {v['browser_webcam_vs_python']:.2f}x")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
