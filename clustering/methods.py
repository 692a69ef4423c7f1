"""`cluster(features, method, metric, **params)`: every method, one result type.

The methods are a registry (`CLUSTER_METHODS`, a `helpers.Registry` of `ClusterMethod`) that
follows the library's one rule: ``CLUSTER_METHODS.get(name)`` returns the registered entry (its
function and parameters; `method_params` lists them), ``cluster(features, name, **params)``
runs it; an unknown name gets the one error that names the closest. A new method is one
function decorated with ``@register_cluster_method("name")``; `METHODS` holds the names
registered here (for flags' choices).

Methods:

- ``hierarchical``: ``linkage`` in `LINKAGES`, cut at each of ``n_clusters`` (exactly that many
  clusters: the state after the first N - n merges) and each of ``distance_threshold``
  (`scipy.cluster.hierarchy.fcluster` with ``criterion="distance"``), straight from one linkage
  matrix. Single, ward, centroid and median linkage run on the vectors (fastcluster's
  ``linkage_vector``: memory O(N D), no distance matrix); complete, average and weighted need
  the condensed matrix (N (N - 1) / 2 float64, refused before starting when over
  ``max_memory``), or run on a sparse k-NN ``connectivity`` graph (scikit-learn's
  agglomerative clustering, fed the edge distances computed here, memory O(N k); known to
  chain and to depend on k). Ward, centroid and median take Euclidean distances only.
- ``dbscan``: scikit-learn's DBSCAN on a sparse radius graph (Faiss range search at the largest
  ``eps``), once per ``eps`` and ``min_samples``.
- ``hdbscan``: scikit-learn's HDBSCAN on a sparse k-NN graph (k = ``k``, default twice the
  larger of ``min_samples`` and ``min_cluster_size``); components of that graph are joined at the
  top of the hierarchy. ``pca`` projects float features first.
- ``kmeans``: Faiss k-means (GPU when asked and present): spherical for cosine, on the 0/1 bits
  for codes (squared L2 on bits is the Hamming distance); every point is used for training.
- ``duplicates``: connected components of "distance <= ``threshold``" (the groups a user means
  by "find my duplicates"); `threshold_from_digest` reads an operating point of a benchmark
  digest.

Labels are ``int64`` from 0; ``-1`` is noise (DBSCAN, HDBSCAN).
"""

from __future__ import annotations

import inspect
import itertools
import logging
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import fastcluster
import numpy as np
import pandas as pd
from scipy.cluster.hierarchy import fcluster
from scipy.sparse.csgraph import connected_components

from clustering.graph import (
    EDGE_BYTES,
    edge_rows,
    exact_edge_distances,
    join_components,
    knn_graph,
    radius_graph,
    within,
)
from clustering.points import Points, as_points
from fast_search.index import faiss_device
from hashing import load_digest
from hashing.distances import pairwise
from hashing.evaluation.operating_points import threshold_at_fpr
from helpers import Registry, unknown_name
from helpers.display import html_table, plural

logger = logging.getLogger(__name__)

LINKAGES = ("single", "complete", "average", "weighted", "centroid", "median", "ward")
#: Linkages defined on Euclidean distances only (Lance-Williams updates of centroids).
EUCLIDEAN_LINKAGES = ("ward", "centroid", "median")
#: Linkages fastcluster computes from the vectors, without a distance matrix.
VECTOR_LINKAGES = ("single", "ward", "centroid", "median")
#: fastcluster / scikit-learn names of our metrics.
_VECTOR_METRIC = {"l2": "euclidean", "l1": "cityblock", "cosine": "cosine",
                  "hamming": "hamming"}
_SKLEARN_METRIC = {"l2": "euclidean", "l1": "manhattan", "cosine": "cosine",
                   "hamming": "manhattan"}


