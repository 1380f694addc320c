"""The bottom layer's shared pieces: the budget progress bar, atomic folders, resume checks, settings."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from factory.core.atomic import atomic_folder
from factory.core.configs import from_dict, to_dict
from factory.core.errors import FactoryError
from factory.core.progress import BudgetBar
from factory.core.resume import check_resumable

ROOT = Path(__file__).resolve().parents[1]


def test_a_time_budget_bar_counts_seconds_not_a_step_cap() -> None:
    with BudgetBar("finetune x", steps=100_000, seconds=120.0, disable=False) as bar:
        bar.update(step=3, seconds=1.5, l1="0.1")
        assert bar.bar.total == 120.0 and bar.bar.n == pytest.approx(1.5) and bar.bar.unit == "s"
        bar.update(step=10, seconds=500.0)
        assert bar.bar.n == 120.0
    with BudgetBar("train", steps=50, seconds=None, step=5) as bar:
        bar.update(step=7, seconds=2.0)
        assert bar.bar.total == 50 and bar.bar.n == 7


def test_atomic_folder_replaces_whole_or_not_at_all(tmp_path: Path) -> None:
    final = tmp_path / "editor"
    with atomic_folder(final) as tmp:
        (tmp / "a.txt").write_text("one")
    assert (final / "a.txt").read_text() == "one"
    with pytest.raises(RuntimeError), atomic_folder(final) as tmp:
        (tmp / "a.txt").write_text("two")
        raise RuntimeError("a check failed")
    assert (final / "a.txt").read_text() == "one" and [p.name for p in tmp_path.iterdir()] == ["editor"]
    with atomic_folder(final) as tmp:
        (tmp / "b.txt").write_text("three")
    assert sorted(p.name for p in final.iterdir()) == ["b.txt"]


def test_resume_check_names_what_changed() -> None:
    check_resumable({"lr": 1e-3, "steps": 10}, {"lr": 1e-3, "steps": 20}, "run", may_change={"steps"})
    with pytest.raises(FactoryError, match="run: its checkpoints were made with different batch, lr"):
        check_resumable({"lr": 1e-3, "batch": 4}, {"lr": 2e-3, "batch": 8}, "run")


def test_settings_refuse_unknown_keys_the_same_way_everywhere() -> None:
    @dataclass
    class S:
        a: int = 1
        b: tuple[int, ...] = (1, 2)

    assert to_dict(S()) == {"a": 1, "b": [1, 2]} and from_dict(S, {"a": 3}) == S(a=3)
    with pytest.raises(FactoryError, match=r"unknown setting.*bogus"):
        from_dict(S, {"bogus": 1}, "S")


def test_shipped_files_name_no_build_paths() -> None:
    texts = [p.read_text(encoding="utf-8") for p in (ROOT / "factory" / "pretrained").rglob("*.json")]
    assert texts
    for text in texts:
        assert "bench/work" not in text and "/work/" not in text and "/tmp/" not in text
    for name in ("tokenizer.json", "dataset.json"):
        cfg = json.loads((ROOT / "factory" / "pretrained" / "editfactory-weightgen" / name).read_text())
        assert cfg["adapter_config"]["base_model_name_or_path"] is None
