"""The keypoint methods' matching rule, for whole batches of images.

The distance from a query image to a database image is the study's rule: every query
descriptor is matched to its nearest descriptor of the database image (OpenCV's
``BFMatcher.match``), the match distances are sorted, and the ``cutoff``-th smallest is the
distance (infinite when the query has fewer descriptors, or either image none). Hamming
distances are bit error rates (differing bits over the descriptor's 256 bits); L2 and L1 are
OpenCV's ``NORM_L2`` and ``NORM_L1``.

`local_distances` computes that for all query and database images at once: every
descriptor pair in blocks, the minimum over each database image's descriptors, then the
``cutoff``-th smallest per pair of images. Binary descriptors on CPU go through a compiled
kernel (`hashing.distances.native`, ``keypoints.c`` beside it) that fuses xor, popcount and the
minima; float descriptors and CUDA (and CPUs without a C compiler) through torch: in float32
for integer-valued descriptors (SIFT's, whose sums are then exact: OpenCV's distances bit for
bit), in float64 otherwise (DAISY's: OpenCV's to its float32 rounding, which sums in float32;
an image against itself is then at a distance of about 1e-8 instead of 0).
"""

from __future__ import annotations

import threading
import weakref
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from hashing.distances import native
from hashing.distances.dense import DEFAULT_BLOCK_ELEMENTS
from helpers import available_cpus, resolve_device
from helpers.descriptors import LocalDescriptors, check_same_method


