"""What every script's entry point shares: one-line errors, a clean exit on Ctrl-C, printing
that never fails on a file name that is not valid UTF-8, and flag types that declare the values
they accept."""

from __future__ import annotations

import argparse
import errno
import functools
import logging
import math
import os
import signal
import stat
import sys
from collections.abc import Callable

#: Exit status of a run refused or failed for a reason the message gives.
EXIT_ERROR = 2
#: Exit status after Ctrl-C (128 + SIGINT), as shells report it.
EXIT_INTERRUPTED = 130


def fail(message: object, code: int = EXIT_ERROR) -> int:
    """Print ``error: <message>`` on one line to stderr and return the exit status."""
    text = " ".join(str(message).split("\n"))
    if len(text) > 2000:  # a message quoting a huge value stays readable
        text = text[:2000] + f"... ({len(text):,} characters)"
    print(f"error: {text}", file=sys.stderr)
    return code


#: Errors of the machine, not of the code: one line, no traceback.
_SYSTEM_ERRNOS = {errno.ENOSPC: "no space left on the device",
                  errno.EDQUOT: "disk quota exceeded",
                  errno.EROFS: "the file system is read-only",
                  errno.EACCES: "permission denied",
                  errno.EPERM: "operation not permitted",
                  errno.ENAMETOOLONG: "file name too long",
                  errno.EFBIG: "file too large",
                  errno.ENOTDIR: "not a folder",
                  errno.EISDIR: "is a folder",
                  errno.ENOENT: "no such file or folder",
                  errno.EEXIST: "already exists"}


def error_message(exc: BaseException) -> str | None:
    """The one line a script prints for ``exc``, or None when it is a defect (a traceback
    then helps more than a line).

    User errors are `ValueError` (which `helpers.OutputError` is), a missing or refused file,
    the machine's limits (a full disk, a read-only folder, no memory)."""
    if isinstance(exc, OSError) and exc.errno in _SYSTEM_ERRNOS:
        where = exc.filename if exc.filename is not None else ""
        what = exc.strerror or _SYSTEM_ERRNOS[exc.errno]
        hint = ("; free some space and run again (finished files are kept)"
                if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "")
        text = str(exc) if not exc.filename and not exc.strerror else (
            f"{what}: {where}" if where else what)
        return text + hint
    if isinstance(exc, MemoryError):
        return (f"out of memory{': ' + str(exc) if str(exc) else ''}; use a smaller batch or "
                "subset, or a machine with more memory")
    if isinstance(exc, ValueError | OSError):
        return str(exc) or type(exc).__name__
    return None


def _special_files(argv: list[str]) -> tuple[str, str] | None:
    """The first command-line value (as it is, after ``prefix:`` or ``key=``) that names an
    existing FIFO, socket or device, with what it is; None when there is none."""
    kinds = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))
    for token in argv:
        if not isinstance(token, str) or "\x00" in token:
            continue
        for text in {token, token.partition(":")[2], token.partition("=")[2]} - {""}:
            try:
                mode = os.stat(text).st_mode
            except (OSError, ValueError):
                continue
            for test, what in kinds:
                if test(mode):
                    return text, what
    return None


def script_main(main: Callable[..., int]) -> Callable[..., int]:
    """Decorate a script's ``main(argv)``: a user error (see `error_message`) anywhere in the
    run returns `EXIT_ERROR` after one ``error: ...`` line instead of a traceback; other
    exceptions (defects) propagate. ``--log-level DEBUG`` logs the traceback of user errors
    too."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs) -> int:
        argv = args[0] if args else kwargs.get("argv")
        special = _special_files(sys.argv[1:] if argv is None else argv)
        if special:
            return fail(f"{special[0]} is {special[1]}, not a regular file or folder: refusing "
                        "to read it (a FIFO would wait forever)")
        try:
            return main(*args, **kwargs)
        except (ValueError, OSError, MemoryError) as exc:
            message = error_message(exc)
            if message is None:
                raise
            logging.getLogger("scripts").debug("error", exc_info=True)
            return fail(message)

    wrapper.__script_main__ = True
    return wrapper


def _terminated(signum: int, frame: object) -> None:
    raise KeyboardInterrupt("terminated")


def run_script(main: Callable[[], int], resume_hint: str | None = None) -> None:
    """Run a script's ``main`` and exit with its status.

    Ctrl-C ends the run with a one-line message instead of a traceback (what was finished
    is on disk: every file is written atomically). Output streams replace characters they
    cannot encode (file names that are not UTF-8) instead of raising.

    Parameters
    ----------
    main : callable
        Returns the exit status.
    resume_hint : str, optional
        Added to the interruption message, e.g. ``"run it again with --resume"``.
    """
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")
    # SIGTERM (a scheduler, kill, torchrun stopping its workers) unwinds like Ctrl-C, so that
    # finally blocks run: locks released, what was written listed as the run's
    signal.signal(signal.SIGTERM, _terminated)
    try:
        code = main()
    except KeyboardInterrupt:
        hint = f"; {resume_hint}" if resume_hint else ""
        print(f"interrupted: finished files are kept{hint}", file=sys.stderr)
        code = EXIT_INTERRUPTED
    sys.exit(code)


# --- argument types that say what they accept ---------------------------------------------------


class Number:
    """An argparse ``type``: an int or a float within a declared range, never NaN or infinite.

    The range is part of the flag, where the enumerating tests (``tests/test_every_script.py``)
    read it: every numeric flag of every script declares one, so ``-1``, ``0``, ``nan`` or
    ``1e30`` is refused with one line naming the flag before any work starts.

    Parameters
    ----------
    kind : type
        ``int`` or ``float``.
    low, high : number, optional
        Inclusive bounds (``None``: unbounded on that side; a finite ``high`` is expected for
        sizes, so a huge value is refused rather than tried).
    low_open : bool
        ``low`` itself is refused (a positive rate: ``real(0, 1, low_open=True)``).
    """

    def __init__(self, kind: type, low: float | None = None, high: float | None = None,
                 low_open: bool = False):
        self.kind, self.low, self.high, self.low_open = kind, low, high, low_open
        self.__name__ = kind.__name__  # argparse names the type in its messages

    def describe(self) -> str:
        """The accepted values in words: ``an integer in [1, 65536]``."""
        what = "an integer" if self.kind is int else "a number"
        if self.low is None and self.high is None:
            return what
        if self.high is None:
            return f"{what} {'>' if self.low_open else '>='} {self.low:g}"
        if self.low is None:
            return f"{what} <= {self.high:g}"
        return f"{what} in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}]"

    def __call__(self, text: str) -> int | float:
        try:
            value = self.kind(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"{text!r} is not {self.describe()}") from None
        if self.kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not {self.describe()}")
        below = self.low is not None and (value < self.low or (self.low_open
                                                               and value == self.low))
        if below or (self.high is not None and value > self.high):
            raise argparse.ArgumentTypeError(f"{text!r} is not {self.describe()}")
        return value

    def __repr__(self) -> str:
        return f"Number({self.describe()})"


def integer(low: int | None = None, high: int | None = None) -> Number:
    """An integer flag's type: ``type=integer(1, 4096)``."""
    return Number(int, low, high)


def real(low: float | None = None, high: float | None = None, low_open: bool = False) -> Number:
    """A float flag's type: ``type=real(0, 1)``, finite, ``low`` excluded with ``low_open``."""
    return Number(float, low, high, low_open)


#: Counts of images, rows or steps: up to a billion (a larger number is a typo, not a plan).
MAX_COUNT = 10**9
#: Seeds: what NumPy's generators take.
MAX_SEED = 2**63 - 1
