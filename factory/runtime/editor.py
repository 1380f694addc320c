"""The editor runtime: onnxruntime + numpy + OpenCV only (no torch), for images and video.

An exported editor (``factory export``) maps float32 NCHW RGB in [-1, 1] to the same; its height
and width must be multiples of its stride (16, read from the model's metadata). ``Editor.edit``
takes HxWx3 uint8 RGB images of any size and returns edited images of the same size:

* ``path="tiled"``: native resolution; the image is reflect-padded up to a multiple of the stride and
  the output cropped back. Images larger than ``tile`` on a side are edited in overlapping tiles
  blended with linear ramps, streamed band by band (``factory.runtime.tiles``: attention memory
  grows with the square of the pixel count, so a 12 MP photo is never run in one piece).
  A screen editor whose card has a ``finish`` gets it around the tiles on large photos
  (``factory.runtime.screen_finish``).
* ``path="guided"``: the editor runs at longer side ``size`` (default 512) and its edit is applied at
  full resolution by a local affine colour model (``factory.runtime.guided``): for colour edits.
* ``path="screen"``: a screen editor whose card has a ``render``: the tiled edit at a low resolution gives the ink,
  the dots are drawn at full resolution (``factory.runtime.screen_render``).
* ``size=S`` (with the default ``path="auto"``): the image is resized so its longer side is S (both
  sides rounded to multiples of the stride), edited, and the output resized back: previews, video.
* ``path="auto"`` (default): what the editor's card.json chose at export (``full_size``), else tiled
  (``factory.runtime.fullsize``).

Work items of the same shape (equal-size images, video frames) run as one batch of up to ``batch``
inputs; tiles run in batches of at most ``batch`` and ``tiles.TILE_BATCH_PIXELS`` pixels. An editor with a screen
(a second input ``position``, ``factory.runtime.position``) gets each tile's or resized photo's place in the photo,
so its screen sits where, and at the scale, the full-resolution teacher draws it; an editor with a lens basis (an
input ``frame``) gets each pixel's place as a fraction of the photo, so a tile gets its part of the photo's vignette.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from factory.core.errors import FactoryError
from factory.runtime.fullsize import FullSize, card_full_size, resolve
from factory.runtime.guided import guided_edit
from factory.runtime.position import FRAME_NAME, POSITION_NAME, frame_grid, position_grid
from factory.runtime.screen_finish import edit_finished
from factory.runtime.screen_render import render_screen
from factory.runtime.tiles import DEFAULT_TILE as DEFAULT_TILE  # re-exported
from factory.runtime.tiles import edit_tiled

DEFAULT_STRIDE = 16
EDITOR_FILES = {"fp32": "editor.onnx", "int8": "editor.int8.onnx", "fp16": "editor.fp16.onnx"}


def session_options(threads: int | None = None) -> ort.SessionOptions:
    """CPU session options; ``threads`` sets the intra-op thread count (None: onnxruntime's default)."""
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = int(threads)
        so.inter_op_num_threads = 1
    return so


def make_session(path: str | os.PathLike, threads: int | None = None) -> ort.InferenceSession:
    """A CPU inference session of the model file ``path``."""
    return ort.InferenceSession(str(path), sess_options=session_options(threads), providers=["CPUExecutionProvider"])


def to_input(images: Sequence[np.ndarray]) -> np.ndarray:
    """HxWx3 uint8 RGB images (same size) -> [B, 3, H, W] float32 in [-1, 1]."""
    x = np.stack([np.asarray(im) for im in images]).astype(np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2) * (1.0 / 127.5) - 1.0)


def to_pixels(y: np.ndarray) -> list[np.ndarray]:
    """[B, 3, H, W] float in [-1, 1] -> HxWx3 uint8 RGB images (clipped, rounded)."""
    u8 = np.clip(np.rint((y + 1.0) * 127.5), 0, 255).astype(np.uint8)
    return [np.ascontiguousarray(im.transpose(1, 2, 0)) for im in u8]


def round_to_stride(n: float, stride: int) -> int:
    return max(stride, int(round(n / stride)) * stride)


