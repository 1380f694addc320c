"""Writing a new concept card from an instruction: ``factory concepts new`` and ``factory run "text"``."""

from __future__ import annotations

import os
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from concepts.cards import (
    DIFFUSION_KINDS,
    SLUG_RE,
    ConceptCard,
    builtin_cards,
    diffusion_teacher_class,
    display_path,
    list_cards,
    parse_card,
    slugify,
)
from concepts.family import FAMILY_OPS, parse_instruction, recipe_of
from factory.core.errors import FactoryError
from factory.core.workspace import Workspace

NEW_CARD_TEACHERS = ("classic", *DIFFUSION_KINDS)
LEVEL_NAMES = {1: "a little", 2: "plain", 3: "strongly"}


def nearest_builtin(instruction: str, cache_dir: Path | None = None) -> tuple[ConceptCard, float]:
    """The built-in classic card whose instruction is nearest to ``instruction`` (MiniLM cosine similarity)."""
    from factory.text.encoder import TextEncoder

    cards = [c for c in builtin_cards() if c.teacher.kind == "classic"]
    encoder = TextEncoder("minilm", cache_dir=cache_dir)
    sims = encoder.pooled([c.instruction for c in cards]) @ encoder.pooled([instruction])[0]
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

    ``classic`` composes the recipe from the text when the text is within the concept family's grammar
    (``concepts.family``), else starts from the recipe of the built-in card with the nearest instruction
    (MiniLM) and says why; the diffusion teachers get their default parameters.
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
        parsed = parse_instruction(instruction)
        if parsed.ops is not None:
            params: dict[str, Any] = {"recipe": recipe_of(parsed.ops)}
            tags = ["user", "family"]
            note = ("recipe composed from the text by the concept family's grammar: "
                    + ", ".join(f"{key} ({LEVEL_NAMES[level] if len(FAMILY_OPS[key].levels) > 1 else 'on'})"
                                for key, level in parsed.ops))
        else:
            base, similarity = nearest_builtin(instruction, workspace.text_cache)
            params = {"recipe": base.teacher.params["recipe"]}
            tags = ["user", *base.tags]
            note = (f"the text is outside the concept family's grammar ({parsed.reason}), so the recipe is copied "
                    f"from the built-in card '{base.name}' (\"{base.instruction}\"), the nearest instruction by "
                    f"MiniLM similarity {similarity:.2f}; edit its steps to match your instruction")
        header += textwrap.wrap(f"{note[0].upper()}{note[1:]}.", 98, initial_indent="# ", subsequent_indent="# ")
        header.append("# Operations and their parameters: `factory concepts ops`.")
    else:
        params = {k: v for k, v in diffusion_teacher_class(teacher).defaults.items() if v is not None}
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
