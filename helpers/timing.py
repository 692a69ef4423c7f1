"""Wall-clock timing: a `Timer` for one span, `time_repeated` for speed benchmarks."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any


class Timer:
    """Context manager measuring wall-clock seconds with :func:`time.perf_counter`.

    Examples
    --------
    >>> with Timer() as timer:
    ...     pass
    >>> timer.elapsed >= 0
    True
    """

    def __init__(self) -> None:
        self.start: float | None = None
        self.end: float | None = None

    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        self.end = None
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.end = time.perf_counter()

    @property
    def elapsed(self) -> float:
        """Seconds since entering (up to exiting, once exited)."""
        if self.start is None:
            return 0.0
        end = self.end if self.end is not None else time.perf_counter()
        return end - self.start


@dataclass
class Timing:
    """Seconds of repeated runs of one function, and what its last run returned."""

    runs: list[float] = field(default_factory=list)
    result: Any = None

    @property
    def best(self) -> float:
        """The fastest run: the least disturbed by other load."""
        return min(self.runs)

    @property
    def median(self) -> float:
        return float(statistics.median(self.runs))

    def as_dict(self) -> dict[str, Any]:
        return {"best": self.best, "median": self.median, "runs": list(self.runs)}


def time_repeated(
    funcs: Callable[[], Any] | dict[str, Callable[[], Any]],
    repeats: int = 3,
    warmup: int = 1,
    sync: Callable[[], None] | None = None,
) -> Timing | dict[str, Timing]:
    """Time functions the way every speed benchmark here does: warm-up runs first (caches,
    allocations, compilation), then ``repeats`` timed runs; several functions are
    interleaved run by run, so that a change of machine load hits them alike.

    Parameters
    ----------
    funcs : callable or dict of name -> callable
    repeats, warmup : int
    sync : callable, optional
        Called before reading the clock (``torch.cuda.synchronize`` for GPU work).

    Returns
    -------
    Timing, or dict of name -> Timing
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    named = funcs if isinstance(funcs, dict) else {"": funcs}
    out = {name: Timing() for name in named}
    for _ in range(warmup):
        for func in named.values():
            func()
    for _ in range(repeats):
        for name, func in named.items():
            if sync is not None:
                sync()
            tic = time.perf_counter()
            out[name].result = func()
            if sync is not None:
                sync()
            out[name].runs.append(time.perf_counter() - tic)
    return out if isinstance(funcs, dict) else out[""]
