"""Logging setup: the library logs, scripts decide where it goes."""

from __future__ import annotations

import logging

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def get_logger(name: str) -> logging.Logger:
    """The library's logger for a module (``get_logger(__name__)``)."""
    return logging.getLogger(name)


def setup_logging(level: int | str = "INFO") -> None:
    """Send log records to stderr with timestamps; for scripts, not for library code."""
    logging.basicConfig(level=level, format=_FORMAT, datefmt="%H:%M:%S", force=True)
