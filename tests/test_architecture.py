"""The map of ARCHITECTURE.md is checked, not claimed: import-linter's contracts cover every
package, pass, and the imports left inside functions each say why."""

import ast
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIG = tomllib.loads((REPO / "pyproject.toml").read_text())
PACKAGES = [p for p in CONFIG["tool"]["setuptools"]["packages"] if "." not in p]


def _contracts(kind: str) -> list[dict]:
    return [c for c in CONFIG["tool"]["importlinter"]["contracts"] if c["type"] == kind]


def test_the_contracts_cover_every_package():
    assert sorted(CONFIG["tool"]["importlinter"]["root_packages"]) == sorted(PACKAGES)
    (layers,) = [c for c in _contracts("layers") if "helpers" in c["layers"]]
    named = {name.strip() for layer in layers["layers"] for name in layer.split("|")}
    assert named == set(PACKAGES)
    (acyclic,) = _contracts("acyclic_siblings")
    assert sorted(acyclic["ancestors"]) == sorted(PACKAGES)
    sub = [c for c in _contracts("layers") if c is not layers]
    assert any(set(c["layers"]) >= {"hashing.evaluation", "hashing.methods",
                                    "hashing.distances"} for c in sub)


@pytest.mark.skipif(shutil.which("lint-imports", path=str(Path(sys.executable).parent)) is None,
                    reason="import-linter is not installed (pip install -e '.[dev]')")
def test_lint_imports_passes():
    done = subprocess.run([str(Path(sys.executable).parent / "lint-imports"), "--no-cache"],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def _imports_inside_functions():
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            lines = path.read_text(encoding="utf-8").splitlines()
            for node in ast.walk(ast.parse("\n".join(lines))):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    for sub in ast.walk(node):
                        if isinstance(sub, ast.Import | ast.ImportFrom):
                            yield path, sub, lines


def test_every_import_inside_a_function_says_why():
    """Imports inside functions hide circles (three did) and slow nothing down that a top
    import would not: one stays only to keep an import light, with its reason on its line or
    the line above."""
    silent = []
    for path, node, lines in _imports_inside_functions():
        here = " ".join(lines[node.lineno - 1:node.end_lineno])
        above = lines[node.lineno - 2].strip() if node.lineno > 1 else ""
        if "#" not in here and not above.startswith("#"):
            silent.append(f"{path.relative_to(REPO)}:{node.lineno}: {lines[node.lineno - 1]}")
    assert not silent, "imports inside functions without a reason:\n" + "\n".join(silent)


def test_every_sub_package_is_installed():
    """A wheel holds only the packages pyproject.toml lists: a sub-package left out (hashing's
    three roles) would import from a clone and fail from an install."""
    listed = set(CONFIG["tool"]["setuptools"]["packages"])
    found = {str(init.parent.relative_to(REPO)).replace("/", ".")
             for package in PACKAGES for init in (REPO / package).rglob("__init__.py")}
    assert found == listed
    kernels = {str(c.parent.relative_to(REPO)).replace("/", ".")
               for package in PACKAGES for c in (REPO / package).rglob("*.c")}
    assert kernels <= set(CONFIG["tool"]["setuptools"]["package-data"])


def test_no_function_is_over_80_lines():
    """Long functions hid whole protocols (run_loop was 170 lines, run_benchmark 160): a
    function longer than a screen and a half is split at its seams."""
    long = []
    for folder in [*PACKAGES, "scripts"]:
        for path in sorted((REPO / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    lines = node.end_lineno - node.lineno + 1
                    if lines > 80:
                        long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} "
                                    f"({lines} lines)")
    assert not long, "functions over 80 lines:\n" + "\n".join(long)
