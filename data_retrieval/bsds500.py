"""BSDS500: download the official Berkeley archive, lay it out as ``BSDS500/{train,val,test}``."""

from __future__ import annotations

import os
import re
import shutil
import tarfile
from pathlib import Path

from data_retrieval.roots import data_root
from helpers import download_file, get_logger

logger = get_logger(__name__)

#: The official archive of the Berkeley Segmentation Resources (BSR), which holds BSDS500
#: (Berkeley's www2 host serves it over https).
BSDS500_URL = (
    "https://www2.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/BSR/BSR_bsds500.tgz"
)
#: Size in bytes of that archive (70,763,455, as several independent scripts record it).
BSDS500_SIZE = 70_763_455
#: SHA-256 of that archive, as a public dataset manifest records it beside the same size. A
#: different archive (a mirror, a new release) is passed with ``sha256=None`` after checking.
BSDS500_SHA256 = "97e49d31764f3912f0c4122707d53062ac9e783ba0f095e447a4d53c1a41af8e"
#: Images per split in the official release.
BSDS500_COUNTS = {"train": 200, "val": 100, "test": 200}

_MEMBER = re.compile(r"(?:^|/)BSDS500/data/images/(train|val|test)/([^/]+\.jpg)$")


class ArchiveError(ValueError):
    """The archive does not hold what BSDS500 should."""


def _image_members(archive: tarfile.TarFile) -> dict[str, list[tarfile.TarInfo]]:
    splits: dict[str, list[tarfile.TarInfo]] = {split: [] for split in BSDS500_COUNTS}
    for member in archive.getmembers():
        match = _MEMBER.search(member.name)
        if match and member.isfile():
            splits[match.group(1)].append(member)
    return splits


def extract_bsds500(
    archive_path: str | os.PathLike,
    dest: str | os.PathLike,
    expected_counts: dict[str, int] | None = None,
) -> Path:
    """Check a BSR/BSDS500 archive and extract its JPEGs as ``dest/{train,val,test}/*.jpg``.

    Parameters
    ----------
    archive_path : str or PathLike
        The ``.tgz`` (any tar format Python reads).
    dest : str or PathLike
        The ``BSDS500`` folder to create; it must not exist yet.
    expected_counts : dict, optional
        Images per split; the official release's 200/100/200 by default.

    Returns
    -------
    Path
        ``dest``.

    Raises
    ------
    ArchiveError
        Wrong number of images in a split, or not a tar archive.
    FileExistsError
        ``dest`` already exists.
    """
    dest = Path(dest)
    expected = expected_counts or BSDS500_COUNTS
    if dest.exists():
        raise FileExistsError(f"{dest} already exists; remove it to extract again")
    try:
        archive = tarfile.open(archive_path)  # noqa: SIM115 - closed by the with below
    except tarfile.TarError as exc:
        raise ArchiveError(f"{archive_path}: not a readable tar archive ({exc})") from exc
    with archive:
        splits = _image_members(archive)
        counts = {split: len(members) for split, members in splits.items()}
        if counts != dict(expected):
            raise ArchiveError(
                f"{archive_path}: expected BSDS500/data/images with {expected} JPEGs per split, "
                f"found {counts}"
            )
        staging = dest.with_name(f".{dest.name}.partial")
        shutil.rmtree(staging, ignore_errors=True)
        for split, members in splits.items():
            (staging / split).mkdir(parents=True, exist_ok=True)
            for member in members:
                name = Path(member.name).name  # never trust paths inside an archive
                source = archive.extractfile(member)
                assert source is not None
                with source, open(staging / split / name, "wb") as out:
                    shutil.copyfileobj(source, out)
        os.replace(staging, dest)
    logger.info("extracted BSDS500 to %s (%s)", dest, counts)
    return dest


def download_bsds500(
    root: str | os.PathLike | None = None,
    url: str = BSDS500_URL,
    expected_counts: dict[str, int] | None = None,
    keep_archive: bool = False,
    expected_size: int | None = BSDS500_SIZE,
    sha256: str | None = BSDS500_SHA256,
) -> Path:
    """Download BSDS500 into the data root as ``BSDS500/{train,val,test}/*.jpg``.

    The download resumes if interrupted; the archive's size and SHA-256 are checked, then its
    contents (500 images in three splits), before anything is put in place.

    Parameters
    ----------
    root : str or PathLike, optional
        Data root (``$DATASETS_DIR`` or ``Datasets/`` by default).
    url : str
        Archive URL (the official Berkeley one by default).
    expected_counts : dict, optional
        Images per split to require.
    keep_archive : bool
        Keep the downloaded ``.tgz`` under ``<root>/downloads/``.
    expected_size, sha256 : int and str, optional
        What the archive must be (the official archive's by default; ``None`` skips a check).

    Returns
    -------
    Path
        The ``BSDS500`` folder.
    """
    root = data_root(root)
    dest = root / "BSDS500"
    if dest.exists():
        logger.info("BSDS500 already present at %s", dest)
        return dest
    archive = download_file(url, root / "downloads" / Path(url).name,
                            expected_size=expected_size, sha256=sha256)
    extract_bsds500(archive, dest, expected_counts)
    if not keep_archive:
        archive.unlink()
    return dest
