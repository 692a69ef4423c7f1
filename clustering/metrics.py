"""How good a clustering is: against the truth of the records, and inside the clusters in the
metric that was clustered with.

Truth is each image's ``source_id`` (an attacked copy's original; a meme's template; an
original's own id), never a file name. Noise points (label ``-1``) count as clusters of one in
the ground-truth measures: an image left alone is not grouped with its copies.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from clustering.graph import knn
from clustering.points import Points
from hashing.distances import pairwise

#: Neighbours per row read for the separation (rows whose list stays inside their cluster are
#: searched exactly).
NEIGHBOURS = 64


def truth_labels(records: Sequence[Any] | None) -> np.ndarray:
    """The true group of each image: its record's ``source_id``.

    Raises
    ------
    ValueError
        Without records (a plain array has no ground truth).
    """
    if records is None:
        raise ValueError("ground-truth measures need records with source_id (features from "
                         "a feature store or hashing.describe of records)")
    return np.asarray([r.source_id for r in records], dtype=object)


def _singletons(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels, dtype=np.int64).copy()
    noise = labels < 0
    labels[noise] = labels.max(initial=-1) + 1 + np.arange(int(noise.sum()))
    return labels


def external_measures(truth: Sequence[Any], labels: np.ndarray) -> dict[str, float]:
    """Agreement of a clustering with the true groups.

    Returns
    -------
    dict
        ``homogeneity``, ``completeness``, ``v_measure``, ``ari`` (adjusted Rand), ``ami``
        (adjusted mutual information), pairwise ``pair_precision`` / ``pair_recall`` /
        ``pair_f1`` (over pairs of images: same cluster against same true group), ``mean_iou``
        (each true group's best intersection over union with a cluster, averaged over groups),
        ``n_clusters``, ``n_noise``, ``n_groups``.
    """
    from sklearn import metrics  # scikit-learn: on use

    # scikit-learn: on use
    from sklearn.metrics.cluster import contingency_matrix, pair_confusion_matrix

    truth = np.asarray(truth)
    labels = np.asarray(labels)
    if len(truth) != len(labels):
        raise ValueError(f"{len(truth)} true labels for {len(labels)} cluster labels")
    predicted = _singletons(labels)
    h, c, v = metrics.homogeneity_completeness_v_measure(truth, predicted)
    pairs = pair_confusion_matrix(truth, predicted)
    tp, fp, fn = float(pairs[1, 1]), float(pairs[0, 1]), float(pairs[1, 0])
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "homogeneity": float(h), "completeness": float(c), "v_measure": float(v),
        "ari": float(metrics.adjusted_rand_score(truth, predicted)),
        "ami": float(metrics.adjusted_mutual_info_score(truth, predicted)),
        "pair_precision": precision, "pair_recall": recall, "pair_f1": f1,
        "mean_iou": float(best_iou(contingency_matrix(truth, predicted, sparse=True)).mean()),
        "n_clusters": int(len(np.unique(labels[labels >= 0]))),
        "n_noise": int((np.asarray(labels) < 0).sum()),
        "n_groups": int(len(np.unique(truth))),
    }


def best_iou(contingency) -> np.ndarray:
    """For each true group (rows of a sparse contingency matrix), the largest intersection
    over union with any cluster (columns)."""
    coo = contingency.tocoo()
    group_size = np.asarray(contingency.sum(axis=1)).ravel()
    cluster_size = np.asarray(contingency.sum(axis=0)).ravel()
    iou = coo.data / (group_size[coo.row] + cluster_size[coo.col] - coo.data)
    best = np.zeros(contingency.shape[0])
    np.maximum.at(best, coo.row, iou)
    return best


def cluster_attributes(points: Points, labels: np.ndarray,
                       neighbours: tuple[np.ndarray, np.ndarray] | None = None,
                       max_members: int = 2000, seed: int = 0, device: str = "cpu"
                       ) -> pd.DataFrame:
    """Size, diameter, dispersion and separation of each cluster, in the points' metric.

    Parameters
    ----------
    points : Points
        The rows that were clustered.
    labels : numpy.ndarray
        Cluster of each row (``-1``: noise, not a cluster).
    neighbours : (distances, indices), optional
        Each row's nearest other rows (`clustering.graph.knn`), shared between settings; the
        separation is read from them where they reach another cluster, and computed exactly
        where they do not.
    max_members : int
        Larger clusters are measured on this many members drawn at random (``sampled`` is
        then true); separation always uses every member.

    Returns
    -------
    pandas.DataFrame
        One row per cluster: ``cluster``, ``size``, ``medoid`` (image id), ``diameter``
        (largest distance between two members), ``mean_distance`` (between members),
        ``dispersion`` (mean distance of the members to the medoid), ``separation`` (distance
        from the cluster to the nearest member of another cluster; NaN with one cluster),
        ``nearest_cluster``, ``separation_ratio`` (separation / diameter), ``sampled``.
    """
    labels = np.asarray(labels)
    clusters = np.unique(labels[labels >= 0])
    rng = np.random.default_rng(seed)
    if neighbours is None:
        neighbours = knn(points, NEIGHBOURS, device=device, show_progress=False)
    row_sep, row_near = _nearest_elsewhere(points, labels, neighbours, device)
    rows_of = pd.Series(np.arange(len(labels))).groupby(labels).indices
    out = []
    for c in clusters:
        members = rows_of[c]
        size = len(members)
        sampled = size > max_members
        measured = np.sort(rng.choice(members, max_members, replace=False)) if sampled \
            else members
        if len(measured) > 1:
            d = pairwise(points.descriptors(measured), points.descriptors(measured),
                         device=device).astype(np.float64)
            sums = d.sum(axis=1)
            medoid = int(measured[int(np.argmin(sums))])
            diameter = float(d.max())
            mean = float(d[np.triu_indices(len(measured), 1)].mean())
            dispersion = float(sums.min() / (len(measured) - 1))
        else:
            medoid, diameter, mean, dispersion = int(members[0]), 0.0, 0.0, 0.0
        best = int(np.argmin(row_sep[members]))
        separation, near = float(row_sep[members][best]), int(row_near[members][best])
        if len(clusters) == 1:
            separation, near = float("nan"), -1
        out.append({"cluster": int(c), "size": int(size), "medoid": points.ids[medoid],
                    "diameter": diameter, "mean_distance": mean, "dispersion": dispersion,
                    "separation": separation, "nearest_cluster": near,
                    "separation_ratio": (separation / diameter if diameter > 0
                                         else float("inf") if separation > 0
                                         else float("nan")),
                    "sampled": bool(sampled)})
    return pd.DataFrame(out, columns=["cluster", "size", "medoid", "diameter", "mean_distance",
                                      "dispersion", "separation", "nearest_cluster",
                                      "separation_ratio", "sampled"])


def _nearest_elsewhere(points: Points, labels: np.ndarray,
                       neighbours: tuple[np.ndarray, np.ndarray], device: str
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Each row's distance to the nearest row of another cluster (noise is no cluster), and
    that cluster; exact. Read from the neighbour lists where they reach another cluster; rows
    whose lists never leave their cluster are searched against every row, in blocks, when they
    could lower their cluster's separation."""
    n_dist, n_idx = neighbours
    n = len(labels)
    other = (n_idx >= 0) & (labels[n_idx] >= 0) & (labels[n_idx] != labels[:, None])
    has = other.any(axis=1)
    first = other.argmax(axis=1)
    sep = np.where(has, n_dist[np.arange(n), first], np.inf)
    near = np.where(has, labels[n_idx[np.arange(n), first]], -1)
    clustered = labels >= 0
    if len(np.unique(labels[clustered])) < 2:
        return sep, near
    best = pd.Series(sep[clustered]).groupby(labels[clustered]).min()
    reach = n_dist[:, -1]  # nothing outside a row's list is closer than its last neighbour
    cluster_best = np.full(labels.max() + 1, np.inf)
    cluster_best[best.index.to_numpy()] = best.to_numpy()
    todo = np.flatnonzero(clustered & ~has & (reach < cluster_best[np.maximum(labels, 0)]))
    block = max(1, 2**24 // n)
    for start in range(0, len(todo), block):
        rows = todo[start:start + block]
        d = pairwise(points.descriptors(rows), points.descriptors(), device=device)
        d[(labels[None, :] == labels[rows][:, None]) | (labels[None, :] < 0)] = np.inf
        j = d.argmin(axis=1)
        sep[rows] = d[np.arange(len(rows)), j]
        near[rows] = labels[j]
    return sep, near


def summarize_attributes(table: pd.DataFrame) -> dict[str, Any]:
    """Quantiles of the cluster attributes (clusters of two or more members for diameter and
    dispersion: a singleton has neither)."""
    def quantiles(values: pd.Series) -> dict[str, float | None]:
        values = values.replace([np.inf, -np.inf], np.nan).dropna()
        if values.empty:
            return {q: None for q in ("min", "p25", "median", "p75", "p95", "max", "mean")}
        return {"min": float(values.min()), "p25": float(values.quantile(0.25)),
                "median": float(values.median()), "p75": float(values.quantile(0.75)),
                "p95": float(values.quantile(0.95)), "max": float(values.max()),
                "mean": float(values.mean())}

    multi = table[table["size"] > 1]
    return {"clusters": int(len(table)), "singletons": int((table["size"] == 1).sum()),
            "size": quantiles(table["size"].astype(float)),
            "diameter": quantiles(multi["diameter"]),
            "dispersion": quantiles(multi["dispersion"]),
            "separation": quantiles(table["separation"]),
            "separation_ratio": quantiles(multi["separation_ratio"])}
