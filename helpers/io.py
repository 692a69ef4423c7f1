"""Atomic file writes and small I/O helpers.

Everything is written to a temporary file in the destination folder and renamed into place,
so a reader never sees half a file and an interrupted run leaves either the old file or the
new one.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    Parameters
    ----------
    path : str or PathLike
        Final destination. Parent folders are created.

    Yields
    ------
    Path
        Temporary file to write to (``.<name>.<12 hex digits>.tmp``, mode 0666 less the
        umask). It is removed if the block raises; one left by a killed process is removed by
        `helpers.outputs.remove_stale_tmp`.
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    # Not tempfile.mkstemp: it creates mode 0600, and the rename would keep that. os.open
    # with 0666 lets the user's umask decide, as for any other file the user writes.
    while True:
        tmp_path = dest.parent / f".{dest.name}.{secrets.token_hex(6)}.tmp"
        try:
            os.close(os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            break
        except FileExistsError:  # pragma: no cover - 48 random bits
            continue
    try:
        yield tmp_path
        os.replace(tmp_path, dest)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_write(
    path: str | os.PathLike, mode: str = "w", fsync: bool = True, **kwargs: Any
) -> Iterator[IO]:
    """Open a file for writing that appears at ``path`` only once fully written.

    Parameters
    ----------
    path : str or PathLike
        Final destination.
    mode : {"w", "wb"}
        Text or binary mode.
    fsync : bool
        Flush to the disk before the rename (survives a power cut, not only a crash). Costs
        a few milliseconds a file; bulk image writes turn it off.
    **kwargs
        Passed to :func:`open` (e.g. ``encoding``, ``newline``).

    Yields
    ------
    file object
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write mode must be 'w' or 'wb', got {mode!r}")
    if mode == "w":
        kwargs.setdefault("encoding", "utf-8")
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as handle:
        yield handle
        if fsync:
            handle.flush()
            os.fsync(handle.fileno())


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, set | frozenset):
        return sorted(obj)
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serialisable")


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities (also in NumPy scalars and arrays) made ``None``."""
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_finite(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def write_json(path: str | os.PathLike, obj: Any, indent: int = 2,
               null_nonfinite: bool = False) -> Path:
    """Write ``obj`` as JSON atomically (NumPy scalars, arrays and paths are converted).

    Parameters
    ----------
    null_nonfinite : bool
        Write NaN and infinities as ``null`` (strict JSON, as other tools read it) instead of
        Python's ``NaN`` / ``Infinity``.

    Returns
    -------
    Path
        The written path.
    """
    if null_nonfinite:
        obj = _finite(obj)
    with atomic_write(path, "w") as handle:
        json.dump(obj, handle, indent=indent, default=_json_default, allow_nan=True)
        handle.write("\n")
    return Path(path)


#: A text cell starting with one of these is a formula to a spreadsheet (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _formula_like(text: str) -> bool:
    stripped = text.lstrip("'")
    return stripped[:1] in FORMULA_STARTS and stripped != ""


def spreadsheet_escape(value: Any) -> Any:
    """A text cell as spreadsheet-safe text: one ``'`` before a value a spreadsheet would run
    as a formula (``=HYPERLINK(...)``, ``+1``, ``-x``, ``@SUM``; or such a value already
    led by quotes). Other values are returned as they are. `spreadsheet_unescape` undoes it
    exactly, so ids and paths read back by this library are the ones written."""
    if isinstance(value, str) and _formula_like(value):
        return "'" + value
    return value


def spreadsheet_unescape(value: Any) -> Any:
    """The value `spreadsheet_escape` was given."""
    if isinstance(value, str) and value.startswith("'") and _formula_like(value[1:]):
        return value[1:]
    return value


def write_csv(frame: Any, path: str | os.PathLike, index: bool = False) -> Path:
    """Write a pandas DataFrame as CSV, atomically: text cells spreadsheet-safe
    (`spreadsheet_escape`), file names that are not UTF-8 as their own bytes
    (``surrogateescape``; read them with ``pandas.read_csv(...,
    encoding_errors="surrogateescape")``)."""
    from pandas.api.types import is_object_dtype, is_string_dtype  # pandas: only for frames

    def text(values: Any) -> bool:
        return is_object_dtype(values.dtype) or is_string_dtype(values.dtype)

    frame = frame.copy()
    for column in frame.columns:
        if text(frame[column]):
            frame[column] = frame[column].map(spreadsheet_escape)
    if index and text(frame.index):
        frame.index = frame.index.map(spreadsheet_escape)
    with atomic_write(path, "w", newline="", errors="surrogateescape") as handle:
        frame.to_csv(handle, index=index)
    return Path(path)


def check_regular_file(path: str | os.PathLike) -> Path:
    """``path``, when it is a regular file (or a link to one): a FIFO would block a reader
    forever, a device or a folder is no data file.

    Raises
    ------
    FileNotFoundError
        Nothing there.
    ValueError
        Something other than a regular file there.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if not path.is_file():
        raise ValueError(f"{path} is not a regular file (a folder, FIFO or device)")
    return path


