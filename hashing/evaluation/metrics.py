"""Copy-detection metrics from per-query arrays, for any number of thresholds at once.

For each query the benchmark keeps the distance to its nearest database image and whether
that image is its true source. With ``d`` those distances and ``t`` a threshold:

- detection (as the original study counted): a query is flagged when ``d <= t``; a flagged
  positive is a true positive, a flagged negative a false positive;
- identification: a positive is a true positive when it is flagged and its nearest database
  image is its source (a tie with the source counts as found); flagged negatives and flagged
  positives matched to another image are false positives.

Precision is 1 where nothing is flagged (the usual convention at recall 0). The ROC and the
operating point at a false positive rate (`roc`, `recall_at_fpr`, `threshold_at_fpr`) are those
of `hashing.evaluation.operating_points`, whose convention every threshold here follows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hashing.evaluation.operating_points import recall_at_fpr, roc, threshold_at_fpr

__all__ = ["METRIC_COLUMNS", "micro_average_precision", "per_image_counts", "recall_at_fpr",
           "roc", "threshold_at_fpr", "threshold_metrics"]

METRIC_COLUMNS = ["tp", "fp", "tn", "fn", "accuracy", "precision", "recall", "fpr"]


def _flagged(distances: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """How many of ``distances`` are <= each threshold."""
    return np.searchsorted(np.sort(distances), thresholds, side="right")


def threshold_metrics(
    distances: np.ndarray, correct: np.ndarray, positive: np.ndarray, thresholds: np.ndarray
) -> pd.DataFrame:
    """Detection and identification counts and rates at every threshold.

    Parameters
    ----------
    distances : numpy.ndarray, shape (Q,)
        Distance of each query to its nearest database image.
    correct : numpy.ndarray of bool, shape (Q,)
        The nearest database image is the query's source (False for negatives).
    positive : numpy.ndarray of bool, shape (Q,)
        The query is a copy of a database image.
    thresholds : numpy.ndarray, shape (T,)

    Returns
    -------
    pandas.DataFrame
        One row per task (``detection``, ``identification``) and threshold, columns
        ``task, threshold`` and `METRIC_COLUMNS`.
    """
    distances = np.asarray(distances, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    correct = np.asarray(correct, dtype=bool) & positive
    thresholds = np.asarray(thresholds, dtype=np.float64)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    flagged_pos = _flagged(distances[positive], thresholds)
    flagged_neg = _flagged(distances[~positive], thresholds)
    found = _flagged(distances[correct], thresholds)
    frames = []
    for task, tp, fp in (("detection", flagged_pos, flagged_neg),
                         ("identification", found, flagged_neg + flagged_pos - found)):
        tn = n_neg - flagged_neg
        fn = n_pos - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            frames.append(pd.DataFrame({
                "task": task, "threshold": thresholds, "tp": tp, "fp": fp, "tn": tn, "fn": fn,
                "accuracy": (tp + tn) / max(n_pos + n_neg, 1),
                "precision": np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 1.0),
                "recall": tp / n_pos if n_pos else np.nan,
                "fpr": flagged_neg / n_neg if n_neg else np.nan,
            }))
    return pd.concat(frames, ignore_index=True)


def micro_average_precision(
    distances: np.ndarray, correct: np.ndarray, n_ground_truth: int,
    pairs: np.ndarray | None = None,
) -> tuple[float, float]:
    """DISC21 micro-average precision and recall at 90% precision, as the reference
    evaluation computes them (facebookresearch/isc2021, ``isc/metrics.py``).

    Every prediction is a (query, database image, distance); a query may make any number of
    them (its k nearest, or one). Predictions of all queries are ranked together by distance
    and, within a tie, the wrong ones first (DISC21's "worst possible AP": equal scores can
    never raise it). Precision and recall are taken after every prediction, and AP is the sum
    of precision times the recall increase. Predictions at an infinite distance (nothing
    found: a query without keypoints, a missing neighbour) are no predictions.

    Parameters
    ----------
    distances : numpy.ndarray, shape (P,)
        One per prediction (smaller is more similar).
    correct : numpy.ndarray of bool, shape (P,)
        The prediction's database image is the query's true source.
    n_ground_truth : int
        Number of (query, source) pairs in the ground truth: the queries with a source in the
        database (the recall denominator).
    pairs : numpy.ndarray, shape (P, 2), optional
        (query, database image) of each prediction: a pair predicted twice is refused, as
        DISC21 refuses it (it would count one source twice).

    Returns
    -------
    micro_ap, recall_at_p90 : float
        ``recall_at_p90`` is the largest recall at a precision >= 0.9; where no prediction
        reaches that precision it is 0.0 (DISC21 reports NaN there; 0.0 is what such a
        method recalls at 90% precision, and keeps tables and plots numeric). Both are NaN
        without ground truth.

    Raises
    ------
    ValueError
        Lengths differ, NaN distances, or a repeated (query, database image) pair.
    """
    d = np.asarray(distances, dtype=np.float64).ravel()
    hits = np.asarray(correct, dtype=bool).ravel()
    if len(d) != len(hits):
        raise ValueError(f"{len(d)} distances for {len(hits)} correctness flags")
    if np.isnan(d).any():
        raise ValueError("micro-AP: a prediction has a NaN distance")
    if pairs is not None:
        pairs = np.asarray(pairs).reshape(-1, 2)
        if len(pairs) != len(d):
            raise ValueError(f"{len(pairs)} (query, database) pairs for {len(d)} predictions")
        keep = np.isfinite(d)
        unique, counts = np.unique(pairs[keep], axis=0, return_counts=True)
        if (counts > 1).any():
            q, db = unique[np.argmax(counts > 1)]
            raise ValueError(f"micro-AP: query {q} predicts database image {db} more than once "
                             "(DISC21 refuses duplicate predictions)")
    if n_ground_truth <= 0:
        return float("nan"), float("nan")
    keep = np.isfinite(d)
    d, hits = d[keep], hits[keep]
    if len(d) == 0:
        return 0.0, 0.0
    order = np.lexsort((hits, d))  # by distance; within a tie False (wrong) before True
    hits = hits[order]
    tp = np.cumsum(hits)
    precision = tp / np.arange(1, len(hits) + 1)
    recall = tp / n_ground_truth
    ap = float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
    ok = precision >= 0.9
    return ap, float(recall[ok].max()) if ok.any() else 0.0


def per_image_counts(
    distances: np.ndarray, correct: np.ndarray, positive: np.ndarray, source_index: np.ndarray,
    nearest_index: np.ndarray, n_database: int, thresholds: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per database image and threshold: copies, copies detected, copies identified, and
    negatives whose nearest image it is within the threshold (false matches).

    Returns
    -------
    copies : numpy.ndarray, shape (N,)
    detected, identified, false_matches : numpy.ndarray, shape (T, N)
    """
    positive = np.asarray(positive, dtype=bool)
    src = np.asarray(source_index)[positive]
    d_pos = np.asarray(distances)[positive]
    ok = np.asarray(correct, dtype=bool)[positive]
    near_neg = np.asarray(nearest_index)[~positive]
    d_neg = np.asarray(distances)[~positive]
    copies = np.bincount(src, minlength=n_database)
    shape = (len(thresholds), n_database)
    detected, identified, false = np.zeros(shape, int), np.zeros(shape, int), np.zeros(shape, int)
    for k, t in enumerate(thresholds):
        within = d_pos <= t
        detected[k] = np.bincount(src[within], minlength=n_database)
        identified[k] = np.bincount(src[within & ok], minlength=n_database)
        false[k] = np.bincount(near_neg[d_neg <= t], minlength=n_database)
    return copies, detected, identified, false
