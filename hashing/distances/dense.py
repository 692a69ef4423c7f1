"""Batched distance matrices and nearest neighbours on CPU or GPU (torch), in chunks.

Every metric is a distance in the usual sense (0 for identical inputs):

- ``hamming``: bit error rate between packed binary codes (``uint8``, ``np.packbits`` order):
  differing bits divided by the code's true length (``n_bits``; a 42-bit code is packed in 6
  bytes, and the 6 padding bits never count);
- ``cosine``: ``(1 - cos) / 2``, in [0, 1];
- ``jensenshannon``: SciPy's ``jensenshannon(p, q, base=2)`` of the vectors divided by their
  sums (inputs must be non-negative), in [0, 1];
- ``l1`` and ``l2``: Manhattan and Euclidean distances.

Work is split into blocks of queries (and of the database for :func:`nearest`) so that no
intermediate array exceeds ``max_block_elements`` values, whatever the sizes.

Both functions take raw arrays (with ``metric``) or the dense descriptor objects of
`helpers.descriptors` as they are: `BinaryCodes` bring their bit count, `FloatFeatures` their
metric. The kinds made of sets of codes (`MultiCodes`, `LocalDescriptors`) have their own
matching rules (`hashing.distances.multi`, `hashing.distances.local`), which use these
functions; `hashing.distances.compare` gives every kind to its rule.

On CPU, ``jensenshannon`` uses a compiled kernel (:mod:`hashing.distances.native`) when a C
compiler is available, and torch otherwise; both agree with SciPy to 1e-6.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np
from scipy.special import xlogy

from hashing.distances import native
from helpers import available_cpus, resolve_device
from helpers.descriptors import (
    METRICS,
    BinaryCodes,
    FloatFeatures,
    check_same_method,
)

if TYPE_CHECKING:  # torch is imported by the functions that compute, not by `import hashing`
    import torch


#: Largest intermediate array, in values (2**25 float32 = 128 MiB).
DEFAULT_BLOCK_ELEMENTS = 1 << 25

_EPS = 1e-12
#: Normalised Jensen-Shannon entries at or below this count as 0 in the compiled kernel (their
#: contribution is below 1e-35; 1 / (2 x) must stay finite in float32).
_JS_TINY = 1e-37


def _check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; metrics: {', '.join(METRICS)}")
    return metric


def _as_tensor(array, name: str, metric: str, offset: int = 0) -> torch.Tensor:
    import torch  # torch: only when computing

    if isinstance(array, torch.Tensor):
        tensor = array
    else:
        with warnings.catch_warnings():
            # a read-only array (a memory-mapped store) is only read here, never written
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            tensor = torch.as_tensor(np.asarray(array))
    if tensor.ndim != 2:
        raise ValueError(f"{name} must be 2-D (items, dimensions), got shape "
                         f"{tuple(tensor.shape)}")
    if metric == "hamming":
        if tensor.dtype != torch.uint8:
            raise ValueError(f"{name}: hamming takes packed uint8 codes (np.packbits), got "
                             f"{tensor.dtype}")
        return tensor
    tensor = tensor.to(torch.float32)
    if not torch.isfinite(tensor).all():
        row = offset + int((~torch.isfinite(tensor)).any(dim=1).nonzero()[0])
        raise ValueError(f"{name} row {row} has NaN or infinite values")
    if metric == "jensenshannon":
        if (tensor < 0).any():
            row = offset + int((tensor < 0).any(dim=1).nonzero()[0])
            raise ValueError(f"{name} row {row} has negative values; jensenshannon needs "
                             "non-negative vectors")
        if (tensor.sum(dim=1) <= 0).any():
            row = offset + int((tensor.sum(dim=1) <= 0).nonzero()[0])
            raise ValueError(f"{name} row {row} sums to 0; jensenshannon cannot normalise it")
    return tensor


def _unwrap(queries, database, metric: str | None, n_bits: int | None):
    """Arrays, metric and bit count of a query/database pair given as arrays or descriptors."""
    if isinstance(queries, BinaryCodes | FloatFeatures) or isinstance(
            database, BinaryCodes | FloatFeatures):
        check_same_method(queries, database)
        if type(queries) is not type(database):
            raise TypeError(f"cannot compare {type(queries).__name__} with "
                            f"{type(database).__name__}")
        if isinstance(queries, BinaryCodes):
            if queries.n_bits != database.n_bits:
                raise ValueError(f"codes of {queries.n_bits} and {database.n_bits} bits")
            if metric not in (None, "hamming"):
                raise ValueError(f"binary codes are compared with hamming, not {metric!r}")
            return queries.packed, database.packed, "hamming", queries.n_bits
        if queries.metric != database.metric:
            raise ValueError(f"features compared with {queries.metric} and {database.metric}")
        return queries.values, database.values, metric or queries.metric, None
    if metric is None:
        raise ValueError("arrays need a metric: " + ", ".join(METRICS))
    return queries, database, metric, n_bits


def _inputs(queries, database, metric: str, device: str):
    """Checked metric, device and tensors of a query/database pair."""
    metric = _check_metric(metric)
    device = resolve_device(device)
    q = _as_tensor(queries, "queries", metric)
    d = _as_tensor(database, "database", metric)
    if q.shape[1] != d.shape[1]:
        raise ValueError(f"queries have {q.shape[1]} dimensions, database {d.shape[1]}")
    return metric, device, q, d


def _prepare(x: torch.Tensor, metric: str, device: str) -> torch.Tensor:
    """Per-item preprocessing done once, not per block."""
    import torch  # torch: only when computing

    x = x.to(device)
    if metric == "hamming":
        bits = torch.arange(7, -1, -1, device=device, dtype=torch.uint8)
        return ((x.unsqueeze(-1) >> bits) & 1).flatten(1).to(torch.float32)
    if metric == "cosine":
        return x / x.norm(dim=1, keepdim=True).clamp_min(_EPS)
    if metric == "jensenshannon":
        x64 = x.to(torch.float64)
        return (x64 / x64.sum(dim=1, keepdim=True)).to(torch.float32)
    return x


def _js_native(metric: str, device: str):
    """The compiled Jensen-Shannon kernel when it applies (CPU), else ``None``."""
    if metric != "jensenshannon" or not device.startswith("cpu"):
        return None
    return native.js_kernel()


def _js_block_native(lib, q: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon distances of normalised CPU blocks with the compiled kernel.

    For p > 0: p log(2p/s) + r log(2r/s) = r log(r/p) - s log1p((r - p) / (2p)), s = p + r;
    for p = 0 it is r log 2. The first part of each is a float64 matrix product; the kernel
    sums the log1p part (see jensenshannon.c).
    """
    import torch  # torch: only when computing

    p, r = q.numpy(), d.numpy()
    p64, r64 = p.astype(np.float64), r.astype(np.float64)
    pos = p64 > _JS_TINY
    log_p = np.log(p64, where=pos, out=np.zeros_like(p64))
    c = np.divide(np.float32(0.5), p, where=pos, out=np.zeros_like(p))
    r_log_r = xlogy(r64, r64)
    # rows sum to 1, so r log r <= 0 and log p <= 0: magnitude is the sum of the
    # terms' magnitudes
    row_part, cross = r_log_r.sum(axis=1)[None, :], log_p @ r64.T
    base, magnitude = row_part - cross, -(row_part + cross)
    zero = ~pos
    if zero.any():  # r log 2 - r log r >= 0
        extra = zero.astype(np.float64) @ (np.log(2.0) * r64 - r_log_r).T
        base += extra
        magnitude += extra
    sums = np.empty(base.shape, dtype=np.float32)
    m, n = base.shape
    threads = max(1, min(available_cpus(), 16, max(m, n)))
    if threads == 1:
        native.js_block(lib, p, c, r, sums)
    else:
        by_rows = m >= n
        size = -(-(m if by_rows else n) // threads)

        def work(span: slice) -> None:
            if by_rows:
                native.js_block(lib, p[span], c[span], r, sums[span])
            else:
                native.js_block(lib, p, c, r[span], sums[:, span])

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(work, _spans(m if by_rows else n, size)))
    # base is a difference of float64 sums rounded in different orders (a row sum, a BLAS
    # product): for identical rows it leaves ~1e-15, whose square root (~3e-8) made a copy's
    # distance non-zero on some CPUs. What is below that rounding bound is no divergence.
    noise = 4 * np.sqrt(p.shape[1]) * np.finfo(np.float64).eps * magnitude
    divergence = np.where(base - sums > noise, base - sums, 0) / (2 * np.log(2.0))
    return torch.from_numpy(np.sqrt(divergence).astype(np.float32))


