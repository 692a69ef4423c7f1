"""What every script's entry point shares: one-line errors, a clean exit on Ctrl-C, and printing
that never fails on a file name that is not valid UTF-8."""

from __future__ import annotations

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
    try:
        code = main()
    except KeyboardInterrupt:
        hint = f"; {resume_hint}" if resume_hint else ""
        print(f"interrupted: finished files are kept{hint}", file=sys.stderr)
        code = EXIT_INTERRUPTED
    sys.exit(code)
