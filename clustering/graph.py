"""Sparse neighbour graphs through Faiss: what DBSCAN, HDBSCAN, near-duplicate groups,
connectivity-constrained linkage and the cluster attributes read instead of an N x N matrix.

Both graphs are exact (a flat Faiss index, in the metrics of `hashing.distances`), symmetric,
and hold every point's distance to itself as an explicit zero on the diagonal, as a dense
distance matrix does: scikit-learn counts a point among its own neighbours through it.
Distances of 0 between distinct rows (exact duplicates) are stored as explicit zeros too.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from clustering.points import Points
from fast_search import build_index
from hashing.distances import native
from helpers import available_cpus, progress

logger = logging.getLogger(__name__)

#: Queries per Faiss call while building a graph.
QUERY_BLOCK = 4096
#: Bytes of one stored edge while a graph is built (row, column, distance and sorting keys).
EDGE_BYTES = 32


def _flat_index(points: Points, device: str):
    if points.binary:
        index = build_index("BFlat", "hamming", points.values.shape[1], n_bits=points.n_bits,
                            device=device)
    else:
        index = build_index("Flat", points.metric, points.values.shape[1], device=device)
    index.add([points.values], total=len(points))
    return index


#: Edges whose distances are recomputed per NumPy call, or per call of the compiled kernel.
_EDGE_BLOCK = 16384
_KERNEL_BLOCK = 1 << 17
#: Metrics whose distances never exceed 1 (a larger radius takes everything).
_BOUNDED = ("hamming", "cosine", "jensenshannon")


def exact_edge_distances(points: Points, rows: np.ndarray, cols: np.ndarray,
                         dist: np.ndarray) -> np.ndarray:
    """Distances of graph edges recomputed pair by pair in float64 (l2, l1, cosine).

    Faiss computes l2 and inner products in batches through matrix products, whose rounding
    gives an exact duplicate a distance of about 1e-7 (cosine) or more (l2 of long vectors):
    threshold 0 would not join duplicates, nor would DBSCAN with a tiny eps. Pairwise
    recomputation gives them 0, as a dense matrix does. Hamming and Jensen-Shannon distances
    from Faiss are already exact.

    The compiled kernel (``hashing/pairs.c``, in threads over blocks of edges) does it in one
    pass over each edge's two rows; without a C compiler, NumPy does it in blocks (21-28x
    slower at 512 dimensions: ``scripts/benchmark_clustering.py --parts edges``)."""
    if points.binary or points.metric == "jensenshannon" or not len(rows):
        return dist
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    cols = np.ascontiguousarray(cols, dtype=np.int64)
    lib = native.pair_kernel()
    if lib is None:
        return _edge_distances_numpy(points, rows, cols)
    x = np.ascontiguousarray(points.values, dtype=np.float32)
    scale = points.inverse_norms() if points.metric == "cosine" else None
    out = np.empty(len(rows), np.float32)

    def block(start: int) -> None:
        stop = start + _KERNEL_BLOCK
        native.pair_distances(lib, x, rows[start:stop], cols[start:stop], points.metric,
                              scale, out[start:stop])

    starts = range(0, len(rows), _KERNEL_BLOCK)
    if len(starts) == 1:
        block(0)
    else:  # ctypes releases the GIL: the blocks run on all cores
        with ThreadPoolExecutor(min(len(starts), available_cpus())) as pool:
            list(pool.map(block, starts))
    return out


def _edge_distances_numpy(points: Points, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """`exact_edge_distances` without the compiled kernel."""
    out = np.empty(len(rows), np.float32)
    x = points.values
    for start in range(0, len(rows), _EDGE_BLOCK):
        a = x[rows[start:start + _EDGE_BLOCK]].astype(np.float64)
        b = x[cols[start:start + _EDGE_BLOCK]].astype(np.float64)
        if points.metric == "l2":
            d = np.sqrt(((a - b) ** 2).sum(axis=1))
        elif points.metric == "l1":
            d = np.abs(a - b).sum(axis=1)
        else:  # cosine, as hashing.distances: (1 - cos) / 2 = |a/|a| - b/|b||^2 / 4,
            # which is exactly 0 for a duplicate and stable for near ones
            a /= np.linalg.norm(a, axis=1, keepdims=True)
            b /= np.linalg.norm(b, axis=1, keepdims=True)
            d = ((a - b) ** 2).sum(axis=1) / 4
        out[start:start + _EDGE_BLOCK] = np.maximum(d, 0)
    return out


def _symmetric(rows: np.ndarray, cols: np.ndarray, dist: np.ndarray, n: int) -> sp.csr_matrix:
    """A symmetric CSR matrix from directed edges: each pair once in each direction with the
    smaller of its two distances (they differ by rounding only), explicit zeros kept, the
    diagonal set to 0."""
    diagonal = np.arange(n, dtype=np.int64)
    r = np.concatenate([rows, cols, diagonal])
    c = np.concatenate([cols, rows, diagonal])
    d = np.concatenate([dist, dist, np.zeros(n, np.float32)]).astype(np.float32)
    d = np.maximum(d, 0)  # 1 - cosine of a row with itself can round below 0
    key = r * n + c
    order = np.lexsort((d, key))
    key, d = key[order], d[order]
    first = np.ones(len(key), bool)
    first[1:] = key[1:] != key[:-1]
    key, d = key[first], d[first]
    r, c = np.divmod(key, n)
    return csr_from_edges(r, c, d, n)


def csr_from_edges(rows: np.ndarray, cols: np.ndarray, data: np.ndarray, n: int
                   ) -> sp.csr_matrix:
    """An (n, n) CSR matrix of edges already sorted by row, built from its arrays: explicit
    zeros stay (a COO -> CSR conversion would keep them too, but every arithmetic step on the
    result drops them)."""
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
    return sp.csr_matrix((data, np.asarray(cols).astype(np.int32 if n < 2**31 else np.int64),
                          indptr), shape=(n, n))


def edge_rows(graph: sp.csr_matrix) -> np.ndarray:
    """The row of each stored entry of a CSR matrix (its COO row array)."""
    return np.repeat(np.arange(graph.shape[0]), np.diff(graph.indptr))


def radius_graph(points: Points, radius: float, device: str = "cpu",
                 show_progress: bool | None = None, max_bytes: float | None = None
                 ) -> sp.csr_matrix:
    """Every pair of rows within ``radius`` of each other.

    Parameters
    ----------
    points : Points
    radius : float
        In the points' metric (a bit error rate for codes).
    device : str
        ``cpu``, ``cuda`` or ``auto`` (Faiss on GPU where faiss-gpu is installed).
    max_bytes : float, optional
        Stop, as soon as the edges found so far would take more memory than this.

    Raises
    ------
    MemoryError
        Over ``max_bytes`` (the message says how far the search got).

    Returns
    -------
    scipy.sparse.csr_matrix, shape (N, N), float32
        Symmetric; the diagonal and exact duplicates as explicit zeros.
    """
    if not np.isfinite(radius) or radius < 0:
        raise ValueError(f"radius must be a finite distance >= 0, got {radius}")
    index = _flat_index(points, device)
    n = len(points)
    search = min(float(radius), 1.0) if points.metric in _BOUNDED else float(radius)
    # wider by Faiss's rounding (matrix products: about 1e-7 of the squared norms for l2),
    # so that edges at the radius itself are decided on exact distances below
    if points.metric == "l2":
        norm2 = float(np.einsum("ij,ij->i", points.values, points.values).max())
        search = float(np.sqrt(search**2 + 1e-5 * norm2))
    elif not points.binary:
        search = search * (1 + 1e-5) + 1e-5
    rows, cols, dists = [], [], []
    edges = 0
    for start in progress(range(0, n, QUERY_BLOCK), desc=f"radius graph r={radius:g}",
                          disable=None if show_progress is None else not show_progress):
        block = points.values[start:start + QUERY_BLOCK]
        lims, d, i = index.range_search(block, search)
        counts = np.diff(lims)
        query = np.repeat(np.arange(start, start + len(block), dtype=np.int64), counts)
        d = exact_edge_distances(points, query, i, d)
        keep = d <= radius
        rows.append(query[keep])
        cols.append(i[keep])
        dists.append(d[keep])
        edges += int(keep.sum())
        if max_bytes is not None and 2 * edges * EDGE_BYTES > max_bytes:
            raise MemoryError(
                f"the radius graph at {radius:g} holds {edges} edges after "
                f"{start + len(block)} of {n} rows, over the budget of {max_bytes / 1e9:.2f} "
                f"GB ({EDGE_BYTES} bytes an edge, both ways): use a smaller eps or threshold, "
                "or raise --max-memory")
    graph = _symmetric(np.concatenate(rows), np.concatenate(cols), np.concatenate(dists), n)
    logger.info("radius graph r=%g: %d edges over %d points", radius, graph.nnz - n, n)
    return graph


def knn_graph(points: Points, k: int, device: str = "cpu",
              show_progress: bool | None = None) -> sp.csr_matrix:
    """Each row's ``k`` nearest other rows, made symmetric (an edge when either end has the
    other among its k nearest).

    Returns
    -------
    scipy.sparse.csr_matrix, shape (N, N), float32
        Symmetric, with the diagonal as explicit zeros.
    """
    dist, idx = knn(points, k, device=device, show_progress=show_progress)
    n = len(points)
    rows = np.repeat(np.arange(n, dtype=np.int64), idx.shape[1])
    keep = idx.ravel() >= 0
    return _symmetric(rows[keep], idx.ravel()[keep], dist.ravel()[keep], n)


def knn(points: Points, k: int, device: str = "cpu", show_progress: bool | None = None
        ) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest other rows of every row (the row itself left out, exact search).

    Returns
    -------
    distances, indices : numpy.ndarray, shape (N, min(k, N - 1))
        Nearest first.
    """
    n = len(points)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    k = min(int(k), n - 1)
    index = _flat_index(points, device)
    dist = np.empty((n, k), np.float32)
    idx = np.empty((n, k), np.int64)
    for start in progress(range(0, n, QUERY_BLOCK), desc=f"{k}-NN graph",
                          disable=None if show_progress is None else not show_progress):
        block = points.values[start:start + QUERY_BLOCK]
        d, i = index.search(block, k + 1)
        rows = np.arange(start, start + len(block))
        # drop each row itself (found anywhere among ties at distance 0), else the farthest
        own = i == rows[:, None]
        drop = np.where(own.any(axis=1), own.argmax(axis=1), k)
        keep = np.ones_like(own)
        keep[np.arange(len(block)), drop] = False
        i = i[keep].reshape(len(block), k)
        d = exact_edge_distances(points, np.repeat(rows, k), i.ravel(),
                                 d[keep]).reshape(len(block), k)
        order = np.argsort(d, axis=1, kind="stable")  # exact distances may swap near-ties
        dist[start:start + len(block)] = np.take_along_axis(d, order, axis=1)
        idx[start:start + len(block)] = np.take_along_axis(i, order, axis=1)
    return np.maximum(dist, 0), idx


