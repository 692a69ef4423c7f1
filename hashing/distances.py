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

Both functions take raw arrays (with ``metric``) or the descriptor objects of
`hashing.descriptors` as they are: `BinaryCodes` bring their bit count, `FloatFeatures` their
metric, and `MultiCodes` go to the crop-resistant matching rule.

On CPU, ``jensenshannon`` uses a compiled kernel (:mod:`hashing.native`) when a C compiler is
available, and torch otherwise; both agree with SciPy to 1e-6.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np
from scipy.special import xlogy

from hashing import native
from hashing.descriptors import BinaryCodes, FloatFeatures, MultiCodes, check_same_method
from helpers import available_cpus, resolve_device

if TYPE_CHECKING:  # torch is imported by the functions that compute, not by `import hashing`
    import torch

METRICS = ("hamming", "cosine", "jensenshannon", "l1", "l2")

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


def _as_tensor(array, name: str, metric: str) -> torch.Tensor:
    import torch

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
        row = int((~torch.isfinite(tensor)).any(dim=1).nonzero()[0])
        raise ValueError(f"{name} row {row} has NaN or infinite values")
    if metric == "jensenshannon":
        if (tensor < 0).any():
            row = int((tensor < 0).any(dim=1).nonzero()[0])
            raise ValueError(f"{name} row {row} has negative values; jensenshannon needs "
                             "non-negative vectors")
        if (tensor.sum(dim=1) <= 0).any():
            row = int((tensor.sum(dim=1) <= 0).nonzero()[0])
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
    import torch

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
    import torch

    p, r = q.numpy(), d.numpy()
    p64, r64 = p.astype(np.float64), r.astype(np.float64)
    pos = p64 > _JS_TINY
    log_p = np.log(p64, where=pos, out=np.zeros_like(p64))
    c = np.divide(np.float32(0.5), p, where=pos, out=np.zeros_like(p))
    r_log_r = xlogy(r64, r64)
    base = r_log_r.sum(axis=1)[None, :] - log_p @ r64.T
    zero = ~pos
    if zero.any():
        base += zero.astype(np.float64) @ (np.log(2.0) * r64 - r_log_r).T
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
    divergence = np.maximum(base - sums, 0) / (2 * np.log(2.0))
    return torch.from_numpy(np.sqrt(divergence).astype(np.float32))


def _block(q: torch.Tensor, d: torch.Tensor, metric: str, lib=None,
           n_bits: int | None = None) -> torch.Tensor:
    """Distances between prepared blocks ``q`` (m, D) and ``d`` (n, D): (m, n) float32.

    ``lib`` is the compiled Jensen-Shannon kernel, when it applies; ``n_bits`` the true code
    length for ``hamming`` (default: every unpacked bit)."""
    import torch

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


def pairwise(
    queries,
    database,
    metric: str | None = None,
    device: str = "auto",
    max_block_elements: int = DEFAULT_BLOCK_ELEMENTS,
    n_bits: int | None = None,
) -> np.ndarray:
    """Distance matrix between every query and every database item.

    Parameters
    ----------
    queries : array-like (Q, D), BinaryCodes, FloatFeatures or MultiCodes
        Float vectors, or packed ``uint8`` codes for ``hamming``; descriptor objects bring
        their own metric and bit count.
    database : same kind as ``queries``, N items
    metric : {"hamming", "cosine", "jensenshannon", "l1", "l2"}, optional
        See the module docstring; needed for arrays only.
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda"``.
    max_block_elements : int
        Bound on the values held by one intermediate array.
    n_bits : int, optional
        True length of packed ``hamming`` codes (default: 8 x the packed width).

    Returns
    -------
    numpy.ndarray, shape (Q, N), float32

    Raises
    ------
    ValueError
        Unknown metric, mismatched dimensions, wrong dtype, negative or zero-sum vectors for
        ``jensenshannon``.
    """
    import torch

    if isinstance(queries, MultiCodes) or isinstance(database, MultiCodes):
        from hashing.matching import multi_distances

        return multi_distances(queries, database, device, max_block_elements)
    queries, database, metric, n_bits = _unwrap(queries, database, metric, n_bits)
    metric, device, q, d = _inputs(queries, database, metric, device)
    n_bits = _check_bits(n_bits, q.shape[1]) if metric == "hamming" else None
    qp, dp = _prepare(q, metric, device), _prepare(d, metric, device)
    lib = _js_native(metric, device)
    out = np.empty((q.shape[0], d.shape[0]), dtype=np.float32)
    rows = _block_rows(metric, d.shape[0], qp.shape[1], max_block_elements, lib is not None)
    with torch.inference_mode():
        for span in _spans(q.shape[0], rows):
            out[span] = _block(qp[span], dp, metric, lib, n_bits).cpu().numpy()
    return out


