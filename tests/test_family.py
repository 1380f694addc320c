"""The procedural concept family: sampled instructions read back into their recipes, held-out regions,
and `factory concepts new --teacher classic` composing a recipe from the text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from click.testing import CliRunner

from concepts.cards import load_card, parse_card
from concepts.family import FAMILY_OPS, is_held_out, parse_instruction, recipe_of, sample_concepts
from factory.cli import cli
from factory.core.workspace import Workspace
from factory.teachers.recipes import apply_recipe


def test_a_sampled_instruction_parses_back_to_its_recipe() -> None:
    concepts = sample_concepts(400, seed=3) + sample_concepts(100, seed=3, region="held-out")
    assert len({c.instruction for c in concepts}) > 450  # varied phrasing, not one template
    for c in concepts:
        parsed = parse_instruction(c.instruction)
        assert parsed.ops == c.ops, (c.instruction, parsed)
        assert recipe_of(parsed.ops) == c.recipe
        parse_card(c.card_data(), "family")  # a valid card


def test_held_out_regions_never_reach_training_concepts() -> None:
    train = sample_concepts(300, seed=0)
    held = sample_concepts(60, seed=0, region="held-out")
    assert not any(is_held_out(c.ops) for c in train) and all(is_held_out(c.ops) for c in held)
    assert not {c.name for c in train} & {c.name for c in held}
    assert sample_concepts(5, seed=0) == train[:5] and sample_concepts(5, seed=1) != train[:5]
    ops = {k for c in train for k, _ in c.ops}
    assert ops == set(FAMILY_OPS)  # every op is trained on, in some regions


def test_text_outside_the_grammar_says_why() -> None:
    assert parse_instruction("make it warmer and add a strong vignette").ops == (("warmer", 2), ("vignette", 3))
    assert parse_instruction("strongly desaturated, with a soft vignette").ops == (("desaturated", 3), ("vignette", 1))
    assert "contradict" in parse_instruction("make it warmer and cooler").reason
    assert "old polaroid" in parse_instruction("make it look like an old polaroid").reason
    assert parse_instruction("").ops is None


def test_concepts_new_composes_the_recipe_from_the_text(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["--workspace", str(tmp_path), "concepts", "new",
                                      "make it warmer and add a strong vignette", "--teacher", "classic"])
    assert result.exit_code == 0, result.output
    assert "composed from the text" in result.output and "warmer (plain)" in result.output
    card = load_card(Workspace(tmp_path).concepts / "warmer-strong-vignette.yaml")
    assert [s["op"] for s in card.teacher.params["recipe"]] == ["temperature", "vignette"]
    assert card.teacher.params["recipe"] == recipe_of((("warmer", 2), ("vignette", 3)))
    photo = np.full((64, 64, 3), 128, np.uint8)
    edited = apply_recipe(photo, card.teacher.params["recipe"], 0)
    assert edited[32, 32, 0] > edited[32, 32, 2]  # warmer: more red than blue in the middle
    assert edited[0, 0].mean() < edited[32, 32].mean()  # the vignette darkens the corners
