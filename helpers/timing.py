"""Wall-clock timing."""

from __future__ import annotations

import time
from types import TracebackType


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
