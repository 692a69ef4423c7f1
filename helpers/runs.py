"""One output mechanism for every script that writes results.

A script declares its output flags with :func:`add_output_arguments` (a result folder:
``--name``, ``--output``, ``--overwrite``, optionally ``--resume``, ``--log-level``) or
:func:`add_output_file_arguments` (one result file: ``--output``, ``--overwrite``,
``--log-level``), then writes inside :func:`experiment_run` or :func:`result_file`. Both do, for
every script alike:

- names and paths checked when the flags are parsed (one plain ``--name``; an ``--output`` that
  is not a file nor under one; a result file of the right kind);
- the run's inputs found in its own flags (:func:`path_inputs`: paths, ``folder:<path>``,
  ``prefix:path`` and store specs under the given roots), so that ``--overwrite`` never
  deletes an input, whatever flag named it;
- nothing replaced but what the same script made (its ``experiment.json`` and the files its
  run listed, or the ``"experiment"`` record inside a result file), and an earlier result
  kept aside until the new run succeeds;
- the lock (one run writes a folder or a file at a time);
- ``experiment.json`` (configuration, versions, commit, host, times, an error when the run
  failed);
- with `helpers.cli.script_main`, one ``error:`` line for a full disk, a read-only folder or
  a refused path.

``tests/test_every_script.py`` enumerates ``scripts/`` and checks each script against these
rules, so a script added tomorrow is covered without anyone remembering.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpers.experiment import experiment_record, now_iso, write_experiment_json
from helpers.io import read_json, write_json
from helpers.logs import get_logger
from helpers.outputs import (
    FolderLock,
    OutputError,
    check_name,
    check_output_dir,
    check_output_file,
    first_existing,
    made_by,
    output_dir,
    record_outputs,
)
from helpers.paths import results_root

logger = get_logger(__name__)

#: Flags of the output mechanism itself: never taken for inputs.
OUTPUT_KEYS = frozenset({"name", "output", "overwrite", "resume", "log_level"})


# --- flag types: refused when parsed, before any work ------------------------------------------


def name_type(text: str) -> str:
    """``--name``: one plain path component (`helpers.check_name`)."""
    try:
        return check_name(text, "--name")
    except OutputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _path_problem(text: str) -> str | None:
    if not text or text != text.strip():
        return "it is empty or starts or ends with a space"
    if "\x00" in text or any(c in text for c in "\n\r"):
        return "it holds a NUL or line-break character"
    return None


def _under_a_file(path: Path) -> str | None:
    """Why ``path`` cannot be created: the first existing parent is a file (else None)."""
    parent = first_existing(path.parent)
    return None if parent.is_dir() else f"it lies under {parent}, which is a file"


def folder_type(text: str) -> str:
    """``--output`` of a result folder (or a folder a script writes into, such as
    ``--features-dir``): not an existing file, not under a file. A symbolic link to a folder
    is accepted here; `helpers.output_dir` never replaces one."""
    why = _path_problem(text)
    if why is None:
        path = Path(os.path.abspath(text))
        why = "it is a file, not a folder" if path.exists() and not path.is_dir() else (
            _under_a_file(path))
    if why:
        raise argparse.ArgumentTypeError(f"output folder {text!r} is refused: {why}")
    return text


def file_type(suffix: str):
    """``--output`` of a result file: a ``suffix`` file name (``.json``, ``.csv``) that is not
    a folder nor under a file. The type's ``suffix`` is read by the tests."""

    def check(text: str) -> str:
        why = _path_problem(text)
        if why is None:
            path = Path(os.path.abspath(text))
            if path.suffix.lower() != suffix:
                why = f"a result file must end with {suffix}"
            else:
                why = "it is a folder" if path.is_dir() else _under_a_file(path)
        if why:
            raise argparse.ArgumentTypeError(f"output file {text!r} is refused: {why}")
        return text

    check.__name__ = f"{suffix.lstrip('.')} file"
    check.suffix = suffix
    return check


# --- flags --------------------------------------------------------------------------------------


