"""Near-duplicate finding as one call: describe a folder of images (or take descriptors already
made), group the images within a threshold of each other (connected components:
``cluster(..., "duplicates")``) and give the groups as a table, as imagededup's dictionary, or
as the files ``scripts/find_duplicates.py`` writes.

::

    from clustering import find_duplicates

    found = find_duplicates("photos/", "dhash")     # threshold: DEFAULT_THRESHOLDS["dhash"]
    found.groups        # group, image (path), image_id, distance, file
    found.to_dict()     # {"a.jpg": ["a_copy.jpg"], "b.jpg": [], ...} as imagededup gives
    found.write(folder) # duplicates.csv, assignments.csv, clusters.json, figures, index.html

The threshold is a distance of the method (`hashing.distances`: cosine as (1 - cos) / 2 in
[0, 1], Hamming as a bit error rate); two images are duplicates when a chain of pairs within it
joins them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clustering.cli import check_one_row_method
from clustering.methods import Clustering, cluster
from clustering.points import Points, as_points
from clustering.report import evaluate, write_clustering
from data_retrieval import BadImage, ImageRecord, list_images
from hashing import describe, parse_algorithm
from hashing.distances import pairwise
from helpers import write_csv
from helpers.descriptors import BinaryCodes, FloatFeatures, LocalDescriptors, MultiCodes

logger = logging.getLogger(__name__)

#: The method that describes the images when none is named.
DEFAULT_METHOD = "sscd_distilled"

#: Thresholds with the best pairwise F1 on the 500 BSDS500 originals and their 58 attacked
#: copies each (scripts/benchmark_clustering.py; README, Performance); other methods need a
#: threshold (or one from a benchmark digest: `threshold_from_digest`).
DEFAULT_THRESHOLDS = {"sscd_distilled": 0.15, "dhash": 0.075}

#: The columns of ``duplicates.csv``.
TABLE_COLUMNS = ("group", "image", "image_id", "distance")

_DESCRIPTORS = (Points, BinaryCodes, FloatFeatures, MultiCodes, LocalDescriptors)


def default_threshold(label: str) -> float:
    """The default threshold of a method label (`DEFAULT_THRESHOLDS`).

    Raises
    ------
    ValueError
        The method has none.
    """
    if label in DEFAULT_THRESHOLDS:
        return DEFAULT_THRESHOLDS[label]
    raise ValueError(f"no default threshold for {label}: give threshold= (in its distance) or "
                     "one from a benchmark digest of it (clustering.threshold_from_digest)")


@dataclass(repr=False)
class Duplicates:
    """Groups of near-duplicate images, as `find_duplicates` finds them.

    Attributes
    ----------
    groups : pandas.DataFrame
        The images of every group of two or more, largest group first (numbered from 0),
        members in input order: ``group``, ``image`` (path), ``image_id``, ``distance`` (to
        the group's representative, its first image, in the method's metric) and ``file``
        (the name `to_dict` uses). Its first four columns are ``duplicates.csv``.
    files : list of str
        Every image's file name (`to_dict`'s keys), in input order: the path relative to
        ``folder`` (or to the images' common folder), else the image id.
    method : str or None
        The method label that described the images.
    threshold : float
    clustering : Clustering
        The ``duplicates`` labelling (`clustering.report` writes it).
    points : Points
        The rows grouped.
    skipped : list of tuple
        ``(image id, path, reason)`` of each unreadable image.
    folder : Path or None
        The folder searched, when one was.
    """

    groups: pd.DataFrame
    files: list[str]
    method: str | None
    threshold: float
    clustering: Clustering
    points: Points
    skipped: list[tuple[str, str, str]] = field(default_factory=list)
    folder: Path | None = None

    @property
    def n_groups(self) -> int:
        """Groups of two or more images."""
        return int(self.groups["group"].nunique()) if len(self.groups) else 0

    def __len__(self) -> int:
        """Images described (the skipped ones not counted)."""
        return len(self.files)

    def __repr__(self) -> str:
        return (f"Duplicates({self.n_groups} groups holding {len(self.groups)} of {len(self)} "
                f"images, method={self.method!r}, threshold={self.threshold:g}, "
                f"skipped={len(self.skipped)})")

    def to_frame(self) -> pd.DataFrame:
        """Every image, in input order: ``file``, ``image``, ``image_id``, ``group`` (-1 for
        an image without duplicates) and ``distance`` (NaN there)."""
        frame = pd.DataFrame({"file": self.files, "image": _paths(self.points),
                              "image_id": self.points.ids, "group": -1, "distance": np.nan})
        rows = _rows_of(self.groups, self.points.ids)
        frame.loc[rows, "group"] = self.groups["group"].to_numpy()
        frame.loc[rows, "distance"] = self.groups["distance"].to_numpy()
        return frame

    def to_dict(self) -> dict[str, list[str]]:
        """imagededup's shape: every file -> the file names of its duplicates (the other
        members of its group, in input order; empty when it has none)."""
        found: dict[str, list[str]] = {name: [] for name in self.files}
        for _, members in self.groups.groupby("group", sort=True)["file"]:
            names = list(members)
            for name in names:
                found[name] = [other for other in names if other != name]
        return found

    def write(self, output: str | os.PathLike, galleries: int = 24,
              device: str = "auto") -> list[Path]:
        """Write ``duplicates.csv`` (`TABLE_COLUMNS`) and the clustering files
        (`clustering.report.write_clustering`: ``assignments.csv``, ``clusters.json`` with the
        folder and the skipped images, figures, ``galleries`` groups as image grids,
        ``index.html``) into ``output``.

        Returns
        -------
        list of Path
        """
        output = Path(output)
        output.mkdir(parents=True, exist_ok=True)
        # a file name that is not UTF-8 is written as its own bytes (as in every manifest),
        # so the path in the table opens the file; formula-like names are quoted
        write_csv(self.groups[list(TABLE_COLUMNS)], output / "duplicates.csv")
        evaluation = evaluate(self.clustering, self.points, device=device)
        extra: dict[str, Any] = {} if self.folder is None else {"folder": str(self.folder)}
        extra["skipped"] = [list(b) for b in self.skipped]
        return [output / "duplicates.csv",
                *write_clustering(self.clustering, output, evaluation, points=self.points,
                                  galleries=galleries, extra=extra)]


def find_duplicates(
    images: Any,
    method: str = DEFAULT_METHOD,
    threshold: float | None = None,
    *,
    unreadable: Sequence[BadImage] = (),
    root: str | os.PathLike | None = None,
    batch_size: int = 64,
    device: str = "auto",
    show_progress: bool | None = None,
) -> Duplicates:
    """Near-duplicate groups of a folder of images: every image described by ``method``, and
    the images within ``threshold`` of each other joined (connected components).

    Parameters
    ----------
    images : str, path, sequence of ImageRecord, descriptors or Points
        A folder (searched recursively; unreadable files are logged and skipped), the records
        of one (`data_retrieval.list_images`), or descriptors already made (`hashing.describe`:
        one row per image) or `Points`.
    method : str
        A hash or model of the registry with one descriptor per image (not crop_resistant nor
        keypoint methods). Descriptors keep their own method.
    threshold : float, optional
        Distance under which two images are duplicates (default: the method's,
        `DEFAULT_THRESHOLDS`).
    unreadable : sequence of BadImage
        Files already skipped when ``images`` were listed, reported with the others.
    root : path, optional
        The folder the images come from, when ``images`` is not one: file names are relative
        to it and ``clusters.json`` names it.
    batch_size : int
        Images described at once.
    device : str
        Faiss's device for grouping: ``auto``, ``cpu`` or ``cuda`` (a model runs on CUDA when
        present; ``"sscd_distilled:device=cpu"`` chooses).
    show_progress : bool, optional
        Progress bar while describing (default: on terminals).

    Returns
    -------
    Duplicates

    Raises
    ------
    FileNotFoundError
        ``images`` names no folder.
    ValueError
        A method with several descriptors per image (refused before any image is described),
        no threshold for the method, or fewer than two readable images.
    """
    folder = Path(root) if root is not None else None
    if isinstance(images, _DESCRIPTORS):
        points = images if isinstance(images, Points) else as_points(images)
        skipped = [_bad_row(b) for b in unreadable] + [tuple(b) for b in getattr(images, "bad",
                                                                                  ())]
        label = points.method
        if threshold is None:
            threshold = default_threshold(label or "descriptors without a method")
    else:
        label = parse_algorithm(method).label
        check_one_row_method(method, "method")  # before describing any image
        threshold = threshold if threshold is not None else default_threshold(label)
        if isinstance(images, str | os.PathLike):
            folder = Path(images)
            records, unreadable = list_folder(folder)
        else:
            records = list(images)
            if len(records) < 2:
                raise ValueError(f"{len(records)} images given; duplicates need at least 2")
        described = describe(records, method, batch_size=batch_size,
                             show_progress=show_progress)
        points = as_points(described)
        skipped = [_bad_row(b) for b in unreadable] + [tuple(b) for b in described.bad]
    result = cluster(points, "duplicates", threshold=[threshold], device=device)
    found = _duplicates(result, points, float(threshold), label, skipped, folder)
    logger.info("%d images, %s, threshold %g: %d groups holding %d images", len(points),
                label, threshold, found.n_groups, len(found.groups))
    return found


def list_folder(folder: str | os.PathLike) -> tuple[list[ImageRecord], list[BadImage]]:
    """The images of a folder, searched recursively (`data_retrieval.list_images`; unreadable
    files are logged as found and returned apart).

    Raises
    ------
    FileNotFoundError
        ``folder`` is not a folder.
    ValueError
        Fewer than two readable images.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder")
    records, unreadable = list_images(folder)
    if len(records) < 2:
        raise ValueError(f"{folder} holds {len(records)} readable images "
                         f"({len(unreadable)} skipped); duplicates need at least 2")
    return records, unreadable


