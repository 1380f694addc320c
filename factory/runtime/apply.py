"""Editing files with an exported editor: images, folders (recursive) and videos, outputs mirrored under
one output folder. onnxruntime + OpenCV only (no torch)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from factory.core.atomic import atomic_write_bytes
from factory.core.errors import FactoryError
from factory.core.images import IMAGE_EXTENSIONS, UnreadableImage, find_images, read_image
from factory.runtime.editor import Editor
from factory.runtime.fullsize import resolve
from factory.runtime.video import VIDEO_EXTENSIONS, AtomicVideoWriter, encode_image, open_video, video_frames

MEDIA_EXTENSIONS = IMAGE_EXTENSIONS | VIDEO_EXTENSIONS
#: images edited in one call hold at most this many pixels together (a full-size photo goes alone)
CHUNK_PIXELS = 4_000_000


@dataclass
class Item:
    """One input file and where its edited copy goes."""

    kind: str  # "image" or "video"
    path: Path
    out: Path


@dataclass
class ApplyResult:
    images: int = 0
    videos: int = 0
    frames: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (input, why)
    seconds: float = 0.0


def _media_in(folder: Path) -> list[Path]:
    videos = {p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS
              and not p.name.startswith(".")}
    return sorted(set(find_images(folder)) | videos)


def collect(inputs: Sequence[str | os.PathLike], out: Path) -> tuple[list[Item], list[tuple[str, str]]]:
    """Work items for every input (folders recursively, mirrored under ``out/<folder name>/``; a single
    media file may go to ``out`` itself when it is a file name) and the inputs skipped with a reason."""
    found: list[tuple[Path, Path]] = []  # (file, output path relative to out)
    skipped: list[tuple[str, str]] = []
    for spec in map(str, inputs):
        path = Path(spec)
        if path.is_dir():
            files = _media_in(path)
            if not files:
                skipped.append((spec, "no images or videos in this folder"))
            found += [(f, Path(path.resolve().name) / f.relative_to(path)) for f in files]
        elif path.is_file():
            if path.suffix.lower() in MEDIA_EXTENSIONS:
                found.append((path, Path(path.name)))
            else:
                skipped.append((spec, f"not an image or video ({path.suffix or 'no extension'})"))
        else:
            skipped.append((spec, "no such file or folder"))
    single_target = len(found) == 1 and out.suffix.lower() in MEDIA_EXTENSIONS and not out.is_dir()
    items, taken = [], set()
    for f, rel in found:
        target = out if single_target else out / rel
        stem, n = target.with_suffix(""), 2
        while target in taken:  # the same file name from two inputs
            target = stem.with_name(f"{stem.name}-{n}").with_suffix(target.suffix)
            n += 1
        taken.add(target)
        items.append(Item("video" if f.suffix.lower() in VIDEO_EXTENSIONS else "image", f, target))
    return items, skipped


def apply_files(editor: Editor, inputs: Sequence[str | os.PathLike], out: str | os.PathLike, *,
                size: int | None = None, batch: int = 4, tile: int | None = None, path: str = "auto",
                finish: bool = True, progress: Callable[[int, int], None] | None = None) -> ApplyResult:
    """Edit every image and video of ``inputs`` into ``out`` (each output written atomically); unreadable
    inputs are skipped and listed. ``size``, ``tile``, ``path`` and ``finish`` as ``Editor.edit`` (path auto: the
    editor card's choice). ``progress(done, total)`` counts images and frames."""
    started = time.perf_counter()
    if size is not None and size % editor.stride:
        raise FactoryError(f"--size {size} is not a multiple of the editor's stride {editor.stride} "
                           f"(try {size // editor.stride * editor.stride or editor.stride})")
    if tile is not None and tile % editor.stride:
        raise FactoryError(f"--tile {tile} is not a multiple of the editor's stride {editor.stride}")
    resolve(editor.full_size, path, size, tile)  # a bad combination fails before any file is read
    items, skipped = collect(inputs, Path(out))
    if not items:
        raise FactoryError(f"no images or videos to edit ({'; '.join(f'{p}: {r}' for p, r in skipped)})")
    result = ApplyResult(skipped=skipped)
    videos = {}
    for item in (i for i in items if i.kind == "video"):
        try:
            videos[item.path] = open_video(item.path)
        except FactoryError as exc:
            skipped.append((str(item.path), str(exc).split(": ", 1)[-1]))
    images = [i for i in items if i.kind == "image"]
    total = len(images) + sum(max(1, info.frames) for _, info in videos.values())
    done = 0

    def tick(n: int) -> None:
        nonlocal done
        done += n
        if progress:
            progress(done, total)

    chunk: list[tuple[Item, np.ndarray]] = []

    def flush() -> None:
        items = [item for item, _ in chunk]
        edited = editor.edit([rgb for _, rgb in chunk], size=size, batch=batch, tile=tile, path=path, finish=finish)
        chunk.clear()  # the inputs are not needed while the outputs are written
        for item, rgb in zip(items, edited):
            atomic_write_bytes(item.out, encode_image(rgb, item.out.suffix or ".png"))
            result.images += 1
            tick(1)

    for item in images:  # read one by one: a chunk is at most `batch` images and CHUNK_PIXELS pixels
        try:
            rgb = read_image(item.path)
        except UnreadableImage as exc:
            skipped.append((str(item.path), str(exc)))
            tick(1)
            continue
        if chunk and (len(chunk) >= batch or sum(a.shape[0] * a.shape[1] for _, a in chunk)
                      + rgb.shape[0] * rgb.shape[1] > CHUNK_PIXELS):
            flush()
        chunk.append((item, rgb))
    if chunk:
        flush()
    for item in (i for i in items if i.kind == "video" and i.path in videos):
        frames = _apply_video(editor, item, videos[item.path], size, batch, tile, path, tick, skipped, finish)
        if frames:
            result.videos += 1
            result.frames += frames
    result.seconds = time.perf_counter() - started
    return result


def _apply_video(editor: Editor, item: Item, opened, size: int | None, batch: int, tile: int | None, path: str,
                 tick: Callable[[int], None], skipped: list[tuple[str, str]], finish: bool = True) -> int:
    """Edit one video frame by frame into ``item.out``; the number of frames written (0 when skipped)."""
    cap, info = opened
    try:
        with AtomicVideoWriter(item.out, info) as writer:
            for frames in video_frames(cap, batch):
                for edited in editor.edit(frames, size=size, batch=batch, tile=tile, path=path, finish=finish):
                    writer.write(edited)
                tick(len(frames))
            if writer.frames == 0:
                writer.abort()
                skipped.append((str(item.path), "no decodable frames"))
                return 0
            writer.commit()
            return writer.frames
    except FactoryError as exc:
        skipped.append((str(item.path), str(exc).split(": ", 1)[-1]))
        return 0
    finally:
        cap.release()