def local_distances(queries: LocalDescriptors, database: LocalDescriptors,
                    device: str = "auto",
                    max_block_elements: int = DEFAULT_BLOCK_ELEMENTS) -> np.ndarray:
    """Distances (Q, N) float32 between the images of two sets of local descriptors.

    For each pair: the ``cutoff``-th smallest, over the query's descriptors, of the distance
    to the nearest descriptor of the database image; what OpenCV's ``BFMatcher.match`` and a
    sort give pair by pair (see the module docstring). ``inf`` where the query has fewer
    than ``cutoff`` descriptors or the database image none.

    Parameters
    ----------
    queries, database : LocalDescriptors
        Of one method (same norm and descriptor length).
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda"``.
    max_block_elements : int
        Bound on the values held by one intermediate array.

    Raises
    ------
    TypeError
        Something other than `LocalDescriptors`.
    ValueError
        Descriptors of different methods, norms or lengths.
    """
    if not isinstance(queries, LocalDescriptors) or not isinstance(database, LocalDescriptors):
        raise TypeError(f"cannot compare {type(queries).__name__} with "
                        f"{type(database).__name__}")
    check_same_method(queries, database)
    if queries.norm != database.norm or queries.values.shape[2] != database.values.shape[2]:
        raise ValueError(f"cannot compare {queries.values.shape[2]}-long {queries.norm} "
                         f"descriptors with {database.values.shape[2]}-long {database.norm} "
                         "ones")
    n_query, n_db = len(queries), len(database)
    if n_query == 0 or n_db == 0 or queries.values.shape[1] == 0 \
            or database.values.shape[1] == 0:
        return np.full((n_query, n_db), np.inf, dtype=np.float32)
    matcher = _matcher(database, resolve_device(device), max_block_elements)
    width = queries.values.shape[1]
    # query images in blocks whose (descriptors x database images) minima fit the budget
    images = max(1, max_block_elements // max(1, width * n_db))
    return np.concatenate([matcher.distances(queries[first:first + images])
                           for first in range(0, n_query, images)])


_CACHE_LOCK = threading.Lock()
#: Matchers kept (one per database; a benchmark of several keypoint methods has one each).
CACHED_MATCHERS = 8
_CACHED: list = []  # [(weak reference to a database, device, budget, its _Matcher)], newest last


def _matcher(database: LocalDescriptors, device: str, budget: int) -> _Matcher:
    """The matcher of ``database``, kept while that object lives: a benchmark matches batch
    after batch of queries against one database per method, whose layout (padding, the
    kernel's word blocks, the torch tensors: a copy of the database) is made once. The
    database's arrays must not be changed in place while it is in use."""
    with _CACHE_LOCK:
        for entry in list(_CACHED):  # a copy: _forget may run in another thread
            ref, cached_device, cached_budget, matcher = entry
            if ref() is database and (cached_device, cached_budget) == (device, budget) \
                    and matcher.kernel_wanted == _kernel_wanted(matcher.norm, device,
                                                               database.values.shape[2]):
                return matcher
        matcher = _Matcher(database, device, budget)
        _CACHED.append((weakref.ref(database, _forget), device, budget, matcher))
        del _CACHED[:-CACHED_MATCHERS]
        return matcher


def clear_matchers() -> None:
    """Forget every cached matcher (their copies of databases: GPU memory on CUDA)."""
    with _CACHE_LOCK:
        _CACHED.clear()


def _forget(ref: weakref.ref) -> None:
    """Drop the cached matchers of a database that no longer exists (their memory with it)."""
    _CACHED[:] = [entry for entry in list(_CACHED) if entry[0] is not ref]


def _kernel_wanted(norm: str, device: str, length: int) -> tuple[bool, bool, bool]:
    """What decides a matcher's path: the kernel applies, and the switches that turn it or
    its AVX-512 form off (tests flip them between calls)."""
    return (norm == "hamming" and device == "cpu" and length <= 32,
            native.switched_off(native.NO_NATIVE), native.switched_off(native.NO_SIMD))


class _Matcher:
    """Distances from blocks of query images to one database of local descriptors."""

    def __init__(self, database: LocalDescriptors, device: str, budget: int) -> None:
        self.budget, self.n_bits = budget, database.n_bits  # never the database itself:
        # the cache holds the matcher only while the database lives
        self.norm = database.norm
        n_db, width, length = database.values.shape
        self.valid = np.arange(width)[None, :] < database.counts[:, None]  # (N, K)
        self.kernel = None
        self.kernel_wanted = _kernel_wanted(self.norm, device, length)
        if self.kernel_wanted[0]:
            self.kernel = native.keypoint_kernel()
        if self.kernel is not None:
            self._layout_for_kernel(database)
        else:
            import torch  # torch: only when computing

            self.torch_device = torch.device(device)
            values = database.values.reshape(n_db * width, -1)
            if self.norm == "hamming":
                bits = np.unpackbits(values, axis=1).astype(np.float32)
                self.d = torch.from_numpy(bits).to(self.torch_device)
            else:
                # integer-valued descriptors (SIFT's) whose sums stay below 2**24 are exact in
                # float32, whatever the summation order: twice as fast as float64, which the
                # others (DAISY's) need to give OpenCV's distances
                self.exact32 = _exact_in_float32(values)
                dtype = np.float32 if self.exact32 else np.float64
                self.d = torch.from_numpy(values.astype(dtype)).to(self.torch_device)
            self.pad = torch.from_numpy(~self.valid.reshape(-1)).to(self.torch_device)
            # |d|^2 with padding slots at +inf: no padding slot is ever a minimum
            self.d_sq = (self.d * self.d).sum(1).masked_fill_(self.pad, torch.inf)

    def _layout_for_kernel(self, database: LocalDescriptors) -> None:
        """The database as the kernel reads it: descriptors zero-padded to 256 bits (xor of
        zeros adds nothing) as four 64-bit words."""
        values = database.values
        self.words = _words(np.pad(values, ((0, 0), (0, 0), (0, 32 - values.shape[2]))))
        self.counts = np.ascontiguousarray(database.counts, dtype=np.int64)
        self.simd = native.keypoint_simd(self.kernel)
        if self.simd:  # blocks of 8 descriptors word by word, for 512-bit popcounts
            self.words = native.transpose_blocks(self.words)

    def distances(self, block: LocalDescriptors) -> np.ndarray:
        """(B, N) float32 distances of a block of query images (the study's rule)."""
        if self.kernel is not None:
            return self._kernel_distances(block)
        width, n_db = block.values.shape[1], len(self.valid)
        rows = np.arange(width)[None, :] < block.counts[:, None]  # valid descriptor slots
        per_desc = np.full((len(block), width, n_db), np.inf, dtype=np.float32)
        if rows.any():
            per_desc[rows] = self._torch_minima(block.values[rows])
        return _cutoff_th(per_desc, block.cutoff)

    def _kernel_distances(self, block: LocalDescriptors) -> np.ndarray:
        n_img, width, length = block.values.shape
        q = _words(np.pad(block.values, ((0, 0), (0, 0), (0, 32 - length))))
        q = np.ascontiguousarray(q.reshape(n_img * width, 4))
        skip = np.ascontiguousarray(
            (np.arange(width)[None, :] >= block.counts[:, None]).reshape(-1), dtype=np.uint8)
        group = width if block.cutoff == 1 else 1  # cutoff 1: the kernel takes the minimum
        out = np.full((n_img * width // group, len(self.counts)), native.KEYPOINT_NONE,
                      dtype=np.int32)
        threads = max(1, min(available_cpus(), 16, n_img))
        bounds = [n_img * k // threads for k in range(threads + 1)]

        def work(k: int) -> None:  # each thread its own query images (the GIL is released)
            rows = slice(bounds[k] * width, bounds[k + 1] * width)
            outs = slice(rows.start // group, rows.stop // group)
            match = native.local_hamming_min_t if self.simd else native.local_hamming_min
            match(self.kernel, q[rows], skip[rows], group, self.words, self.counts, out[outs])

        if threads == 1:
            work(0)
        else:
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(work, range(threads)))
        if group == 1:
            out = _cutoff_th(out.reshape(n_img, width, -1), block.cutoff,
                             none=native.KEYPOINT_NONE)
        result = out.astype(np.float32) / np.float32(self.n_bits)
        result[out == native.KEYPOINT_NONE] = np.inf
        return result

    def _torch_minima(self, q: np.ndarray) -> np.ndarray:
        """(m, N) float32: for query descriptors ``q`` (m, D), the distance to the nearest
        descriptor of each database image (inf for an image without any)."""
        import torch  # torch: only when computing

        n_db, width = self.valid.shape
        rows = max(1, self.budget // max(1, n_db * width))
        out = np.empty((len(q), n_db), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(q), rows):
                part = q[start:start + rows]
                if self.norm == "hamming":
                    x = torch.from_numpy(np.unpackbits(part, axis=1).astype(np.float32))
                elif self.exact32 and _exact_in_float32(part):
                    x = torch.from_numpy(part.astype(np.float32))
                else:
                    x = torch.from_numpy(part.astype(np.float64))
                x = x.to(self.torch_device)
                if x.dtype != self.d.dtype:  # float queries against an integer database
                    x, d, d_sq = x.double(), self.d.double(), self.d_sq.double()
                else:
                    d, d_sq = self.d, self.d_sq
                if self.norm == "l1":
                    dist = torch.cdist(x, d, p=1)
                    dist[:, self.pad] = torch.inf
                    best = dist.view(len(part), n_db, width).amin(-1)
                else:
                    # |x|^2 + min over t of (|d_t|^2 - 2 x.d_t): one matrix product writes
                    # the candidates (padding slots are +inf through |d_t|^2), one pass takes
                    # the minima; exact for {0, 1} bits and integer-valued descriptors in
                    # float32, to float64 rounding otherwise. sqrt and scaling are monotonic:
                    # applied to the minima only.
                    dist = torch.addmm(d_sq, x, d.T, alpha=-2)
                    best = dist.view(len(part), n_db, width).amin(-1) + (x * x).sum(1)[:, None]
                    if self.norm == "hamming":
                        best = best / self.n_bits
                    else:  # float64's sqrt rounded to float32 is float32's correctly rounded
                        best = best.double().clamp_min_(0).sqrt_()  # one (torch's is not)
                out[start:start + len(part)] = best.float().cpu().numpy()
        return out


def _exact_in_float32(values: np.ndarray) -> bool:
    """Integer-valued rows whose squared norms and L1 norms stay below 2**22: every sum the
    L2 expansion or L1 makes is then an integer below 2**24, exact in float32."""
    if not len(values) or not np.array_equal(values, np.rint(values)):
        return False
    wide = np.abs(values.astype(np.float64))
    return float((wide * wide).sum(1).max()) < 2 ** 22 and float(wide.sum(1).max()) < 2 ** 22


def _cutoff_th(per_desc: np.ndarray, cutoff: int, none: float = np.inf) -> np.ndarray:
    """(B, N): the ``cutoff``-th smallest over axis 1 of (B, K, N) (``none`` beyond K)."""
    if cutoff > per_desc.shape[1]:
        return np.full((per_desc.shape[0], per_desc.shape[2]), none, dtype=per_desc.dtype)
    if cutoff == 1:
        return per_desc.min(axis=1)
    return np.partition(per_desc, cutoff - 1, axis=1)[:, cutoff - 1]


def _words(values: np.ndarray) -> np.ndarray:
    """Binary descriptors (..., B bytes) as (..., ceil(B / 8)) uint64 words, zero-padded."""
    pad = (-values.shape[-1]) % 8
    if pad:
        values = np.pad(values, [(0, 0)] * (values.ndim - 1) + [(0, pad)])
    return np.ascontiguousarray(values).view(np.uint64)
