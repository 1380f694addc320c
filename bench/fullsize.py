"""Benchmark: full-size photos (issue 16, part 3): guided upsampling vs streamed tiles vs the old tiling.

Per concept (default: the protocol's test concepts, colour and structural), an editor exported with
the same code as ``factory export`` (its card.json's ``full_size`` choice included): from the protocol
workspace's adapter (``bench/work/protocol/runs/<concept>/seed0/generated``) when there is one, else
made by ``factory run <concept>`` in this benchmark's workspace. Then, per path:

* ``guided``: the editor at 512 px, its colour edit applied at full resolution (factory.runtime.guided);
* ``tiled``: native resolution in 512 px tiles streamed band by band (factory.runtime.tiles);
* ``old``: the tiling before this change (1024 px tiles, batch 4, a float accumulator of the whole
  image and every tile's output kept), re-implemented here for comparison.
* ``plain``: for an editor whose card kept a screen finish (factory.runtime.screen_finish), tiled without it.
* ``screen``: for an editor whose export chose the screen path (factory.runtime.screen_render): the editor at a low
  resolution gives the ink, the dots are drawn at full resolution (timed against the tiled path's 5 s goal).

Measured: seconds and peak memory (VmHWM, each run in a fresh process doing what ``factory apply``
does: read the file, edit, write) for a 12 MP photo (4000x3000) and a 9000x9000 image; PSNR against
the teacher at full resolution (the classic recipe with its pixel sizes scaled to the photo:
factory.teachers.rescale) on the 12 MP photo and on the concept's held-out photos at native size,
next to the editor's 256 px figure (card.json). The default photo set keeps its photos at <= 1280 px,
so the 12 MP and 9000x9000 images are a held-out photo upscaled (bicubic): timing and memory do not
depend on content, but the upscaled photo has less fine detail than a camera's. A sweep of the tiled
path's tile size and overlap (``--tiles``: sizes, or size/overlap pairs; seconds, peak memory, PSNR) on the
first concept; the defaults are chosen on validation concepts (``--concepts autumn,watercolor --out
bench/results/fullsize-validation``), this run's test concepts report them. ``--huge 0`` skips the 9000x9000
image. Writes <out>/fullsize.{json,md}.

    python bench/fullsize.py            # 4 test concepts, fp32 + int8, ~30 min on 2 cores (run it alone)
    python bench/fullsize.py --quick    # smoke: one concept, small images, bench/results/smoke/fullsize/
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from common import git_commit, log, shrink_to_pairs

REPO = Path(__file__).resolve().parents[1]
PROTOCOL = REPO / "bench" / "work" / "protocol"
FULL = dict(concepts="cross-process,underwater,pencil-sketch,halftone", size="4000x3000", huge=9000,
            precisions="fp32,int8", tiles="384,512,512/64,768,1024", repeats=2, native_photos=6, run_seconds=120.0,
            work=REPO / "bench" / "work" / "fullsize", out=REPO / "bench" / "results")
QUICK = dict(concepts="cross-process", size="800x600", huge=1200, precisions="fp32", tiles="256,512", repeats=1,
             native_photos=2, run_seconds=5.0, work=REPO / "bench" / "work" / "fullsize-quick",
             out=REPO / "bench" / "results" / "smoke" / "fullsize")
PATHS = ("guided", "tiled", "old")
GOALS = {"guided_seconds": 1.5, "tiled_seconds": 5.0, "peak_mb": 1500.0, "quality_below_256_db": 1.0}


# -- the old tiling (before streaming), for comparison --------------------------------------------------
def legacy_edit(editor, images, tile: int = 1024, batch: int = 4):
    """The previous ``Editor.edit`` at native resolution: whole padded image, every tile's output kept,
    a float32 3xHxW accumulator."""
    import cv2
    import numpy as np

    from factory.runtime.editor import to_input, to_pixels
    from factory.runtime.position import position_grid

    def starts(total: int, length: int, overlap: int) -> list[int]:
        if total <= length:
            return [0]
        out = list(range(0, total - length, length - overlap))
        return [*out, total - length]

    def ramp(length: int, overlap: int):
        i = np.arange(length, dtype=np.float32)
        return np.minimum(np.minimum(i + 1, length - i) / (overlap + 1), 1.0)

    results = []
    for image in images:
        h, w = image.shape[:2]
        s = editor.stride
        ph, pw = -(-h // s) * s, -(-w // s) * s
        padded = cv2.copyMakeBorder(image, 0, ph - h, 0, pw - w, cv2.BORDER_REFLECT_101) if (ph, pw) != (h, w) \
            else image
        def place(tile_h: int, tile_w: int, origins: list, short: int = min(h, w)) -> np.ndarray | None:
            """An editor with a screen: where each tile sits in the photo (as the runtime passes it)."""
            return position_grid(tile_h, tile_w, origins, short) if editor.position_name else None

        if max(ph, pw) <= tile:
            results.append(to_pixels(editor.run(to_input([padded]), place(ph, pw, [(0, 0)])))[0][:h, :w])
            continue
        th, tw = min(tile, ph), min(tile, pw)
        overlap = max(s, (tile // 8) // s * s)
        boxes = [(y, x) for y in starts(ph, th, overlap) for x in starts(pw, tw, overlap)]
        outs = []
        for k in range(0, len(boxes), batch):
            chunk = boxes[k:k + batch]
            outs.extend(editor.run(to_input([padded[y:y + th, x:x + tw] for y, x in chunk]), place(th, tw, chunk)))
        weight = ramp(th, overlap)[:, None] * ramp(tw, overlap)[None, :]
        acc = np.zeros((3, ph, pw), np.float32)
        norm = np.zeros((ph, pw), np.float32)
        for (y, x), out in zip(boxes, outs):
            acc[:, y:y + th, x:x + tw] += out * weight
            norm[y:y + th, x:x + tw] += weight
        results.append(to_pixels((acc / norm)[None])[0][:h, :w])
    return results


# -- one measured run in a fresh process -----------------------------------------------------------------
def _status_mb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(spec: dict) -> None:
    """What ``factory apply EDITOR IMAGE -o OUT`` does, with the edit timed; prints one JSON line."""
    from factory.runtime.apply import apply_files
    from factory.runtime.editor import Editor

    t0 = time.perf_counter()
    ed = Editor(spec["editor"], threads=spec["threads"], precision=spec["precision"])
    ed.tile_overlap = spec.get("overlap")
    load = time.perf_counter() - t0
    baseline = _status_mb("VmRSS")
    edit = ed.edit
    times: list[float] = []
    outer = True

    def timed(images, **kw):
        nonlocal outer
        if not outer:  # the guided path edits its low-resolution image through ed.edit too: time the outer call
            return edit(images, **kw)
        outer = False
        t = time.perf_counter()
        try:
            out = legacy_edit(ed, images) if spec["path"] == "old" else edit(images, **kw)
        finally:
            outer = True
        times.append(time.perf_counter() - t)
        return out

    ed.edit = timed  # type: ignore[method-assign]
    apply_seconds = []
    for _ in range(spec["repeats"]):
        r = apply_files(ed, [spec["image"]], spec["out"], batch=spec.get("batch", 4), tile=spec.get("tile"),
                        path="tiled" if spec["path"] in ("old", "plain") else spec["path"],
                        finish=spec["path"] != "plain")
        if r.images != 1:
            raise SystemExit(f"apply failed: {r.skipped}")
        apply_seconds.append(r.seconds)
    print(json.dumps({"edit_seconds": times, "apply_seconds": apply_seconds, "load_seconds": load,
                      "baseline_mb": baseline, "peak_mb": _status_mb("VmHWM")}))


def measure(spec: dict) -> dict:
    """Run ``child(spec)`` in a fresh interpreter; its JSON (the peak is the child's own VmHWM: wait4's ru_maxrss
    would also count the RSS this parent had when it forked)."""
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([sys.executable, __file__, "--child", json.dumps(spec)], stdout=subprocess.PIPE,
                                stderr=err, text=True, cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        stdout = proc.stdout.read()  # type: ignore[union-attr]
        _, status, _ = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise SystemExit(f"child {spec} failed ({proc.returncode}):\n{err.read()[-3000:]}")
    r = json.loads(stdout.strip().splitlines()[-1])
    r["seconds"] = min(r["edit_seconds"])
    r["first_seconds"] = r["edit_seconds"][0]
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()}


# -- editors and images --------------------------------------------------------------------------------------
def make_editor(concept: str, args) -> tuple[Path, Path, str]:
    """(editor folder, the concept's data folder, where the editor came from)."""
    folder = args.work / "editors" / concept
    adapter = PROTOCOL / "runs" / concept / "seed0" / "generated"
    data = PROTOCOL / "data" / concept
    from_protocol = (adapter / "adapter_config.json").is_file() and (data / "synth.json").is_file()
    if not from_protocol:
        data = args.work / f"ws-{concept}" / "data" / concept
    extra = shlex.split(args.run_args)
    source = (f"the protocol's generated + tuned adapter ({adapter.relative_to(REPO)})" if from_protocol
              else f"`factory{f' --seed {args.seed}' if args.seed else ''} run {concept} --seconds {args.run_seconds:g}"
                   f"{''.join(' ' + a for a in extra)}`")
    card = folder / "card.json"
    if card.is_file() and "full_size" in json.loads(card.read_text()):
        log(f"{concept}: reusing {folder}")
        return folder, data, source
    if from_protocol:
        from base_gan.models import BaseGAN
        from concepts.cards import find_card
        from factory.core.files import read_json
        from factory.export.editor import ExportRequest, export_editor
        from factory.pipeline.assets import pretrained_base

        base_dir = (read_json(adapter / "metrics.json") or {}).get("base") or str(pretrained_base())
        log(f"{concept}: exporting from {adapter}")
        export_editor(ExportRequest(
            concept=concept, base=BaseGAN.load(base_dir), adapter_dir=adapter, adapter_note=source,
            instruction=find_card(concept).instruction, data_dir=data, out_dir=folder, size=256, int8=True,
            threads=args.threads, allow_cpu_fallback=True, text_cache=PROTOCOL / "cache" / "text"),
            log=lambda m: log(f"  {m}"))
    else:
        ws = args.work / f"ws-{concept}"
        log(f"{concept}: factory run in {ws}")
        subprocess.run([sys.executable, "-m", "factory", "--workspace", str(ws), "--seed", str(args.seed), "run",
                        concept, "--seconds",
                        str(args.run_seconds), *extra] + (["--synth-pairs", "24"] if args.quick else []),
                       check=True, cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        folder.parent.mkdir(parents=True, exist_ok=True)
        import shutil

        shutil.copytree(ws / "editors" / concept, folder, dirs_exist_ok=True)
    return folder, data, source


def big_photo(photo, width: int, height: int):
    """``photo`` centre-cropped to the aspect ratio and upscaled (bicubic) to width x height."""
    import cv2

    h, w = photo.shape[:2]
    scale = min(w / width, h / height)
    cw, ch = round(width * scale), round(height * scale)
    x, y = (w - cw) // 2, (h - ch) // 2
    return cv2.resize(photo[y:y + ch, x:x + cw], (width, height), interpolation=cv2.INTER_CUBIC)


def write_rgb(path: Path, rgb, quality: int = 95) -> Path:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if path.suffix.lower() in (".jpg", ".jpeg") else []
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    return path


def read_rgb(path: Path):
    import cv2

    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


# -- quality on the held-out photos at native size ---------------------------------------------------------------
def pair_size_psnr(ed, img, recipe: list, pair_size: int) -> float:
    """The editor's PSNR on ``img`` shrunk to the pairs' size (short side), against the teacher at that size: the
    same photo's figure at the resolution the editor was trained and carded at."""
    from factory.core.images import psnr_u8
    from factory.teachers.rescale import apply_recipe_at

    small = shrink_to_pairs(img, pair_size)
    return round(psnr_u8(ed.edit([small], path="tiled")[0], apply_recipe_at(small, recipe, 1.0)), 2)


def native_quality(folder: Path, data: Path, n: int, threads: int) -> dict:
    import cv2
    import numpy as np

    from factory.core.images import psnr_u8
    from factory.data.dataset import full_resolution_reference
    from factory.export.fullsize import held_out_photos
    from factory.runtime.editor import Editor
    from factory.teachers.rescale import RescaleError, apply_recipe_at

    recipe, pair_size, why = full_resolution_reference(data)
    if recipe is None:
        return {"measured": False, "why": why}
    ed = Editor(folder, threads=threads)
    low = ed.full_size.low_side  # the card's guided resolution
    rows = []
    for name, img in held_out_photos(data, n)[0]:
        try:
            ref = apply_recipe_at(img, recipe, min(img.shape[:2]) / pair_size)
        except RescaleError as exc:
            return {"measured": False, "why": str(exc)}
        guided, small = ed.guided(img, low, 4, max(512, low))
        outs = {"guided": guided, "tiled": ed.edit([img], path="tiled")[0], "old": legacy_edit(ed, [img])[0],
                "resize": cv2.resize(small, img.shape[1::-1], interpolation=cv2.INTER_CUBIC)}
        if ed.full_size.finish is not None:  # the card kept a screen finish: tiled without it too
            outs["plain"] = ed.edit([img], path="tiled", finish=False)[0]
        if ed.full_size.render is not None:  # the card chose the screen path
            outs["screen"] = ed.edit([img], path="screen")[0]
        psnr = {k: round(psnr_u8(v, ref), 2) for k, v in outs.items()}
        psnr["pairs' size"] = pair_size_psnr(ed, img, recipe, pair_size)
        rows.append({"photo": name, "size": list(img.shape[:2]), "psnr_db": psnr})
    mean = {k: round(float(np.mean([r["psnr_db"][k] for r in rows])), 2) for k in rows[0]["psnr_db"]}
    return {"measured": True, "photos": rows, "psnr_db": mean}


# -- the benchmark ----------------------------------------------------------------------------------------------
def bench_concept(concept: str, args, group: str) -> dict:
    from factory.core.images import psnr_u8
    from factory.data.dataset import full_resolution_reference
    from factory.export.fullsize import held_out_photos
    from factory.runtime.tiles import default_overlap
    from factory.teachers.rescale import RescaleError, apply_recipe_at

    folder, data, source = make_editor(concept, args)
    card = json.loads((folder / "card.json").read_text())
    row: dict = {"concept": concept, "group": group, "editor": source, "card_full_size": card["full_size"],
                 "psnr_256_db": card["checks"]["quality"].get("fp32_vs_teacher", {}).get("mean_db")}
    log(f"{concept}: card chose {card['full_size']['path']} ({card['full_size'].get('why')})")
    row["native"] = native_quality(folder, data, args.native_photos, args.threads)
    log(f"{concept}: native photos {row['native'].get('psnr_db') or row['native'].get('why')}")

    photos, _ = held_out_photos(data, 1)
    if not photos:
        from factory.data.photos import default_photos

        photos = [(p.name, p.rgb) for p in default_photos(fetch=False).split("test")[:1]]
    name, photo = photos[0]
    width, height = args.width, args.height
    tmp = args.work / "images" / concept
    big = big_photo(photo, width, height)
    src = write_rgb(tmp / f"photo-{width}x{height}.png", big)
    recipe, pair_size, why = full_resolution_reference(data)
    reference = None
    if recipe is not None:
        try:
            reference = apply_recipe_at(big, recipe, min(height, width) / pair_size)
        except RescaleError as exc:
            why = str(exc)
    row["photo"] = {"from": name, "size": [height, width], "upscaled_from": list(photo.shape[:2]),
                    "reference": "classic recipe at full resolution" if reference is not None else f"none: {why}"}
    if reference is not None:
        from factory.runtime.editor import Editor

        row["photo"]["pair_size_psnr_db"] = pair_size_psnr(Editor(folder, threads=args.threads), big, recipe,
                                                           pair_size)
    runs = []
    screen = ("screen",) if card["full_size"].get("render") else ()  # the screen path, when the export chose it
    paths = (*PATHS, *screen, "plain") if card["full_size"].get("finish") else (*PATHS, *screen)  # plain: no finish
    for precision in args.precision_list:
        for path in paths:
            out = tmp / f"{path}-{precision}.png"
            r = measure({"editor": str(folder), "image": str(src), "out": str(out), "path": path,
                         "precision": precision, "threads": args.threads, "repeats": args.repeats})
            r.update({"path": path, "precision": precision, "size": args.size})
            if reference is not None:
                r["psnr_db"] = round(psnr_u8(read_rgb(out), reference), 2)
            runs.append(r)
            log(f"{concept} {path} {precision} {width}x{height}: {r['seconds']:.2f} s (first {r['first_seconds']:.2f}),"
                f" peak {r['peak_mb']:.0f} MB, PSNR {r.get('psnr_db')}")
    huge = write_rgb(tmp / f"photo-{args.huge}.jpg", big_photo(photo, args.huge, args.huge)) if args.huge else None
    for path in [] if huge is None else (*(PATHS if args.old_huge and concept == args.concept_list[0] else PATHS[:2]),
                                         *screen):
        r = measure({"editor": str(folder), "image": str(huge), "out": str(tmp / f"huge-{path}.jpg"), "path": path,
                     "precision": "fp32", "threads": args.threads, "repeats": 1})
        r.update({"path": path, "precision": "fp32", "size": f"{args.huge}x{args.huge}"})
        runs.append(r)
        log(f"{concept} {path} {args.huge}x{args.huge}: {r['seconds']:.1f} s, peak {r['peak_mb']:.0f} MB")
    if concept in (args.sweep.split(",") if args.sweep else args.concept_list[:1]):
        for tile, overlap in args.tile_list:
            out = tmp / f"tile{tile}-{overlap}.png"
            r = measure({"editor": str(folder), "image": str(src), "out": str(out), "path": "tiled", "tile": tile,
                         "overlap": overlap, "precision": "fp32", "threads": args.threads, "repeats": args.repeats})
            r.update({"path": "tiled", "tile": tile, "overlap": overlap or default_overlap(tile, 16),
                      "precision": "fp32", "size": "tile-sweep"})
            if reference is not None:
                r["psnr_db"] = round(psnr_u8(read_rgb(out), reference), 2)
            runs.append(r)
            log(f"{concept} tiled tile {tile} overlap {r['overlap']}: {r['seconds']:.2f} s, "
                f"peak {r['peak_mb']:.0f} MB, PSNR {r.get('psnr_db')}")
    row["runs"] = runs
    return row


def goals(rows: list[dict], args) -> dict:
    """Each goal of issue 16 part 3 against the measurements (fp32 unless said)."""
    out = {}
    for row in rows:
        c = row["concept"]
        for r in row["runs"]:
            if r["size"] == args.size and r["path"] in ("guided", "tiled", "screen"):
                limit = GOALS["guided_seconds" if r["path"] == "guided" else "tiled_seconds"]
                out[f"{c} {r['path']} {r['precision']} {args.size} seconds <= {limit}"] = r["seconds"] <= limit
                out[f"{c} {r['path']} {r['precision']} {args.size} peak <= {GOALS['peak_mb']:.0f} MB"] = \
                    r["peak_mb"] <= GOALS["peak_mb"]
            if r["size"] == f"{args.huge}x{args.huge}" and r["path"] in ("guided", "tiled", "screen"):
                out[f"{c} {r['path']} {r['size']} peak <= {GOALS['peak_mb']:.0f} MB"] = r["peak_mb"] <= GOALS["peak_mb"]
        native, ref, margin = row["native"], row["psnr_256_db"], GOALS["quality_below_256_db"]
        if native.get("measured") and ref is not None:
            same = native["psnr_db"].get("pairs' size")
            for p in ("guided", "tiled", "screen")[:3 if "screen" in native["psnr_db"] else 2]:
                out[f"{c} {p} native PSNR within {margin} dB of 256 px"] = native["psnr_db"][p] >= ref - margin
                if same is not None:
                    out[f"{c} {p} native PSNR within {margin} dB of the same photos at the pairs' size"] = \
                        native["psnr_db"][p] >= same - margin
        same = row["photo"].get("pair_size_psnr_db")
        for r in row["runs"]:
            if r["size"] == args.size and r["precision"] == "fp32" and "psnr_db" in r and ref is not None:
                out[f"{c} {r['path']} {args.size} PSNR within {margin} dB of 256 px"] = r["psnr_db"] >= ref - margin
                if same is not None:
                    out[f"{c} {r['path']} {args.size} PSNR within {margin} dB of the same photo at the pairs' "
                        "size"] = r["psnr_db"] >= same - margin
    return out


def render(result: dict) -> str:
    md = [f"# Full-size photos{' (QUICK smoke: tiny sizes, not results)' if result['quick'] else ''}", "",
          f"{result['date']}, {result['machine']}, commit `{result['commit']}`; `{result['command']}`; "
          f"onnxruntime threads {result['threads']}; load average before {result['load_average']['before']}, "
          f"after {result['load_average']['after']}.", "",
          f"Images: a held-out photo upscaled to {result['size']}"
          + (f" and {result['huge']}x{result['huge']}" if result["huge"] else "") + " (the default "
          "photo set keeps photos at <= 1280 px); 'native' = the concept's held-out photos at their own size. "
          "PSNR against the teacher at full resolution (the recipe with pixel sizes scaled to the photo). "
          "Seconds: the edit alone, best of the repeats (first run in parentheses); peak: VmHWM of a fresh "
          "process doing what `factory apply` does (read, edit, write).", ""]
    for row in result["concepts"]:
        fs = row["card_full_size"]
        md += [f"## {row['concept']} ({row['group']})", "",
               f"Editor: {row['editor']}. 256 px PSNR (card): {row['psnr_256_db']}. Export's choice: "
               f"**{fs['path']}** ({fs.get('why')}).", ""]
        if "pair_size_psnr_db" in row["photo"]:
            md += [f"The {row['photo']['size'][1]}x{row['photo']['size'][0]} photo shrunk to the pairs' size: "
                   f"{row['photo']['pair_size_psnr_db']} dB (the card's figure is a mean over other photos).", ""]
        nat = row["native"]
        if nat.get("measured"):
            md += ["| native held-out photos | " + " | ".join(nat["psnr_db"]) + " |",
                   "| --- |" + " ---: |" * len(nat["psnr_db"]),
                   f"| mean PSNR, {len(nat['photos'])} photos (dB) | "
                   + " | ".join(f"{v:.2f}" for v in nat["psnr_db"].values()) + " |", ""]
        else:
            md += [f"Native quality not measured: {nat.get('why')}", ""]
        md += ["| path | precision | image | seconds | peak MB | PSNR (dB) |",
               "| --- | --- | --- | ---: | ---: | ---: |"]
        for r in row["runs"]:
            image = f"{r['size']}" + (f", tile {r['tile']}" if "tile" in r else "") + \
                (f", overlap {r['overlap']}" if "overlap" in r else "")
            md.append(f"| {r['path']} | {r['precision']} | {image} | {r['seconds']:.2f} ({r['first_seconds']:.2f}) | "
                      f"{r['peak_mb']:.0f} | {r.get('psnr_db', '')} |")
        md.append("")
    md += ["## Goals", "", "| goal | met |", "| --- | --- |"]
    md += [f"| {k} | {'yes' if v else 'NO'} |" for k, v in result["goals"].items()]
    return "\n".join(md) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke: one concept, small images, results in "
                    "bench/results/smoke/fullsize/")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    for k, v in FULL.items():
        ap.add_argument(f"--{k.replace('_', '-')}", type=type(v) if not isinstance(v, Path) else Path, default=None)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--run-args", default="", help="more arguments of `factory run` for the editors it makes "
                    "(e.g. \"--screen-scale 1\")")
    ap.add_argument("--seed", type=int, default=0, help="`factory --seed` for the editors it makes")
    ap.add_argument("--sweep", help="concepts with the tile sweep (default: the first)")
    ap.add_argument("--no-old-huge", dest="old_huge", action="store_false",
                    help="skip the old tiling on the 9000x9000 image (it needs ~9 GB and ~3 minutes)")
    args = ap.parse_args()
    if args.child:
        child(json.loads(args.child))
        return
    for k, v in (QUICK if args.quick else FULL).items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    args.width, args.height = (int(v) for v in args.size.split("x"))
    args.concept_list = args.concepts.split(",")
    args.precision_list = args.precisions.split(",")
    args.tile_list = [(int(t.split("/")[0]), int(t.split("/")[1]) if "/" in t else None) for t in args.tiles.split(",")]
    from factory.core.atomic import atomic_write_json, atomic_write_text
    from factory.evaluation.protocol import concept_split

    load_before = [round(v, 2) for v in os.getloadavg()]
    split = concept_split()
    rows = [bench_concept(c, args, split.group.get(c, "train")) for c in args.concept_list]
    result = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "quick": args.quick,
              "machine": f"{platform.machine()}, {os.cpu_count()} cores", "commit": git_commit(),
              "command": "python bench/fullsize.py " + " ".join(sys.argv[1:]), "threads": args.threads,
              "size": args.size, "huge": args.huge, "goal_limits": GOALS,
              "load_average": {"before": load_before, "after": [round(v, 2) for v in os.getloadavg()]},
              "concepts": rows}
    result["goals"] = goals(rows, args)
    atomic_write_json(args.out / "fullsize.json", result)
    atomic_write_text(args.out / "fullsize.md", render(result))
    log(f"wrote {args.out / 'fullsize.json'} and fullsize.md")


if __name__ == "__main__":
    main()
