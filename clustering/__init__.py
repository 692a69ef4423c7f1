"""Clustering of descriptors: near-duplicate groups at scale, measured against the truth.

`cluster(features, method, metric, **params)` runs hierarchical clustering (cut by cluster
counts or distances straight from the linkage matrix), DBSCAN and HDBSCAN on sparse Faiss
neighbour graphs, Faiss k-means, and near-duplicate groups (connected components under a
threshold, which `threshold_from_digest` can take from a benchmark digest). `external_measures`
scores labels against the records' ``source_id``; `cluster_attributes` measures each cluster
in the metric that was clustered with; `write_clustering` writes ``assignments.csv``,
``clusters.json``, the figures, galleries and an HTML page; `find_duplicates` is the
duplicate-finding protocol in one call (a folder or descriptors in, `Duplicates` out).
"""

from clustering.duplicates import Duplicates, find_duplicates
from clustering.graph import knn, knn_graph, radius_graph
from clustering.methods import (
    LINKAGES,
    METHODS,
    Clustering,
    cluster,
    condensed_bytes,
    condensed_distances,
    cut_counts,
    cut_distances,
    linkage_bytes,
    method_params,
    relabel,
    threshold_from_digest,
)
from clustering.metrics import (
    cluster_attributes,
    external_measures,
    summarize_attributes,
    truth_labels,
)
from clustering.points import FLOAT_METRICS, Points, as_points, concat_points

__all__ = [
    "FLOAT_METRICS",
    "LINKAGES",
    "METHODS",
    "Clustering",
    "Duplicates",
    "Points",
    "as_points",
    "concat_points",
    "cluster",
    "cluster_attributes",
    "condensed_bytes",
    "condensed_distances",
    "linkage_bytes",
    "cut_counts",
    "cut_distances",
    "external_measures",
    "find_duplicates",
    "knn",
    "knn_graph",
    "method_params",
    "radius_graph",
    "relabel",
    "summarize_attributes",
    "threshold_from_digest",
    "truth_labels",
]
