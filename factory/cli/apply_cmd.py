"""``factory apply``: run an exported editor on images, folders and videos (onnxruntime + OpenCV, no torch)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import click

from factory.cli import Context, pass_ctx


@dataclass
class _Item:
    kind: str  # "image" or "video"
    path: Path
    out: Path


def _collect(inputs: tuple[str, ...], out: Path) -> tuple[list[_Item], list[tuple[str, str]]]:
    """Work items for every input (folders recursively) and the inputs skipped with a reason."""
    from factory.images import IMAGE_EXTENSIONS, find_images
    from factory.runtime import VIDEO_EXTENSIONS

    media = IMAGE_EXTENSIONS | VIDEO_EXTENSIONS
    kind_of = lambda p: "video" if p.suffix.lower() in VIDEO_EXTENSIONS else "image"  # noqa: E731
    found: list[tuple[Path, Path]] = []  # (file, output path relative to OUT)
    skipped: list[tuple[str, str]] = []
    for spec in inputs:
        path = Path(spec)
        if path.is_dir():
            files = sorted(set(find_images(path)) | {p for p in path.rglob("*") if p.is_file() and
                                                     p.suffix.lower() in VIDEO_EXTENSIONS and not p.name.startswith(".")})
            if not files:
                skipped.append((spec, "no images or videos in this folder"))
            found += [(f, Path(path.resolve().name) / f.relative_to(path)) for f in files]
        elif path.is_file():
            if path.suffix.lower() in media:
                found.append((path, Path(path.name)))
            else:
                skipped.append((spec, f"not an image or video ({path.suffix or 'no extension'})"))
        else:
            skipped.append((spec, "no such file or folder"))
    single_target = len(found) == 1 and out.suffix.lower() in media and not out.is_dir()
    items, taken = [], set()
    for f, rel in found:
        target = out if single_target else out / rel
        stem, n = target.with_suffix(""), 2
        while target in taken:  # the same file name from two inputs
            target = stem.with_name(f"{stem.name}-{n}").with_suffix(target.suffix)
            n += 1
        taken.add(target)
        items.append(_Item(kind_of(f), f, target))
    return items, skipped


def register(cli: click.Group) -> None:
    @cli.command("apply")
    @click.argument("editor")
    @click.argument("inputs", nargs=-1, required=True)
    @click.option("-o", "--out", required=True, type=click.Path(path_type=Path),
                  help="Output folder (or an output file when the input is one image or video).")
    @click.option("--batch", type=click.IntRange(1), default=4, show_default=True,
                  help="Images, frames or tiles per onnxruntime call.")
    @click.option("--size", type=click.IntRange(16),
                  help="Edit at this longer side (a multiple of 16) and resize back; default: native resolution.")
    @click.option("--tile", type=click.IntRange(16), default=1024, show_default=True,
                  help="At native resolution, larger images are edited in overlapping tiles of this side.")
    @click.option("--precision", type=click.Choice(["fp32", "int8", "fp16"]), default="fp32", show_default=True,
                  help="Which model of an editor folder to run.")
    @click.option("--threads", type=click.IntRange(1), help="onnxruntime threads (default: all cores).")
    @pass_ctx
    def apply(ctx: Context, editor: str, inputs: tuple[str, ...], out: Path, batch: int, size: int | None,
              tile: int, precision: str, threads: int | None) -> None:
        """Edit images, folders (recursive) and videos with EDITOR (an editor folder, a .onnx/.ort file,
        or a concept name exported to <workspace>/editors/).

        Outputs keep each input's name, format and size (videos: frame count, fps and frame size; no
        audio), under OUT/<input folder name>/... for folders. Unreadable files are skipped and listed.
        """
        import time

        from tqdm import tqdm

        from factory.atomic import atomic_write_bytes
        from factory.errors import FactoryError
        from factory.images import UnreadableImage, read_image
        from factory.runtime import AtomicVideoWriter, Editor, encode_image, locate_editor, open_video, video_frames

        started = time.perf_counter()
        model = Editor(locate_editor(editor, ctx.workspace.root, precision), threads)
        if size is not None and size % model.stride:
            raise FactoryError(f"--size {size} is not a multiple of the editor's stride {model.stride} "
                               f"(try {size // model.stride * model.stride or model.stride})")
        if tile % model.stride:
            raise FactoryError(f"--tile {tile} is not a multiple of the editor's stride {model.stride}")
        items, skipped = _collect(inputs, out)
        if not items:
            detail = "; ".join(f"{p}: {r}" for p, r in skipped)
            raise FactoryError(f"no images or videos to edit ({detail})")

        videos = {}
        for item in items:
            if item.kind == "video":
                try:
                    videos[item.path] = open_video(item.path)
                except FactoryError as exc:
                    skipped.append((str(item.path), str(exc).split(": ", 1)[-1]))
        items = [i for i in items if i.kind == "image" or i.path in videos]
        total = sum(1 if i.kind == "image" else max(1, videos[i.path][1].frames) for i in items)
        n_images = n_videos = n_frames = 0
        with tqdm(total=total, unit="img", desc=f"apply {model.describe()}", leave=False) as bar:
            images = [i for i in items if i.kind == "image"]
            for start in range(0, len(images), batch):
                chunk, pixels = [], []
                for item in images[start:start + batch]:
                    try:
                        pixels.append(read_image(item.path))
                        chunk.append(item)
                    except UnreadableImage as exc:
                        skipped.append((str(item.path), str(exc)))
                        bar.update(1)
                for item, edited in zip(chunk, model.edit(pixels, size=size, batch=batch, tile=tile)):
                    suffix = item.out.suffix if item.out.suffix else ".png"
                    atomic_write_bytes(item.out, encode_image(edited, suffix))
                    n_images += 1
                    bar.update(1)
            for item in (i for i in items if i.kind == "video"):
                cap, info = videos[item.path]
                try:
                    with AtomicVideoWriter(item.out, info) as writer:
                        for frames in video_frames(cap, batch):
                            for edited in model.edit(frames, size=size, batch=batch, tile=tile):
                                writer.write(edited)
                            bar.update(len(frames))
                        if writer.frames == 0:
                            writer.abort()
                            skipped.append((str(item.path), "no decodable frames"))
                            continue
                        writer.commit()
                except FactoryError as exc:
                    skipped.append((str(item.path), str(exc).split(": ", 1)[-1]))
                    continue
                finally:
                    cap.release()
                n_videos += 1
                n_frames += writer.frames

        if skipped:
            click.echo(f"skipped {len(skipped)} input(s):", err=True)
            for path, reason in skipped:
                click.echo(f"  {path}: {reason}", err=True)
        seconds = time.perf_counter() - started
        done = n_images + n_frames
        rate = f", {1000 * seconds / done:.1f} ms per image/frame" if done else ""
        click.echo(f"apply {model.describe()}: {n_images} image(s), {n_videos} video(s) ({n_frames} frames) in "
                   f"{seconds:.1f} s{rate}; {len(skipped)} skipped -> {out}")