def locate_editor(spec: str | os.PathLike, workspace_root: str | os.PathLike | None = None,
                  precision: str = "fp32") -> Path:
    """An editor model from a .onnx/.ort file, an editor folder, or a concept name in the workspace."""
    if precision not in EDITOR_FILES:
        raise FactoryError(f"unknown precision '{precision}' (known: {', '.join(EDITOR_FILES)})")
    path = Path(spec).expanduser()
    if path.is_file():
        if path.suffix.lower() not in (".onnx", ".ort"):
            raise FactoryError(f"{path}: not an editor model (expected a .onnx or .ort file or an editor folder)")
        return path
    candidates = [path] if path.is_dir() else []
    if (
        workspace_root is not None
        and os.sep not in str(spec)
        and (Path(workspace_root) / "editors" / str(spec)).is_dir()
    ):
        candidates.append(Path(workspace_root) / "editors" / str(spec))
    for folder in candidates:
        model = folder / EDITOR_FILES[precision]
        if model.is_file():
            return model
        raise FactoryError(
            f"{folder}: no {EDITOR_FILES[precision]} in this editor folder"
            + (
                " (export with --int8)"
                if precision == "int8"
                else " (export with --fp16)"
                if precision == "fp16"
                else ""
            )
        )
    raise FactoryError(
        f"editor '{spec}' not found: pass a .onnx file, an editor folder, or a concept "
        f"exported with `factory export {Path(str(spec)).name}`"
    )


def open_editor(spec: str | os.PathLike, workspace_root: str | os.PathLike | None = None, precision: str = "fp32",
                concept: str | None = None, threads: int | None = None) -> Editor:
    """The editor a user names: as ``locate_editor``, or with ``concept`` one concept of a filter pack (a pack
    folder, or a pack name in ``<workspace>/packs/``)."""
    from factory.runtime.pack import is_pack

    path = Path(spec).expanduser()
    in_workspace = Path(workspace_root) / "packs" / str(spec) if workspace_root is not None else None
    if not path.exists() and os.sep not in str(spec) and in_workspace is not None and is_pack(in_workspace):
        if concept is None and (Path(workspace_root) / "editors" / str(spec)).is_dir():
            return Editor(locate_editor(spec, workspace_root, precision), threads)
        path = in_workspace
    if is_pack(path):
        if concept is None:
            raise FactoryError(f"{path} is a filter pack: name one of its concepts with --concept")
        if precision != "fp32":
            raise FactoryError(f"a filter pack has one precision (its own); --precision {precision} applies to "
                               "editor folders only")
        return Editor.from_pack(path, concept, threads)
    if concept is not None:
        raise FactoryError(f"--concept {concept}: '{spec}' is not a filter pack (a folder with pack.json, or a pack "
                           f"name in the workspace's packs/)")
    return Editor(locate_editor(spec, workspace_root, precision), threads)


def _geometry(shape: tuple[int, int], photo: tuple[int, int] | None) -> tuple[tuple[int, int], tuple[float, float]]:
    """(the photo's (h, w), the photo's pixels per pixel of an array of ``shape``): the array is the photo itself
    without ``photo``, else that (h, w) photo resized."""
    if photo is None:
        return (int(shape[0]), int(shape[1])), (1.0, 1.0)
    return (int(photo[0]), int(photo[1])), (photo[0] / shape[0], photo[1] / shape[1])


@dataclass(frozen=True)
class _Job:
    image: int  # index of the image in the call
    array: np.ndarray  # HxWx3 uint8 (already padded/resized to multiples of the stride)
    photo: tuple[int, int]  # the (h, w) of the photo ``array`` shows, in its pixels (for a screen's or a lens's place)
    zoom: tuple[float, float] = (1.0, 1.0)  # the photo's pixels per pixel of ``array`` (rows, columns)


