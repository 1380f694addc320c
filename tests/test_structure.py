"""The code's shape: a thin CLI over the library, and the library API importable without torch."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = ROOT / "factory" / "cli"
MAX_LINES = 40  # a command body, its decorators (the option declarations) aside


def _functions(tree: ast.AST):
    return [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def test_cli_functions_are_short_and_modules_independent() -> None:
    long, cross = [], []
    for path in sorted(CLI.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for fn in _functions(tree):
            lines = fn.end_lineno - fn.lineno + 1  # from `def` to the end: decorators are not counted
            if lines > MAX_LINES:
                long.append(f"{path.name}:{fn.name} {lines} lines")
        if path.name == "__init__.py":
            continue
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            # shared option declarations (factory/cli/teacher_options.py) are fine; another command module is not
            cross += [f"{path.name} imports {n}" for n in names if n == "factory.cli" or n.endswith("_cmd")]
    assert not long, long
    assert not cross, cross


def test_a_cli_function_over_the_limit_is_caught(tmp_path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    tree = ast.parse(f"@decorator\n@option('--a')\ndef f():\n{body}\n")
    (fn,) = _functions(tree)
    assert fn.end_lineno - fn.lineno + 1 == MAX_LINES + 1


def test_library_api_is_lazy_and_complete() -> None:
    code = ("import sys, factory\n"
            "names = ['synthesize', 'train_base', 'finetune', 'generate_adapter', 'export_editor', 'Editor', 'run']\n"
            "assert all(n in factory.__all__ for n in names)\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'torch')[:1]))\n"
            "callables = [callable(getattr(factory, n)) for n in names]\n"
            "print(json.dumps(callables))\n")
    out = subprocess.run([sys.executable, "-c", "import json\n" + code], capture_output=True, text=True, cwd=ROOT,
                         check=True).stdout.splitlines()
    assert json.loads(out[0]) == [], "importing factory loads no torch"
    assert all(json.loads(out[1]))
