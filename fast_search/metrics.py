"""Measures of a search: recall@k, the rank of the source, overlap with exact search,
copy-detection micro-AP (DISC21) and the precision / recall of range search."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from hashing.evaluation.metrics import micro_average_precision


def _check(indices: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    indices = np.asarray(indices)
    truth = np.asarray(truth, dtype=np.int64)
    if indices.ndim != 2 or len(indices) != len(truth):
        raise ValueError(f"indices {indices.shape} and truth {truth.shape} do not match")
    return indices, truth


def source_ranks(indices: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """1-based rank of each query's source among its neighbours; 0 where it is not among
    them, -1 for queries without a source in the database."""
    indices, truth = _check(indices, truth)
    hit = indices == truth[:, None]
    ranks = np.where(hit.any(axis=1), hit.argmax(axis=1) + 1, 0)
    ranks[truth < 0] = -1
    return ranks.astype(np.int64)


def recall_at_k(indices: np.ndarray, truth: np.ndarray, ks: Sequence[int]) -> dict[int, float]:
    """Fraction of the queries with a source in the database that find it among their k
    nearest, for each k (NaN when no query has a source)."""
    ranks = source_ranks(indices, truth)
    positive = ranks >= 0
    out = {}
    for k in ks:
        if k > indices.shape[1]:
            raise ValueError(f"recall@{k} needs {k} neighbours, the search gave "
                             f"{indices.shape[1]}")
        out[int(k)] = (float(((ranks[positive] >= 1) & (ranks[positive] <= k)).mean())
                       if positive.any() else float("nan"))
    return out


def knn_intersection(indices: np.ndarray, reference: np.ndarray, k: int) -> float:
    """Share of the exact k nearest neighbours an approximate search also returns (Faiss's
    ``knn_intersection_measure``), averaged over queries."""
    from faiss.contrib.evaluation import knn_intersection_measure  # Faiss: on use

    if indices.shape[1] < k or reference.shape[1] < k:
        raise ValueError(f"intersection@{k} needs {k} neighbours")
    return float(knn_intersection_measure(np.asarray(indices)[:, :k],
                                          np.asarray(reference)[:, :k]))


def knn_micro_ap(distances: np.ndarray, indices: np.ndarray, truth: np.ndarray
                 ) -> dict[str, float]:
    """Copy-detection micro-average precision over all queries, controls included, as DISC21
    computes it (`hashing.evaluation.metrics.micro_average_precision`): every returned neighbour of
    every query is a prediction scored by its distance (``k`` columns: ``k`` candidates per
    query; one column: the nearest alone, as the hashing benchmark reports it); and the recall
    at 90% precision. Missing neighbours (index -1, infinite distance) are no predictions.

    Raises
    ------
    ValueError
        A query lists one database row twice.
    """
    indices, truth = _check(indices, truth)
    d = np.asarray(distances, dtype=np.float64)
    if d.shape != indices.shape:
        raise ValueError(f"distances {d.shape} and indices {indices.shape} do not match")
    found = (indices >= 0) & np.isfinite(d)
    correct = (indices == truth[:, None]) & (truth[:, None] >= 0)
    queries = np.broadcast_to(np.arange(len(indices))[:, None], indices.shape)
    ap, r90 = micro_average_precision(
        d[found], correct[found], int((truth >= 0).sum()),
        pairs=np.stack([queries[found], indices[found]], axis=1))
    return {"micro_ap": ap, "recall_at_p90": r90}


def range_pr(lims: np.ndarray, distances: np.ndarray, indices: np.ndarray, truth: np.ndarray,
             thresholds: Sequence[float]) -> dict[str, Any]:
    """Precision and recall of "every database image within t" for each threshold t, from one
    range search at the largest threshold (Faiss's ``range_PR_multiple_thresholds``): a result
    is correct when it is the query's source; precision counts every result of every query,
    controls included; recall is over the queries with a source.

    Parameters
    ----------
    lims, distances, indices : numpy.ndarray
        `SearchIndex.range_search` at ``max(thresholds)`` (or k-NN results laid out so).
    truth : numpy.ndarray, shape (Q,)
    thresholds : sequence of float
        Results at a distance <= t count.
    """
    from faiss.contrib.evaluation import range_PR_multiple_thresholds  # Faiss: on use

    truth = np.asarray(truth, dtype=np.int64)
    positive = truth >= 0
    lims_ref = np.concatenate([[0], np.cumsum(positive)]).astype(np.int64)
    ids_ref = truth[positive]
    limits = np.nextafter(np.asarray(thresholds, dtype=np.float32), np.float32(np.inf))
    precision, recall = range_PR_multiple_thresholds(
        lims_ref, ids_ref, np.asarray(lims, dtype=np.int64), np.asarray(distances, np.float32),
        np.asarray(indices, dtype=np.int64), limits)
    return {"thresholds": [float(t) for t in thresholds],
            "precision": [float(p) for p in precision], "recall": [float(r) for r in recall]}


def knn_as_range(distances: np.ndarray, indices: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """k-NN results in range-search layout (``lims``, distances, indices), for indexes without
    range search: results beyond the k-th neighbour are then missing."""
    found = np.isfinite(distances) & (indices >= 0)
    lims = np.concatenate([[0], np.cumsum(found.sum(axis=1))]).astype(np.int64)
    return lims, distances[found], indices[found]
