"""Checks on the code itself: the layer rules of docs/architecture.md and lint."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _tool(name: str) -> str:
    exe = Path(sys.executable).parent / name
    found = str(exe) if exe.exists() else shutil.which(name)
    assert found, f"{name} is not installed; pip install -e '.[test]'"
    return found


def test_layer_contracts_hold() -> None:
    """The arrows of docs/architecture.md that must never exist (import-linter, pyproject)."""
    run = subprocess.run(
        [_tool("lint-imports"), "--no-cache"], cwd=REPO, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_ruff_is_clean() -> None:
    dirs = [d for d in ("service", "client", "tests", "bench") if (REPO / d).is_dir()]
    run = subprocess.run(
        [_tool("ruff"), "check", *dirs],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_bench_imports_nothing_from_tests() -> None:
    """``bench/`` runs without the test tree: it may import the project and itself only."""
    import ast

    found = []
    for path in sorted((REPO / "bench").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            found += [
                f"{path.name}:{node.lineno} {n}"
                for n in names
                if n.split(".")[0] in ("support", "tests", "conftest")
            ]
    assert not found, found
