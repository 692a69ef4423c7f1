"""Near-duplicate finding as one call: describe a folder of images (or take descriptors already
made), group the images within a threshold of each other (connected components:
``cluster(..., "duplicates")``) and give the groups as a table, as imagededup's dictionary, or
as the files ``scripts/find_duplicates.py`` writes.

::

    from clustering import find_duplicates

    found = find_duplicates("photos/", "dhash")     # threshold: DEFAULT_THRESHOLDS["dhash"]
    found.groups        # group, image (path), image_id, distance, file
    found.to_dict()     # {"a.jpg": ["a_copy.jpg"], "b.jpg": [], ...} as imagededup gives
    found.keepers()     # one image to keep per group, and why (Duplicates.keeper_rule)
    found.removable()   # the other members' paths: for the user to delete, never deleted here
    found.plot()        # a matplotlib Figure: the groups as rows of thumbnails
    found               # in a notebook: a table of the largest groups (_repr_html_)
    found.write(folder) # duplicates.csv, keepers.csv, removable.txt, index.html, ...

The threshold is a distance of the method (`hashing.distances`: cosine as (1 - cos) / 2 in
[0, 1], Hamming as a bit error rate); two images are duplicates when a chain of pairs within it
joins them. Files in the folder that are not images by their extension (a ``.txt``) are
reported (``not_images``) beside the images that could not be read (``skipped``).
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import numpy as np
import pandas as pd
from PIL import Image

from clustering.cli import check_one_row_method
from clustering.duplicates_report import (
    NOTEBOOK_GROUPS,
    PAGE_GROUPS,
    duplicates_html,
    plot_duplicates,
    write_report,
)
from clustering.methods import Clustering, cluster
from clustering.points import Points, as_points
from clustering.report import evaluate, write_clustering
from data_retrieval import IMAGE_EXTENSIONS, BadImage, ImageRecord, list_images
from hashing import describe, parse_algorithm
from hashing.distances import pairwise
from helpers import atomic_write, write_csv
from helpers.descriptors import BinaryCodes, FloatFeatures, LocalDescriptors, MultiCodes

if TYPE_CHECKING:
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

#: The method that describes the images when none is named.
DEFAULT_METHOD = "sscd_distilled"

#: Thresholds for what people call duplicates (scripts/benchmark_duplicates.py, 2026-12-05;
#: docs/performance.md): 30 BSDS500 photos with 6 common edits each (JPEG 50, 20% crop, 10
#: degree rotation, 30 characters of text, noise 0.02, brightness 1.5) must be grouped with
#: V-measure >= 0.97, and 1,000 distinct photos (imagenet_samples) give no false group. The
#: middle of the thresholds meeting both: sscd_distilled 0.225 (V 0.996, 0 false groups; both
#: met from 0.175 to 0.275). No hash meets both at any threshold (crops and rotations sit
#: farther than the nearest unrelated pairs): dhash 0.10 and phash 0.125 are their best
#: V-measure with no false group (0.894, 0.884). Other methods need a threshold (or one from a
#: benchmark digest: `threshold_from_digest`).
DEFAULT_THRESHOLDS = {"sscd_distilled": 0.225, "dhash": 0.10, "phash": 0.125}

#: The columns of ``duplicates.csv``.
TABLE_COLUMNS = ("group", "image", "image_id", "distance")

#: How `Duplicates.keepers` chooses the image to keep in each group (a total order, so the
#: choice is the same on every run); printed by the script and written in the report.
KEEPER_RULE = ("in each group, keep the image with the most pixels (width x height, read from "
               "the file's header), then the largest file, then the oldest (modification "
               "time), then the first path in alphabetical order; the others are removable")

#: Groups also drawn as the clustering report's image grids (``figures/galleries/``).
GALLERY_GRIDS = 12

#: The columns of `Duplicates.keepers` (``keepers.csv``).
KEEPER_COLUMNS = ("group", "image", "image_id", "file", "width", "height", "bytes", "modified",
                  "members", "reason")


class FileFacts(NamedTuple):
    """What the keeper rule reads of a file: its size in pixels (from the header, no pixel
    decoded), in bytes, and its modification time; ``None`` where it cannot be read."""

    width: int | None
    height: int | None
    bytes: int | None
    mtime: float | None

    @property
    def pixels(self) -> int | None:
        return None if self.width is None else self.width * self.height


def file_facts(path: str | os.PathLike | None) -> FileFacts:
    """The `FileFacts` of an image file (all ``None`` without a readable file)."""
    if not path:
        return FileFacts(None, None, None, None)
    try:
        info = os.stat(path)
    except OSError:
        return FileFacts(None, None, None, None)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:  # the header only: nothing decoded
                width, height = image.size
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        width = height = None
    return FileFacts(width, height, info.st_size, info.st_mtime)


def _keeper_order(path: str, facts: FileFacts) -> tuple:
    """Sort key of the keeper rule: most pixels, largest file, oldest, first path (what cannot
    be read comes last)."""
    return (-facts.pixels if facts.pixels is not None else math.inf,
            -facts.bytes if facts.bytes is not None else math.inf,
            facts.mtime if facts.mtime is not None else math.inf, path)


def _time_text(mtime: float | None, other: float | None = None) -> str:
    if mtime is None:
        return "unknown"
    spec = "seconds"
    if other is not None and int(mtime) == int(other):
        spec = "microseconds"
    return datetime.fromtimestamp(mtime).isoformat(sep=" ", timespec=spec)


def _keeper_reason(keep: FileFacts, other: FileFacts) -> str:
    """Which step of the rule chose ``keep`` over the runner-up ``other``."""
    if keep.pixels is None:
        return "no file facts to compare: first path in alphabetical order"
    if other.pixels is None or keep.pixels > other.pixels:
        next_size = ("unreadable" if other.pixels is None
                     else f"{other.width}x{other.height}")
        return f"most pixels: {keep.width}x{keep.height} (next: {next_size})"
    same = f"as many pixels ({keep.width}x{keep.height})"
    if other.bytes is None or keep.bytes > other.bytes:
        return f"{same}, largest file: {keep.bytes} bytes (next: {other.bytes})"
    if other.mtime is None or keep.mtime < other.mtime:
        return (f"{same} and file size, oldest: modified {_time_text(keep.mtime, other.mtime)}"
                f" (next: {_time_text(other.mtime, keep.mtime)})")
    return f"{same}, file size and modification time: first path in alphabetical order"

_DESCRIPTORS = (Points, BinaryCodes, FloatFeatures, MultiCodes, LocalDescriptors)


def default_threshold(label: str) -> float:
    """The default threshold of a method label (`DEFAULT_THRESHOLDS`); a hash's draft decode
    (``dhash_decode=draft``) takes its exact mode's, since the draft moves its AUC by
    thousandths (docs/performance.md, "Draft decode").

    Raises
    ------
    ValueError
        The method has none.
    """
    exact = label.replace("_decode=draft", "")
    if exact in DEFAULT_THRESHOLDS:
        return DEFAULT_THRESHOLDS[exact]
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
        ``(image id, path, reason)`` of each image file skipped: empty, unreadable or not
        decodable.
    folder : Path or None
        The folder searched, when one was.
    not_images : list of tuple
        ``(image id, path, reason)`` of each file of the folder that is not an image by its
        extension (a ``.txt``), not looked at (`other_files`).
    """

    #: How `keepers` chooses (`KEEPER_RULE`).
    keeper_rule: ClassVar[str] = KEEPER_RULE

    groups: pd.DataFrame
    files: list[str]
    method: str | None
    threshold: float
    clustering: Clustering
    points: Points
    skipped: list[tuple[str, str, str]] = field(default_factory=list)
    folder: Path | None = None
    not_images: list[tuple[str, str, str]] = field(default_factory=list)
    _facts: dict[str, FileFacts] = field(default_factory=dict, init=False, compare=False)

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
                f"skipped={len(self.skipped)}"
                f"{f', not_images={len(self.not_images)}' if self.not_images else ''})")

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

    def file_facts(self, path: str) -> FileFacts:
        """`file_facts` of an image's path, read once per result (the keeper rule, the
        report and the figure see the same numbers)."""
        if path not in self._facts:
            self._facts[path] = file_facts(path)
        return self._facts[path]

    def keepers(self) -> pd.DataFrame:
        """One image to keep per group of two or more, by `keeper_rule`: the most pixels
        (width x height, read from the file's header without decoding it), then the largest
        file, then the oldest (modification time), then the first path in alphabetical
        order.

        Returns
        -------
        pandas.DataFrame
            One row per group (`KEEPER_COLUMNS`): ``group``, the keeper's ``image`` (path),
            ``image_id``, ``file``, ``width``, ``height``, ``bytes``, ``modified`` (local
            time, ISO), ``members`` (the group's size) and ``reason`` (the step of the rule
            that chose it over the runner-up, with both values).
        """
        rows = []
        for number, members in self.groups.groupby("group", sort=True):
            ranked = sorted(
                ((row, self.file_facts(row.image)) for row in members.itertuples(index=False)),
                key=lambda pair: _keeper_order(pair[0].image or pair[0].file, pair[1]))
            (keep, facts), (_, other) = ranked[0], ranked[1]
            rows.append({"group": number, "image": keep.image, "image_id": keep.image_id,
                         "file": keep.file, "width": facts.width, "height": facts.height,
                         "bytes": facts.bytes,
                         "modified": (_time_text(facts.mtime) if facts.mtime is not None
                                      else None),
                         "members": len(members), "reason": _keeper_reason(facts, other)})
        return pd.DataFrame(rows, columns=list(KEEPER_COLUMNS))

    def removable(self) -> list[str]:
        """The paths of every group's members but its keeper (`keepers`), group by group in
        ``duplicates.csv``'s order: the files one could delete. Nothing is deleted here. An
        image without a path (descriptors given without their files) is not listed."""
        kept = set(self.keepers()["image_id"])
        rest = self.groups[~self.groups["image_id"].isin(kept)]
        return [path for path in rest["image"] if path]

    def plot(self, path: str | os.PathLike | None = None, groups: int = 8,
             members: int = 6) -> Figure:
        """The largest groups as rows of thumbnails with file names and distances, the image
        to keep framed (`clustering.duplicates_report.plot_duplicates`).

        Parameters
        ----------
        path : path, optional
            Save the figure there (its suffix chooses the format); nothing is written
            without one.
        groups, members : int
            Groups drawn and images per group.

        Returns
        -------
        matplotlib.figure.Figure
        """
        return plot_duplicates(self, path, groups=groups, members=members)

    def to_html(self, groups: int = NOTEBOOK_GROUPS) -> str:
        """A compact HTML table of the ``groups`` largest groups with small inline
        thumbnails (base64 PNG) and the counts; what is not shown is said."""
        return duplicates_html(self, groups=groups)

    def _repr_html_(self) -> str:
        return self.to_html()

    def write(self, output: str | os.PathLike, galleries: int = PAGE_GROUPS,
              device: str = "auto") -> list[Path]:
        """Write into ``output``: ``duplicates.csv`` (`TABLE_COLUMNS`), ``keepers.csv``
        (`keepers`), ``removable.txt`` (`removable`, absolute paths, one a line),
        ``index.html`` with ``thumbnails/`` (`clustering.duplicates_report.write_report`:
        the counts, the ``galleries`` largest groups, the threshold, the keepers, the files
        skipped) and the clustering files (`clustering.report.write_clustering`:
        ``assignments.csv``, ``clusters.json`` with the folder, threshold, keeper rule and
        skipped files, figures, the `GALLERY_GRIDS` largest groups as image grids in
        ``figures/galleries/``; its ``index.html`` is replaced by the duplicates page).

        Returns
        -------
        list of Path
        """
        output = Path(output)
        output.mkdir(parents=True, exist_ok=True)
        # a file name that is not UTF-8 is written as its own bytes (as in every manifest),
        # so the path in the table opens the file; formula-like names are quoted
        write_csv(self.groups[list(TABLE_COLUMNS)], output / "duplicates.csv")
        write_csv(self.keepers(), output / "keepers.csv")
        write_path_list(self.removable(), output / "removable.txt")
        evaluation = evaluate(self.clustering, self.points, device=device)
        extra: dict[str, Any] = {} if self.folder is None else {"folder": str(self.folder)}
        extra.update(threshold=self.threshold, keeper_rule=KEEPER_RULE,
                     skipped=[list(b) for b in self.skipped],
                     not_images=[list(b) for b in self.not_images])
        written = write_clustering(self.clustering, output, evaluation, points=self.points,
                                   galleries=min(galleries, GALLERY_GRIDS), extra=extra)
        # index.html is the duplicates page: it replaces the clustering page (for one
        # threshold and no truth, a table of one row), whose galleries stay in figures/
        grids = sorted((output / "figures" / "galleries").glob("*.png"))
        links = ["duplicates.csv", "keepers.csv", "removable.txt", "clusters.json",
                 "assignments.csv"]
        page = write_report(self, output, groups=galleries, links=links,
                            grids=[p.relative_to(output).as_posix() for p in grids])
        return [output / "duplicates.csv", output / "keepers.csv", output / "removable.txt",
                *(p for p in written if p.name != "index.html"), *page]