def _block(q: torch.Tensor, d: torch.Tensor, metric: str, lib=None,
           n_bits: int | None = None) -> torch.Tensor:
    """Distances between prepared blocks ``q`` (m, D) and ``d`` (n, D): (m, n) float32.

    ``lib`` is the compiled Jensen-Shannon kernel, when it applies; ``n_bits`` the true code
    length for ``hamming`` (default: every unpacked bit)."""
    import torch  # torch: only when computing

    if lib is not None:
        return _js_block_native(lib, q, d)
    if metric == "hamming":
        # popcount(a xor b) = |a| + |b| - 2 a.b on {0, 1} bits: one matrix product, exact in
        # float32 for codes up to 2**24 bits. Padding bits are 0 on both sides.
        same = q @ d.T
        out = q.sum(1, keepdim=True) + d.sum(1) - 2 * same
        return out / (n_bits or q.shape[1])
    if metric == "cosine":
        return ((1 - q @ d.T) / 2).clamp_(0, 1)
    if metric == "l1":
        return torch.cdist(q, d, p=1)
    if metric == "l2":
        return torch.cdist(q, d, p=2, compute_mode="donot_use_mm_for_euclid_dist")
    # Jensen-Shannon, element by element: with s = p + r and t = (p - r) / s,
    # p log(2p / s) + r log(2r / s) = p log1p(t) + r log1p(-t) >= 0. Writing it with log1p of
    # the exact difference keeps near-duplicates accurate in float32 (the divergence is second
    # order in t, and log(2p / s) would round t away); where t rounds to +-1 (one entry
    # negligible next to the other) the direct form log(2r / s) keeps the small side finite.
    p = q.unsqueeze(1)
    r = d.unsqueeze(0)
    s = (p + r).clamp_min(_EPS * _EPS)
    t = (p - r) / s
    zero = torch.zeros((), dtype=p.dtype, device=p.device)
    log_p = torch.where(t < -0.5, torch.log(2 * p / s), torch.log1p(t))
    log_r = torch.where(t > 0.5, torch.log(2 * r / s), torch.log1p(-t))
    terms = torch.where(p > 0, p * log_p, zero) + torch.where(r > 0, r * log_r, zero)
    divergence = terms.sum(-1).clamp_min_(0) / (2 * np.log(2.0))
    return divergence.sqrt_()


