"""Concept cards: the text of an edit, the teacher that makes its targets, and tags.

A card is a small YAML file::

    name: warm-sunset
    instruction: give it a warm sunset tone
    teacher:
      kind: classic
      recipe:
        - op: temperature
          amount: 0.35
    tags: [colour-grading, warm]

Built-in cards ship in the ``concepts`` package; a user's cards live in ``<workspace>/concepts/`` and
override a built-in card of the same name. Cards are validated strictly: unknown or missing keys,
wrong types, and (for ``classic``) unknown operations or parameters are refused, naming the file.
A bad card in the workspace does not stop the others: listing skips it (``card_problems`` says why)
and only asking for that card by name fails, with its problem.
"""

from __future__ import annotations

import difflib
import functools
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from factory.core.errors import FactoryError
from factory.core.workspace import Workspace
from factory.teachers import TEACHER_KINDS

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
CARD_KEYS = ("name", "instruction", "teacher", "tags")
REQUIRED_KEYS = ("name", "instruction", "teacher")
CARD_SUFFIXES = (".yaml", ".yml")

DIFFUSION_KINDS = ("instruct-pix2pix", "sdedit")

# words dropped when a card name is made from an instruction ("turn the photo into a sketch" -> "sketch")
_NAME_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "it",
        "its",
        "this",
        "that",
        "my",
        "of",
        "to",
        "into",
        "in",
        "on",
        "with",
        "and",
        "as",
        "like",
        "make",
        "makes",
        "turn",
        "give",
        "add",
        "apply",
        "photo",
        "photos",
        "image",
        "images",
        "picture",
        "pictures",
        "look",
        "looks",
        "style",
        "please",
        "so",
    ]
)


@dataclass(frozen=True)
class TeacherSpec:
    """A card's teacher: its kind and its parameters (for ``classic``: ``{"recipe": [normalized steps]}``)."""

    kind: str
    params: dict


@dataclass(frozen=True)
class ConceptCard:
    """One concept: a slug name, the instruction text, its teacher, family tags, and the file it came from."""

    name: str
    instruction: str
    teacher: TeacherSpec
    tags: tuple[str, ...]
    path: Path | None

    @property
    def builtin(self) -> bool:
        from concepts import CARDS_DIR

        return self.path is not None and self.path.parent.resolve() == CARDS_DIR.resolve()