@dataclass
class Clustering:
    """Labels of one method at one or more settings.

    Attributes
    ----------
    method : str
        One of `METHODS`.
    metric : str
        The distance clustered with.
    params : dict
        The method's resolved parameters.
    settings : list of dict
        One per labelling (``{"n_clusters": 100}``, ``{"eps": 0.1, "min_samples": 5}``...).
    labels : list of numpy.ndarray
        (N,) int64 per setting; ``-1`` is noise.
    ids : list of str
    records : tuple of ImageRecord, or None
    features : str or None
        The method that made the rows (``sscd_distilled``, ``dhash``...).
    seconds : float
        Wall time of the clustering (graph or linkage included).
    tree : numpy.ndarray or None
        The linkage matrix (SciPy's format) of hierarchical clustering.
    notes : list of str
        What a reader of the results should know (a graph completed, a PCA step...).
    """

    method: str
    metric: str
    params: dict[str, Any]
    settings: list[dict[str, Any]]
    labels: list[np.ndarray]
    ids: list[str]
    records: tuple | None = None
    features: str | None = None
    seconds: float = 0.0
    tree: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)

    def names(self) -> list[str]:
        """A short name per setting: ``n_clusters=100``, ``eps=0.1,min_samples=5``."""
        return [setting_name(s) for s in self.settings]

    def n_clusters(self) -> list[int]:
        """Clusters per setting (noise not counted)."""
        return [int(len(np.unique(lab[lab >= 0]))) for lab in self.labels]

    def __len__(self) -> int:
        return len(self.ids)

    def to_frame(self) -> pd.DataFrame:
        """One row per setting: ``setting`` (its name), its parameters (``param_n_clusters``
        for the asked count of a cut or of k-means), ``n_clusters`` (found; noise not
        counted), ``n_noise``, ``singletons`` (clusters of one image) and ``largest`` (images
        in the largest cluster)."""
        own = ("setting", "n_clusters", "n_noise", "singletons", "largest")
        rows = []
        for name, setting, labels in zip(self.names(), self.settings, self.labels,
                                         strict=True):
            sizes = np.bincount(labels[labels >= 0]) if (labels >= 0).any() else np.zeros(0)
            sizes = sizes[sizes > 0]
            rows.append({"setting": name,
                         **{f"param_{k}" if k in own else k: v for k, v in setting.items()},
                         "n_clusters": len(sizes),
                         "n_noise": int((labels < 0).sum()),
                         "singletons": int((sizes == 1).sum()),
                         "largest": int(sizes.max(initial=0))})
        return pd.DataFrame(rows)

    def __repr__(self) -> str:
        """One line: method, images, features and metric, clusters per setting (the first
        three), never the labels."""
        counts = [f"{name}: {n}" for name, n in zip(self.names()[:3], self.n_clusters()[:3],
                                                   strict=True)]
        if len(self.settings) > 3:
            counts.append(f"{len(self.settings) - 3} more")
        return (f"Clustering({self.method}, {plural(len(self), 'image')}, "
                f"{self.features or 'features'}, {self.metric}, "
                f"{plural(len(self.settings), 'setting')}, clusters {'; '.join(counts)}, "
                f"{self.seconds:.2f} s)")

    def _repr_html_(self) -> str:
        return html_table(self.to_frame(), repr(self), notes=self.notes)


def setting_name(setting: dict[str, Any]) -> str:
    return ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in setting.items())


def _listed(value: Any) -> list:
    """One value or several, each once, in the order given."""
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, Sequence | np.ndarray):
        value = [value]
    return list(dict.fromkeys(value))


def _counts(value: Any, name: str) -> list[int]:
    """Whole numbers (``2.0`` is 2; ``2.7`` is refused, not rounded)."""
    out = []
    for v in _listed(value):
        if isinstance(v, bool) or not isinstance(v, int | float | np.integer | np.floating) \
                or not float(v).is_integer():
            raise ValueError(f"{name} must be whole numbers, got {v!r}")
        out.append(int(v))
    return list(dict.fromkeys(out))


def relabel(labels: np.ndarray) -> np.ndarray:
    """Labels renumbered 0, 1, ... in order of first appearance (-1 kept for noise)."""
    labels = np.asarray(labels)
    out = np.full(len(labels), -1, np.int64)
    real = labels >= 0
    if real.any():
        _, first, inverse = np.unique(labels[real], return_index=True, return_inverse=True)
        rank = np.empty(len(first), np.int64)
        rank[np.argsort(first, kind="stable")] = np.arange(len(first))
        out[real] = rank[inverse]
    return out


# --- the registry ----------------------------------------------------------------------

#: What `cluster` passes every method besides its own parameters.
_COMMON = ("points", "device", "max_memory", "show_progress", "notes")
#: ``run(points, **params, device=, max_memory=, show_progress=, notes=)
#: -> (settings, labels, tree or None)``.
MethodFunction = Callable[..., tuple[list[dict], list[np.ndarray], np.ndarray | None]]


@dataclass(frozen=True)
class ClusterMethod:
    """A registered clustering method.

    Attributes
    ----------
    run : callable
        ``run(points, **params, device=, max_memory=, show_progress=, notes=)`` returning
        ``(settings, labels, tree)``: one dict and one (N,) int64 labelling per setting, and
        the linkage matrix or None; ``notes`` collects what a reader should know.
    params : dict
        The method's own parameters and their defaults (``None``: no default), read from
        ``run``'s signature.
    """

    run: MethodFunction
    params: dict[str, Any]


