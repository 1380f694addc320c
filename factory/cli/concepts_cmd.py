"""``factory concepts``: list, show and write concept cards; reference of the classic recipe operations."""

from __future__ import annotations

import click

from factory.pipeline.session import Session


@click.group("concepts")
def concepts() -> None:
    """Concept cards: the edit's instruction text, its teacher, and tags.

    \b
    Built-in cards ship with editfactory; your own live in <workspace>/concepts/*.yaml
    and override a built-in card of the same name. A `classic` card's teacher is a
    recipe of image operations, so a new filter needs no code:
    \b
      name: warm-sunset
      instruction: give it a warm sunset tone
      teacher:
        kind: classic
        recipe:
          - op: temperature
            amount: 0.35
          - op: curve
            points: [[0, 0], [0.5, 0.56], [1, 1]]
      tags: [colour-grading, warm]
    \b
    `factory concepts ops` lists every operation and its parameters.
    """


@concepts.command("list")
@click.option("--tag", "tags", multiple=True, metavar="TAG",
              help="Only cards with this tag (repeat to require several, e.g. --tag npr --tag drawing).")
@click.pass_obj
def list_cmd(session: Session, tags: tuple[str, ...]) -> None:
    """List the concept cards (built-in and the workspace's) as a table."""
    from concepts.cards import list_cards, warn_problems
    from factory.core.errors import FactoryError

    warn_problems(session.workspace)
    cards = [c for c in list_cards(session.workspace) if all(t in c.tags for t in tags)]
    if not cards:
        known = sorted({t for c in list_cards(session.workspace) for t in c.tags})
        raise FactoryError(f"no concept card has the tag(s) {', '.join(tags)} (tags in use: {', '.join(known)})")
    rows = [
        (c.name, c.teacher.kind + ("" if c.builtin else " (yours)"), ",".join(c.tags), c.instruction) for c in cards
    ]
    header = ("NAME", "TEACHER", "TAGS", "INSTRUCTION")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
    for row in [header, *rows]:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths)) + "  " + row[3])
    click.echo(f"{len(cards)} cards")


@concepts.command("show")
@click.argument("name")
@click.pass_obj
def show_cmd(session: Session, name: str) -> None:
    """Print a card's YAML and where it lives. NAME is a card name or a path to a .yaml card."""
    from concepts.cards import find_card

    card = find_card(name, session.workspace)
    click.echo(f"# {card.path.resolve()}" + (" (built-in)" if card.builtin else ""))
    click.echo(card.path.read_text(encoding="utf-8").rstrip("\n"))


@concepts.command("new")
@click.argument("instruction")
@click.option(
    "--teacher",
    type=click.Choice(["classic", "instruct-pix2pix", "sdedit"]),
    default="instruct-pix2pix",
    show_default=True,
    help="Who makes the targets. classic starts from the recipe of the built-in card with the nearest "
    "instruction (edit it to taste); the diffusion teachers get their default parameters.",
)
@click.option(
    "--name",
    default=None,
    metavar="NAME",
    help="Card name (lowercase letters, digits, '-'); default: made from the instruction.",
)
@click.pass_obj
def new_cmd(session: Session, instruction: str, teacher: str, name: str | None) -> None:
    """Write a new card for INSTRUCTION into <workspace>/concepts/ (never overwrites one).

    \b
    Example:
      factory concepts new "make it look like a faded summer photo" --teacher classic
    """
    from concepts.cards import display_path
    from concepts.new_card import create_card

    created = create_card(instruction, teacher=teacher, workspace=session.workspace, name=name)
    click.echo(f"wrote {display_path(created.path)} (card '{created.card.name}'): {created.note}")


@concepts.command("ops")
@click.argument("op", required=False)
def ops_cmd(op: str | None) -> None:
    """Reference of the classic recipe operations and their parameters (or of one OP)."""
    from factory.core.errors import FactoryError
    from factory.teachers.recipes import OPS, describe_op, describe_ops

    if op is None:
        click.echo(describe_ops())
    elif op in OPS:
        click.echo(describe_op(op))
    else:
        raise FactoryError(f"unknown operation '{op}' (known: {', '.join(sorted(OPS))})")


def register(cli: click.Group) -> None:
    cli.add_command(concepts)