def display_path(path: Path) -> str:
    """``path`` relative to the working directory when inside it, for short error messages."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


# ---------------------------------------------------------------------------------------------
# parsing and validation


def parse_card(data: Any, source: str, path: Path | None = None) -> ConceptCard:
    """Validate a card's parsed YAML mapping; ``source`` names it in error messages."""
    if not isinstance(data, dict):
        raise FactoryError(f"{source}: a concept card must be a YAML mapping with keys {', '.join(CARD_KEYS)}")
    for key in data:
        if key not in CARD_KEYS:
            close = difflib.get_close_matches(str(key), CARD_KEYS, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise FactoryError(f"{source}: unknown key '{key}' ({hint}a card has: {', '.join(CARD_KEYS)})")
    for key in REQUIRED_KEYS:
        if key not in data:
            raise FactoryError(f"{source}: missing key '{key}'")

    name = data["name"]
    if not isinstance(name, str) or not SLUG_RE.match(name):
        raise FactoryError(f"{source}: 'name' must be a slug of lowercase letters, digits and '-', got {name!r}")
    instruction = data["instruction"]
    if not isinstance(instruction, str) or not instruction.strip():
        raise FactoryError(f"{source}: 'instruction' must be a non-empty text, got {instruction!r}")
    tags = data.get("tags", [])
    if tags is None:
        tags = []
    if not isinstance(tags, list) or not all(isinstance(t, str) and t.strip() for t in tags):
        raise FactoryError(f"{source}: 'tags' must be a list of words, got {tags!r}")
    teacher = _parse_teacher(data["teacher"], source)
    return ConceptCard(name, " ".join(instruction.split()), teacher, tuple(t.strip() for t in tags), path)


def _parse_teacher(teacher: Any, source: str) -> TeacherSpec:
    if not isinstance(teacher, dict):
        raise FactoryError(f"{source}: 'teacher' must be a mapping with 'kind' and its parameters, got {teacher!r}")
    if "kind" not in teacher:
        raise FactoryError(f"{source}: missing key 'kind' in teacher (one of {', '.join(TEACHER_KINDS)})")
    kind = teacher["kind"]
    if kind not in TEACHER_KINDS:
        raise FactoryError(f"{source}: unknown teacher kind '{kind}' (known: {', '.join(TEACHER_KINDS)})")
    params = {k: v for k, v in teacher.items() if k != "kind"}
    if kind == "classic":
        from factory.teachers.classic import ClassicTeacher

        return TeacherSpec(kind, {"recipe": ClassicTeacher.from_params(params, source=source).recipe})
    for key, value in params.items():
        if not isinstance(key, str) or not (value is None or isinstance(value, (str, int, float, bool))):
            raise FactoryError(f"{source}: teacher parameter '{key}' must be a single value, got {value!r}")
    if kind in DIFFUSION_KINDS:  # names are checked here; values when the teacher is built (it loads the model)
        allowed = diffusion_parameters(kind)
        unknown = sorted(set(params) - set(allowed))
        if unknown:
            raise FactoryError(
                f"{source}: unknown key '{unknown[0]}' in teacher ({kind} takes: {', '.join(sorted(allowed))})"
            )
    return TeacherSpec(kind, params)


def diffusion_teacher_class(kind: str):
    from factory.teachers.diffusion import InstructPix2PixTeacher, SDEditTeacher

    return {"instruct-pix2pix": InstructPix2PixTeacher, "sdedit": SDEditTeacher}[kind]


def diffusion_parameters(kind: str) -> dict[str, Any]:
    """Every parameter a diffusion teacher accepts, with its default (the teacher's own tables)."""
    cls = diffusion_teacher_class(kind)
    return {**cls.defaults, **cls.common_defaults}


def load_card(path: str | os.PathLike) -> ConceptCard:
    """Read and validate one card file; any problem is a FactoryError naming the file."""
    path = Path(path)
    source = display_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FactoryError(f"{source}: concept card not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FactoryError(f"{source}: cannot read concept card ({exc})") from None
    try:
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise FactoryError(f"{source}: not valid YAML{where}: {problem}") from None
    return parse_card(data, source, path)


# ---------------------------------------------------------------------------------------------
# the library: built-in cards plus the workspace's cards


def _card_files(folder: Path) -> list[Path]:
    """The card files of a folder (files whose name starts with '.' or '_' are not cards)."""
    return sorted(p for p in folder.iterdir() if p.suffix in CARD_SUFFIXES and not p.name.startswith((".", "_")))


def _index(cards: list[ConceptCard]) -> dict[str, ConceptCard]:
    by_name: dict[str, ConceptCard] = {}
    for card in cards:
        if card.name in by_name:
            first = by_name[card.name].path
            raise FactoryError(
                f"{display_path(card.path)}: card name '{card.name}' is already used by {display_path(first)}"
            )
        by_name[card.name] = card
    return by_name


@functools.lru_cache(maxsize=1)
def _builtin_cards() -> tuple[ConceptCard, ...]:
    from concepts import CARDS_DIR

    return tuple(_index([load_card(p) for p in _card_files(CARDS_DIR)]).values())


def builtin_cards() -> list[ConceptCard]:
    """The cards shipped with editfactory, sorted by name."""
    return sorted(_builtin_cards(), key=lambda c: c.name)


@dataclass(frozen=True)
class CardProblem:
    """A workspace card file that could not be loaded: its path, the names it answers to, and why."""

    path: Path
    names: tuple[str, ...]
    error: FactoryError


def _claimed_names(path: Path) -> tuple[str, ...]:
    """The names a broken card file answers to: its file stem, and its ``name:`` when that is readable."""
    import yaml

    names = [path.stem]
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and isinstance(data.get("name"), str):
            names.append(data["name"])
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        pass
    return tuple(dict.fromkeys(names))


def _workspace_cards(workspace: Workspace | None) -> tuple[list[ConceptCard], list[CardProblem]]:
    if workspace is None or not workspace.concepts.is_dir():
        return [], []
    cards, problems = [], []
    for path in _card_files(workspace.concepts):
        try:
            cards.append(load_card(path))
        except FactoryError as exc:
            problems.append(CardProblem(path, _claimed_names(path), exc))
    return list(_index(cards).values()), problems


def card_problems(workspace: Workspace | None) -> list[CardProblem]:
    """The workspace's card files that cannot be loaded (each skipped by ``list_cards``)."""
    return _workspace_cards(workspace)[1]


def list_cards(workspace: Workspace | None = None) -> list[ConceptCard]:
    """Built-in cards plus ``workspace.concepts/*.yaml`` (a user card overrides a built-in of the same name);
    a workspace card that cannot be loaded is skipped (see ``card_problems``)."""
    by_name = {c.name: c for c in _builtin_cards()}
    by_name.update({c.name: c for c in _workspace_cards(workspace)[0]})
    return sorted(by_name.values(), key=lambda c: c.name)


def warn_problems(workspace: Workspace | None, stream=None) -> int:
    """Print one line per unloadable workspace card to ``stream`` (stderr); returns how many."""
    problems = card_problems(workspace)
    for p in problems:
        print(f"warning: skipped {display_path(p.path)}: {str(p.error).split(': ', 1)[-1]}", file=stream or sys.stderr)
    return len(problems)


def _looks_like_path(value: str) -> bool:
    return value.endswith(CARD_SUFFIXES) or "/" in value or os.sep in value


def find_card(name_or_path: str, workspace: Workspace | None = None) -> ConceptCard:
    """A card by name (user cards first, then built-ins) or by the path of a ``.yaml`` file."""
    if _looks_like_path(name_or_path):
        return load_card(name_or_path)
    for problem in card_problems(workspace):
        if name_or_path in problem.names:
            raise problem.error
    cards = {c.name: c for c in list_cards(workspace)}
    if name_or_path in cards:
        return cards[name_or_path]
    close = difflib.get_close_matches(name_or_path, cards, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise FactoryError(f"unknown concept '{name_or_path}' ({hint}`factory concepts list` shows them all)")


def slugify(text: str, max_words: int = 5, max_len: int = 48) -> str:
    """A card name from an instruction: lowercase words without filler, joined by '-'."""
    words = re.findall(r"[a-z0-9]+", text.lower())
    words = [w for w in words if w not in _NAME_STOPWORDS] or words
    slug = ""
    for word in words[:max_words]:
        candidate = f"{slug}-{word}" if slug else word
        if len(candidate) > max_len:
            break
        slug = candidate
    return slug or "-".join(words)[:max_len].strip("-")
