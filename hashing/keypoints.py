"""Keypoint methods: ORB, SIFT, FAST + DAISY and FAST + LATCH, matched in batches.

The original study's four local-feature methods as algorithms of the registry
(``get_algorithm("orb", n_features=20)``), so the benchmark, digests, figures and
`hashing.neighbours` take them like any hash. OpenCV (its contrib build, for DAISY and LATCH)
detects and describes; each image gives up to about ``n_features`` descriptors, kept as one
padded array plus a count per image (`LocalDescriptors`).

The distance from a query image to a database image is the study's rule: every query
descriptor is matched to its nearest descriptor of the database image (OpenCV's
``BFMatcher.match``), the match distances are sorted, and the ``cutoff``-th smallest is the
distance (infinite when the query has fewer descriptors, or either image none). Hamming
distances are bit error rates (differing bits over the descriptor's 256 bits); L2 and L1 are
OpenCV's ``NORM_L2`` and ``NORM_L1``.

`local_distances` computes that for all query and database images at once: every
descriptor pair in blocks, the minimum over each database image's descriptors, then the
``cutoff``-th smallest per pair of images. Binary descriptors on CPU go through a compiled
kernel (`hashing.native`) that fuses xor, popcount and the minimum; float descriptors and
CUDA through torch (float64 on CPU, so SIFT's integer-valued descriptors give OpenCV's
distances exactly).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from hashing.distances import DEFAULT_BLOCK_ELEMENTS
from hashing.gray import GrayBatch
from hashing.registry import register_algorithm
from helpers import available_cpus, resolve_device
from helpers.descriptors import LocalDescriptors, check_same_method

logger = logging.getLogger(__name__)

#: Descriptor length of each method: bytes of a binary descriptor, floats of a float one.
DESCRIPTOR_SIZE = {"orb": 32, "latch": 32, "sift": 128, "daisy": 200}
#: The study's matcher norm of each method.
DEFAULT_NORM = {"orb": "hamming", "latch": "hamming", "sift": "l2", "daisy": "l2"}


def _check(name: str, n_features: int, cutoff: int, norm: str) -> None:
    if n_features < 1:
        raise ValueError(f"{name}: n_features must be >= 1, got {n_features}")
    if cutoff < 1:
        raise ValueError(f"{name}: cutoff must be >= 1, got {cutoff}")
    binary = DEFAULT_NORM[name] == "hamming"
    allowed = ("hamming",) if binary else ("l2", "l1")
    if norm not in allowed:
        kind = "binary (compared with hamming only)" if binary else "float vectors (l2 or l1)"
        raise ValueError(f"{name} descriptors are {kind}: norm {norm!r} does not apply")


def _describe(batch: GrayBatch, name: str, compute: Callable[[np.ndarray], np.ndarray | None],
              norm: str, cutoff: int) -> LocalDescriptors:
    """Descriptors of every gray image of the batch (full resolution, Pillow's ``L``
    conversion, as the study read them)."""
    found = [compute(np.ascontiguousarray(array)) for array in batch.arrays]
    return LocalDescriptors.from_list(found, norm, cutoff, DESCRIPTOR_SIZE[name])


def _fast_then(name: str, batch: GrayBatch, n_features: int, cutoff: int, norm: str,
               make_extractor: Callable[[], object]) -> LocalDescriptors:
    """FAST keypoints as ORB's detector ranks them, described by another extractor."""
    import cv2

    _check(name, n_features, cutoff, norm)
    detector, extractor = cv2.ORB_create(nfeatures=n_features), make_extractor()

    def compute(array: np.ndarray) -> np.ndarray | None:
        keypoints = detector.detect(array, None)
        if not keypoints:
            return None
        return extractor.compute(array, keypoints)[1]

    return _describe(batch, name, compute, norm, cutoff)


@register_algorithm("orb")
def orb(batch: GrayBatch, n_features: int = 20, cutoff: int = 1,
        norm: str = "hamming") -> LocalDescriptors:
    """ORB (oriented FAST and rotated BRIEF): up to ``n_features`` 256-bit descriptors per
    image (OpenCV's ``ORB_create(nfeatures=n_features).detectAndCompute``).

    ``cutoff`` is the matching rule (see `LocalDescriptors`); ``norm`` is ``hamming``."""
    import cv2

    _check("orb", n_features, cutoff, norm)
    detector = cv2.ORB_create(nfeatures=n_features)
    return _describe(batch, "orb", lambda a: detector.detectAndCompute(a, None)[1], norm,
                     cutoff)


@register_algorithm("sift")
def sift(batch: GrayBatch, n_features: int = 20, cutoff: int = 1,
         norm: str = "l2") -> LocalDescriptors:
    """SIFT: up to ``n_features`` keypoints (a keypoint with several orientations gives
    several descriptors), 128-d descriptors (OpenCV's ``SIFT_create``); ``norm`` ``l2``
    (the study's) or ``l1``."""
    import cv2

    _check("sift", n_features, cutoff, norm)
    detector = cv2.SIFT_create(nfeatures=n_features)
    return _describe(batch, "sift", lambda a: detector.detectAndCompute(a, None)[1], norm,
                     cutoff)


@register_algorithm("daisy")
def daisy(batch: GrayBatch, n_features: int = 20, cutoff: int = 1,
          norm: str = "l2") -> LocalDescriptors:
    """FAST + DAISY: ORB's FAST keypoints (up to ``n_features``), 200-d DAISY descriptors
    (OpenCV contrib's ``xfeatures2d.DAISY_create``); ``norm`` ``l2`` (the study's) or
    ``l1``."""
    import cv2

    return _fast_then("daisy", batch, n_features, cutoff, norm, cv2.xfeatures2d.DAISY_create)