class Editor:
    """An exported editor loaded with onnxruntime (CPU): a .onnx/.ort file, or an editor folder (its
    ``precision`` model: editor.onnx, editor.int8.onnx or editor.fp16.onnx)."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None, precision: str = "fp32") -> None:
        self.path = locate_editor(path, precision=precision) if Path(path).is_dir() else Path(path)
        if not self.path.is_file():
            raise FactoryError(f"{self.path}: editor model not found")
        try:
            session = make_session(self.path, threads)
        except Exception as exc:  # onnxruntime raises its own exception types for corrupt models
            raise FactoryError(f"{self.path}: not a loadable ONNX model ({str(exc).strip().splitlines()[0]})") from None
        self._use(session, threads, lambda t: make_session(self.path, t))

    @classmethod
    def from_pack(cls, folder: str | os.PathLike, concept: str, threads: int | None = None) -> Editor:
        """``concept`` of the filter pack in ``folder`` (``factory export --pack``), merged as onnxruntime loads it."""
        from factory.runtime.pack import pack_session

        editor = cls.__new__(cls)
        editor.path = Path(folder) / f"{concept}.pack"
        editor._use(pack_session(folder, concept, session_options(threads)), threads,
                    lambda t: pack_session(folder, concept, session_options(t)))
        editor.metadata["concept"] = concept
        return editor

    def _use(self, session: ort.InferenceSession, threads: int | None,
             reopen: Callable[[int], ort.InferenceSession]) -> None:
        self.session = session
        self.threads = threads
        self._reopen = reopen  # another session of the same model with the given intra-op threads
        self._tile_session: ort.InferenceSession | None = None
        self.tile_overlap: int | None = None  # pixels tiles overlap by (None: tiles.default_overlap)
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        inputs = self.session.get_inputs()
        inp = inputs[0]
        self.input_name = inp.name
        self.input_shape = list(inp.shape)
        # an editor with a screen or a lens basis (``factory.runtime.position``) also takes each pixel's place
        names = [i.name for i in inputs[1:]]
        self.position_name = POSITION_NAME if POSITION_NAME in names else None
        self.frame_name = FRAME_NAME if FRAME_NAME in names else None
        if len(names) > (self.position_name is not None) + (self.frame_name is not None):
            raise FactoryError(f"{self.path}: unexpected inputs {[i.name for i in inputs]} (expected "
                               f"{self.input_name!r}, {POSITION_NAME!r} for an editor with a screen and "
                               f"{FRAME_NAME!r} for one with a lens basis)")
        self.stride = int(self.metadata.get("stride", DEFAULT_STRIDE))
        self.size = int(self.metadata.get("input_size", 256))
        if len(self.input_shape) != 4 or self.input_shape[1] not in (3, "3"):
            raise FactoryError(
                f"{self.path}: expected an image input [batch, 3, height, width], got {self.input_shape}"
            )
        self.fixed_hw = tuple(d if isinstance(d, int) else None for d in self.input_shape[2:])
        self.fixed_batch = self.input_shape[0] if isinstance(self.input_shape[0], int) else None

    def describe(self) -> str:
        concept = self.metadata.get("concept", self.path.stem)
        return f"{concept} ({self.metadata.get('precision', 'fp32')}, {self.path.name})"

    # -- raw model ------------------------------------------------------------------------------
    @property
    def places(self) -> bool:
        """Whether the editor reads each pixel's place in the photo (a screen's ``position``, a lens's ``frame``)."""
        return self.position_name is not None or self.frame_name is not None

    def run(self, x: np.ndarray, position: np.ndarray | None = None, frame: np.ndarray | None = None) -> np.ndarray:
        """[B, 3, H, W] float32 in [-1, 1] -> edited, same shape. H and W must be multiples of the stride.

        ``position`` and ``frame`` ([B or 1, 2, H, W], ``factory.runtime.position``) are read by an editor with a
        screen and one with a lens basis only; by default each image is a whole photo."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise FactoryError(f"expected an image batch [B, 3, H, W], got shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        if h % self.stride or w % self.stride:
            raise FactoryError(f"input size {h}x{w} is not a multiple of the editor's stride {self.stride}")
        if any(f is not None and f != d for f, d in zip(self.fixed_hw, (h, w))):
            raise FactoryError(f"{self.path.name} takes only {self.fixed_hw[0]}x{self.fixed_hw[1]} inputs, got {h}x{w}")
        if self.fixed_batch is not None and x.shape[0] != self.fixed_batch:
            def one(p: np.ndarray | None, i: int) -> np.ndarray | None:
                return p if p is None or len(p) == 1 else p[i : i + 1]

            return np.concatenate([self.run(x[i : i + 1], one(position, i), one(frame, i))
                                   for i in range(x.shape[0])])
        return self._call(self.session, x, position, frame)

    def _call(self, session: ort.InferenceSession, x: np.ndarray, position: np.ndarray | None = None,
              frame: np.ndarray | None = None) -> np.ndarray:
        """One onnxruntime call of ``session`` on ``x`` (as contiguous float32), with ``position`` and ``frame``
        (default: each image a whole photo) when the editor takes them."""
        feeds = {self.input_name: np.ascontiguousarray(x, dtype=np.float32)}
        h, w = x.shape[-2:]
        if self.position_name is not None:
            feeds[self.position_name] = np.ascontiguousarray(
                position_grid(h, w) if position is None else position, dtype=np.float32)
        if self.frame_name is not None:
            feeds[self.frame_name] = np.ascontiguousarray(frame_grid(h, w) if frame is None else frame,
                                                          dtype=np.float32)
        return session.run(None, feeds)[0]

    def _places(self, h: int, w: int, origins: Sequence[tuple[int, int]], photo: tuple[int, int],
                zoom: tuple[float, float]) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(position, frame) of ``h`` x ``w`` windows at ``origins`` of an array showing ``photo`` (its (h, w))
        at ``zoom``, each None when the editor does not read it."""
        return (None if self.position_name is None else position_grid(h, w, origins, min(photo), zoom),
                None if self.frame_name is None else frame_grid(h, w, origins, photo, zoom))

    @property
    def tile_workers(self) -> int:
        """Tiles edited at once on a large image: one per thread (``threads``, else every core)."""
        return max(1, self.threads or os.cpu_count() or 1)

    def _run_tile(self, x: np.ndarray, position: np.ndarray | None = None, frame: np.ndarray | None = None
                  ) -> np.ndarray:
        """``run`` for one of ``tile_workers`` concurrent tile calls: a single-threaded session of the same
        model (2 x 1 thread on different tiles outruns 1 x 2 threads: fewer synchronisations per layer)."""
        assert self._tile_session is not None, "_edit_tiles opens it"
        return self._call(self._tile_session, x, position, frame)

    def run_batched(self, x: np.ndarray, batch: int = 8) -> np.ndarray:
        """``run`` over a long [N, 3, H, W] batch, ``batch`` images per onnxruntime call."""
        return np.concatenate([self.run(x[i : i + batch]) for i in range(0, len(x), max(1, batch))])

    # -- images of any size -----------------------------------------------------------------------
    @functools.cached_property
    def full_size(self) -> FullSize:
        """How images larger than a tile are edited by default: the card.json beside the model, else tiled."""
        return card_full_size(self.path)

    def edit(
        self, images: Sequence[np.ndarray], size: int | None = None, batch: int = 4, tile: int | None = None,
        path: str = "auto", finish: bool = True,
    ) -> list[np.ndarray]:
        """Edit HxWx3 uint8 RGB images; each output has its input's size (see the module docstring). The tiled
        path applies the card's screen finish to images large enough, unless ``finish`` is False."""
        mode, size, tile = resolve(self.full_size, path, size, tile)
        if size is not None and size % self.stride:
            raise FactoryError(
                f"size {size} is not a multiple of the editor's stride {self.stride} "
                f"(try {round_to_stride(size, self.stride)})"
            )
        if tile % self.stride or tile < self.stride:
            raise FactoryError(f"tile {tile} is not a multiple of the editor's stride {self.stride}")
        arrays = []
        for image in images:
            image = np.asarray(image)
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or 0 in image.shape:
                raise FactoryError(f"expected HxWx3 uint8 RGB images, got {image.shape} {image.dtype}")
            arrays.append(image)
        if mode == "guided":
            return [self.guided(image, size, batch, tile)[0] for image in arrays]  # type: ignore[arg-type]
        if mode == "screen":
            return [self.screen(image, tile, batch, finish) for image in arrays]
        card_finish = self.full_size.finish if finish and mode == "tiled" else None
        if card_finish is not None and any(card_finish.applies(a.shape) for a in arrays):
            def tiled(a: np.ndarray) -> np.ndarray:
                return self._edit_native([a], None, tile, batch)[0]

            return [edit_finished(tiled, a, card_finish) if card_finish.applies(a.shape) else tiled(a)
                    for a in arrays]
        return self._edit_native(arrays, size if mode == "resize" else None, tile, batch)

    def screen(self, image: np.ndarray, tile: int, batch: int, finish: bool = True) -> np.ndarray:
        """The screen path on one HxWx3 uint8 image: the card's render from the tiled edit (with the card's finish
        unless ``finish`` is False) at a low resolution (``factory.runtime.screen_render``); a photo too small for it
        is edited tiled."""
        render = self.full_size.render
        assert render is not None, "resolve() refuses the screen path without a render"

        def tiled(a: np.ndarray) -> np.ndarray:
            return self.edit([a], batch=batch, tile=tile, path="tiled", finish=finish)[0]

        return render_screen(tiled, image, render) if render.applies(image.shape) else tiled(image)

    def _edit_native(self, arrays: list[np.ndarray], size: int | None, tile: int, batch: int,
                     photo: tuple[int, int] | None = None) -> list[np.ndarray]:
        """``arrays`` edited whole (padded), in tiles, or resized to ``size`` and back; ``photo`` (h, w): the arrays
        are that photo resized (the guided path's low resolution), for a screen's position."""
        plans, jobs = [], []
        for i, image in enumerate(arrays):
            plan, image_jobs = self._plan(i, image, size, tile, photo)
            plans.append(plan)
            jobs.extend(image_jobs)
        outputs = self._run_jobs(jobs, max(1, batch))
        return [
            self._edit_tiles(arrays[i], tile, batch, photo) if plan["mode"] == "tiles"
            else self._assemble(plan, [o for j, o in zip(jobs, outputs) if j.image == i])
            for i, plan in enumerate(plans)
        ]

    def _edit_tiles(self, image: np.ndarray, tile: int, batch: int, photo: tuple[int, int] | None = None
                    ) -> np.ndarray:
        workers = self.tile_workers if self.fixed_batch is None and self.fixed_hw == (None, None) else 1
        if workers > 1 and self._tile_session is None:
            self._tile_session = self._reopen(1)  # before the threads start: one session, shared by them
        run = self._run_tile if workers > 1 else self.run
        placed = None
        if self.places:  # each tile gets its place in the photo
            whole, zoom = _geometry(image.shape[:2], photo)

            def placed(x: np.ndarray, origins: list[tuple[int, int]]) -> np.ndarray:
                return run(x, *self._places(x.shape[2], x.shape[3], origins, whole, zoom))

        return edit_tiled(run, image, tile, self.stride, batch, overlap=self.tile_overlap, workers=workers,
                          placed=placed)

    def guided(self, image: np.ndarray, side: int, batch: int, tile: int, curves: bool | None = None,
               eps: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(the guided path's output for one HxWx3 uint8 image, the editor's own output at longer side ``side``, each
        resized pixel placed where it is in the photo): the second, resized back, is the resize path's output.
        ``curves``, ``eps``: the global colour curves before the local fit and its ridge (default: the card's)."""
        if max(image.shape[:2]) <= side:  # nothing to upsample
            out = self.edit([image], batch=batch, tile=max(tile, side), path="tiled")[0]
            return out, out
        if curves is None or eps is None:  # the card is read only for what the caller left to it
            card = self.full_size
            curves = card.curves if curves is None else curves
            eps = card.eps if eps is None else eps
        return guided_edit(lambda small: self._edit_native([small], None, max(tile, side), batch, image.shape[:2])[0],
                           image, side, self.stride, eps=eps, curves=curves)

    def _plan(self, index: int, image: np.ndarray, size: int | None, tile: int,
              photo: tuple[int, int] | None = None) -> tuple[dict, list[_Job]]:
        h, w = image.shape[:2]
        s = self.stride
        if self.fixed_hw[0] is not None and size is None:
            size = max(self.fixed_hw)  # a fixed-shape model (e.g. a mobile .ort): resize to it
        if size is not None:
            scale = size / max(h, w)
            if self.fixed_hw[0] is not None:
                rh, rw = self.fixed_hw
            else:
                rh, rw = round_to_stride(h * scale, s), round_to_stride(w * scale, s)
            interp = cv2.INTER_AREA if rh * rw < h * w else cv2.INTER_CUBIC
            resized = cv2.resize(image, (rw, rh), interpolation=interp)
            whole, (zy, zx) = _geometry((h, w), photo)
            return {"mode": "resize", "shape": (h, w)}, [_Job(index, resized, whole, (zy * h / rh, zx * w / rw))]
        ph, pw = -(-h // s) * s, -(-w // s) * s
        if max(ph, pw) > tile:
            return {"mode": "tiles", "shape": (h, w)}, []  # streamed by edit_tiled
        padded = image
        if (ph, pw) != (h, w):
            mode = cv2.BORDER_REFLECT_101 if min(h, w) > 1 else cv2.BORDER_REPLICATE
            padded = cv2.copyMakeBorder(image, 0, ph - h, 0, pw - w, mode)
        return {"mode": "pad", "shape": (h, w)}, [_Job(index, padded, *_geometry((h, w), photo))]

    def _run_jobs(self, jobs: list[_Job], batch: int) -> list[np.ndarray]:
        outputs: list[np.ndarray | None] = [None] * len(jobs)
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for k, job in enumerate(jobs):
            by_shape.setdefault(job.array.shape, []).append(k)
        for indices in by_shape.values():
            for start in range(0, len(indices), batch):
                chunk = indices[start : start + batch]
                x = to_input([jobs[k].array for k in chunk])
                places = [self._places(x.shape[2], x.shape[3], [(0, 0)], jobs[k].photo, jobs[k].zoom)
                          for k in chunk]
                y = self.run(x, *(None if p[0] is None else np.concatenate(p) for p in zip(*places)))
                for k, out in zip(chunk, y):
                    outputs[k] = out
        return outputs  # type: ignore[return-value]

    def _assemble(self, plan: dict, outs: list[np.ndarray]) -> np.ndarray:
        h, w = plan["shape"]
        img = to_pixels(outs[0][None])[0]
        if plan["mode"] == "pad":
            return img[:h, :w]
        interp = cv2.INTER_CUBIC if img.shape[0] * img.shape[1] < h * w else cv2.INTER_AREA
        return img if img.shape[:2] == (h, w) else cv2.resize(img, (w, h), interpolation=interp)

    # -- timing -----------------------------------------------------------------------------------
    def latency(
        self, size: int | None = None, batch: int = 1, warmup: int = 3, runs: int = 20, seed: int = 0
    ) -> dict[str, float]:
        """Median (and p10/p90) milliseconds per call on random [batch, 3, size, size] input after warm-up."""
        size = size or self.size
        if self.fixed_hw[0] is not None:
            size = self.fixed_hw[0]
        x = np.random.default_rng(seed).uniform(-1, 1, (batch, 3, size, size)).astype(np.float32)
        for _ in range(warmup):
            self.run(x)
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            self.run(x)
            times.append((time.perf_counter() - t0) * 1000.0)
        t = np.asarray(times)
        return {
            "median_ms": float(np.median(t)),
            "p10_ms": float(np.percentile(t, 10)),
            "p90_ms": float(np.percentile(t, 90)),
            "per_image_ms": float(np.median(t)) / batch,
            "runs": runs,
            "warmup": warmup,
            "batch": batch,
            "size": size,
        }

