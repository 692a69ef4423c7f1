"""The image record and its manifest (CSV, one row per image, readable with pandas)."""

from __future__ import annotations

import csv
import dataclasses
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from helpers import (
    OutputError,
    atomic_write,
    check_relative_id,
    spreadsheet_escape,
    spreadsheet_unescape,
)

MANIFEST_COLUMNS = ("image_id", "path", "source_id", "attack_id", "group")


@dataclass(frozen=True)
class ImageRecord:
    """One image and where it comes from.

    Attributes
    ----------
    image_id : str
        Unique id of this image.
    path : Path
        Its file (may be ``None``-like for images made on the fly, see the generator).
    source_id : str
        Id of the original the image was made from; equals ``image_id`` for an original.
    attack_id : str or None
        The attack that made it from its source; ``None`` for an original.
    group : str or None
        ``"experimental"`` (in the database), ``"control"`` (never in it) or ``None``.
    """

    image_id: str
    path: Path | None
    source_id: str = ""
    attack_id: str | None = None
    group: str | None = None

    def __post_init__(self) -> None:
        if not self.image_id:
            raise ValueError("an image record needs a non-empty image_id")
        if not self.source_id:
            object.__setattr__(self, "source_id", self.image_id)
        if self.path is not None and not isinstance(self.path, Path):
            object.__setattr__(self, "path", Path(self.path))

    @property
    def is_original(self) -> bool:
        """True for an unattacked image."""
        return self.attack_id is None

    def replace(self, **changes: object) -> ImageRecord:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


def _check_unique(records: list[ImageRecord]) -> None:
    seen: set[str] = set()
    for record in records:
        if record.image_id in seen:
            raise ValueError(f"duplicate image_id {record.image_id!r} in records")
        seen.add(record.image_id)


def write_manifest(records: Iterable[ImageRecord], path: str | os.PathLike) -> Path:
    """Write records as a manifest CSV, atomically.

    Paths inside the manifest's folder are written relative to it, so a folder of results
    can be moved as a whole; other paths are written absolute.

    Parameters
    ----------
    records : iterable of ImageRecord
        Unique ``image_id`` values.
    path : str or PathLike
        The CSV file.

    Returns
    -------
    Path
    """
    path = Path(path)
    records = list(records)
    _check_unique(records)
    base = path.parent.resolve()
    # surrogateescape: a path that is not valid UTF-8 (Python holds its bytes as surrogates)
    # is written as its own bytes and read back the same (pandas: encoding_errors=
    # "surrogateescape").
    with atomic_write(path, "w", newline="", errors="surrogateescape") as handle:
        writer = csv.writer(handle)
        writer.writerow(MANIFEST_COLUMNS)
        for record in records:
            file = ""
            if record.path is not None:
                resolved = Path(record.path).resolve()
                file = (
                    resolved.relative_to(base).as_posix()
                    if resolved.is_relative_to(base)
                    else str(resolved)
                )
            # text a spreadsheet would run as a formula is quoted; read_manifest unquotes it
            writer.writerow([spreadsheet_escape(value) for value in (
                record.image_id, file, record.source_id, record.attack_id or "",
                record.group or "")])
    return path


def read_manifest(path: str | os.PathLike) -> list[ImageRecord]:
    """Read a manifest CSV written by :func:`write_manifest` (relative paths resolved).

    Raises
    ------
    ValueError
        Missing columns, duplicate ids, or an id that could not name an output file
        (empty, absolute, with ``..`` or control characters; see
        `helpers.check_relative_id`), naming the file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest {path} not found")
    base = path.parent.resolve()
    records = []
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as handle:
        reader = csv.DictReader(handle)
        missing = {"image_id", "path"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(
                f"{path}: not a manifest, missing column(s) {sorted(missing)}; "
                f"expected {', '.join(MANIFEST_COLUMNS)}"
            )
        for line, row in enumerate(reader, start=2):
            row = {key: spreadsheet_unescape(value) for key, value in row.items()}
            try:
                check_relative_id(row["image_id"])
            except OutputError as exc:
                raise ValueError(f"{path}, line {line}: {exc}") from None
            file = row["path"]
            records.append(
                ImageRecord(
                    image_id=row["image_id"],
                    path=(base / file) if file else None,
                    source_id=row.get("source_id") or "",
                    attack_id=row.get("attack_id") or None,
                    group=row.get("group") or None,
                )
            )
    try:
        _check_unique(records)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    return records


def source_rows(queries: Iterable[ImageRecord], database: Iterable[ImageRecord | str]
                ) -> np.ndarray:
    """The ground truth of copy detection: for each query, the database row of its source.

    The join is on ``source_id`` (identity is data, never parsed from a file name): a query
    whose source is not in the database is a negative and gets -1.

    Parameters
    ----------
    queries : iterable of ImageRecord
    database : iterable of ImageRecord or str
        Database rows in order (records, or their image ids).

    Returns
    -------
    numpy.ndarray, shape (Q,), int64

    Raises
    ------
    ValueError
        A database id repeats (a source would have two rows).
    """
    index: dict[str, int] = {}
    for row, item in enumerate(database):
        image_id = item.image_id if isinstance(item, ImageRecord) else str(item)
        if index.setdefault(image_id, row) != row:
            raise ValueError(f"database image id {image_id!r} repeats (rows "
                             f"{index[image_id]} and {row})")
    return np.fromiter((index.get(q.source_id, -1) for q in queries), dtype=np.int64)