def load_npy(path: str | os.PathLike, mmap: bool = True) -> np.ndarray:
    """An ``.npy`` array (memory-mapped by default; never unpickled), with errors that name
    the file: truncated, not an ``.npy``, a FIFO.

    Raises
    ------
    FileNotFoundError, ValueError
    """
    path = check_regular_file(path)
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ValueError(f"{path} cannot be read as an .npy array ({exc}); it is truncated "
                         "or not an array file: write it again") from None


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file, naming the file in the error when it is not valid JSON.

    Raises
    ------
    FileNotFoundError, ValueError
        Missing, not a regular file (a FIFO would block), or not valid JSON.
    """
    path = Path(path)
    if path.exists() and not path.is_file():
        raise ValueError(f"{path} is not a regular file (a folder, FIFO or device)")
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc


def save_torch(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to ``path``, atomically. A full disk or a read-only folder raises the
    `OSError` behind it (torch reports it as ``RuntimeError: [enforce fail at
    inline_container.cc] unexpected pos``), so scripts print one line naming the file."""
    import torch  # only the callers that save tensors pay for it

    try:
        with atomic_write(path, "wb") as handle:  # a Python file: its OSError surfaces
            torch.save(obj, handle)
    except (RuntimeError, OSError) as exc:
        cause = exc
        while cause is not None and not isinstance(cause, OSError):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            raise
        raise OSError(cause.errno, cause.strerror or str(cause), str(path)) from exc
    return Path(path)


def save_npy(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Save an array as ``.npy`` atomically (memory-mappable: ``np.load(mmap_mode='r')``)."""
    with atomic_write(path, "wb") as handle:
        np.save(handle, np.asarray(array), allow_pickle=False)
    return Path(path)


def encode_png(image: Image.Image, level: int = 1) -> bytes:
    """Lossless PNG bytes of an RGB or L image, about twice as fast as Pillow's encoder.

    OpenCV's libpng with the "sub" row filter and zlib's run-length strategy: files within
    about 10% of Pillow's default size at half its time or less (see
    ``scripts/benchmark_generator.py``). Other modes go through Pillow.
    """
    import cv2  # OpenCV: only to encode images

    if image.mode not in ("RGB", "L"):
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", compress_level=level)
        return buffer.getvalue()
    array = np.asarray(image)
    if image.mode == "RGB":
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    ok, data = cv2.imencode(".png", array, [
        cv2.IMWRITE_PNG_COMPRESSION, level,
        cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE,
        cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_SUB,
    ])
    if not ok:  # pragma: no cover - OpenCV reports failure only for unsupported arrays
        raise ValueError(f"OpenCV could not encode a {image.mode} image of size {image.size}")
    return data.tobytes()


def save_image(
    image: Image.Image,
    path: str | os.PathLike,
    format: str | None = None,
    **save_kwargs: Any,
) -> Path:
    """Save a PIL image atomically.

    Parameters
    ----------
    image : PIL.Image.Image
        Image to save.
    path : str or PathLike
        Destination; its extension chooses the format unless ``format`` is given.
    format : str, optional
        Pillow format name (``"PNG"``, ``"JPEG"``, ...).
    **save_kwargs
        Passed to :meth:`PIL.Image.Image.save` (e.g. ``quality``). PNG with at most
        ``compress_level`` goes through the faster :func:`encode_png`.
    """
    path = Path(path)
    if format is None:
        format = Image.registered_extensions().get(path.suffix.lower())
        if format is None:
            raise ValueError(f"{path}: cannot tell the image format from the extension")
    with atomic_write(path, "wb", fsync=False) as handle:
        if format == "PNG" and set(save_kwargs) <= {"compress_level"}:
            handle.write(encode_png(image, save_kwargs.get("compress_level", 1)))
        else:
            image.save(handle, format=format, **save_kwargs)
    return path