#: Every clustering method by name.
CLUSTER_METHODS: Registry[ClusterMethod] = Registry("clustering method")


def register_cluster_method(name: str) -> Callable[[MethodFunction], MethodFunction]:
    """Decorator: register ``run`` (see `ClusterMethod`) as the clustering method ``name``;
    its parameters other than the common ones (``points``, ``device``, ``max_memory``,
    ``show_progress``, ``notes``) are the method's own."""

    def decorate(run: MethodFunction) -> MethodFunction:
        params = {key: (None if p.default is inspect.Parameter.empty else p.default)
                  for key, p in inspect.signature(run).parameters.items()
                  if key not in _COMMON}
        CLUSTER_METHODS.add(name, ClusterMethod(run, params))
        return run

    return decorate


# --- hierarchical ------------------------------------------------------------------------

def cut_counts(tree: np.ndarray, n: int, counts: Sequence[int]) -> list[np.ndarray]:
    """Flat labels with exactly ``c`` clusters for each count: the partition after the first
    ``n - c`` merges of a linkage matrix (equal to `scipy.cluster.hierarchy.cut_tree` on a
    monotone tree, and defined for trees with inversions too)."""
    parent = np.arange(n)

    def find(i: int) -> int:
        root = i
        while parent[root] != root:
            root = parent[root]
        while parent[i] != root:
            parent[i], i = root, parent[i]
        return root

    leaf = np.concatenate([np.arange(n), np.zeros(max(n - 1, 0), np.int64)])
    done = 0
    out: dict[int, np.ndarray] = {}
    for c in sorted(set(counts), reverse=True):
        while done < n - c:
            a, b = int(tree[done, 0]), int(tree[done, 1])
            ra, rb = find(int(leaf[a])), find(int(leaf[b]))
            parent[rb] = ra
            leaf[n + done] = ra
            done += 1
        roots = np.fromiter((find(i) for i in range(n)), np.int64, n)
        out[c] = relabel(roots)
    return [out[c] for c in counts]


def cut_distances(tree: np.ndarray, thresholds: Sequence[float]) -> list[np.ndarray]:
    """Flat labels for each threshold: no cluster's cophenetic distance exceeds it
    (`scipy.cluster.hierarchy.fcluster`, ``criterion="distance"``)."""
    return [relabel(fcluster(tree, t=float(t), criterion="distance")) for t in thresholds]


#: Distances per block while the condensed matrix is filled, and the bytes each takes while
#: its block is computed (float32 result and float64 work of `hashing.distances.pairwise`,
#: and the cuts: 31 measured at 20,000 rows).
_BLOCK_ENTRIES = 2**24
_BLOCK_ENTRY_BYTES = 32


def condensed_bytes(n: int) -> int:
    """Bytes of a condensed float64 distance matrix of ``n`` rows."""
    return 8 * n * (n - 1) // 2


