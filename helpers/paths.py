"""Where the project lives, and so where `Datasets/` and `Results/` are by default."""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE_PARENT = Path(__file__).resolve().parent.parent

#: Environment variable that moves every script's default result folder.
RESULTS_ROOT_ENV = "RESULTS_DIR"


def project_root() -> Path:
    """The repository root for a source checkout (editable install), else the working directory."""
    if (_PACKAGE_PARENT / "pyproject.toml").is_file():
        return _PACKAGE_PARENT
    return Path.cwd()


def results_root() -> Path:
    """Default parent folder of every experiment's results: ``$RESULTS_DIR`` when set, else
    ``<project root>/Results``."""
    env = os.environ.get(RESULTS_ROOT_ENV)
    if env:
        return Path(env).expanduser()
    return project_root() / "Results"


def printable(text: str) -> str:
    """A file name or id as text any output can show (a figure, a terminal): bytes that are not
    UTF-8, which Python keeps as lone surrogates, become U+FFFD."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
