"""Experiment records: ``experiment.json`` (configuration, versions, commit, host, times)."""

from __future__ import annotations

import dataclasses
import os
import platform
import socket
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from helpers.io import write_json
from helpers.paths import project_root

#: Distributions whose versions every experiment records (absent ones are recorded as None).
TRACKED_DISTRIBUTIONS = (
    "image-similarity-lab",
    "numpy",
    "torch",
    "torchvision",
    "faiss-cpu",
    "faiss-gpu",
    "pillow",
    "scipy",
    "scikit-image",
    "scikit-learn",
    "opencv-python-headless",
    "imagehash",
    "pandas",
)


def package_versions() -> dict[str, str | None]:
    """Versions of Python and of the tracked distributions (``None`` when not installed)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in TRACKED_DISTRIBUTIONS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_state(root: str | os.PathLike | None = None) -> dict[str, Any]:
    """Commit hash and whether the work tree has uncommitted changes (``None`` outside git)."""
    root = Path(root) if root is not None else project_root()

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=root, capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def now_iso() -> str:
    """Current UTC time as an ISO-8601 string (second precision)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def _plain(config: Any) -> Any:
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return dataclasses.asdict(config)
    if hasattr(config, "__dict__") and not isinstance(config, dict):  # argparse.Namespace
        return dict(vars(config))
    return config


def write_experiment_json(
    folder: str | os.PathLike,
    config: Any,
    started_at: str | None = None,
    ended_at: str | None = None,
    extra: dict[str, Any] | None = None,
    script: str | None = None,
) -> Path:
    """Write ``folder/experiment.json``: resolved configuration, versions, git state, host, times.

    Parameters
    ----------
    folder : str or PathLike
        Result folder.
    config : dict, dataclass or argparse.Namespace
        The resolved configuration (every flag with its final value).
    started_at, ended_at : str, optional
        ISO timestamps; ``started_at`` defaults to now.
    extra : dict, optional
        More fields (e.g. counts, bad inputs).
    script : str, optional
        Who made the folder (default: the running script's file name without ``.py``);
        `helpers.output_dir` overwrites or resumes only a folder of the same script.

    Returns
    -------
    Path
        The written file.
    """
    return write_json(Path(folder) / "experiment.json",
                      experiment_record(config, started_at, ended_at, extra, script))


def experiment_record(
    config: Any,
    started_at: str | None = None,
    ended_at: str | None = None,
    extra: dict[str, Any] | None = None,
    script: str | None = None,
) -> dict[str, Any]:
    """What `write_experiment_json` writes, as a dict: for results that are one file (a
    speed benchmark's JSON embeds it as ``"experiment"``)."""
    record = {
        "script": script or Path(sys.argv[0]).stem,
        "config": _plain(config),
        "versions": package_versions(),
        "git": git_state(),
        "host": {
            "hostname": socket.gethostname(),
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
        },
        "command": sys.argv,
        "started_at": started_at or now_iso(),
        "ended_at": ended_at,
    }
    if extra:
        record.update(extra)
    return record