def nearest(
    queries,
    database,
    metric: str | None = None,
    k: int = 1,
    device: str = "auto",
    max_block_elements: int = DEFAULT_BLOCK_ELEMENTS,
    n_bits: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest database items of every query, blockwise over both sets.

    Parameters
    ----------
    queries, database, metric, device, max_block_elements, n_bits
        As in :func:`pairwise` (multi-codes excepted).
    k : int
        Neighbours per query (at most the database size).

    Returns
    -------
    distances : numpy.ndarray, shape (Q, k), float32
        Ascending per row.
    indices : numpy.ndarray, shape (Q, k), int64
        Database rows. For ``k=1`` ties go to the lowest index.
    """
    import torch

    if isinstance(queries, MultiCodes) or isinstance(database, MultiCodes):
        raise TypeError("nearest() takes codes or features; match multi-codes with pairwise()")
    queries, database, metric, n_bits = _unwrap(queries, database, metric, n_bits)
    metric, device, q, d = _inputs(queries, database, metric, device)
    n_bits = _check_bits(n_bits, q.shape[1]) if metric == "hamming" else None
    n = d.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, {n}] (the database size), got {k}")
    if metric == "hamming" and device == "cpu":
        return _nearest_hamming_cpu(q.numpy(), d.numpy(), k, max_block_elements,
                                    n_bits or 8 * q.shape[1])
    qp, dp = _prepare(q, metric, device), _prepare(d, metric, device)
    lib = _js_native(metric, device)
    dim = qp.shape[1]
    if lib is not None:
        db_rows = max(k, min(n, max_block_elements // (6 * dim)))
    else:
        db_rows = max(k, min(n, _block_rows(metric, 1, dim, max_block_elements) // 64 or 1))
    q_rows = _block_rows(metric, db_rows, dim, max_block_elements, lib is not None)
    best_d = np.empty((q.shape[0], k), dtype=np.float32)
    best_i = np.empty((q.shape[0], k), dtype=np.int64)
    with torch.inference_mode():
        for qs in _spans(q.shape[0], q_rows):
            run_d = run_i = None
            for ds in _spans(n, db_rows):
                block = _block(qp[qs], dp[ds], metric, lib, n_bits)
                kk = min(k, block.shape[1])
                if k == 1:
                    vals, idx = block.min(dim=1, keepdim=True)
                else:
                    vals, idx = block.topk(kk, dim=1, largest=False, sorted=True)
                idx = idx + ds.start
                if run_d is None:
                    run_d, run_i = vals, idx
                    continue
                # Earlier blocks first and a stable sort: ties keep the lower index.
                cat_d, cat_i = torch.cat([run_d, vals], 1), torch.cat([run_i, idx], 1)
                order = torch.sort(cat_d, dim=1, stable=True).indices[:, :k]
                run_d, run_i = cat_d.gather(1, order), cat_i.gather(1, order)
            best_d[qs] = run_d.cpu().numpy()
            best_i[qs] = run_i.cpu().numpy()
    return best_d, best_i


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
            part = np.argpartition(counts, k - 1, axis=1)[:, :k]
            # order the k by (distance, index)
            keys = counts[np.arange(len(part))[:, None], part].astype(np.int64) * d.shape[0]
            idx = np.take_along_axis(part, np.argsort(keys + part, axis=1), 1)
        best_i[span] = idx
        best_d[span] = np.take_along_axis(counts, idx, 1) / n_bits

    with ThreadPoolExecutor(min(available_cpus(), 16)) as pool:
        list(pool.map(work, _spans(q.shape[0], rows)))
    return best_d, best_i