def within(graph: sp.csr_matrix, radius: float) -> sp.csr_matrix:
    """The edges of ``graph`` of length <= ``radius`` (explicit zeros and diagonal kept)."""
    keep = graph.data <= radius
    return csr_from_edges(edge_rows(graph)[keep], graph.indices[keep], graph.data[keep],
                          graph.shape[0])


def join_components(graph: sp.csr_matrix) -> tuple[sp.csr_matrix, int, float]:
    """Join the components of a symmetric neighbour graph by one edge from the first row of
    each to the first row of the first, longer than any edge in it (twice the longest, plus
    one), so a hierarchy built on it merges them last.

    Returns
    -------
    graph, components, length
        The joined graph (the same object when it was connected), how many components there
        were, and the length given to the joining edges.
    """
    ones = sp.csr_matrix((np.ones_like(graph.data), graph.indices, graph.indptr),
                         shape=graph.shape)  # explicit zeros are edges too
    n_comp, comp = connected_components(ones, directed=False)
    far = float(graph.data.max()) * 2 + 1
    if n_comp == 1:
        return graph, 1, far
    first = np.unique(comp, return_index=True)[1]
    rows = np.concatenate([edge_rows(graph), first[1:], np.full(n_comp - 1, first[0])])
    cols = np.concatenate([graph.indices, np.full(n_comp - 1, first[0]), first[1:]])
    data = np.concatenate([graph.data, np.full(2 * (n_comp - 1), far, np.float32)])
    order = np.lexsort((cols, rows))
    return csr_from_edges(rows[order], cols[order], data[order], graph.shape[0]), n_comp, far