def _bad_row(bad: BadImage) -> tuple[str, str, str]:
    return (bad.path.stem if bad.path else "", str(bad.path), bad.reason)


def _duplicates(result: Clustering, points: Points, threshold: float, label: str | None,
                skipped: list, folder: Path | None) -> Duplicates:
    """The groups of two or more of the first labelling, largest first, each member's
    distance to the group's first member."""
    labels = result.labels[0]
    files = _file_names(points, folder)
    paths = _paths(points)
    sizes = np.bincount(labels)
    order = np.argsort(labels, kind="stable")  # members of each label, in input order
    starts = np.concatenate([[0], np.cumsum(sizes)])
    rows = []
    for number, g in enumerate(g for g in np.argsort(-sizes, kind="stable") if sizes[g] > 1):
        members = order[starts[g]:starts[g + 1]]
        d = pairwise(points.descriptors(members), points.descriptors(members[:1]))[:, 0]
        rows += [{"group": number, "image": paths[m], "image_id": result.ids[m],
                  "distance": float(dist), "file": files[m]}
                 for m, dist in zip(members, d, strict=True)]
    table = pd.DataFrame(rows, columns=[*TABLE_COLUMNS, "file"])
    return Duplicates(table, files, label, threshold, result, points, list(skipped), folder)


def _paths(points: Points) -> list[str]:
    if points.records is None:
        return [""] * len(points)
    return [str(getattr(r, "path", "") or "") for r in points.records]


def _file_names(points: Points, folder: Path | None) -> list[str]:
    """A unique name per image: its path relative to ``folder`` (or to the images' common
    folder), else its image id."""
    paths = [Path(p) if p else None for p in _paths(points)]
    known = [p.absolute() for p in paths if p is not None]
    if folder is not None:
        base = folder.absolute()
    elif known:
        base = Path(os.path.commonpath([p.parent for p in known]))
    names = []
    for path, image_id in zip(paths, points.ids, strict=True):
        if path is None:
            names.append(image_id)
            continue
        try:
            names.append(path.absolute().relative_to(base).as_posix())
        except ValueError:  # outside the folder
            names.append(str(path))
    if len(set(names)) != len(names):
        return list(points.ids)
    return names


def _rows_of(table: pd.DataFrame, ids: list[str]) -> np.ndarray:
    where = {image_id: i for i, image_id in enumerate(ids)}
    return np.array([where[i] for i in table["image_id"]], dtype=np.int64)