def add_output_arguments(
    parser: argparse.ArgumentParser,
    name_help: str = "Results/<name>",
    default_name: str | None = None,
    resume: bool = False,
    resume_help: str = "continue an interrupted run of the same settings",
    log_level: str = "INFO",
) -> argparse._ArgumentGroup:
    """Add the result-folder flags: ``--name``, ``--output``, ``--overwrite``, ``--resume``
    (when the script can resume) and ``--log-level``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
    name_help : str
        What ``--name`` means for this script (its default when derived from other flags).
    default_name : str, optional
        ``--name``'s default when it is fixed.
    resume : bool
        The script continues an interrupted run with ``--resume``.

    Returns
    -------
    argparse._ArgumentGroup
        The ``output`` group (a script may add its own output flags to it).
    """
    group = parser.add_argument_group("output")
    group.add_argument("--name", type=name_type, default=default_name,
                       help=f"{name_help} (one plain name)")
    group.add_argument("--output", type=folder_type, default=None,
                       help="result folder instead of Results/<name>")
    group.add_argument("--overwrite", action="store_true",
                       help="replace an earlier result of this script in that folder (never "
                            "anything else, nor an input)")
    if resume:
        group.add_argument("--resume", action="store_true", help=resume_help)
    add_log_level_argument(group, log_level)
    return group


def add_output_file_arguments(
    parser: argparse.ArgumentParser,
    default: str | None,
    suffix: str = ".json",
    help: str | None = None,  # noqa: A002 - argparse's word
    log_level: str = "INFO",
) -> argparse._ArgumentGroup:
    """Add ``--output`` (one ``suffix`` file), ``--overwrite`` and ``--log-level``.

    ``default`` names the file under ``Results/`` (``benchmarks/search.json``) for the help
    text; the script passes the same to `result_file`, which resolves it when ``--output`` is
    not given.
    """
    group = parser.add_argument_group("output")
    group.add_argument("--output", type=file_type(suffix), default=None,
                       help=help or f"result file ({suffix}; default: Results/{default})")
    group.add_argument("--overwrite", action="store_true",
                       help="replace an earlier result file of this script (never another "
                            "file, nor an input)")
    add_log_level_argument(group, log_level)
    return group


#: The levels ``--log-level`` takes.
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def add_log_level_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup,
                           default: str = "INFO") -> None:
    """Add ``--log-level`` (case-insensitive), for every script the same."""
    parser.add_argument("--log-level", default=default, choices=LOG_LEVELS, type=str.upper,
                        help=f"logging level (default: {default})")


def add_store_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup,
                        overwrite_help: str = "replace a finished store of the same name",
                        log_level: str = "INFO") -> None:
    """Add ``--overwrite`` and ``--log-level`` for a script that writes feature stores (or
    other files of a folder it owns by name, such as reducers): the store module keeps them
    safe (written aside, renamed whole, locked), so there is no result folder to declare."""
    parser.add_argument("--overwrite", action="store_true", help=overwrite_help)
    add_log_level_argument(parser, log_level)


# --- inputs -------------------------------------------------------------------------------------


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str | os.PathLike):
        yield os.fspath(value)
    elif isinstance(value, list | tuple | set):
        for item in value:
            yield from _strings(item)


def path_inputs(args: argparse.Namespace | dict[str, Any],
                roots: Iterable[str | os.PathLike | None] = ()) -> list[Path]:
    """Every existing file or folder the run's flags name: its inputs.

    A flag value is taken as a path as it is, after a ``prefix:`` (``folder:photos``,
    ``sample:dhash``), and under each root (``roots`` and every ``*_dir`` / ``*_root`` flag:
    a store spec ``dataset/method`` is ``<root>/dataset/method.npy``). Output flags
    (`OUTPUT_KEYS`) are not inputs. What does not exist is no input (a dataset name is found
    by the caller: ``inputs=[dataset.root]``).

    Parameters
    ----------
    args : argparse.Namespace or dict
    roots : iterable of paths

    Returns
    -------
    list of Path
        Absolute, in flag order, each once.
    """
    values = dict(vars(args) if isinstance(args, argparse.Namespace) else args)
    folders = [Path(r) for r in roots if r is not None]
    folders += [Path(text) for key, value in values.items()
                if key.endswith(("_dir", "_root")) and key not in OUTPUT_KEYS
                for text in _strings(value)]
    found: dict[Path, None] = {}
    for key, value in values.items():
        if key in OUTPUT_KEYS:
            continue
        for text in _strings(value):
            if not text or "\x00" in text:
                continue
            candidates = [text]
            _, colon, tail = text.partition(":")
            if colon and tail:
                candidates.append(tail)
            for candidate in list(candidates):
                if not Path(candidate).is_absolute():
                    candidates += [os.fspath(root / candidate) for root in folders]
            for candidate in candidates:
                for path in (Path(candidate), Path(candidate + ".npy")):
                    try:
                        if path.exists() or path.is_symlink():
                            found[Path(os.path.abspath(path))] = None
                    except (OSError, ValueError):
                        continue
    return list(found)


