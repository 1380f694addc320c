"""The README's Python example runs as written and produces an editor."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_example() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Use it from Python", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "the README's 'Use it from Python' section has a python block"
    return match.group(1)


def test_readme_python_example_makes_an_editor(tmp_path: Path) -> None:
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="2")
    env.pop("FACTORY_WORKSPACE", None)
    proc = subprocess.run([sys.executable, "-c", readme_example()], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    editors = list(tmp_path.rglob("editors/*/editor.int8.onnx"))
    assert editors, "the example exported an editor"
    assert (editors[0].parent / "card.json").is_file() and (editors[0].parent / "editor.onnx").is_file()
    assert "edited" in proc.stdout
