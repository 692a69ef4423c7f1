"""Resumable downloads with a progress bar and integrity checks."""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from helpers.logs import get_logger
from helpers.progress import progress

logger = get_logger(__name__)

_CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """A download failed or gave a file that does not pass its checks."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def download_file(
    url: str,
    dest: str | os.PathLike,
    expected_size: int | None = None,
    sha256: str | None = None,
    timeout: float = 60.0,
    show_progress: bool | None = None,
) -> Path:
    """Download ``url`` to ``dest``, resuming a previous partial download.

    The data goes to ``dest + ".part"`` and is renamed to ``dest`` once complete and verified,
    so ``dest`` only ever holds a whole, checked file. An existing ``dest`` that passes the
    checks is kept without downloading.

    Parameters
    ----------
    url : str
        ``http(s)://`` or ``file://`` URL.
    dest : str or PathLike
        Final file.
    expected_size : int, optional
        Size in bytes the file must have.
    sha256 : str, optional
        Hex digest the file must have.
    timeout : float
        Socket timeout in seconds.
    show_progress : bool or None
        Progress bar; ``None`` shows it on terminals only.

    Returns
    -------
    Path
        ``dest``.

    Raises
    ------
    DownloadError
        Network or HTTP error, or the file fails the size or checksum check.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if _already_there(dest, expected_size, sha256):
        return dest
    part = dest.with_name(dest.name + ".part")
    response, offset = _request(url, part, expected_size, timeout)
    if response is not None:
        with response:
            _receive(response, url, part, offset, expected_size, show_progress)
    _verify(part, expected_size, sha256, label=str(dest))
    os.replace(part, dest)
    return dest


def _already_there(dest: Path, expected_size: int | None, sha256: str | None) -> bool:
    """Whether ``dest`` exists and passes the checks; one that fails them is deleted."""
    if not dest.exists():
        return False
    try:
        _verify(dest, expected_size, sha256)
    except DownloadError as exc:
        logger.warning("%s; downloading it again", exc)
        dest.unlink()
        return False
    logger.info("%s already downloaded", dest)
    return True


def _request(url: str, part: Path, expected_size: int | None, timeout: float
             ) -> tuple[Any, int]:
    """The response to a request for ``url`` from the end of ``part`` (an unfinished
    download; one longer than ``expected_size`` is dropped), and that offset; the response is
    None when the server says ``part`` is already whole (HTTP 416)."""
    offset = part.stat().st_size if part.exists() else 0
    if expected_size is not None and offset > expected_size:
        part.unlink()
        offset = 0
    request = urllib.request.Request(url, headers={"User-Agent": "image-similarity-lab"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        return urllib.request.urlopen(request, timeout=timeout), offset
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # range not satisfiable: the part file is already whole
            return None, offset
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise DownloadError(f"{url}: cannot download ({exc})") from exc


def _receive(response: Any, url: str, part: Path, offset: int, expected_size: int | None,
             show_progress: bool | None) -> None:
    """Append the response's body to ``part`` (or write it anew when the server ignored the
    resume request), under a progress bar."""
    resumed = offset and getattr(response, "status", 200) == 206
    if offset and not resumed:
        logger.info("%s: server ignored the resume request; starting over", url)
        offset = 0
    length = response.headers.get("Content-Length")
    total = offset + int(length) if length is not None else expected_size
    mode = "ab" if offset else "wb"
    bar = progress(
        total=total,
        desc=f"download {part.name.removesuffix('.part')}",
        unit="B",
        disable=None if show_progress is None else not show_progress,
    )
    bar.update(offset)
    try:
        with open(part, mode) as handle:
            for block in iter(lambda: response.read(_CHUNK), b""):
                handle.write(block)
                bar.update(len(block))
    except OSError as exc:
        raise DownloadError(
            f"{url}: download interrupted after {part.stat().st_size} bytes ({exc}); "
            "run again to resume"
        ) from exc
    finally:
        bar.close()


def _verify(
    path: Path, expected_size: int | None, sha256: str | None, label: str | None = None
) -> None:
    label = label or str(path)
    size = path.stat().st_size
    if expected_size is not None and size != expected_size:
        raise DownloadError(f"{label}: expected {expected_size} bytes, got {size}")
    if sha256 is not None:
        digest = _sha256(path)
        if digest.lower() != sha256.lower():
            raise DownloadError(f"{label}: SHA-256 {digest} does not match expected {sha256}")
