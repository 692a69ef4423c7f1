"""``key=value`` command-line parameters."""

from __future__ import annotations

import ast
from collections.abc import Iterable
from typing import Any


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
        An item without ``=``.
    """
    params: dict[str, Any] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ValueError(f"{what} {item!r} is not key=value")
        try:
            params[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            params[key] = value
    return params
