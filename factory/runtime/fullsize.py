"""Which way an editor edits photos larger than its training size: the card's choice, or an override.

* ``tiled``: native resolution in overlapping tiles (``factory.runtime.tiles``): any edit.
* ``guided``: the editor at a low resolution, its edit applied at full resolution by a local affine
  colour model (``factory.runtime.guided``), after global colour curves where the export measured them better
  (``factory.runtime.colour_curves``): fast, for smooth colour edits.
* ``screen``: for an editor with a screen (halftone dots), the editor at a low resolution gives the ink and the
  dots are drawn at full resolution from a threshold array fitted at export (``factory.runtime.screen_render``).
* ``resize``: the editor at a low resolution and the output resized back (previews, video).

``factory export`` measures the paths on held-out photos and writes its choice into the editor's card.json
(``full_size``: path, low_side, tile). Without a card (a bare .onnx file) or without that section, the path is
``tiled``. An editor with a screen may also have a ``finish`` there (``factory.runtime.screen_finish``), which the
tiled path applies to photos large enough, and a ``render`` (the screen path's threshold array).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from factory.core.errors import FactoryError
from factory.runtime.guided import DEFAULT_EPS, DEFAULT_LOW_SIDE
from factory.runtime.screen_finish import Finish
from factory.runtime.screen_render import ScreenRender
from factory.runtime.tiles import DEFAULT_TILE

PATHS = ("guided", "tiled", "screen")
CHOICES = ("auto", *PATHS)


@dataclass(frozen=True)
class FullSize:
    """How large images are edited: ``path`` (guided, tiled or screen), its ``low_side`` and ``tile``; the tiled
    path's screen ``finish`` and the screen path's ``render`` (None: none); the guided path's colour ``curves``
    (``factory.runtime.colour_curves``) and local fit ridge ``eps``."""

    path: str = "tiled"
    low_side: int = DEFAULT_LOW_SIDE
    tile: int = DEFAULT_TILE
    origin: str = "default (no card.json)"
    finish: Finish | None = None
    render: ScreenRender | None = None
    curves: bool = False
    eps: float = DEFAULT_EPS


def card_full_size(model: str | Path) -> FullSize:
    """The ``full_size`` section of the card.json beside the editor model ``model`` (defaults without one)."""
    card = Path(model).parent / "card.json"
    if not card.is_file():
        return FullSize()
    try:
        section = json.loads(card.read_text(encoding="utf-8")).get("full_size")
    except (OSError, ValueError, AttributeError) as exc:
        raise FactoryError(f"{card}: not a readable editor card ({exc})") from None
    if not section:
        return FullSize(origin=f"default ({card} has no full_size section)")
    path, low, tile = section.get("path"), section.get("low_side", DEFAULT_LOW_SIDE), section.get("tile", DEFAULT_TILE)
    if path not in PATHS or not all(isinstance(v, int) and v >= 16 for v in (low, tile)):
        raise FactoryError(f"{card}: full_size must have path guided, tiled or screen and integer low_side and tile "
                           f"(got path {path!r}, low_side {low!r}, tile {tile!r}); export the editor again")
    parsed = {}
    for key, kind in (("finish", Finish), ("render", ScreenRender)):
        try:
            parsed[key] = kind.from_json(section[key]) if section.get(key) else None
        except ValueError as exc:
            raise FactoryError(f"{card}: full_size.{key}: {exc}; export the editor again") from None
    finish, render = parsed["finish"], parsed["render"]
    curves, eps = section.get("guided_curves", False), section.get("guided_eps", DEFAULT_EPS)
    if not isinstance(curves, bool) or isinstance(eps, bool) or not isinstance(eps, int | float) or not eps > 0:
        raise FactoryError(f"{card}: full_size.guided_curves must be true or false and guided_eps a positive number "
                           f"(got {curves!r}, {eps!r}); export the editor again")
    if path == "screen" and render is None:
        raise FactoryError(f"{card}: full_size has path screen but no render; export the editor again")
    return FullSize(path=path, low_side=low, tile=tile, origin=str(card), finish=finish, render=render,
                    curves=curves, eps=float(eps))


def resolve(card: FullSize, path: str = "auto", size: int | None = None, tile: int | None = None
            ) -> tuple[str, int | None, int]:
    """(mode, size, tile) for one edit: mode ``resize``, ``guided``, ``tiled`` or ``screen``.

    ``path`` auto follows the card unless ``size`` (then resize) or ``tile`` (then tiled) is given;
    guided runs the editor at longer side ``size`` (default: the card's low_side); tiled and screen take no size;
    screen needs a card with a render.
    """
    if path not in CHOICES:
        raise FactoryError(f"unknown path '{path}' (choose {', '.join(CHOICES)})")
    if path == "auto":
        if size is not None:
            return "resize", size, tile or card.tile
        path = "tiled" if tile is not None else card.path
    if path == "guided":
        return "guided", size or card.low_side, tile or card.tile
    if path == "screen" and card.render is None:
        raise FactoryError(f"--path screen needs an editor whose card has a screen render ({card.origin} has none: "
                           "only a screen editor whose export measured it better has one)")
    if size is not None:
        raise FactoryError(f"a size (--size {size}) does not apply to --path {path}: it edits at native "
                           "resolution (a size alone edits at that size and resizes back; with --path guided "
                           "it is the editor's resolution)")
    return path, None, tile or card.tile


def describe(card: FullSize, path: str = "auto", size: int | None = None, tile: int | None = None) -> str:
    """One line on how large images will be edited, e.g. ``guided, editor at 512 px (from .../card.json)``."""
    where = f"from {card.origin}" if path == "auto" and size is None and tile is None else "from the options"
    mode, size, tile = resolve(card, path, size, tile)
    if mode == "resize":
        return f"resized to {size} px and back ({where})"
    if mode == "guided":
        return f"guided, editor at {size} px{', colour curves' if card.curves else ''} ({where})"
    if mode == "screen":
        r = card.render
        return (f"screen render from {r.min_scale:g}x the pairs' size: editor at most {r.low_scale:g}x, its ink's "
                f"dots drawn at full resolution ({where})")
    finish = card.finish
    cap = f"; edited at most {finish.max_scale:g}x and upscaled" if finish and finish.max_scale else ""
    extra = (f", finished from {finish.min_scale:g}x the pairs' size (input blurred by {finish.blur_cells:g} of a "
             f"screen cell, levels {finish.level:g} x {finish.gain:g}{cap})" if finish else "")
    return f"tiled, {tile} px tiles{extra} ({where})"