def _described(images: Any, method: str, unreadable: Sequence[BadImage], batch_size: int,
               show_progress: bool | None) -> tuple[Points, list[tuple[str, str, str]]]:
    """A folder's images (or records) described by ``method``, as rows, and every image
    skipped on the way."""
    if isinstance(images, str | os.PathLike):
        records, unreadable = list_folder(Path(images))
    else:
        records = list(images)
        if len(records) < 2:
            raise ValueError(f"{len(records)} images given; duplicates need at least 2")
    described = describe(records, method, batch_size=batch_size, show_progress=show_progress)
    skipped = [_bad_row(b) for b in unreadable] + [tuple(b) for b in described.bad]
    return as_points(described), skipped


def find_duplicates(
    images: Any,
    method: str = DEFAULT_METHOD,
    threshold: float | None = None,
    *,
    unreadable: Sequence[BadImage] = (),
    not_images: Sequence[BadImage] = (),
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
        A folder (searched recursively; unreadable files are logged and skipped, files that
        are not images by their extension reported in ``not_images``), the records
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
    not_images : sequence of BadImage
        Files of the folder that are not images by their extension (`other_files`), when
        ``images`` is not a folder (a folder is searched for them).
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
            not_images = other_files(folder)
        points, skipped = _described(images, method, unreadable, batch_size, show_progress)
    result = cluster(points, "duplicates", threshold=[threshold], device=device)
    found = _duplicates(result, points, float(threshold), label, skipped, folder)
    found.not_images = [_bad_row(b) for b in not_images]
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


def other_files(folder: str | os.PathLike) -> list[BadImage]:
    """The files under ``folder`` that are not images by their extension (a ``.txt``, a
    ``.pdf``), searched as `data_retrieval.list_images` searches (recursively, links to folders
    followed once, hidden names skipped), each with the reason it is skipped. A summary is
    logged; each file at DEBUG.

    Returns
    -------
    list of BadImage
        Sorted by path.
    """
    found: list[BadImage] = []
    seen: set[tuple[int, int]] = set()
    taken = " ".join(sorted(IMAGE_EXTENSIONS))
    for root, dirs, files in os.walk(folder, followlinks=True):
        try:
            info = os.stat(root)
        except OSError:  # list_images reports a folder it cannot read
            dirs[:] = []
            continue
        if (info.st_dev, info.st_ino) in seen:  # a link loop: list_images reports it
            dirs[:] = []
            continue
        seen.add((info.st_dev, info.st_ino))
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            suffix = Path(name).suffix.lower()
            if name.startswith(".") or suffix in IMAGE_EXTENSIONS:
                continue
            kind = f"extension {suffix}" if suffix else "no extension"
            found.append(BadImage(Path(root) / name,
                                  f"not an image by its extension ({kind}; images are {taken})"))
    found.sort(key=lambda bad: bad.path)
    if found:
        kinds = Counter(b.path.suffix.lower() or "no extension" for b in found)
        logger.warning("skipping %d file(s) that are not images by their extension (%s)",
                       len(found), ", ".join(f"{k} {v}" for k, v in kinds.most_common()))
        for bad in found:
            logger.debug("skipping %s: %s", bad.path, bad.reason)
    return found


def write_path_list(paths: Iterable[str], path: str | os.PathLike) -> int:
    """Write ``paths`` into a plain text file, one absolute path a line (atomically; a name
    that is not UTF-8 as its own bytes, so the line opens the file). A path holding a line
    break cannot be one line: it is left out, with a warning.

    Returns
    -------
    int
        Paths written.
    """
    lines = []
    for item in paths:
        if "\n" in item or "\r" in item:
            logger.warning("not listed in %s (its name holds a line break): %r", path, item)
            continue
        lines.append(os.fsencode(os.path.abspath(item)))
    with atomic_write(path, "wb") as handle:
        handle.write(b"".join(line + b"\n" for line in lines))
    return len(lines)


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
