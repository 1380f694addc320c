"""HTML pages from the jinja2 templates in ``templates/`` (autoescaped: every value is text, never markup)."""

from __future__ import annotations

import base64
import functools
from pathlib import Path
from typing import Any

TEMPLATES = Path(__file__).resolve().parent / "templates"


@functools.lru_cache(maxsize=1)
def _environment():
    import jinja2

    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render(name: str, **context: Any) -> str:
    """The template ``name`` rendered with ``context``."""
    return _environment().get_template(name).render(**context)


def data_uri(path: Path) -> str:
    """A PNG file as a data: URI (the pages are self-contained)."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")
