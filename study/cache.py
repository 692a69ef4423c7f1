"""What a step's result depends on, as one key: its script and flags, the identity of the data
it reads (file names, sizes and modification times, hashed) and the keys of the steps it
reads from. A step whose key is the one recorded when it finished is not run again."""

from __future__ import annotations

import hashlib
import json
import os
from functools import cache
from pathlib import Path

from data_retrieval import dataset_spec, sample_files
from study.plan import Step


@cache
def folder_identity(folder: str) -> dict[str, object]:
    """A digest of the files under ``folder``: their relative names, sizes and modification
    times (not their bytes: a dataset of 500k photos is not read to know it is the same)."""
    digest = hashlib.sha256()
    count = size = 0
    for base, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(base, name)
            try:
                stat = os.stat(path)
            except OSError:
                continue
            rel = os.path.relpath(path, folder)
            digest.update(f"{rel}\0{stat.st_size}\0{int(stat.st_mtime)}\n".encode(
                "utf-8", "surrogateescape"))
            count += 1
            size += stat.st_size
    return {"folder": folder, "files": count, "bytes": size, "sha256": digest.hexdigest()[:16]}


def dataset_identity(name: str, root: Path) -> dict[str, object]:
    """The identity of a named dataset (or ``folder:<path>``, or ``sample``) under ``root``."""
    if name == "sample":
        digest = hashlib.sha256()
        for key, path in sorted(sample_files().items()):
            stat = Path(path).stat()
            digest.update(f"{key}\0{stat.st_size}\n".encode())
        return {"dataset": name, "files": len(sample_files()),
                "sha256": digest.hexdigest()[:16]}
    if name.startswith("folder:"):
        folder = Path(name.partition(":")[2])
    else:
        folder = root / dataset_spec(name).folder
    return {"dataset": name, **folder_identity(str(folder.resolve()))}


def step_key(step: Step, root: Path, upstream: dict[str, str]) -> tuple[str, dict]:
    """The key of ``step`` and what it was made of (recorded in ``experiments.json``).

    Parameters
    ----------
    step : Step
    root : Path
        The data root.
    upstream : dict
        The keys of the steps already resolved, by name.

    Returns
    -------
    (str, dict)
        A 16-hex key and its inputs.
    """
    inputs = {"script": step.script, "argv": list(step.argv),
              "datasets": [dataset_identity(d, root) for d in step.datasets],
              "after": {name: upstream.get(name) for name in step.after}}
    text = json.dumps(inputs, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16], inputs