# --- a result folder ----------------------------------------------------------------------------


@dataclass
class Run:
    """A result folder held by one run: where to write, and its ``experiment.json``.

    Attributes
    ----------
    folder : Path
        The result folder (absolute, locked while the run lasts).
    script : str
        Who makes it.
    config : dict
        The resolved configuration written into ``experiment.json``.
    started_at : str
    since : float, optional
        When a resumed run started (what `helpers.outputs.record_outputs` lists as its own).
    """

    folder: Path
    script: str
    config: dict[str, Any]
    started_at: str
    since: float | None = None
    recorded: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def record(self, config: Any = None, **extra: Any) -> Path:
        """Write ``experiment.json`` as the run starts (or update it on the way).

        Parameters
        ----------
        config : dict, dataclass or argparse.Namespace, optional
            Replaces the configuration recorded (default: the flags).
        **extra
            More fields (counts, notes...), kept for later writes of the same run.
        """
        if config is not None:
            self.config = config
        return self._write(None, extra)

    def finish(self, **extra: Any) -> Path:
        """Write ``experiment.json`` with the end time: the result is complete."""
        return self._write(now_iso(), extra)

    def _write(self, ended_at: str | None, extra: dict[str, Any]) -> Path:
        self.extra.update(extra)
        self.recorded = True
        path = write_experiment_json(self.folder, self.config, started_at=self.started_at,
                                     ended_at=ended_at, extra=self.extra or None,
                                     script=self.script)
        record_outputs(self.folder, self.since)
        return path


def _flags(args: argparse.Namespace) -> tuple[str, ...]:
    return ("--resume", "--overwrite") if hasattr(args, "resume") else ("--overwrite",)


def result_folder(args: argparse.Namespace, script: str, name: str | None = None) -> Path:
    """The result folder `experiment_run` would use (``--output``, else
    ``Results/<--name>``, else ``Results/<name>``), named, not made: what a dry run shows.

    Raises
    ------
    OutputError
        Neither a name nor a folder, or a name that is not one plain name.
    """
    chosen = getattr(args, "name", None) or name
    output = getattr(args, "output", None)
    if output:
        return Path(output)
    if chosen is None:
        raise OutputError(f"{script}: no --name nor --output given")
    return results_root() / check_name(chosen, "--name")