def _block_rows(metric: str, n_other: int, dim: int, max_elements: int,
                native_kernel: bool = False) -> int:
    # Jensen-Shannon in torch holds about eight (rows, n_other, dim) temporaries; the compiled
    # kernel a few float64 (rows, n_other) and (rows, dim) arrays; the others one
    # (rows, n_other) result.
    if native_kernel:
        per_row = 6 * (n_other + dim)
    else:
        per_row = n_other * (8 * dim if metric == "jensenshannon" else 1) + dim
    return max(1, max_elements // max(per_row, 1))


def _spans(total: int, size: int) -> Iterator[slice]:
    for start in range(0, total, size):
        yield slice(start, min(start + size, total))


def _check_bits(n_bits: int | None, width: int) -> int | None:
    if n_bits is not None and not 0 < n_bits <= 8 * width:
        raise ValueError(f"n_bits {n_bits} does not fit codes packed in {width} bytes")
    return n_bits


def _is_blocks(database) -> bool:
    """Whether ``database`` is a stream of blocks rather than one array or descriptor."""
    import torch  # torch: only when computing

    if isinstance(database, np.ndarray | torch.Tensor | BinaryCodes | FloatFeatures):
        return False
    if isinstance(database, list | tuple):  # a list of blocks, or a nested list of numbers
        return bool(database) and all(
            isinstance(b, np.ndarray | torch.Tensor | BinaryCodes | FloatFeatures)
            for b in database)
    return hasattr(database, "__iter__") and not hasattr(database, "shape")


def _length(block) -> int:
    return len(block) if isinstance(block, BinaryCodes | FloatFeatures) else block.shape[0]


def _blocks(database, rows: int) -> Iterator[tuple[int, object]]:
    """``(first row, block)`` of a database: slices of an array or descriptor object (a
    memory-mapped store is read slice by slice), or the items of a stream as they come."""
    if _is_blocks(database):
        offset = 0
        for block in database:
            yield offset, block
            offset += _length(block)
        return
    if not isinstance(database, BinaryCodes | FloatFeatures) and not hasattr(database, "shape"):
        database = np.asarray(database)
    total = _length(database)
    for span in _spans(total, max(1, rows)):
        yield span.start, database[span]


class _Queries:
    """Queries checked and prepared once, and each database block checked against them."""

    def __init__(self, queries, first_block, metric, n_bits, device):
        q, d, metric, n_bits = _unwrap(queries, first_block, metric, n_bits)
        self.raw = queries
        self.metric = _check_metric(metric)
        self.device = resolve_device(device)
        self.q = _as_tensor(q, "queries", self.metric)
        self.n_bits = (_check_bits(n_bits, self.q.shape[1]) if self.metric == "hamming"
                       else None)
        self.qp = _prepare(self.q, self.metric, self.device)
        self.lib = _js_native(self.metric, self.device)

    def block(self, block, offset: int):
        """The database block as a checked tensor (only this block is converted)."""
        # _unwrap refuses a block of another kind, method, metric or bit count
        _, d, _, _ = _unwrap(self.raw, block, self.metric, self.n_bits)
        d = _as_tensor(d, "database", self.metric, offset)
        if d.shape[1] != self.q.shape[1]:
            raise ValueError(f"queries have {self.q.shape[1]} dimensions, database "
                             f"{d.shape[1]}")
        return d


def _first(database, rows: int):
    """The first block and an iterator over every block (the first included)."""
    blocks = _blocks(database, rows)
    try:
        offset, first = next(blocks)
    except StopIteration:
        raise ValueError("the database is empty") from None

    def chain():
        yield offset, first
        yield from blocks

    return first, chain()


def pairwise(
    queries,
    database,
    metric: str | None = None,
    device: str = "auto",
    max_block_elements: int = DEFAULT_BLOCK_ELEMENTS,
    n_bits: int | None = None,
) -> np.ndarray:
    """Distance matrix between every query and every database item, for dense descriptors
    (arrays, `BinaryCodes`, `FloatFeatures`): the part of `hashing.distances.pairwise` (see
    there for the parameters, returns and errors) that every matching rule builds on."""
    import torch  # torch: only when computing

    chunks = _query_chunks(queries, database, metric, max_block_elements)
    if chunks is not None:  # many queries: a block of them at a time, never all converted
        return np.concatenate([pairwise(part, database, metric, device, max_block_elements,
                                        n_bits) for part in chunks])
    first, blocks = _first(database, rows=1 << 16)
    prepared = _Queries(queries, first, metric, n_bits, device)
    columns = []
    with torch.inference_mode():
        for offset, block in blocks:
            d = prepared.block(block, offset)
            dp = _prepare(d, prepared.metric, prepared.device)
            part = np.empty((prepared.q.shape[0], d.shape[0]), dtype=np.float32)
            rows = _block_rows(prepared.metric, d.shape[0], dp.shape[1], max_block_elements,
                               prepared.lib is not None)
            for span in _spans(prepared.q.shape[0], rows):
                part[span] = _block(prepared.qp[span], dp, prepared.metric, prepared.lib,
                                    prepared.n_bits).cpu().numpy()
            columns.append(part)
    return columns[0] if len(columns) == 1 else np.concatenate(columns, axis=1)


def _merge_topk(best_d, best_i, vals: np.ndarray, idx: np.ndarray, k: int):
    """Keep the ``k`` smallest of the running and the new candidates; earlier candidates
    first and a stable sort, so ties keep the lower database row."""
    if best_d is None:
        return vals, idx
    cat_d, cat_i = np.concatenate([best_d, vals], 1), np.concatenate([best_i, idx], 1)
    order = np.argsort(cat_d, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(cat_d, order, 1), np.take_along_axis(cat_i, order, 1)


def nearest(
    queries,
    database,
    metric: str | None = None,
    k: int = 1,
    device: str = "auto",
    max_block_elements: int = DEFAULT_BLOCK_ELEMENTS,
    n_bits: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest database items of every query, blockwise over both sets, for dense
    descriptors: the part of `hashing.distances.nearest` (see there) that reads the database
    block by block and keeps only the running ``k`` best of each query."""
    import torch  # torch: only when computing

    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    chunks = _query_chunks(queries, database, metric, max_block_elements)
    if chunks is not None:  # many queries (a k-NN graph of a whole store): a block at a time
        parts = [nearest(part, database, metric, k, device, max_block_elements, n_bits)
                 for part in chunks]
        return np.concatenate([d for d, _ in parts]), np.concatenate([i for _, i in parts])
    first, blocks = _first(database, rows=_database_rows(database, metric, k,
                                                         max_block_elements))
    prepared = _Queries(queries, first, metric, n_bits, device)
    best_d = best_i = None
    total = 0
    with torch.inference_mode():
        for offset, block in blocks:
            d = prepared.block(block, offset)
            total += d.shape[0]
            kk = min(k, d.shape[0])
            if prepared.metric == "hamming" and prepared.device == "cpu":
                vals, idx = _nearest_hamming_cpu(
                    prepared.q.numpy(), d.numpy(), kk, max_block_elements,
                    prepared.n_bits or 8 * prepared.q.shape[1])
            else:
                vals, idx = _nearest_block(prepared, d, kk, max_block_elements)
            best_d, best_i = _merge_topk(best_d, best_i, vals, idx + offset, k)
    if total < k:
        raise ValueError(f"k must be in [1, {total}] (the database size), got {k}")
    return best_d, best_i


def _query_chunks(queries, database, metric: str | None, budget: int):
    """Blocks of the queries when converting them all at once would pass the element budget
    (and the database can be read again for each block), else None."""
    if _is_blocks(database):
        return None
    if isinstance(queries, BinaryCodes):
        width = 8 * queries.packed.shape[1]
    elif isinstance(queries, FloatFeatures):
        width = queries.values.shape[1]
    else:
        if not hasattr(queries, "shape"):
            queries = np.asarray(queries)
        if queries.ndim != 2:
            return None  # reported by the checks
        width = queries.shape[1] * (8 if metric == "hamming" else 1)
    rows = max(1, budget // max(1, width))
    total = len(queries) if isinstance(queries, BinaryCodes | FloatFeatures) else queries.shape[0]
    if total <= rows:
        return None
    return [queries[span] for span in _spans(total, rows)]


def _database_rows(database, metric: str | None, k: int, budget: int) -> int:
    """Rows of an array database read at once: whole blocks of codes (xor and popcount work
    in small query blocks of their own), fewer rows of float features."""
    if _is_blocks(database):
        return 0  # a stream brings its own blocks
    if isinstance(database, BinaryCodes):
        return max(k, budget // max(1, database.packed.shape[1]))
    if isinstance(database, FloatFeatures):
        metric, dim = database.metric, database.values.shape[1]
    else:
        dim = (database if hasattr(database, "shape") else np.asarray(database)).shape[1]
        if metric == "hamming":
            return max(k, budget // max(1, dim))
    per_row = 6 * dim if metric == "jensenshannon" else 64 * dim
    return max(k, budget // max(1, per_row))


def _nearest_block(prepared: _Queries, d, kk: int, budget: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``kk`` nearest rows of one database block for every query, ascending, ties to the
    lower row."""
    dp = _prepare(d, prepared.metric, prepared.device)
    q_rows = _block_rows(prepared.metric, d.shape[0], dp.shape[1], budget,
                         prepared.lib is not None)
    n_query = prepared.q.shape[0]
    vals = np.empty((n_query, kk), dtype=np.float32)
    idx = np.empty((n_query, kk), dtype=np.int64)
    for qs in _spans(n_query, q_rows):
        dist = _block(prepared.qp[qs], dp, prepared.metric, prepared.lib, prepared.n_bits)
        if kk == 1:
            v, i = dist.min(dim=1, keepdim=True)  # the first minimum: the lower row
        else:
            v, i = dist.topk(kk, dim=1, largest=False, sorted=True)
        vals[qs], idx[qs] = v.cpu().numpy(), i.cpu().numpy()
    if kk > 1:  # topk does not order ties by row: sort by (distance, row)
        order = _order(vals, idx)
        vals, idx = np.take_along_axis(vals, order, 1), np.take_along_axis(idx, order, 1)
    return vals, idx


def _order(vals: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Per row, the order by distance, then by database row."""
    by_row = np.argsort(idx, axis=1, kind="stable")
    by_dist = np.argsort(np.take_along_axis(vals, by_row, 1), axis=1, kind="stable")
    return np.take_along_axis(by_row, by_dist, 1)


def _popcount_words(codes: np.ndarray) -> np.ndarray:
    """Packed codes as 64-bit words (zero-padded), for xor + popcount."""
    pad = (-codes.shape[1]) % 8
    if pad:
        codes = np.pad(codes, ((0, 0), (0, pad)))
    return np.ascontiguousarray(codes).view(np.uint64)


def _nearest_hamming_cpu(
    q: np.ndarray, d: np.ndarray, k: int, max_block_elements: int, n_bits: int
) -> tuple[np.ndarray, np.ndarray]:
    """Hamming k-NN on CPU: xor and popcount on 64-bit words (NumPy's ``bitwise_count``),
    query blocks spread over threads (NumPy releases the GIL); distances are differing bits
    over ``n_bits``."""
    qw, dw = _popcount_words(q), _popcount_words(d)
    # Small blocks keep the xor temporaries in cache; this loop is memory-bound.
    rows = max(1, min(max_block_elements, 1 << 20) // max(1, d.shape[0] * qw.shape[1]))
    best_d = np.empty((q.shape[0], k), dtype=np.float32)
    best_i = np.empty((q.shape[0], k), dtype=np.int64)

    def work(span: slice) -> None:
        counts = np.bitwise_count(qw[span, 0, None] ^ dw[None, :, 0])
        if qw.shape[1] > 1:
            counts = counts.astype(np.uint32)
            for word in range(1, qw.shape[1]):
                counts += np.bitwise_count(qw[span, word, None] ^ dw[None, :, word])
        if k == 1:
            idx = counts.argmin(axis=1)[:, None]  # first minimum: the lowest index
        else:
            # one unique key per (distance, row): the k smallest keys are the k nearest with
            # ties to the lower row, also at the k-th place
            keys = counts.astype(np.int64) * d.shape[0] + np.arange(d.shape[0])
            part = np.argpartition(keys, k - 1, axis=1)[:, :k]
            idx = np.take_along_axis(part, np.argsort(np.take_along_axis(keys, part, 1),
                                                      axis=1), 1)
        best_i[span] = idx
        best_d[span] = np.take_along_axis(counts, idx, 1) / n_bits

    with ThreadPoolExecutor(min(available_cpus(), 16)) as pool:
        list(pool.map(work, _spans(q.shape[0], rows)))
    return best_d, best_i
