"""The data root: the folder that holds the named datasets."""

from __future__ import annotations

import os
from pathlib import Path

from helpers import project_root

#: Environment variable that overrides the default data root.
DATA_ROOT_ENV = "DATASETS_DIR"


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The folder holding the named datasets.

    ``root`` when given (the ``--data-root`` flag), else ``$DATASETS_DIR``, else
    ``Datasets/`` in the project root.
    """
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get(DATA_ROOT_ENV)
    if env:
        return Path(env).expanduser()
    return project_root() / "Datasets"
