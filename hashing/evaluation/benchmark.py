"""The copy-detection benchmark: describe a database and queries, match, keep what metrics need.

For every query and algorithm the benchmark keeps the nearest database image, its distance, and
(for positives) the distance to the true source. All threshold metrics are computed later from
these arrays (`hashing.evaluation.metrics`), never by matching again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from data_retrieval.records import ImageRecord, source_rows
from data_retrieval.splits import CONTROL, EXPERIMENTAL, split_groups
from hashing.distances import descriptor_distances
from hashing.evaluation.metrics import micro_average_precision
from hashing.evaluation.operating_points import roc
from hashing.methods.describing import Algorithm, concat_descriptors, describe_all
from helpers import ImageLoadError, load_image, progress
from helpers.display import html_table, plural
from helpers.images import is_jpeg_file

logger = logging.getLogger(__name__)

Query = tuple[ImageRecord, Image.Image]

POSITIVE, NEGATIVE = "positive", "negative"


@dataclass
class BenchmarkResult:
    """What a benchmark run measured.

    Attributes
    ----------
    database : pandas.DataFrame
        One row per database image: ``image_id``, ``path``.
    matches : pandas.DataFrame
        One row per query and algorithm: ``algorithm``, ``query_id``, ``source_id``,
        ``attack_id``, ``kind`` (positive/negative), ``nearest_id``, ``nearest_index``,
        ``distance`` (to the nearest), ``source_distance`` (NaN for negatives), ``correct``.
    db_time, match_time : pandas.DataFrame
        Per algorithm: ``seconds`` (summed over worker threads), ``images``,
        ``seconds_per_image``.
    bad : list of (str, str)
        Inputs skipped: (path or image id, reason).
    wall_seconds : float
    descriptors : dict or None
        With ``keep_descriptors``: per algorithm, the database's and the queries' descriptors
        (queries in the order of ``matches``' rows of that algorithm).
    metrics : dict
        Per algorithm, the metric its distances are in (``hamming``, ``local_l2``...; empty
        when unknown).
    """

    database: pd.DataFrame
    matches: pd.DataFrame
    db_time: pd.DataFrame
    match_time: pd.DataFrame
    bad: list[tuple[str, str]] = field(default_factory=list)
    wall_seconds: float = 0.0
    descriptors: dict[str, tuple[Any, Any]] | None = None
    metrics: dict[str, str] = field(default_factory=dict)

    def to_frame(self) -> pd.DataFrame:
        """One row per algorithm, from ``matches`` alone (no threshold chosen): ``algorithm``,
        ``metric``, ``queries``, ``positives``, ``negatives``, ``identified`` (positives whose
        nearest database image is their source), ``top1_accuracy`` (identified / positives),
        ``auc`` (detection ROC), ``micro_ap`` and ``recall_at_p90`` (DISC21), and the
        milliseconds per image to describe the database and to match a query. The same
        scores as the digest's ``summary.csv`` (`hashing.evaluation.digest`), which adds the
        rates at its summary threshold."""
        rows = []
        db_ms = self.db_time.set_index("algorithm")["seconds_per_image"] * 1e3
        match_ms = self.match_time.set_index("algorithm")["seconds_per_image"] * 1e3
        for label, group in self.matches.groupby("algorithm", sort=False):
            positive = (group["kind"] == POSITIVE).to_numpy()
            correct = group["correct"].to_numpy(bool)
            distance = group["distance"].to_numpy(np.float64)
            ap, r90 = micro_average_precision(distance, correct, int(positive.sum()))
            rows.append({
                "algorithm": label, "metric": self.metrics.get(label, ""),
                "queries": len(group), "positives": int(positive.sum()),
                "negatives": int((~positive).sum()), "identified": int(correct.sum()),
                "top1_accuracy": (correct.sum() / positive.sum() if positive.any()
                                  else np.nan),
                "auc": roc(distance, positive)["auc"], "micro_ap": ap, "recall_at_p90": r90,
                "db_ms_per_image": db_ms.get(label, np.nan),
                "match_ms_per_image": match_ms.get(label, np.nan)})
        return pd.DataFrame(rows)

    def __repr__(self) -> str:
        """One line: algorithms, images and queries, never the tables."""
        labels = list(dict.fromkeys(self.matches["algorithm"])) if len(self.matches) else []
        queries = len(self.matches) // max(len(labels), 1)
        shown = ", ".join(labels[:4]) + (f" and {len(labels) - 4} more" if len(labels) > 4
                                         else "")
        return (f"BenchmarkResult({plural(len(labels), 'algorithm')} [{shown}], "
                f"{plural(len(self.database), 'database image')}, "
                f"{plural(queries, 'query', 'queries')}, {len(self.bad)} skipped, "
                f"{self.wall_seconds:.1f} s)")

    def _repr_html_(self) -> str:
        return html_table(self.to_frame(), repr(self))


def load_records(records: Sequence[ImageRecord], bad: list[tuple[str, str]]) -> Iterator[Query]:
    """Images of records read from disk; unreadable ones are logged, listed in ``bad`` and
    skipped."""
    for record in records:
        try:
            yield record, load_image(record.path)
        except ImageLoadError as exc:
            logger.warning("skipping %s: %s", exc.path, exc.reason)
            bad.append((str(exc.path), exc.reason))


def _batches(items: Iterable[Query], size: int) -> Iterator[list[Query]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def _timing_frame(seconds: dict[str, float], images: int) -> pd.DataFrame:
    return pd.DataFrame({
        "algorithm": list(seconds), "seconds": list(seconds.values()), "images": images,
        "seconds_per_image": [s / max(images, 1) for s in seconds.values()],
    })


def run_benchmark(
    algorithms: Sequence[Algorithm],
    database: Iterable[Query],
    queries: Iterable[Query],
    batch_size: int = 256,
    device: str = "auto",
    workers: int | None = None,
    total_queries: int | None = None,
    metrics: dict[str, str] | None = None,
    matcher: Callable[[str, Any], Callable[[Any], tuple[np.ndarray, np.ndarray]] | None]
    | None = None,
    keep_descriptors: bool = False,
) -> BenchmarkResult:
    """Describe the database, then match every query against it, batch by batch.

    Parameters
    ----------
    algorithms : sequence of Algorithm
        Methods to compare; each describes the same decoded images.
    database : iterable of (ImageRecord, PIL.Image.Image)
        The originals (the experimental group).
    queries : iterable of (ImageRecord, PIL.Image.Image)
        Attacked images. A query whose ``source_id`` is a database image is a positive, any
        other a negative. Made on the fly (`generator.iter_attacks`) or read from disk.
    batch_size : int
        Images described and matched at once.
    device : str
        Where distances are computed (``"auto"``: CUDA when present).
    workers : int, optional
        Threads that describe images (default: the usable cores).
    total_queries : int, optional
        For the progress bar.
    metrics : dict, optional
        Distance of float-feature algorithms by label (codes know theirs).
    matcher : callable, optional
        ``matcher(label, database_descriptors)`` returns a function giving each query's nearest
        database row and its distance (``(rows, distances)`` of a batch of query descriptors),
        or ``None`` for exact matching: how the benchmark searches through an index
        (``fast_search.index_matcher``). Default: exact distances to every database image.
        The distance to the true source is always computed exactly.
    keep_descriptors : bool
        Return every descriptor in ``descriptors`` (memory: all queries' descriptors), for
        measures beyond matching (e.g. the spread of each true group).

    Returns
    -------
    BenchmarkResult

    Raises
    ------
    ValueError
        No algorithm, an empty database, or no queries.
    """
    if not algorithms:
        raise ValueError("no algorithm to benchmark")
    labels = [a.label for a in algorithms]
    if len(set(labels)) != len(labels):
        raise ValueError(f"algorithms repeat: {labels}")
    metrics = metrics or {}
    started = time.perf_counter()
    db = _describe_database(algorithms, database, batch_size, workers)
    searchers = {label: matcher(label, db.descriptors[label]) if matcher else None
                 for label in labels}
    matched = _match_queries(algorithms, queries, db, searchers, metrics, batch_size, device,
                             workers, total_queries, keep_descriptors)
    return _result(labels, db, matched, metrics, time.perf_counter() - started,
                   keep_descriptors)


@dataclass
class _Database:
    """The described database: its records, each algorithm's descriptors and time."""

    records: list[ImageRecord]
    descriptors: dict[str, Any]
    seconds: dict[str, float]

    @property
    def ids(self) -> np.ndarray:
        return np.array([r.image_id for r in self.records], dtype=object)


@dataclass
class _Matched:
    """Per algorithm, each query batch's (nearest row, its distance, the source's distance);
    per query, (id, source id, attack id, is positive, source row); times; kept descriptors."""

    rows: dict[str, list]
    meta: list[tuple[str, str, str | None, bool, int]]
    describe_seconds: dict[str, float]
    match_seconds: dict[str, float]
    kept: dict[str, list]


def _describe_database(algorithms: Sequence[Algorithm], database: Iterable[Query],
                       batch_size: int, workers: int | None) -> _Database:
    """Every algorithm's descriptors of the database, batch by batch; repeated ids refused."""
    labels = [a.label for a in algorithms]
    seconds = dict.fromkeys(labels, 0.0)
    records: list[ImageRecord] = []
    parts: dict[str, list] = {label: [] for label in labels}
    drafted = any(a.draft_side for a in algorithms)
    for batch in _batches(database, batch_size):
        items = _as_files(batch) if drafted else batch
        described = _describe_batch(items, algorithms, workers, seconds)
        records += [r for r, _ in batch]
        for label in labels:
            parts[label].append(described[label])
    if not records:
        raise ValueError("the database is empty (no readable image)")
    descriptors = {label: concat_descriptors(parts[label]) for label in labels}
    for label, desc in descriptors.items():
        if getattr(desc, "counts", None) is not None and not desc.counts.all():
            empty = [records[i].image_id for i in np.flatnonzero(desc.counts == 0)]
            logger.warning("%s: %d database images without keypoints (never matched): %s",
                           label, len(empty), ", ".join(empty[:5]))
    source_rows([], records)  # repeated database ids fail now, before any query
    return _Database(records, descriptors, seconds)


def _as_files(batch: list[Query]) -> list[Any]:
    """A draft decode (``decode='draft'``) reads the JPEG file itself: the database
    originals go to `describe_all` as their records (their files, read again), not as the
    images decoded already, which a draft method could only hash as they are. Anything that
    is not a JPEG file stays the decoded image."""
    return [record if record.path is not None and is_jpeg_file(record.path) else (record, image)
            for record, image in batch]


def _match_queries(algorithms: Sequence[Algorithm], queries: Iterable[Query], db: _Database,
                   searchers: dict[str, Any], metrics: dict[str, str], batch_size: int,
                   device: str, workers: int | None, total_queries: int | None,
                   keep_descriptors: bool) -> _Matched:
    """Each batch of queries described by every algorithm and matched against the database:
    exactly, or through the algorithm's searcher (the source's distance is always exact)."""
    labels = [a.label for a in algorithms]
    done = _Matched({label: [] for label in labels}, [], dict.fromkeys(labels, 0.0),
                    dict.fromkeys(labels, 0.0), {label: [] for label in labels})
    bar = progress(total=total_queries, desc="matching", unit="img")
    for batch in _batches(queries, batch_size):
        described = _describe_batch(batch, algorithms, workers, done.describe_seconds)
        src = source_rows([r for r, _ in batch], db.records)
        for (record, _), index in zip(batch, src, strict=True):
            done.meta.append((record.image_id, record.source_id, record.attack_id, index >= 0,
                              int(index)))
        for label in labels:
            if keep_descriptors:
                done.kept[label].append(described[label])
            tic = time.perf_counter()
            done.rows[label].append(_match_batch(described[label], db.descriptors[label],
                                                 src, searchers[label], metrics.get(label),
                                                 device))
            done.match_seconds[label] += time.perf_counter() - tic
        bar.update(len(batch))
    bar.close()
    if not done.meta:
        raise ValueError("no query image to match (all inputs missing or unreadable)")
    for label in labels:
        empty = sum(int(np.isinf(best).sum()) for _, best, _ in done.rows[label])
        if empty and getattr(db.descriptors[label], "counts", None) is not None:
            logger.warning("%s: %d of %d queries are infinitely far from every database image "
                           "(no keypoint, or fewer than the cutoff): never matched", label,
                           empty, len(done.meta))
    return done


def _match_batch(queries: Any, database: Any, src: np.ndarray, searcher: Any,
                 metric: str | None, device: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(nearest database row or -1, its distance, the distance to the true source or NaN) of
    each query of a batch."""
    if searcher is not None:
        nearest, best = searcher(queries)
        return nearest, best, _source_distances(queries, database, src, metric, device)
    dist = descriptor_distances(queries, database, metric, device)
    nearest = dist.argmin(axis=1)
    best = dist[np.arange(len(dist)), nearest]
    # nothing within any distance (an image without keypoints): no nearest image
    nearest = np.where(np.isfinite(best), nearest, -1)
    own = np.where(src >= 0, dist[np.arange(len(dist)), np.maximum(src, 0)], np.nan)
    return nearest, best, own


def _result(labels: list[str], db: _Database, matched: _Matched, metrics: dict[str, str],
            wall_seconds: float, keep_descriptors: bool) -> BenchmarkResult:
    """The matches table (one row per algorithm and query), times and descriptors."""
    db_ids = db.ids
    query_ids, source_ids, attack_ids, positive, src_index = map(
        np.array, zip(*matched.meta, strict=True))
    frames = []
    for label in labels:
        nearest, best, own = (np.concatenate(x) for x in zip(*matched.rows[label],
                                                             strict=True))
        frames.append(pd.DataFrame({
            "algorithm": label, "query_id": query_ids, "source_id": source_ids,
            "attack_id": attack_ids, "kind": np.where(positive, POSITIVE, NEGATIVE),
            # an approximate index may find nothing for a query (row -1, distance inf)
            "nearest_id": np.where(nearest >= 0, db_ids[np.maximum(nearest, 0)], ""),
            "nearest_index": nearest,
            "source_index": src_index, "distance": best, "source_distance": own,
            # the source found, or another image exactly as near (a tie; an index's float32
            # distance may differ from the exact one in the last bits). An approximate index
            # that returns a farther image has missed the source, even if the source is nearer.
            # an infinite distance (a keypoint method's image without keypoints) finds nothing
            "correct": positive & (nearest >= 0) & np.isfinite(best) & (
                (nearest == src_index) | np.isclose(own, best, rtol=1e-5, atol=1e-6)),
        }))
    n_queries = len(matched.meta)
    seconds = matched.describe_seconds
    match_time = _timing_frame({k: seconds[k] + matched.match_seconds[k] for k in labels},
                               n_queries)
    match_time["describe_seconds"] = [seconds[k] for k in labels]
    match_time["distance_seconds"] = [matched.match_seconds[k] for k in labels]
    return BenchmarkResult(
        database=pd.DataFrame({"image_id": db_ids,
                               "path": [str(r.path) if r.path else "" for r in db.records]}),
        matches=pd.concat(frames, ignore_index=True),
        db_time=_timing_frame(db.seconds, len(db.records)),
        match_time=match_time,
        wall_seconds=wall_seconds,
        descriptors={label: (db.descriptors[label], concat_descriptors(matched.kept[label]))
                     for label in labels} if keep_descriptors else None,
        # the descriptors' own metric where they have one (it is what their distances used)
        metrics={label: str(getattr(db.descriptors[label], "metric", None) or metrics.get(label))
                 for label in labels},
    )


def _source_distances(queries: Any, database: Any, src: np.ndarray, metric: str | None,
                      device: str) -> np.ndarray:
    """Each query's exact distance to its true source (NaN for negatives)."""
    own = np.full(len(src), np.nan)
    positive = np.flatnonzero(src >= 0)
    if len(positive):
        dist = descriptor_distances(queries[positive], database[src[positive]], metric, device)
        own[positive] = np.diagonal(dist)
    return own


@dataclass
class Protocol:
    """The study's copy-detection protocol on a dataset: which originals are the database,
    which are attacked, and where the queries come from.

    Use `study_protocol` to make one; `queries()` then gives the query stream and ``bad``
    collects what was skipped on the way.
    """

    database: list[ImageRecord]
    control: list[ImageRecord]
    attacked: list[ImageRecord]
    attacks: list
    seed: int
    query_records: list[ImageRecord] | None = None
    workers: int | None = None
    bad: list[tuple[str, str]] = field(default_factory=list)
    _stream: object = None

    @property
    def n_queries(self) -> int:
        """Queries planned (those actually matched can be fewer: unreadable ones are skipped)."""
        if self.query_records is not None:
            return len(self.query_records)
        return len(self.attacked) * len(self.attacks)

    def database_images(self) -> Iterator[Query]:
        """The database originals, read from disk (unreadable ones skipped, in ``bad``)."""
        return load_records(self.database, self.bad)

    def queries(self) -> Iterable[Query]:
        """The queries: read from the manifest, or attacked on the fly (seeded by seed, image
        id and attack id, in worker processes)."""
        if self.query_records is not None:
            return load_records(self.query_records, self.bad)
        # the generator loads fonts and matplotlib: on use
        from generator.pipeline import iter_attacks

        self._stream = iter_attacks(self.attacked, self.attacks, seed=self.seed,
                                    workers=self.workers)
        return self._stream

    def finish(self) -> list[tuple[str, str]]:
        """Every input skipped so far (after the queries were consumed)."""
        if self._stream is not None:
            self.bad += [(str(b.path), b.reason) for b in self._stream.bad]
            self._stream = None
        self.bad = list(dict.fromkeys(self.bad))  # a file bad as original and as query: once
        return self.bad


def study_protocol(
    records: Sequence[ImageRecord],
    attacks: Sequence,
    n_experimental: int = 250,
    n_control: int = 250,
    n_attacked: int = 100,
    split_seed: int = 0,
    seed: int = 0,
    query_records: Sequence[ImageRecord] | None = None,
    workers: int | None = None,
) -> Protocol:
    """The original study's protocol: a seeded split of the originals into the database
    (experimental group) and a control group never in it; the first ``n_attacked`` of each
    group attacked with every attack (or the queries of a manifest, whose ``source_id`` tells
    positives from negatives).

    Raises
    ------
    ValueError
        An empty database, more attacked images than a group holds, or no query.
    """
    groups = split_groups(list(records), n_experimental, n_control, split_seed)
    database = [r for r in groups if r.group == EXPERIMENTAL]
    control = [r for r in groups if r.group == CONTROL]
    if not database:
        raise ValueError("--n-experimental is 0: the database would be empty")
    attacked: list[ImageRecord] = []
    if query_records is not None:
        if not query_records:
            raise ValueError("the query manifest lists no image")
    else:
        if n_attacked > len(database) or (control and n_attacked > len(control)):
            raise ValueError(f"--n-attacked {n_attacked} is more than a group holds "
                             f"({len(database)} experimental, {len(control)} control)")
        attacked = database[:n_attacked] + control[:n_attacked]
    protocol = Protocol(database, control, attacked, list(attacks), seed,
                        None if query_records is None else list(query_records), workers)
    if protocol.n_queries == 0:
        raise ValueError("no query: choose --n-attacked > 0 and at least one attack")
    return protocol


def _describe_batch(batch: list, algorithms: Sequence[Algorithm], workers: int | None,
                    seconds: dict[str, float]) -> dict[str, Any]:
    """One batch of decoded (record, image) pairs described by every algorithm (`describe_all`,
    quietly: the benchmark's own bar counts queries)."""
    return describe_all(batch, algorithms, batch_size=max(1, len(batch)), workers=workers,
                        on_error="raise", show_progress=False, seconds=seconds)