@contextlib.contextmanager
def experiment_run(
    args: argparse.Namespace,
    script: str,
    name: str | None = None,
    inputs: Sequence[str | os.PathLike | None] = (),
    roots: Sequence[str | os.PathLike | None] = (),
    config: Any = None,
) -> Iterator[Run]:
    """The result folder of a script's run, checked, locked and recorded.

    The folder is ``--output``, else ``Results/<--name>``, else ``Results/<name>``. It is
    created, or reused with ``--resume``, or replaced with ``--overwrite`` only when it holds
    nothing but a previous result of ``script`` and neither is, holds nor lies inside an input
    (`helpers.output_dir`: the earlier result waits aside until the block ends without an
    error). When the block raises after `Run.record`, ``experiment.json`` keeps the error.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed flags (with those of `add_output_arguments`).
    script : str
        The script's name, recorded and compared before replacing anything.
    name : str, optional
        The default name when ``--name`` is not given (derived from other flags); checked
        as a plain name.
    inputs : sequence of paths
        Inputs the flags do not name as paths (a dataset's folder).
    roots : sequence of paths
        Where store specs in the flags live (the features folder).
    config : optional
        The configuration to record (default: the flags).

    Yields
    ------
    Run

    Raises
    ------
    OutputError
        A refused name or folder, or a folder in use.
    """
    started = now_iso()
    target = result_folder(args, script, name)
    protected = [Path(os.path.abspath(p)) for p in inputs if p is not None]
    protected += path_inputs(args, roots)
    resume = bool(getattr(args, "resume", False))
    with output_dir(target, script, overwrite=bool(getattr(args, "overwrite", False)),
                    resume=resume, inputs=protected, flags=_flags(args)) as folder:
        # a resumed folder holds earlier files: only those listed or written from now on are
        # the script's; any other folder started empty
        since = time.time() if resume else None
        run = Run(folder, script, config if config is not None else dict(vars(args)), started,
                  since)
        try:
            yield run
        except BaseException as exc:
            if run.recorded:
                with contextlib.suppress(Exception):  # the first error is the one to show
                    run.finish(error=f"{type(exc).__name__}: {exc}")
            raise
        finally:  # Ctrl-C, SIGTERM, an error: what was written is the script's, listed
            with contextlib.suppress(OSError):
                record_outputs(folder, since)


# --- one result file ----------------------------------------------------------------------------


def _file_made_by(path: Path, script: str) -> str | None:
    """Why ``path`` is not a result file of ``script`` (None when it is)."""
    record_file = path if path.suffix.lower() == ".json" else path.with_suffix(
        ".experiment.json")
    try:
        maker = made_by(read_json(record_file))
    except (OSError, ValueError) as exc:
        return f"it is not a result of {script} ({record_file} cannot be read: {exc})"
    if maker != script:
        return f"it was made by {maker!r}, not by {script}" if maker else (
            f"it is not a result of {script}")
    return None


@dataclass
class ResultFile:
    """One result file held by one run: :meth:`write` replaces it atomically, with the
    run's ``experiment`` record inside (JSON) or beside it (``<stem>.experiment.json``)."""

    path: Path
    script: str
    config: dict[str, Any]
    started_at: str

    def write(self, result: Any, writer=None) -> Path:
        """Write the result (a dict for JSON; for other kinds ``writer(path)`` writes it).

        May be called after each finished part: the file always holds a complete JSON."""
        record = experiment_record(self.config, started_at=self.started_at,
                                   ended_at=now_iso(), script=self.script)
        if self.path.suffix.lower() == ".json":
            return write_json(self.path, {**result, "experiment": record})
        writer(self.path)
        write_json(self.path.with_suffix(".experiment.json"), record)
        return self.path


@contextlib.contextmanager
def result_file(
    args: argparse.Namespace,
    script: str,
    default: str | None = None,
    suffix: str = ".json",
    inputs: Sequence[str | os.PathLike | None] = (),
    roots: Sequence[str | os.PathLike | None] = (),
    config: Any = None,
) -> Iterator[ResultFile]:
    """The result file of a script's run (a benchmark's JSON, a manifest), checked and locked.

    ``--output`` (else ``Results/<default>``) must have the script's suffix; an existing file is
    replaced only with ``--overwrite`` and only when the same script made it; an input (any
    path the flags name) is never the output.

    Raises
    ------
    OutputError
    """
    started = now_iso()
    output = getattr(args, "output", None) or (
        results_root() / default if default is not None else None)
    if output is None:
        raise OutputError(f"{script}: no --output given")
    overwrite = bool(getattr(args, "overwrite", False))
    protected = [*(p for p in inputs if p is not None), *path_inputs(args, roots)]
    path = check_output_file(output, suffix, overwrite, protected)
    if path.is_symlink():
        raise OutputError(f"refusing to write {path}: it is a symbolic link")
    if path.exists():
        why = _file_made_by(path, script)
        if why:
            raise OutputError(f"refusing to overwrite {path}: {why}")
    check_output_dir(path.parent)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FolderLock(path.parent, f".{path.name}.lock"):
        yield ResultFile(path, script, config if config is not None else dict(vars(args)),
                         started)
