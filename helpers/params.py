"""``key=value`` command-line parameters."""

from __future__ import annotations

import ast
import difflib
import functools
import hashlib
import inspect
import math
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def weights_tag(path: str | os.PathLike) -> str:
    """A short, file-name-safe identity of a weights file: its name and the start of its
    SHA-256 (two files of one name differ). Hashed once per file version (cached on its path,
    size and modification time)."""
    path = Path(path).resolve()
    info = path.stat()
    return _weights_tag(str(path), info.st_size, info.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _weights_tag(file: str, size: int, mtime_ns: int) -> str:
    path = Path(file)
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    stem = re.sub(r"[^A-Za-z0-9.-]+", "-", path.name).strip("-.") or "weights"
    return f"{stem}-{digest.hexdigest()[:12]}"


def method_label(name: str, params: dict[str, Any] | None = None) -> str:
    """The identity of a method: its name, then every non-default parameter as ``key=value``
    in key order, joined by ``_`` (``phash_hash_size=16``,
    ``efficientnet_lite0_image_size=288``). A ``weights`` or ``reduce`` file is named by
    `weights_tag` (its name and the start of its SHA-256).

    One rule for hashes, models and their stores: two different methods never share a label,
    so never a feature store or a resume plan either.
    """
    parts = [name]
    for key, value in sorted((params or {}).items()):
        if key in ("weights", "reduce") and value is not None:
            value = weights_tag(value) if Path(value).is_file() else str(value)
        parts.append(f"{key}={value}")
    return "_".join(parts)


def check_param_type(owner: str, key: str, value: Any, default: Any) -> None:
    """A parameter must have its default's type (an int where an int is expected, a finite
    number where a float is), so that ``hash_size=abc`` or ``image_size=nan`` fail at once,
    named (``owner`` is e.g. ``"algorithm 'phash'"``). No check when the default is None.

    Raises
    ------
    ValueError
    """
    if default is None or default is inspect.Parameter.empty:
        return
    if isinstance(default, bool):
        ok, what = isinstance(value, bool), "True or False"
    elif isinstance(default, int):
        ok, what = isinstance(value, int) and not isinstance(value, bool), "an integer"
    elif isinstance(default, float):
        ok = (isinstance(value, int | float) and not isinstance(value, bool)
              and math.isfinite(value))
        what = "a finite number"
    elif isinstance(default, str):
        ok, what = isinstance(value, str), "a string"
    else:
        return
    if not ok:
        raise ValueError(f"{owner}: parameter {key!r} must be {what}, got {value!r}")


def unknown_name(kind: str, name: object, known: Iterable[str]) -> str:
    """The message of every registry for an unknown name: what was asked, what exists, and the
    closest match. ``ValueError(unknown_name("model", "resnet5", names))``."""
    known = sorted(known)
    lowered = {k.lower(): k for k in known}  # "PHash" is closest to "phash"
    close = [lowered[c] for c in
             difflib.get_close_matches(str(name).lower(), list(lowered), n=1, cutoff=0.5)]
    hint = f" (closest: {close[0]!r})" if close else ""
    return f"unknown {kind} {name!r}{hint}; known: {', '.join(known)}"


def parse_key_values(items: Iterable[str], what: str) -> dict[str, Any]:
    """``["k=3", "name=x"]`` -> ``{"k": 3, "name": "x"}``; values are Python literals when
    they parse as one, strings otherwise.

    Parameters
    ----------
    items : iterable of str
    what : str
        Named in the error, e.g. ``"algorithm parameter in 'phash:x'"``.

    Raises
    ------
    ValueError
        An item without ``=``, or a key given twice.
    """
    params: dict[str, Any] = {}
    for item in items:
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise ValueError(f"{what} {item!r} is not key=value")
        if key in params:
            raise ValueError(f"{what} {key!r} is given twice")
        try:
            params[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            params[key] = value
    return params


def parse_size(text: str | None, flag: str = "--max-memory") -> float | None:
    """``"500MB"``, ``"2GB"``, ``"1.5GiB"``, ``"1000000"`` -> bytes (``None`` stays ``None``).

    Raises
    ------
    ValueError
        Naming ``flag`` and the text.
    """
    if text is None:
        return None
    units = {"": 1, "B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12, "KIB": 2**10,
             "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
    number = text.strip().upper().rstrip()
    unit = number.lstrip("0123456789.")
    value = number[: len(number) - len(unit)]
    try:
        size = float(value) * units[unit.strip()]
    except (ValueError, KeyError):
        raise ValueError(f"{flag} {text!r}: expected a size such as 500MB or 2GB") \
            from None
    if not math.isfinite(size) or size <= 0:
        raise ValueError(f"{flag} must be positive, got {text!r}")
    return size
