"""Listing image folders: every image file becomes a record, every bad file is reported once."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from data_retrieval.records import ImageRecord
from helpers import get_logger

logger = get_logger(__name__)

#: File extensions taken as images (compared lower-case).
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
)


@dataclass(frozen=True)
class BadImage:
    """A file that was skipped, and why."""

    path: Path
    reason: str


def _check_header(path: Path) -> str | None:
    """Why ``path`` is not a usable image, from its size and header; ``None`` if it looks fine."""
    try:
        if path.stat().st_size == 0:
            return "empty file (0 bytes)"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.size  # noqa: B018 - header parsed by open
    except UnidentifiedImageError:
        return "not an image file (format not recognised)"
    except Image.DecompressionBombError as exc:
        return f"image too large ({exc})"
    except (OSError, SyntaxError, ValueError) as exc:
        return f"unreadable header ({exc})"
    return None


def iter_image_files(folder: Path, recursive: bool = True) -> tuple[list[Path], list[BadImage]]:
    """Image files under ``folder`` (by extension), sorted for a stable order, and the folders
    that could not be listed.

    Symbolic links to folders are followed once: a link back to a folder already listed (a
    loop) is reported, not followed. A sub-folder that cannot be read is reported, not
    silently dropped. Hidden files and folders (``.name``) are skipped.

    Returns
    -------
    files : list of Path
    problems : list of BadImage
        Folders skipped, with the reason.
    """
    files: list[Path] = []
    problems: list[BadImage] = []
    seen: dict[tuple[int, int], Path] = {}
    pending = [folder]
    while pending:
        current = pending.pop()
        try:
            info = current.stat()
            key = (info.st_dev, info.st_ino)
            if key in seen:
                problems.append(BadImage(current, f"symbolic link loop: the same folder as "
                                                  f"{seen[key]}, listed once"))
                continue
            seen[key] = current
            entries = sorted(os.scandir(current), key=lambda e: e.name)
        except OSError as exc:
            problems.append(BadImage(current, f"folder cannot be read "
                                              f"({exc.strerror or type(exc).__name__})"))
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = Path(entry.path)
            try:
                is_dir = entry.is_dir()  # follows links
                is_file = not is_dir and entry.is_file()
            except OSError as exc:
                problems.append(BadImage(path, f"cannot be read ({exc.strerror or exc})"))
                continue
            if is_dir and recursive:
                pending.append(path)
            elif is_file and path.suffix.lower() in IMAGE_EXTENSIONS:
                files.append(path)
            elif (not is_dir and not is_file and entry.is_symlink()
                  and path.suffix.lower() in IMAGE_EXTENSIONS):
                problems.append(BadImage(path, "broken symbolic link"))
    for problem in problems:
        logger.warning("skipping %s: %s", problem.path, problem.reason)
    return sorted(files), problems


def make_image_ids(files: Iterable[Path], root: Path) -> list[str]:
    """Ids from paths relative to ``root``, without extension (kept where two files would clash).

    ``train/100007.jpg`` gives ``train/100007``; ``buzz.gif`` and ``buzz.jpg`` side by side
    give ``buzz.gif`` and ``buzz.jpg``.
    """
    files = list(files)
    relative = [f.relative_to(root).as_posix() for f in files]
    stems = [r.rsplit(".", 1)[0] if "." in Path(r).name else r for r in relative]
    counts: dict[str, int] = {}
    for stem in stems:
        counts[stem] = counts.get(stem, 0) + 1
    return [rel if counts[stem] > 1 else stem for rel, stem in zip(relative, stems, strict=True)]


def list_images(
    folder: str | os.PathLike,
    recursive: bool = True,
    check: bool = True,
    id_prefix: str = "",
) -> tuple[list[ImageRecord], list[BadImage]]:
    """Records for the image files in a folder, and the files that were skipped.

    Parameters
    ----------
    folder : str or PathLike
        Folder to list.
    recursive : bool
        Look into sub-folders.
    check : bool
        Open each file's header and skip (and report) empty files and non-images. Decoding
        errors further into a file are found when it is loaded and reported then.
    id_prefix : str
        Prepended to every image id.

    Returns
    -------
    records : list of ImageRecord
        Originals (``source_id == image_id``), sorted by path.
    bad : list of BadImage
        Skipped files with the reason; each is also logged once as a warning.

    Raises
    ------
    FileNotFoundError
        ``folder`` does not exist.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    files, bad = iter_image_files(folder, recursive)
    good: list[Path] = []
    for file in files:
        reason = _check_header(file) if check else None
        if reason is None:
            good.append(file)
        else:
            bad.append(BadImage(file, reason))
            logger.warning("skipping %s: %s", file, reason)
    ids = make_image_ids(good, folder)
    records = [ImageRecord(id_prefix + i, f) for i, f in zip(ids, good, strict=True)]
    return records, bad
