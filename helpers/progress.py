"""Progress bars."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress(
    iterable: Iterable[T] | None = None,
    desc: str | None = None,
    total: int | None = None,
    disable: bool | None = None,
    unit: str = "it",
) -> tqdm:
    """A tqdm progress bar on stderr.

    Parameters
    ----------
    iterable : iterable, optional
        What to iterate; omit it to update the bar by hand.
    desc : str, optional
        Label.
    total : int, optional
        Expected number of items (taken from ``len(iterable)`` when possible).
    disable : bool or None
        ``None`` hides the bar when stderr is not a terminal (CI logs stay readable).
    unit : str
        Unit name shown in the rate.
    """
    return tqdm(iterable, desc=desc, total=total, disable=disable, unit=unit, dynamic_ncols=True)