def linkage_bytes(n: int) -> int:
    """Bytes a linkage on the condensed matrix of ``n`` rows takes at its peak: the matrix
    (fastcluster then works in place) and one block of distances being computed."""
    block_rows = max(1, min(n, _BLOCK_ENTRIES // max(n, 1)))
    return condensed_bytes(n) + _BLOCK_ENTRY_BYTES * block_rows * n


def max_rows_for(budget: float) -> int:
    """The most rows whose linkage on the condensed matrix fits ``budget`` bytes."""
    low, high = 0, 1
    while linkage_bytes(high) <= budget:
        low, high = high, 2 * high
    while high - low > 1:  # linkage_bytes(low) <= budget < linkage_bytes(high)
        middle = (low + high) // 2
        low, high = (middle, high) if linkage_bytes(middle) <= budget else (low, middle)
    return low


def condensed_distances(points: Points, device: str = "cpu", max_memory: float | None = None,
                        what: str = "this linkage") -> np.ndarray:
    """The condensed distance matrix (SciPy's order) in float64, computed block by block in
    float32 by `hashing.distances.pairwise`.

    Raises
    ------
    MemoryError
        Before any work, when it would need more than ``max_memory`` bytes (the message says
        how many rows would fit and what else to do).
    """
    n = len(points)
    need = linkage_bytes(n)
    if max_memory is not None and need > max_memory:
        fit = max_rows_for(max_memory)
        raise MemoryError(
            f"{what} of {n} rows needs the condensed distance matrix: {need / 1e9:.2f} GB "
            f"(float64, and the block being computed), over the budget of "
            f"{max_memory / 1e9:.2f} GB; at most {fit} rows fit. "
            "Use connectivity=k (a sparse k-NN graph, memory O(N k)), single or ward linkage "
            "(computed on the vectors), or raise --max-memory")
    out = np.empty(condensed_bytes(n) // 8, np.float64)
    block = max(1, min(n, _BLOCK_ENTRIES // max(n, 1)))
    for start in range(0, n - 1, block):
        stop = min(n - 1, start + block)
        d = pairwise(points.descriptors(slice(start, stop)),
                     points.descriptors(slice(start + 1, None)), device=device)
        for row in range(start, stop):
            # row i holds distances to i + 1 .. n - 1: columns (i + 1) - (start + 1) onwards
            first = row * n - row * (row + 1) // 2
            out[first:first + n - 1 - row] = d[row - start, row - start:]
    return out


def linkage_in_place(condensed: np.ndarray, n: int, method: str) -> np.ndarray:
    """fastcluster's linkage of a condensed float64 matrix, overwriting it, without a copy.

    fastcluster 1.3's ``linkage`` copies its input (``array(X)`` before it looks at
    ``preserve_input``), so ``preserve_input=False`` still needs twice the condensed matrix:
    27.8 GB at 59,000 rows, where the matrix alone is 13.9. Its C routine works in place;
    this calls it directly when the module exposes it."""
    if not (hasattr(fastcluster, "linkage_wrap") and hasattr(fastcluster, "mthidx")):
        return fastcluster.linkage(condensed, method=method, preserve_input=False)
    if condensed.dtype != np.float64 or not condensed.flags.c_contiguous \
            or condensed.shape != (n * (n - 1) // 2,):
        raise ValueError("linkage_in_place needs a C-contiguous float64 condensed matrix")
    tree = np.empty((n - 1, 4))
    if n > 1:
        fastcluster.linkage_wrap(n, condensed, tree, fastcluster.mthidx[method])
    return tree


def _tree_from_sklearn(children: np.ndarray, distances: np.ndarray, n: int) -> np.ndarray:
    """SciPy's linkage matrix from scikit-learn's ``children_`` and merge distances."""
    counts = np.ones(2 * n - 1, np.int64)
    tree = np.zeros((n - 1, 4))
    for i, (a, b) in enumerate(children):
        counts[n + i] = counts[a] + counts[b]
        tree[i] = (a, b, distances[i], counts[n + i])
    return tree


@register_cluster_method("hierarchical")
def _hierarchical(points: Points, linkage: str = "ward",
                  n_clusters: int | Sequence[int] | None = None,
                  distance_threshold: float | Sequence[float] | None = None,
                  connectivity: int | None = None, *, device: str = "cpu",
                  max_memory: float | None = None, show_progress: bool | None = None,
                  notes: list[str]) -> tuple[list[dict], list[np.ndarray], np.ndarray]:
    """Hierarchical clustering, cut by counts and by distances (see the module docstring)."""
    n = len(points)
    if linkage not in LINKAGES:
        raise ValueError(unknown_name("linkage", linkage, LINKAGES))
    if linkage in EUCLIDEAN_LINKAGES and points.metric != "l2":
        advice = ("another linkage (single, complete, average, weighted)" if points.binary
                  else "metric='l2' (on L2-normalised features it orders pairs as cosine "
                       "does) or another linkage (single, complete, average, weighted)")
        raise ValueError(f"{linkage} linkage is defined on Euclidean distances only; these rows "
                         f"compare with {points.metric}: use {advice}")
    counts = _counts(n_clusters, "n_clusters")
    thresholds = [float(t) for t in _listed(distance_threshold)]
    if not counts and not thresholds:
        raise ValueError("hierarchical clustering needs n_clusters or distance_threshold "
                         "(one value or a list)")
    for c in counts:
        if not 1 <= c <= n:
            raise ValueError(f"n_clusters must be in [1, {n}] (the number of rows), got {c}")
    for t in thresholds:
        if not math.isfinite(t) or t < 0:
            raise ValueError(f"distance_threshold must be a finite distance >= 0, got {t}")
    if connectivity is not None:
        tree = _connectivity_tree(points, linkage, int(connectivity), device, show_progress,
                                  notes, max_memory)
    elif linkage in VECTOR_LINKAGES and points.metric in _VECTOR_METRIC:
        x = points.bits().astype(bool) if points.binary else points.values.astype(np.float64)
        tree = fastcluster.linkage_vector(x, method=linkage, metric=_VECTOR_METRIC[points.metric])
        if points.metric == "cosine":  # fastcluster's cosine is 1 - cos; ours (1 - cos) / 2
            tree[:, 2] /= 2
    else:
        condensed = condensed_distances(points, device, max_memory, f"{linkage} linkage")
        tree = linkage_in_place(condensed, n, linkage)
        del condensed
    settings = [{"n_clusters": c} for c in counts] + \
        [{"distance_threshold": t} for t in thresholds]
    labels = cut_counts(tree, n, counts) + cut_distances(tree, thresholds)
    return settings, labels, tree


def _connectivity_tree(points: Points, linkage: str, k: int, device: str,
                       show_progress: bool | None, notes: list[str],
                       max_memory: float | None = None) -> np.ndarray:
    from sklearn.cluster import AgglomerativeClustering  # reason: 3 s to import scikit-learn

    if points.metric not in _SKLEARN_METRIC:
        raise ValueError(f"connectivity-constrained linkage cannot use {points.metric} "
                         "(scikit-learn computes l2, l1 or cosine on the vectors)")
    if linkage in ("centroid", "median", "weighted"):
        raise ValueError(f"{linkage} linkage has no connectivity-constrained form; use "
                         "single, complete, average or ward")
    # scikit-learn would complete a disconnected graph with the distance matrix between its
    # components (25k x 25k float64 = 5 GB for two halves of 50k rows): join them here by one
    # edge each instead, so memory stays O(N k); they merge last
    graph, components, _ = join_components(knn_graph(points, k, device=device,
                                                     show_progress=show_progress))
    graph.data[:] = 1
    if components > 1:
        notes.append(f"the k-NN graph had {components} components; one edge joins each to the "
                     "first, so components merge last (scikit-learn would have filled in the "
                     "distance matrix between them)")
    if linkage == "ward":
        # ward_tree works on per-node moments (O(N D)), never on gathered edge ends
        x = points.bits().astype(np.float64) if points.binary else points.values
        model = AgglomerativeClustering(n_clusters=1, linkage=linkage,
                                        metric=_SKLEARN_METRIC[points.metric],
                                        connectivity=graph, compute_full_tree=True,
                                        compute_distances=True)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.fit(x)
        children = model.children_
        # scikit-learn's cosine is 1 - cos (ours (1 - cos) / 2); its manhattan on bits
        # counts them
        distances = model.distances_ / (points.n_bits if points.binary
                                        else 2 if points.metric == "cosine" else 1)
    else:
        children, distances, caught = _edge_lookup_tree(points, graph, linkage, max_memory)
    for w in caught:
        notes.append(f"scikit-learn: {w.message}")
    notes.append(f"{linkage} linkage on a {k}-NN connectivity graph: merges only along its "
                 "edges (results depend on k; average and complete linkage can chain)")
    return _tree_from_sklearn(children, distances, len(points))


#: Memory per directed edge of the distance lookup that `_edge_lookup_tree` hands scikit-learn
#: (a Python dict entry: key, float, hash slot; measured about 100 bytes, rounded up).
_LOOKUP_BYTES = 160


def _edge_lookup_tree(points: Points, graph, linkage: str, max_memory: float | None):
    """Single, complete or average linkage along the graph's edges by scikit-learn's
    `linkage_tree`, without letting it gather both end vectors of every edge (E x D values
    twice: 6.3 GB at 50k x 512 with 10 neighbours): the edge distances are computed here in
    blocks, in our scale, and scikit-learn reads them through a callable metric over row
    numbers."""
    from sklearn.cluster import linkage_tree  # reason: 3 s to import scikit-learn

    rows, cols = edge_rows(graph), graph.indices.astype(np.int64)
    keep = rows != cols
    rows, cols = rows[keep], cols[keep]
    need = len(rows) * _LOOKUP_BYTES
    if max_memory is not None and need > max_memory:
        raise MemoryError(
            f"{linkage} linkage on a connectivity graph of {len(points)} rows and {len(rows)} "
            f"directed edges: their distance lookup takes about {need / 1e9:.2f} GB, over the "
            f"budget of {max_memory / 1e9:.2f} GB: lower --connectivity or raise --max-memory")
    if points.binary:
        bits = points.bits()
        dist = np.empty(len(rows), np.float64)
        for start in range(0, len(rows), 65536):
            a, b = bits[rows[start:start + 65536]], bits[cols[start:start + 65536]]
            dist[start:start + 65536] = (a != b).sum(axis=1) / points.n_bits
    else:
        dist = exact_edge_distances(points, rows, cols, np.zeros(len(rows), np.float32))
        dist = dist.astype(np.float64)
    n = len(points)
    lookup = dict(zip((rows * n + cols).tolist(), dist.tolist(), strict=True))

    def edge(a: np.ndarray, b: np.ndarray) -> float:
        return lookup[int(a[0]) * n + int(b[0])]

    index = np.arange(n, dtype=np.float64)[:, None]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        children, _, _, _, distances = linkage_tree(
            index, connectivity=graph, linkage=linkage, affinity=edge, return_distance=True)
    return children, distances, caught


# --- density -----------------------------------------------------------------------------

@register_cluster_method("dbscan")
def _dbscan(points: Points, eps: float | Sequence[float] | None = None,
            min_samples: int | Sequence[int] = 5, *, device: str = "cpu",
            max_memory: float | None = None, show_progress: bool | None = None,
            notes: list[str]) -> tuple[list[dict], list[np.ndarray], None]:
    """DBSCAN on a sparse radius graph, once per ``eps`` and ``min_samples``."""
    from sklearn.cluster import DBSCAN  # reason: 3 s to import scikit-learn

    eps_list = [float(e) for e in _listed(eps)]
    if not eps_list:
        raise ValueError("dbscan needs eps (one value or a list), in the metric's units")
    samples = _counts(min_samples, "min_samples")
    for e in eps_list:
        if not math.isfinite(e) or e <= 0:
            raise ValueError(f"eps must be a finite distance > 0, got {e}")
    for m in samples:
        if m < 1:
            raise ValueError(f"min_samples must be >= 1, got {m}")
    graph = radius_graph(points, max(eps_list), device=device, show_progress=show_progress,
                         max_bytes=max_memory)
    settings, labels = [], []
    for e, m in itertools.product(sorted(eps_list), samples):
        model = DBSCAN(eps=e, min_samples=m, metric="precomputed")
        labels.append(relabel(model.fit(within(graph, e)).labels_))
        settings.append({"eps": e, "min_samples": m})
    return settings, labels, None


@register_cluster_method("hdbscan")
def _hdbscan(points: Points, min_cluster_size: int | Sequence[int] = 5,
             min_samples: int | None = None, k: int | None = None, pca: int | None = None,
             cluster_selection_epsilon: float = 0.0, *, device: str = "cpu",
             max_memory: float | None = None, show_progress: bool | None = None,
             notes: list[str]) -> tuple[list[dict], list[np.ndarray], None]:
    """HDBSCAN on a sparse k-NN graph, once per ``min_cluster_size``."""
    from sklearn.cluster import HDBSCAN  # reason: 3 s to import scikit-learn

    sizes = _counts(min_cluster_size, "min_cluster_size")
    if not sizes or any(not 2 <= s <= len(points) for s in sizes):
        raise ValueError(f"min_cluster_size must be in [2, {len(points)}] (the number of "
                         f"rows), got {sizes}")
    if min_samples is not None and not 1 <= _counts(min_samples, "min_samples")[0] \
            <= len(points):
        raise ValueError(f"min_samples must be in [1, {len(points)}], got {min_samples}")
    if pca is not None:
        points = _pca(points, int(pca), notes)
    most = max(max(sizes), int(min_samples or 0))
    k = int(k) if k is not None else 2 * most
    if k < most:
        raise ValueError(f"k={k} neighbours cannot give core distances of {most} samples")
    k = min(k, len(points) - 1)
    need = 2 * len(points) * (k + 1) * EDGE_BYTES
    if max_memory is not None and need > max_memory:
        raise MemoryError(f"a {k}-NN graph of {len(points)} rows needs about {need / 1e9:.2f} "
                          f"GB, over the budget of {max_memory / 1e9:.2f} GB: lower k (at "
                          f"most {int(max_memory // (2 * len(points) * EDGE_BYTES)) - 1} fits) "
                          "or raise --max-memory")
    graph = knn_graph(points, k, device=device, show_progress=show_progress)
    # a zero off the diagonal (exact duplicates) would read as "no edge" in the spanning tree
    graph.data[(graph.data == 0) & (edge_rows(graph) != graph.indices)] = \
        np.finfo(np.float32).tiny
    graph, components, far = join_components(graph)
    if components > 1:
        notes.append(f"the k-NN graph had {components} components; they were joined by edges "
                     f"of length {far:g} (longer than any neighbour distance), so they "
                     "separate first")
    settings, labels = [], []
    for size in sizes:
        model = HDBSCAN(min_cluster_size=size, min_samples=min_samples, metric="precomputed",
                        cluster_selection_epsilon=float(cluster_selection_epsilon), copy=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "MST contains inf": not ours
            labels.append(relabel(model.fit(graph.astype(np.float64)).labels_))
        settings.append({"min_cluster_size": size})
    notes.append(f"HDBSCAN on the {k}-NN graph (mutual reachability of the k nearest only)")
    return settings, labels, None


def _pca(points: Points, components: int, notes: list[str]) -> Points:
    from sklearn.decomposition import PCA  # reason: 3 s to import scikit-learn

    if points.binary:
        raise ValueError("pca is for float features, not binary codes")
    if not 1 <= components <= min(points.values.shape):
        raise ValueError(f"pca must be in [1, {min(points.values.shape)}], got {components}")
    model = PCA(n_components=components, random_state=0)
    values = model.fit_transform(points.values).astype(np.float32)
    kept = float(model.explained_variance_ratio_.sum())
    notes.append(f"PCA to {components} dimensions before clustering ({kept:.1%} of the "
                 f"variance kept); distances are {points.metric} of the projections")
    metric = points.metric if points.metric != "jensenshannon" else "l2"
    if metric != points.metric:
        notes.append("Jensen-Shannon does not apply to projections: l2 used after PCA")
    return Points(values, metric, None, points.ids, points.records, points.method,
                  points.made)


# --- k-means and duplicates --------------------------------------------------------------

@register_cluster_method("kmeans")
def _kmeans(points: Points, n_clusters: int | Sequence[int] | None = None, niter: int = 25,
            nredo: int = 1, seed: int = 0, *, device: str = "cpu",
            max_memory: float | None = None, show_progress: bool | None = None,
            notes: list[str]) -> tuple[list[dict], list[np.ndarray], None]:
    """Faiss k-means, once per ``n_clusters``."""
    import faiss  # reason: heavy, and only k-means needs it here

    counts = _counts(n_clusters, "n_clusters")
    if not counts:
        raise ValueError("kmeans needs n_clusters (one value or a list)")
    n = len(points)
    for c in counts:
        if not 1 <= c <= n:
            raise ValueError(f"n_clusters must be in [1, {n}] (the number of rows), got {c}")
    if points.metric in ("l1", "jensenshannon"):
        raise ValueError(f"k-means minimises squared Euclidean distances; it has no "
                         f"{points.metric} form here: use hierarchical, dbscan or hdbscan")
    if points.binary:
        x = points.bits().astype(np.float32)
        notes.append("k-means on the codes' bits as 0/1 vectors (squared L2 = Hamming count); "
                     "centroids are fractional")
    elif points.metric == "cosine":
        x = np.array(points.values, dtype=np.float32)  # normalised in place: a copy
        faiss.normalize_L2(x)
    else:
        x = np.ascontiguousarray(points.values, dtype=np.float32)
    gpu = faiss_device(device) != "cpu"
    settings, labels = [], []
    for c in counts:
        model = faiss.Kmeans(x.shape[1], c, niter=int(niter), nredo=int(nredo), seed=int(seed),
                             spherical=points.metric == "cosine", gpu=gpu, verbose=False,
                             max_points_per_centroid=max(1, -(-n // c)), min_points_per_centroid=1)
        model.train(x)
        _, assign = model.index.search(x, 1)
        labels.append(relabel(assign[:, 0]))
        settings.append({"n_clusters": c})
    return settings, labels, None


@register_cluster_method("duplicates")
def _duplicates(points: Points, threshold: float | Sequence[float] | None = None, *,
                device: str = "cpu", max_memory: float | None = None,
                show_progress: bool | None = None,
                notes: list[str]) -> tuple[list[dict], list[np.ndarray], None]:
    """Connected components of "distance <= threshold", once per threshold."""
    thresholds = [float(t) for t in _listed(threshold)]
    if not thresholds:
        raise ValueError("duplicates needs a threshold (one value or a list), or one taken "
                         "from a benchmark digest: threshold_from_digest(...)")
    for t in thresholds:
        if not math.isfinite(t) or t < 0:
            raise ValueError(f"threshold must be a finite distance >= 0, got {t}")
    graph = radius_graph(points, max(thresholds), device=device, show_progress=show_progress,
                         max_bytes=max_memory)
    settings, labels = [], []
    for t in sorted(thresholds):
        kept = within(graph, t)
        kept.data[:] = 1  # explicit zeros are edges here
        labels.append(relabel(connected_components(kept, directed=False)[1]))
        settings.append({"threshold": t})
    return settings, labels, None


#: The names of the methods registered here (`CLUSTER_METHODS` is the registry).
METHODS = tuple(CLUSTER_METHODS.names())


def method_params(method: str) -> dict[str, Any]:
    """The parameters a method takes and their defaults (``None``: no default).

    Raises
    ------
    ValueError
        Unknown method: the message names the closest and lists the known ones.
    """
    return dict(CLUSTER_METHODS.get(method).params)


def cluster(features: Any, method: str, metric: str | None = None, *,
            root: str | None = None, device: str = "auto", max_memory: float | None = None,
            show_progress: bool | None = None, **params: Any) -> Clustering:
    """Cluster the rows of one method.

    Parameters
    ----------
    features : Points, BinaryCodes, FloatFeatures, FeatureStore, str, path or array
        What `as_points` takes: a descriptor object, a store or store spec
        (``dataset/method`` under ``root``), a ``.npy`` path, or an array with ``metric``.
    method : str
        One of `METHODS` (see the module docstring).
    metric : str, optional
        ``hamming`` for codes; ``cosine``, ``l2``, ``l1`` or ``jensenshannon`` for features
        (default: the rows' own).
    device : str
        ``auto`` (a GPU where faiss-gpu and CUDA are there, else the CPU), ``cpu`` or
        ``cuda``, for the Faiss graphs, k-means and distance blocks.
    max_memory : float, optional
        Bytes the method's largest structure may take: a condensed matrix or a k-NN graph is
        refused before it is built, saying what would fit; a radius graph (whose size depends
        on the data) stops as soon as its edges exceed it.
    **params
        The method's own (`method_params` lists them): ``linkage``, ``n_clusters``,
        ``distance_threshold``, ``connectivity`` (hierarchical); ``eps``, ``min_samples``
        (dbscan); ``min_cluster_size``, ``min_samples``, ``k``, ``pca`` (hdbscan);
        ``n_clusters``, ``niter``, ``nredo``, ``seed`` (kmeans); ``threshold`` (duplicates).
        List values give one labelling each.

    Returns
    -------
    Clustering

    Raises
    ------
    ValueError
        Unknown method or parameter, impossible metric / linkage pair, bad values.
    MemoryError
        The method would exceed ``max_memory``.
    """
    known = method_params(method)
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ValueError(f"{method} takes {', '.join(known)}; got {', '.join(unknown)}")
    points = features if isinstance(features, Points) else as_points(features, metric, root)
    if isinstance(features, Points) and metric not in (None, points.metric):
        points = as_points(points.descriptors(), metric)
        points.ids, points.records, points.method, points.made = (
            features.ids, features.records, features.method, features.made)
    notes: list[str] = []
    start = time.perf_counter()
    run = CLUSTER_METHODS.get(method).run
    settings, labels, tree = run(points, **params, device=device, max_memory=max_memory,
                                 show_progress=show_progress, notes=notes)
    seconds = time.perf_counter() - start
    resolved = {**known, **params}
    logger.info("%s (%s) of %d rows: %d settings in %.1f s", method, points.metric,
                len(points), len(settings), seconds)
    return Clustering(method, points.metric, resolved, settings, labels, points.ids,
                      points.records, points.method, seconds, tree, notes)


def threshold_from_digest(digest: str, algorithm: str | None = None, fpr: float = 0.005
                          ) -> float:
    """The distance threshold of a benchmark digest's operating point: the largest threshold
    whose false positive rate is at most ``fpr`` (0.005: the digest's reported point).

    Parameters
    ----------
    digest : path
        A folder written by `hashing.write_digest`.
    algorithm : str, optional
        The algorithm's label in the digest (required when it holds several).

    Raises
    ------
    ValueError
        Unknown or ambiguous algorithm (listing those there), or no threshold meets ``fpr``.
    """
    roc = load_digest(digest).roc
    names = sorted(roc["algorithm"].unique())
    if algorithm is None:
        if len(names) != 1:
            raise ValueError(f"{digest} holds several algorithms ({', '.join(names)}): "
                             "name one")
        algorithm = names[0]
    if algorithm not in names:
        raise ValueError(f"{digest} has no algorithm {algorithm!r}; it has "
                         f"{', '.join(names)}")
    curve = roc[roc["algorithm"] == algorithm]
    t = threshold_at_fpr({"fpr": curve["fpr"].to_numpy(),
                          "thresholds": curve["threshold"].to_numpy()}, fpr)
    if not math.isfinite(t):
        raise ValueError(f"{algorithm} in {digest}: no threshold keeps the false positive "
                         f"rate at or below {fpr}")
    return float(t)
