"""Concept cards: the built-in library, strict loading, the workspace's own cards, and `factory concepts`."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from skimage import data

from concepts import CARDS_DIR
from concepts.cards import (
    ConceptCard,
    TeacherSpec,
    builtin_cards,
    diffusion_parameters,
    find_card,
    list_cards,
    load_card,
)
from concepts.new_card import nearest_builtin, new_card
from factory.cli import cli
from factory.core.errors import FactoryError
from factory.core.workspace import Workspace
from factory.teachers.recipes import apply_recipe, validate_recipe

os.environ.setdefault("HF_HUB_OFFLINE", "1")

CARD = """\
name: warm-test
instruction: give it a warm tone
teacher:
  kind: classic
  recipe:
    - op: temperature
      amount: 0.35
tags: [colour-grading]
"""


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return cv2.resize(data.astronaut()[:256, 128:384], (64, 64), interpolation=cv2.INTER_AREA)


def _write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def _diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


# ---------------------------------------------------------------------------------------------
# the built-in library


def test_builtin_library_loads_and_every_card_edits_a_real_photo(photo: np.ndarray) -> None:
    cards = builtin_cards()
    assert len(cards) >= 40
    assert len({c.instruction for c in cards}) == len(cards)
    outputs = {}
    for card in cards:
        assert isinstance(card, ConceptCard) and isinstance(card.teacher, TeacherSpec)
        assert card.path == CARDS_DIR / f"{card.name}.yaml" and card.builtin
        assert card.teacher.kind == "classic" and card.tags and card.instruction
        out = apply_recipe(photo, card.teacher.params["recipe"], seed=0)
        assert out.dtype == np.uint8 and out.shape == photo.shape
        assert _diff(out, photo) > 2.0, f"{card.name} barely changes the photo"
        outputs[card.name] = out
    for (a, out_a), (b, out_b) in itertools.combinations(outputs.items(), 2):
        assert _diff(out_a, out_b) > 2.0, f"{a} and {b} look the same"


def test_builtin_library_covers_the_families() -> None:
    tags = {t for c in builtin_cards() for t in c.tags}
    assert {"colour-grading", "tone-curve", "film", "colormap", "npr", "cartoon", "posterize", "blur",
            "sharpen", "vintage", "night"} <= tags
    ops = {s["op"] for c in builtin_cards() for s in c.teacher.params["recipe"]}
    assert {"stylization", "pencil_sketch", "detail_enhance", "edge_preserving", "cartoon", "colormap"} <= ops


def test_recipes_are_deterministic_per_seed(photo: np.ndarray) -> None:
    recipe = find_card("old-photo").teacher.params["recipe"]  # has film grain
    assert np.array_equal(apply_recipe(photo, recipe, 11), apply_recipe(photo, recipe, 11))
    assert not np.array_equal(apply_recipe(photo, recipe, 11), apply_recipe(photo, recipe, 12))


# ---------------------------------------------------------------------------------------------
# strict loading


def test_load_card_normalizes(tmp_path: Path) -> None:
    card = load_card(_write(tmp_path, "warm.yaml", CARD))
    assert card.name == "warm-test" and card.instruction == "give it a warm tone"
    assert card.tags == ("colour-grading",) and card.path == tmp_path / "warm.yaml" and not card.builtin
    assert card.teacher == TeacherSpec("classic", {"recipe": validate_recipe([{"op": "temperature", "amount": 0.35}])})


@pytest.mark.parametrize(
    "old, new, words",
    [
        ("tags: [colour-grading]", "tags: [colour-grading]\ndescription: hi", ["unknown key 'description'"]),
        ("instruction: give it a warm tone\n", "", ["missing key 'instruction'"]),
        ("name: warm-test", "name: Warm Test", ["'name'", "slug"]),
        ("tags: [colour-grading]", "tags: colour-grading", ["'tags'", "list"]),
        ("instruction: give it a warm tone", "instruction: 12", ["'instruction'"]),
        ("- op: temperature", "- op: temprature", ["unknown operation 'temprature'", "'temperature'"]),
        ("amount: 0.35", "amount: 0.35\n      warmth: 2", ["temperature", "unknown parameter 'warmth'"]),
        ("amount: 0.35", "amount: 3.5", ["temperature", "'amount' = 3.5", "out of range [-1, 1]"]),
        ("amount: 0.35", "amount: hot", ["temperature", "'amount'", "number"]),
        ("kind: classic", "kind: magic", ["unknown teacher kind 'magic'"]),
        ("kind: classic", "kind: classic\n  steps: 4", ["unknown key 'steps' in teacher"]),
        ("  recipe:", "  recipe: []\n  old:", ["unknown key 'old' in teacher"]),
        ("name: warm-test", "name: [warm", ["not valid YAML"]),
    ],
)
def test_bad_cards_are_refused_naming_file_and_problem(tmp_path: Path, old: str, new: str, words: list[str]) -> None:
    assert old in CARD
    path = _write(tmp_path, "bad-card.yaml", CARD.replace(old, new, 1))
    with pytest.raises(FactoryError) as err:
        load_card(path)
    message = str(err.value)
    assert "bad-card.yaml" in message
    for word in words:
        assert word in message, message


def test_missing_card_file(tmp_path: Path) -> None:
    with pytest.raises(FactoryError, match=r"nope\.yaml: concept card not found"):
        find_card(str(tmp_path / "nope.yaml"))


def test_diffusion_cards_keep_their_parameters(tmp_path: Path) -> None:
    text = "name: zombie\ninstruction: turn them into a zombie\nteacher:\n  kind: sdedit\n  strength: 0.6\n"
    card = load_card(_write(tmp_path, "zombie.yaml", text))
    assert card.teacher == TeacherSpec("sdedit", {"strength": 0.6}) and card.tags == ()
    expected = r"zombie2\.yaml: unknown key 'strenght' in teacher \(sdedit takes: .*strength"
    with pytest.raises(FactoryError, match=expected):
        load_card(_write(tmp_path, "zombie2.yaml", text.replace("strength", "strenght")))


# ---------------------------------------------------------------------------------------------
# the workspace's cards


def test_user_cards_join_and_override_builtins(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    _write(ws.concepts, "warm.yaml", CARD)
    _write(ws.concepts, "sepia.yaml", CARD.replace("name: warm-test", "name: sepia"))
    names = [c.name for c in list_cards(ws)]
    assert names == sorted(names) and "warm-test" in names and names.count("sepia") == 1
    assert len(names) == len(builtin_cards()) + 1
    assert find_card("sepia", ws).path == ws.concepts / "sepia.yaml"
    assert find_card("sepia").builtin  # without the workspace, the built-in one
    assert find_card(str(ws.concepts / "warm.yaml")).name == "warm-test"


def test_duplicate_user_card_names_are_refused(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    _write(ws.concepts, "a.yaml", CARD)
    _write(ws.concepts, "b.yaml", CARD)
    with pytest.raises(FactoryError, match=r"b\.yaml: card name 'warm-test' is already used by .*a\.yaml"):
        list_cards(ws)


def test_unknown_name_suggests_close_matches() -> None:
    with pytest.raises(FactoryError, match=r"unknown concept 'pencil-skech'.*did you mean pencil-sketch"):
        find_card("pencil-skech")


# ---------------------------------------------------------------------------------------------
# new cards


def test_nearest_builtin_uses_the_text_encoder() -> None:
    card, similarity = nearest_builtin("convert the photo into a pencil sketch")
    assert card.name == "pencil-sketch" and 0.8 < similarity <= 1.0 + 1e-6
    card, _ = nearest_builtin("like a picture seen through thermal imaging goggles")
    assert card.name == "thermal"


def test_new_card_for_diffusion_teachers(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    path = new_card("Make it look like Van Gogh painted it", teacher="sdedit", workspace=ws)
    assert path == ws.concepts / "van-gogh-painted.yaml"
    card = load_card(path)
    assert card.teacher.kind == "sdedit" and card.teacher.params["strength"] > 0
    assert card.teacher.params["model"] == diffusion_parameters("sdedit")["model"]
    assert card.instruction == "Make it look like Van Gogh painted it"
    assert find_card("van-gogh-painted", ws) == card
    with pytest.raises(FactoryError, match="already exists"):
        new_card("Make it look like Van Gogh painted it", teacher="instruct-pix2pix", workspace=ws)
    assert sorted(p.name for p in ws.concepts.iterdir()) == ["van-gogh-painted.yaml"]  # no temp files left


def test_cli_list_show(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["--workspace", str(tmp_path), "concepts", "list"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["NAME", "TEACHER", "TAGS", "INSTRUCTION"]
    assert any(line.startswith("pencil-sketch ") and "turn the photo into a pencil sketch" in line for line in lines)
    assert f"{len(builtin_cards())} cards" in result.output

    result = runner.invoke(cli, ["--workspace", str(tmp_path), "concepts", "list", "--tag", "night"])
    names = {line.split()[0] for line in result.output.splitlines()[1:-1]}
    assert names == {c.name for c in builtin_cards() if "night" in c.tags} and names

    result = runner.invoke(cli, ["concepts", "show", "warm-sunset"])
    assert result.exit_code == 0
    assert str(CARDS_DIR / "warm-sunset.yaml") in result.output.splitlines()[0]
    assert yaml.safe_load(result.output)["instruction"] == "give it a warm sunset tone"

    result = runner.invoke(cli, ["concepts", "show", "warm-sunsett"])
    assert isinstance(result.exception, FactoryError) and "did you mean warm-sunset" in str(result.exception)


def test_cli_new_classic_writes_a_loadable_card_and_refuses_a_second(tmp_path: Path, photo: np.ndarray) -> None:
    runner = CliRunner()
    args = [
        "--workspace",
        str(tmp_path),
        "concepts",
        "new",
        "make it look like an old polaroid",
        "--teacher",
        "classic",
        "--name",
        "my-sketch",
    ]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    path = Workspace(tmp_path).concepts / "my-sketch.yaml"
    assert str(path.name) in result.output
    card = load_card(path)
    assert "outside the concept family's grammar" in result.output  # says why it copies a built-in
    base = find_card(result.output.split("built-in card '")[1].split("'")[0])
    assert base.name in ("polaroid", "old-photo", "vintage-film")  # the nearest built-in by text
    assert card.teacher.params["recipe"] == validate_recipe(base.teacher.params["recipe"])
    assert f"'{base.name}'" in path.read_text().split("name: my-sketch")[0]  # said so in a comment
    assert "user" in card.tags and card.instruction == "make it look like an old polaroid"
    assert apply_recipe(photo, card.teacher.params["recipe"], 0).shape == photo.shape

    second = runner.invoke(cli, args)
    assert isinstance(second.exception, FactoryError) and "already exists" in str(second.exception)
    assert load_card(path) == card

    listed = runner.invoke(cli, ["--workspace", str(tmp_path), "concepts", "list", "--tag", "user"])
    assert "my-sketch" in listed.output and "(yours)" in listed.output


def test_a_bad_workspace_card_is_listed_and_skipped_not_fatal(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    ws.concepts.mkdir(parents=True)
    (ws.concepts / "broken.yaml").write_text("name: broken\ninstruction: x\nteacher:\n  kind: classic\n"
                                             "  recipe:\n    - op: no-such-op\n")
    (ws.concepts / "mine.yaml").write_text("name: mine\ninstruction: make it mine\nteacher:\n  kind: classic\n"
                                           "  recipe:\n    - op: grayscale\n")
    names = {c.name for c in list_cards(ws)}
    assert "mine" in names and "sepia" in names and "broken" not in names
    assert find_card("sepia", ws).name == "sepia" and find_card("mine", ws).name == "mine"
    with pytest.raises(FactoryError, match=r"broken\.yaml.*no-such-op"):
        find_card("broken", ws)
    result = CliRunner().invoke(cli, ["--workspace", str(ws.root), "concepts", "list"])
    assert result.exit_code == 0, result.output
    assert "mine" in result.output and "skipped" in result.output and "broken.yaml" in result.output
