"""Every figure quoted in the README's measured section stands in a results file a benchmark wrote."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Measured"


def measured_section(readme: str) -> str:
    after = readme.split(SECTION, 1)[1]
    return after.split("\n## ", 1)[0]


def figures(text: str) -> set[str]:
    """Decimal figures (e.g. 31.7, 0.93 MB, 1.62%, 15.2x) in ``text``, outside links and code spans."""
    text = re.sub(r"`[^`]*`|\]\([^)]*\)", " ", text)
    return set(re.findall(r"(?<![\w.])\d+\.\d+(?!\.?\d)", text))


#: smoke outputs (git-ignored): never evidence for a README figure
SMOKE = {"smoke", "all-quick", "mid"}


def results_text() -> str:
    root = ROOT / "bench" / "results"
    files = [p for p in root.rglob("*") if p.suffix in (".json", ".md")
             and not SMOKE & set(p.relative_to(root).parts)]
    return "\n".join(p.read_text(encoding="utf-8") for p in files)


def unbacked(section: str, results: str) -> list[str]:
    """The figures of ``section`` that no results file holds (as written, or as JSON keeps it)."""
    missing = []
    for f in sorted(figures(section)):
        variants = {f, f.rstrip("0").rstrip("."), f + "0"}
        if not any(re.search(rf"(?<![\d.]){re.escape(v)}(?!\d)", results) for v in variants):
            missing.append(f)
    return missing


def test_readme_figures_come_from_results_files() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert SECTION in readme
    section = measured_section(readme)
    assert figures(section), "the measured section quotes figures (or it would link the files only)"
    assert unbacked(section, results_text()) == []


def test_a_figure_without_a_results_file_fails_the_check() -> None:
    results = '{"psnr": 29.977, "seconds": 156.3}'
    assert unbacked("editor PSNR 29.98 dB", results) == ["29.98"]  # rounded differently: not the file's figure
    assert unbacked("editor PSNR 29.977 dB in 156.3 s", results) == []
    assert unbacked("a made-up speed-up of 15.2x", results) == ["15.2"]
    assert figures("see [x](bench/results/a1.5.json) and `v0.3.1`") == set()
