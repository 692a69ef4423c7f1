"""Imports only go down the package order of ARCHITECTURE.md (no circles): checked on the
source, so a new import of a higher package fails here before it fails anywhere else."""

from __future__ import annotations

import ast
from pathlib import Path

ORDER = ["helpers", "data_retrieval", "generator", "SimCLRv2", "extractor", "hashing",
         "fast_search", "clustering", "finetuning"]
REPO = Path(__file__).resolve().parents[1]


def _imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_packages_import_only_lower_packages():
    wrong = []
    for rank, package in enumerate(ORDER):
        for path in sorted((REPO / package).rglob("*.py")):
            higher = _imported(path) & set(ORDER[rank + 1:])
            if higher:
                wrong.append(f"{path.relative_to(REPO)} imports {sorted(higher)}")
    assert not wrong, "\n".join(wrong)