@register_algorithm("latch")
def latch(batch: GrayBatch, n_features: int = 20, cutoff: int = 1,
          norm: str = "hamming") -> LocalDescriptors:
    """FAST + LATCH: ORB's FAST keypoints (up to ``n_features``; LATCH drops those too close
    to the border), 256-bit LATCH descriptors (OpenCV contrib's ``xfeatures2d.LATCH_create``);
    ``norm`` is ``hamming``."""
    import cv2

    return _fast_then("latch", batch, n_features, cutoff, norm, cv2.xfeatures2d.LATCH_create)


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
    out = np.full((n_query, n_db), np.inf, dtype=np.float32)
    width = queries.values.shape[1]
    if n_query == 0 or n_db == 0 or width == 0 or database.values.shape[1] == 0:
        return out
    device = resolve_device(device)
    matcher = _Matcher(database, device, max_block_elements)
    cutoff = queries.cutoff
    # query images in blocks whose (descriptors x database images) minima fit the budget
    images = max(1, max_block_elements // max(1, width * n_db))
    for first in range(0, n_query, images):
        block = queries[first:first + images]
        rows = np.arange(width)[None, :] < block.counts[:, None]  # valid descriptor slots
        per_desc = np.full((len(block), width, n_db), np.inf, dtype=np.float32)
        if rows.any():
            per_desc[rows] = matcher.minima(block.values[rows])
        if cutoff > width:
            continue  # no query of the block has that many descriptors: inf
        if cutoff == 1:
            out[first:first + len(block)] = per_desc.min(axis=1)
        else:
            out[first:first + len(block)] = np.partition(per_desc, cutoff - 1,
                                                         axis=1)[:, cutoff - 1]
    return out


class _Matcher:
    """Per query descriptor, the distance to the nearest descriptor of each database image."""

    def __init__(self, database: LocalDescriptors, device: str, budget: int) -> None:
        self.database, self.device, self.budget = database, device, budget
        self.norm = database.norm
        self.counts = np.ascontiguousarray(database.counts, dtype=np.int64)
        n_db, width, _ = database.values.shape
        self.valid = np.arange(width)[None, :] < self.counts[:, None]  # (N, K)
        self.kernel = None
        if self.norm == "hamming":
            if device == "cpu":
                from hashing import native

                self.kernel = native.keypoint_kernel()
            self.words = _words(database.values)  # (N, K, W) uint64
        if self.kernel is None:
            import torch

            self.torch_device = torch.device(device)
            values = database.values.reshape(n_db * width, -1)
            if self.norm == "hamming":
                bits = np.unpackbits(values, axis=1).astype(np.float32)
                self.d = torch.from_numpy(bits).to(self.torch_device)
            else:
                self.d = torch.from_numpy(values.astype(np.float64)).to(self.torch_device)
            self.d_sq = (self.d * self.d).sum(1)
            self.pad = torch.from_numpy(~self.valid.reshape(-1)).to(self.torch_device)

    def minima(self, q: np.ndarray) -> np.ndarray:
        """(m, N) float32 for query descriptors ``q`` (m, D)."""
        if self.kernel is not None:
            return self._kernel_minima(q)
        return self._torch_minima(q)

    def _kernel_minima(self, q: np.ndarray) -> np.ndarray:
        from hashing import native

        words = _words(q[:, None, :])[:, 0]
        n_db = len(self.counts)
        counts = np.empty((len(q), n_db), dtype=np.int32)
        threads = max(1, min(available_cpus(), 16, len(q)))
        bounds = [len(q) * k // threads for k in range(threads + 1)]

        def work(k: int) -> None:
            span = slice(bounds[k], bounds[k + 1])
            native.local_hamming_min(self.kernel, words[span], self.words, self.counts,
                                     counts[span])

        if threads == 1:
            work(0)
        else:
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(work, range(threads)))
        out = counts.astype(np.float32) / self.database.n_bits
        out[counts == np.iinfo(np.int32).max] = np.inf
        return out

    def _torch_minima(self, q: np.ndarray) -> np.ndarray:
        import torch

        n_db, width = self.valid.shape
        rows = max(1, self.budget // max(1, n_db * width))
        out = np.empty((len(q), n_db), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(q), rows):
                part = q[start:start + rows]
                if self.norm == "hamming":
                    x = torch.from_numpy(np.unpackbits(part, axis=1).astype(np.float32))
                else:
                    x = torch.from_numpy(part.astype(np.float64))
                x = x.to(self.torch_device)
                if self.norm == "l1":
                    dist = torch.cdist(x, self.d, p=1)
                else:
                    # |x|^2 + |d|^2 - 2 x.d: exact for {0, 1} bits (differing bits) in
                    # float32, and in float64 for SIFT's integer-valued descriptors
                    dist = (x * x).sum(1, keepdim=True) + self.d_sq - 2 * (x @ self.d.T)
                    if self.norm == "hamming":
                        dist = dist / self.database.n_bits
                    else:
                        dist = dist.clamp_min_(0).sqrt_()
                dist[:, self.pad] = torch.inf
                out[start:start + len(part)] = (dist.view(len(part), n_db, width).amin(-1)
                                                .float().cpu().numpy())
        return out


def _words(values: np.ndarray) -> np.ndarray:
    """Binary descriptors (..., B bytes) as (..., ceil(B / 8)) uint64 words, zero-padded."""
    pad = (-values.shape[-1]) % 8
    if pad:
        values = np.pad(values, [(0, 0)] * (values.ndim - 1) + [(0, pad)])
    return np.ascontiguousarray(values).view(np.uint64)
