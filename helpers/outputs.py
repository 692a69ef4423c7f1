"""Output safety: plain names, paths that stay inside their folder, result folders that are
replaced only when they hold a previous result of the same script, and a lock per folder.

A result folder is the unit a script owns. These rules keep a mistyped flag from deleting
anything else:

- a name given on the command line (``--name``, ``--store-name``) is one plain path component;
- an id that becomes part of a file name stays inside its output folder (:func:`safe_child`);
- ``--overwrite`` replaces a folder only when its ``experiment.json`` says the same script made
  it and it holds nothing but what that run made (``.outputs.json`` lists it: a photo or a
  note added since is never deleted), and never the repository, a parent of it or of the home
  folder, a symbolic link, or a folder that is, holds or lies inside an input; the earlier
  result is set aside, not deleted, until the new run succeeds (a failed or killed run gives
  it back);
- one run at a time writes a folder: a lock file holds the owner's pid and host, and a lock
  whose process is gone on this host is taken over.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import threading
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from helpers.io import write_json
from helpers.logs import get_logger
from helpers.paths import project_root

logger = get_logger(__name__)

#: Lock file inside a result folder while a run writes it.
LOCK_NAME = ".lock"
#: What a run made in its result folder (relative paths), written with its experiment.json:
#: ``--overwrite`` replaces those files and nothing else.
OUTPUTS_NAME = ".outputs.json"
#: Where ``--overwrite`` keeps the earlier result until the new run succeeds.
PREVIOUS_PREFIX = ".previous-"
#: Temporary files of `helpers.io.atomic_path`: ``.<name>.<12 hex digits>.tmp``.
TMP_PATTERN = re.compile(r"^\..+\.[0-9a-f]{12}\.tmp$")
#: Longest file name component most file systems take, in bytes.
MAX_COMPONENT_BYTES = 255


class OutputError(ValueError):
    """An output path or name that the library refuses to use; the message says why."""


def _bad_character(text: str) -> str | None:
    for char in text:
        if char == "\x00":
            return "a NUL character"
        if unicodedata.category(char) in ("Cc", "Zl", "Zp"):
            return f"a control or line-break character ({char!r})"
    return None


def check_name(value: object, what: str = "name") -> str:
    """A plain file or folder name: one path component, visible, printable.

    Parameters
    ----------
    value : str
        The name, e.g. a ``--name`` flag.
    what : str
        How the error names it (``"--name"``).

    Returns
    -------
    str
        ``value``.

    Raises
    ------
    OutputError
        Empty, ``.``/``..`` or hidden, holding a separator, a control character, surrounding
        spaces, or longer than 255 bytes.
    """
    if not isinstance(value, str):
        raise OutputError(f"{what} must be a string, got {type(value).__name__}")
    reason = None
    if not value:
        reason = "it is empty"
    elif value.startswith("."):
        reason = "it starts with '.' ('.', '..' and hidden names are refused)"
    elif "/" in value or "\\" in value:
        reason = "it holds a path separator"
    elif value != value.strip():
        reason = "it starts or ends with a space"
    elif len(os.fsencode(value)) > MAX_COMPONENT_BYTES:
        reason = f"it is longer than {MAX_COMPONENT_BYTES} bytes"
    elif _bad_character(value):
        reason = f"it holds {_bad_character(value)}"
    elif not value.isprintable():
        reason = "it holds a character that cannot be printed"
    if reason:
        raise OutputError(f"{what} {value!r} is not a plain name: {reason}; "
                          "use letters, digits, '-', '_' and '.' in one path component")
    return value


def check_relative_id(value: object, what: str = "image_id") -> str:
    """An id that may become part of a file path: relative, ``/``-separated, no ``..``.

    ``train/100007`` is fine (a sub-folder of the output); ``../x``, ``/etc/x``, ``a//b``,
    ``a\\b`` and ids with control characters are refused.

    Raises
    ------
    OutputError
    """
    if not isinstance(value, str) or not value:
        raise OutputError(f"{what} {value!r} must be a non-empty string")
    bad = _bad_character(value)
    reason = None
    if bad:
        reason = f"it holds {bad}"
    elif value.startswith("/"):
        reason = "it is an absolute path"
    elif "\\" in value:
        reason = "it holds a backslash"
    else:
        parts = value.split("/")
        if any(p in ("", ".", "..") for p in parts):
            reason = "it has an empty, '.' or '..' path component"
        elif any(len(os.fsencode(p)) > MAX_COMPONENT_BYTES - 64 for p in parts):
            reason = f"a path component is longer than {MAX_COMPONENT_BYTES - 64} bytes"
    if reason:
        raise OutputError(f"{what} {value!r} cannot name an output file: {reason}")
    return value


def file_name(text: str, limit: int = 150) -> str:
    """A label (an algorithm with its parameters, a weights path...) made safe as one file name
    component: characters other than letters, digits and ``._=+-`` become ``_``, no leading
    dot, at most ``limit`` characters (longer ones end with a hash of the whole)."""
    name = re.sub(r"[^A-Za-z0-9._=+-]+", "_", text).lstrip(".") or "_"
    if len(name) > limit:
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:10]
        name = f"{name[:limit - 11]}-{digest}"
    return name


def is_within(path: str | os.PathLike, folder: str | os.PathLike) -> bool:
    """Whether ``path`` is ``folder`` or lies inside it, symbolic links resolved."""
    real, base = Path(path).resolve(), Path(folder).resolve()
    return real == base or base in real.parents


def safe_child(folder: str | os.PathLike, relative: str) -> Path:
    """``folder / relative``, refusing any result that would lie outside ``folder``.

    Raises
    ------
    OutputError
        ``relative`` is absolute, climbs out with ``..``, or goes through a symbolic link
        that leads out of ``folder``.
    """
    folder = Path(folder)
    target = folder / relative
    if Path(relative).is_absolute() or not is_within(target, folder) or target == folder:
        raise OutputError(f"{relative!r} would be written outside the output folder {folder}")
    return target


def _protected(real: Path) -> str | None:
    """Why a folder must never be deleted as a whole, or None."""
    repo = project_root().resolve()
    if real == repo or real in repo.parents:
        return "it is the repository or a parent of it"
    home = Path.home().resolve()
    if real == home or real in home.parents:
        return "it is the home folder or a parent of it"
    cwd = Path.cwd().resolve()
    if real == cwd or real in cwd.parents:
        return "it is the working directory or a parent of it"
    return None


def _input_overlap(real: Path, inputs: Iterable[str | os.PathLike | None]) -> str | None:
    for item in inputs:
        if item is None:
            continue
        source = Path(item).resolve()
        if real == source:
            return f"it is the input {item}"
        if real in source.parents:
            return f"it holds the input {item}"
        if source in real.parents:
            return f"it lies inside the input {item}"
    return None


def first_existing(path: Path) -> Path:
    """The deepest of ``path`` and its parents that exists (``path`` is absolute)."""
    return next(p for p in (path, *path.parents) if p.exists() or p.is_symlink())


#: Scripts renamed, by their former name: a result made under the old name is the new
#: script's (``--overwrite`` replaces it).
RENAMED_SCRIPTS = {"hashing_benchmark": "evaluate_copy_detection"}


def made_by(record: Any) -> str | None:
    """The script an experiment record names (``experiment.json``, or the ``"experiment"``
    entry of a result file), by its current name; None when it names none."""
    if isinstance(record, dict) and isinstance(record.get("experiment"), dict):
        record = record["experiment"]
    if not isinstance(record, dict):
        return None
    script = record.get("script")
    if script is None and record.get("command"):
        script = Path(str(record["command"][0])).stem  # records from before "script"
    return RENAMED_SCRIPTS.get(script, script)


def _made_by(folder: Path, script: str) -> str | None:
    """Why ``folder`` is not a previous result of ``script`` (None when it is)."""
    record_file = folder / "experiment.json"
    if not record_file.is_file():
        return "it holds no experiment.json, so it is not a result of this script"
    try:
        record = json.loads(record_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return f"its experiment.json cannot be read ({exc})"
    if made_by(record) != script:
        return (f"its experiment.json says it was made by {made_by(record)!r}, not "
                f"{script!r}")
    return None


def check_output_dir(
    path: str | os.PathLike,
    overwrite: bool = False,
    inputs: Sequence[str | os.PathLike | None] = (),
) -> Path:
    """The checks that need no lock: where ``path`` is and what it may replace.

    Raises
    ------
    OutputError
        The path lies under a file, or is a file; with ``overwrite``, the folder is
        protected (repository, home, working directory, a symbolic link, an input).
    """
    path = Path(os.path.abspath(os.fspath(path)))
    existing = first_existing(path)
    if existing != path and not existing.is_dir():
        raise OutputError(f"output {path} lies under {existing}, which is a file, not a folder")
    if path.exists() and not path.is_dir():
        raise OutputError(f"output {path} exists and is a file, not a folder")
    if existing.is_dir() and not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"output {path}: {existing} is not writable")
    if overwrite and path.exists():
        if path.is_symlink():
            raise OutputError(f"refusing to overwrite {path}: it is a symbolic link "
                              f"(to {path.resolve()}); remove the link or choose another output")
        real = path.resolve()
        why = _protected(real) or _input_overlap(real, inputs)
        if why:
            raise OutputError(f"refusing to overwrite {path}: {why}")
    return path


def check_output_file(
    path: str | os.PathLike,
    suffix: str,
    overwrite: bool = False,
    inputs: Iterable[str | os.PathLike | None] = (),
) -> Path:
    """Where a script that writes one file (a manifest, a benchmark's JSON) may write it.

    Parameters
    ----------
    path : str or PathLike
    suffix : str
        The extension the file must have (``".csv"``, ``".json"``): an image or another
        kind of file is never replaced by mistake.
    overwrite : bool
        Replace an existing file of that kind.
    inputs : iterable of paths
        Files the run reads: never overwritten.

    Raises
    ------
    OutputError
    """
    path = Path(os.path.abspath(os.fspath(path)))
    if path.suffix.lower() != suffix:
        raise OutputError(f"output {path} must be a {suffix} file")
    existing = first_existing(path.parent)
    if not existing.is_dir():
        raise OutputError(f"output {path} lies under {existing}, which is a file, not a folder")
    if path.is_dir():
        raise OutputError(f"output {path} is a folder; give a {suffix} file name")
    real = path.resolve()
    for item in inputs:
        if item is not None and Path(item).resolve() == real:
            raise OutputError(f"refusing to write {path}: it is an input of this run")
    if path.exists() and not overwrite:
        raise OutputError(f"{path} exists; pass --overwrite to replace it, or choose another "
                          "--output")
    return path


class FolderLock:
    """An exclusive lock on a result folder: ``<folder>/.lock`` with the owner's pid and host.

    A lock left by a process that no longer runs on this host is stale and taken over (with a
    warning); a live one, or one from another host, makes :meth:`acquire` raise. With
    ``reenter=True`` a lock that this thread already holds is taken again (and released with
    the outer one): a library function that locks a store can run inside a script that holds
    the store's lock while it prepares it; otherwise the same process is refused like any.
    """

    #: Locks this process holds: (path, thread) -> how many times taken.
    _held_here: dict[tuple[str, int], int] = {}
    _held_guard = threading.Lock()

    def __init__(self, folder: str | os.PathLike, name: str = LOCK_NAME,
                 reenter: bool = False):
        self.path = Path(folder) / name
        self.reenter = reenter
        self.held = False
        self._fd: int | None = None

    def _owner(self) -> dict | None:
        try:
            owner = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return owner if isinstance(owner, dict) else None

    def _stale(self, owner: dict | None) -> bool:
        if owner is None:
            return False  # being written this very moment, or not ours: do not guess
        if owner.get("host") != socket.gethostname():
            return False
        pid = owner.get("pid")
        if not isinstance(pid, int) or pid <= 0:
            return True
        if pid == os.getpid():  # asked only once the kernel lock is ours: a leftover of ours
            return True
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def acquire(self) -> FolderLock:
        key = (os.path.abspath(self.path), threading.get_ident())
        with self._held_guard:
            if self.reenter and self._held_here.get(key):
                self._held_here[key] += 1
                self.held = True
                return self
        for _ in range(20):  # retried only when the file was replaced while we opened it
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # a live process holds it: the kernel says so
                os.close(fd)
                self._refuse(self._owner())
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # its holder released (and removed) it meanwhile: take the new one
                os.close(fd)
                continue
            owner = self._owner()
            if owner is not None and not self._stale(owner):
                os.close(fd)  # a lock of another host, or of a live process without flock
                self._refuse(owner)
            if owner is not None:
                logger.warning("taking over the stale lock %s (process %s is gone)",
                               self.path, owner.get("pid"))
            record = json.dumps({"pid": os.getpid(), "host": socket.gethostname()})
            os.ftruncate(fd, 0)
            os.pwrite(fd, record.encode(), 0)
            self._fd = fd
            self.held = True
            with self._held_guard:
                self._held_here[key] = 1
            return self
        raise OutputError(f"could not take the lock {self.path}")

    def _refuse(self, owner: dict | None) -> None:
        who = (f"process {owner.get('pid')} on {owner.get('host')}" if owner
               else "another run")
        raise OutputError(f"{self.path.parent} is in use by {who} (lock file {self.path}); "
                          "wait for it to finish, or delete the lock file if no run is "
                          "active")

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        key = (os.path.abspath(self.path), threading.get_ident())
        with self._held_guard:
            count = self._held_here.get(key, 1) - 1
            if count > 0:
                self._held_here[key] = count
                return
            self._held_here.pop(key, None)
        self.path.unlink(missing_ok=True)  # while still held: nobody takes a removed file
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def remove_stale_tmp(folder: str | os.PathLike) -> int:
    """Delete temporary files that an interrupted atomic write left under ``folder``.

    Returns
    -------
    int
        How many were removed.
    """
    removed = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            if TMP_PATTERN.match(name):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(root, name))
                    removed += 1
    if removed:
        logger.info("removed %d unfinished temporary file(s) under %s", removed, folder)
    return removed


def _nested_results(folder: Path) -> list[Path]:
    """Result folders inside ``folder`` (an ``experiment.json`` below its top level): another
    run's work, which overwriting ``folder`` would delete. Symbolic links are not followed."""
    found = []
    for root, dirs, files in os.walk(folder):
        if Path(root) != folder and "experiment.json" in files:
            found.append(Path(root))
            dirs.clear()
    return sorted(found)


#: The set-aside folder's name (`_set_aside`) and the marker inside that proves it ours.
_ASIDE = re.compile(rf"^{re.escape(PREVIOUS_PREFIX)}[0-9a-f]{{8}}$")
_ASIDE_MARK = ".set-aside.json"


def _is_aside(path: Path) -> bool:
    """A folder `_set_aside` made (by its name and marker), not a user's ``.previous-x``."""
    return (bool(_ASIDE.match(path.name)) and path.is_dir() and not path.is_symlink()
            and (path / _ASIDE_MARK).is_file())


def _own_entry(name: str) -> bool:
    """The mechanism's own entries of a result folder (lock, list, kept earlier result)."""
    return name in (LOCK_NAME, OUTPUTS_NAME) or bool(_ASIDE.match(name))


def _files(folder: Path) -> list[str]:
    """Every file under ``folder`` (relative, ``/``-separated) but the mechanism's own and
    unfinished temporary files; symbolic links are listed, not followed."""
    found = []
    for root, dirs, files in os.walk(folder):
        base = Path(root)
        if base == folder:
            dirs[:] = [d for d in dirs if not _own_entry(d)]
            files = [f for f in files if not _own_entry(f)]
        found += [(base / f).relative_to(folder).as_posix() for f in files
                  if not TMP_PATTERN.match(f)]
        found += [(base / d).relative_to(folder).as_posix() for d in dirs
                  if (base / d).is_symlink()]
    return sorted(found)


def record_outputs(folder: str | os.PathLike, since: float | None = None) -> Path:
    """Write ``<folder>/.outputs.json``: what the runs of its script made there.

    Parameters
    ----------
    folder : path
        A result folder whose lock the caller holds.
    since : float, optional
        When the run holding it started, for a resumed folder: files listed before, plus files
        written since then (a file put there by hand between runs stays unlisted). None for a
        folder the run started empty (new, or the earlier result set aside): every file.
    """
    folder = Path(folder)
    files = _files(folder)
    if since is not None:
        listed = set(_listed(folder) or ())
        files = [f for f in files if f in listed or _mtime(folder / f) >= since]
    return write_json(folder / OUTPUTS_NAME, {"files": files})


def _mtime(path: Path) -> float:
    try:
        return path.lstat().st_mtime
    except OSError:
        return float("-inf")


def _listed(folder: Path) -> list[str] | None:
    listing = folder / OUTPUTS_NAME
    if not listing.is_file():
        return None
    try:
        files = json.loads(listing.read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return files if isinstance(files, list) else None


def _unmade(folder: Path) -> list[str]:
    """Files in ``folder`` that its runs did not make (added since). A result from before
    lists were kept has none: there, files written after its ``experiment.json`` (the last
    file a run writes) count as added."""
    listed = _listed(folder)
    if listed is not None:
        made = set(listed)
        return [f for f in _files(folder) if f not in made]
    record = folder / "experiment.json"
    finished = _mtime(record) + 1.0
    return [f for f in _files(folder) if f != "experiment.json"
            and _mtime(folder / f) > finished]


def _set_aside(folder: Path) -> Path:
    """Move the earlier result into ``<folder>/.previous-<hex>/`` (same file system: renames)."""
    aside = folder / f"{PREVIOUS_PREFIX}{secrets.token_hex(4)}"
    aside.mkdir()
    write_json(aside / _ASIDE_MARK, {"pid": os.getpid(), "folder": str(folder)})
    for child in list(folder.iterdir()):
        if child.name != LOCK_NAME and not _ASIDE.match(child.name):
            os.replace(child, aside / child.name)
    return aside


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _restore(folder: Path, aside: Path) -> None:
    """Put back the earlier result kept in ``aside``. Only what the failed or interrupted run
    listed as its own is removed first; anything else there (a file put in by hand meanwhile,
    or one the run wrote after its last listing before a SIGKILL) is kept, and so it stands
    in the way of the next ``--overwrite``, which names it. Where such a file has the name of
    one of the earlier result's, the earlier one stays aside (logged)."""
    for name in _listed(folder) or ():
        target = folder / name
        if (target.is_file() or target.is_symlink()) and is_within(target.parent, folder):
            target.unlink()
    (folder / OUTPUTS_NAME).unlink(missing_ok=True)
    for root, dirs, _files_here in os.walk(folder, topdown=False):  # folders left empty
        for d in dirs:
            path = Path(root) / d
            if not path.is_symlink() and not _own_entry(path.name) and not any(path.iterdir()):
                path.rmdir()
    kept_aside = []
    for child in list(aside.iterdir()):
        if child.name == _ASIDE_MARK:
            continue
        if (folder / child.name).exists() or (folder / child.name).is_symlink():
            kept_aside.append(child.name)
        else:
            os.replace(child, folder / child.name)
    if kept_aside:
        logger.warning("%s: %s of the earlier result stayed in %s (files of the same name "
                       "were put there meanwhile)", folder, ", ".join(kept_aside[:3]), aside)
        return
    (aside / _ASIDE_MARK).unlink(missing_ok=True)
    aside.rmdir()


def _restore_interrupted(folder: Path) -> None:
    """An ``--overwrite`` killed before it finished left the earlier result aside: restore
    it (the unfinished run's files go)."""
    for aside in sorted(folder.glob(f"{PREVIOUS_PREFIX}*")):
        if _is_aside(aside):
            logger.warning("an interrupted --overwrite left the earlier result in %s; "
                           "restoring it", aside)
            _restore(folder, aside)


@contextlib.contextmanager
def output_dir(
    path: str | os.PathLike,
    script: str,
    overwrite: bool = False,
    resume: bool = False,
    inputs: Sequence[str | os.PathLike | None] = (),
    flags: Sequence[str] = ("--overwrite",),
) -> Iterator[Path]:
    """Create or reuse a result folder of ``script`` and hold its lock while the block runs.

    Parameters
    ----------
    path : str or PathLike
        The result folder.
    script : str
        Who writes it (recorded as ``script`` in ``experiment.json`` by
        :func:`helpers.write_experiment_json`); only that script's results are overwritten
        or resumed.
    overwrite : bool
        Replace an existing result of ``script`` (set aside until the block ends without an
        error, then deleted; refused when it holds files its runs did not list).
    resume : bool
        Keep an existing result of ``script`` (the caller continues it); unfinished temporary
        files are removed.
    inputs : sequence of paths
        The run's inputs: a folder that is, holds or lies inside one is never overwritten.
    flags : sequence of str
        The flags the calling script has, suggested when a folder is refused.

    Yields
    ------
    Path
        The folder, absolute.

    Raises
    ------
    OutputError
        Anything the checks refuse, or another run holds the lock.
    """
    path = check_output_dir(path, overwrite, inputs)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output folder {path}: {exc.strerror or exc}") from exc
    with FolderLock(path):
        _restore_interrupted(path)
        aside = _take_over(path, script, overwrite, resume, flags)
        try:
            yield path
        except BaseException:
            if aside is not None:  # the run failed: the earlier result comes back
                _restore(path, aside)
            raise
        if aside is not None:
            _remove(aside)


def _take_over(path: Path, script: str, overwrite: bool, resume: bool,
               flags: Sequence[str]) -> Path | None:
    """Make the locked folder ready for a run of ``script`` (`output_dir`): nothing to do
    when it is empty; resume (unfinished temporary files removed) or overwrite (the earlier
    result set aside, its folder returned) when asked and allowed; refused otherwise."""
    contents = [p for p in path.iterdir() if p.name != LOCK_NAME]
    if not contents:
        return None
    why = _made_by(path, script)
    if not (overwrite or resume):
        hints = " or ".join(f"{f} to {'continue' if f == '--resume' else 'replace'} it"
                            for f in flags)
        raise OutputError(f"{path} already exists and is not empty; choose another "
                          f"output{', or pass ' + hints if hints and not why else ''}")
    if why:
        raise OutputError(f"refusing to {'overwrite' if overwrite else 'resume'} "
                          f"{path}: {why}")
    if not overwrite:
        remove_stale_tmp(path)
        return None
    nested = _nested_results(path)
    if nested:
        raise OutputError(
            f"refusing to overwrite {path}: it holds other results "
            f"({', '.join(str(p) for p in nested[:3])}"
            f"{' ...' if len(nested) > 3 else ''}); move them or choose "
            "another output")
    unmade = _unmade(path)
    if unmade:
        raise OutputError(
            f"refusing to overwrite {path}: it holds {len(unmade)} file(s) "
            f"the earlier {script} run did not make ({', '.join(unmade[:3])}"
            f"{' ...' if len(unmade) > 3 else ''}); move them or choose "
            "another output (files of a run killed with SIGKILL are not "
            "listed either: if they are its, delete the folder yourself)")
    logger.warning("overwriting the previous %s result in %s (kept aside "
                   "until this run succeeds)", script, path)
    return _set_aside(path)
