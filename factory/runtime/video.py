"""Video and image files for the editor runtime (OpenCV only, no torch)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from factory.core.errors import FactoryError

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"})
# fourcc per container; mp4v (MPEG-4 part 2) is in every OpenCV FFmpeg build, MJPG for AVI
VIDEO_FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "mp4v", ".webm": "VP80"}


@dataclass(frozen=True)
class VideoInfo:
    fps: float
    width: int
    height: int
    frames: int  # the container's frame count (an estimate for some formats; frames are counted on read)


def open_video(path: str | os.PathLike) -> tuple[cv2.VideoCapture, VideoInfo]:
    """An opened capture and its properties, or FactoryError when OpenCV cannot decode it."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise FactoryError(f"{path}: not a readable video")
    info = VideoInfo(fps=float(cap.get(cv2.CAP_PROP_FPS) or 0.0) or 25.0,
                     width=int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), height=int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
                     frames=max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT))))
    if info.width <= 0 or info.height <= 0:
        cap.release()
        raise FactoryError(f"{path}: video has no frames OpenCV can decode")
    return cap, info


def video_frames(cap: cv2.VideoCapture, chunk: int) -> Iterator[list[np.ndarray]]:
    """RGB frames in lists of up to ``chunk``."""
    frames: list[np.ndarray] = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        if len(frames) == chunk:
            yield frames
            frames = []
    if frames:
        yield frames


class AtomicVideoWriter:
    """A VideoWriter into a hidden temp file beside ``path`` (same extension, so OpenCV picks the same
    container), renamed over ``path`` by ``commit()``; ``abort()`` (or an exception) removes it."""

    def __init__(self, path: str | os.PathLike, info: VideoInfo) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        suffix = self.path.suffix.lower()
        self.tmp = self.path.parent / f".{self.path.stem}.{secrets.token_hex(4)}.tmp{suffix}"
        fourcc = cv2.VideoWriter_fourcc(*VIDEO_FOURCC.get(suffix, "mp4v"))
        self.writer = cv2.VideoWriter(str(self.tmp), fourcc, info.fps, (info.width, info.height))
        if not self.writer.isOpened():
            self.tmp.unlink(missing_ok=True)
            raise FactoryError(f"{self.path}: OpenCV cannot write {suffix} video here")
        self.frames = 0

    def write(self, rgb: np.ndarray) -> None:
        self.writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        self.frames += 1

    def commit(self) -> Path:
        self.writer.release()
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        self.writer.release()
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> AtomicVideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()


def encode_image(rgb: np.ndarray, suffix: str) -> bytes:
    """Encode an RGB image by file extension (JPEG at quality 95)."""
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if suffix.lower() in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(suffix.lower(), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise FactoryError(f"OpenCV cannot encode {suffix} images")
    return buf.tobytes()
