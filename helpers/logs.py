"""Logging setup: the library logs, scripts decide where it goes.

Quiet by default: below ``DEBUG``, `setup_logging` passes the library's and the scripts' own
records at the chosen level but only warnings and errors of the dependencies (Faiss's loader
says at INFO, on every run, that it "Could not load library with AVX512 support", which reads
as a failure and is not one). ``--log-level DEBUG`` shows everything.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

#: The library's packages: their records pass at the level asked for.
LIBRARY_PACKAGES = frozenset({"helpers", "data_retrieval", "generator", "SimCLRv2", "extractor",
                              "hashing", "fast_search", "clustering", "finetuning"})
#: Dependencies known to log at INFO what a user need not read (the Faiss loader's CPU
#: feature probe, matplotlib's font cache, fontTools' PDF subsetting, NumExpr's thread
#: count...): quiet below DEBUG whatever the rule for installed packages says.
NOISY_LOGGERS = ("faiss", "matplotlib", "fontTools", "PIL", "numexpr", "urllib3", "filelock",
                 "h5py", "timm", "torch", "huggingface_hub", "httpx", "asyncio")
_INSTALLED = ("site-packages", "dist-packages")


class DependencyFilter(logging.Filter):
    """Pass every record of the library, the scripts and the caller's own code; of installed
    dependencies (code under ``site-packages``, or a logger of `NOISY_LOGGERS`), only
    warnings and errors."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Whether ``record`` is shown."""
        if record.levelno >= logging.WARNING:
            return True
        root = record.name.split(".", 1)[0]
        if root in LIBRARY_PACKAGES:
            return True
        if root in NOISY_LOGGERS:
            return False
        return not any(part in _INSTALLED for part in Path(record.pathname or "").parts)


def get_logger(name: str) -> logging.Logger:
    """The library's logger for a module (``get_logger(__name__)``)."""
    return logging.getLogger(name)


def setup_logging(level: int | str = "INFO") -> None:
    """Send log records to stderr with timestamps; for scripts, not for library code.

    Parameters
    ----------
    level : int or str
        The level of the library's and the scripts' records. Dependencies' records below
        ``WARNING`` are shown only at ``DEBUG`` (`DependencyFilter`).
    """
    logging.basicConfig(level=level, format=_FORMAT, datefmt="%H:%M:%S", force=True,
                        stream=sys.stderr)
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        for handler in logging.getLogger().handlers:
            handler.addFilter(DependencyFilter())
