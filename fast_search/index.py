"""Faiss indexes from factory strings, with the metrics of `hashing.distances`.

``build_index("IVF4096,Flat", metric="cosine", dim=512)`` makes any index Faiss's factory
makes; binary codes go through the binary factory (``BFlat``, ``BIVF1024``, ``BHNSW32``).
Searches return distances on the scale `hashing.distances` uses, so that an exact index
agrees with `hashing.nearest`:

- ``l2``: Euclidean distance (Faiss's squared distance, rooted);
- ``cosine``: ``(1 - cos) / 2`` (inner product of L2-normalised vectors; a transform such as
  ``PCA256`` or ``PCAW256`` is followed by an ``L2norm`` step, so vectors are normalised at
  every stage, as SSCD post-processes its descriptors);
- ``inner_product``: the negated inner product (smaller is closer, like every distance here);
- ``l1``: Manhattan distance; ``jensenshannon``: SciPy's ``jensenshannon(p, q, base=2)`` of
  the rows divided by their sums (Faiss's ``METRIC_JensenShannon`` on normalised rows is the
  divergence in nats: its square root over ln 2; rows get a floor of 1e-20, since Faiss
  finds nothing for a row holding a zero, as ReLU features do);
- ``hamming``: bit error rate (differing bits over the true code length).

Faiss encodes L1 and Jensen-Shannon only in flat storage (``Flat``, ``IVFn,Flat``, ``HNSWm``);
other strings with them are refused before any training.
"""

from __future__ import annotations

import math
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from helpers import atomic_path, get_logger, progress
from helpers.descriptors import METRICS

logger = get_logger(__name__)

#: What an index answers in: the library's distances (`helpers.descriptors.METRICS`) and
#: Faiss's raw inner product of float vectors.
SEARCH_METRICS = (*METRICS, "inner_product")
#: Fewer training points per centroid than this and Faiss warns (k-means is unreliable).
MIN_POINTS_PER_CENTROID = 39
#: Faiss subsamples k-means training sets above this many points per centroid.
MAX_POINTS_PER_CENTROID = 256

_TRANSFORMS = re.compile(r"^(PCA|PCAR|PCAW|PCAWR|OPQ|ITQ|RR|L2norm|Pad)\d*(_\d+)?$")
_LN2 = math.log(2.0)
#: Search parameters that count something: whole numbers >= 1 (Faiss asserts on 0).
_COUNT_PARAMS = ("nprobe", "efSearch", "efConstruction", "k_factor", "max_codes")
_JS_FLOOR = np.float32(1e-20)


def _faiss():
    try:
        import faiss  # lazy: importing fast_search loads no Faiss
    except ImportError as exc:  # pragma: no cover - faiss is a declared extra
        raise ImportError("fast_search needs Faiss: pip install faiss-cpu (or faiss-gpu)"
                          ) from exc
    return faiss


def _check_metric(metric: str) -> str:
    if metric not in SEARCH_METRICS:
        raise ValueError(f"unknown metric {metric!r}; metrics: {', '.join(SEARCH_METRICS)}")
    return metric


def default_nlist(n: int) -> int:
    """The study's IVF size: ``10 sqrt(N)`` inverted lists."""
    return max(1, round(10 * math.sqrt(n)))


def nlist_of(factory: str) -> int | None:
    """Inverted lists of a factory string (``IVF4096,Flat`` -> 4096, ``BIVF256`` -> 256)."""
    match = re.search(r"(?:^|,)B?IVF(\d+)", factory)
    return int(match.group(1)) if match else None


def resolve_factory(factory: str, n: int) -> str:
    """Fill ``{nlist}`` with the study's default for ``n`` database rows (10 sqrt(N), at most
    N: k-means needs a point per list)."""
    return factory.replace("{nlist}", str(min(default_nlist(n), max(n, 1)))) \
        if "{nlist}" in factory else factory


def _with_l2norm(factory: str) -> str:
    """For cosine: an ``L2norm`` after the last transform (PCA, OPQ, whitening...), so the
    vectors the index compares are unit vectors."""
    parts = factory.split(",")
    last = max((i for i, p in enumerate(parts) if _TRANSFORMS.match(p)), default=-1)
    if last < 0 or parts[last] == "L2norm":
        return factory
    return ",".join(parts[: last + 1] + ["L2norm"] + parts[last + 1:])


#: Largest number a factory string may hold (lists, dimensions, links): larger ones are typos
#: that Faiss would try to allocate.
MAX_FACTORY_NUMBER = 1 << 24


def _check_sizes(factory: str) -> None:
    """Refuse what Faiss would assert on, divide by zero with, or allocate without bound
    (aborting the process: ``RR0``, ``PCAR0``, ``PQ2x0``, ``HNSW1``), or silently run wrong
    (``PCA0``): every number in the string is a size >= 1 (``HNSW`` links >= 2, ``PQ`` bits
    1..16) and at most `MAX_FACTORY_NUMBER`. ``IDMap`` is refused: rows are numbered by
    their position here."""
    if "IDMap" in factory:
        raise ValueError(f"index {factory!r}: IDMap is not needed (fast_search numbers the rows "
                         "by position); use the string without it")
    for match in re.finditer(r"[A-Za-z]*(\d+)", factory):
        if not 1 <= int(match.group(1)) <= MAX_FACTORY_NUMBER:
            raise ValueError(f"index {factory!r}: {match.group(0)} is not a valid size (every "
                             "number in an index string is between 1 and "
                             f"{MAX_FACTORY_NUMBER:,})")
    for value in re.findall(r"HNSW(\d+)", factory):
        if int(value) < 2:
            raise ValueError(f"index {factory!r}: HNSW{value} is not a valid size (HNSW needs "
                             "at least 2 links per node)")
    for value in re.findall(r"PQ\d+x(\d+)", factory):
        if not 1 <= int(value) <= 16:
            raise ValueError(f"index {factory!r}: PQ codes of {value} bits are not supported "
                             "(1 to 16 bits; 8 is usual, 4 with fs)")


def min_training_points(factory: str) -> int:
    """Training points an index string needs at least: one per inverted list, 2^bits per
    product-quantiser codebook (256 for ``PQ16``, 16 for ``PQ16x4``)."""
    need = nlist_of(factory) or 1
    for _, bits in re.findall(r"PQ(\d+)(?:x(\d+))?", factory):
        need = max(need, 2 ** int(bits or 8))
    return need


def _check_combination(factory: str, metric: str) -> None:
    parts = factory.split(",")
    transforms = [p for p in parts if _TRANSFORMS.match(p)]
    if metric == "jensenshannon" and transforms:
        raise ValueError(f"index {factory!r}: {transforms[0]} changes the rows, and "
                         "Jensen-Shannon compares distributions (rows divided by their sums); "
                         "use it without transforms")
    if metric in ("l1", "jensenshannon"):
        encodings = [p for p in parts if not _TRANSFORMS.match(p)]
        flat = not encodings or encodings[-1] == "Flat" or re.fullmatch(r"HNSW\d+",
                                                                         encodings[-1])
        if not flat:
            raise ValueError(f"index {factory!r} cannot use metric {metric!r}: Faiss encodes "
                             f"{metric} only in flat storage (Flat, IVFn,Flat, HNSWm); "
                             "PQ, SQ and other codes are L2 or inner product only")


class SearchIndex:
    """A Faiss index and the metric it answers in.

    Use `build_index` to make one. ``train``, ``add`` and ``search`` take rows as stored
    (float32 features, or packed uint8 codes) and do the metric's preparation themselves
    (normalisation for cosine and Jensen-Shannon).
    """

    def __init__(self, index: Any, factory: str, metric: str, dim: int,
                 n_bits: int | None = None, device: str = "cpu"):
        self.index = index
        self.factory = factory
        self.metric = metric
        self.dim = dim
        self.n_bits = n_bits
        self.device = device

    @property
    def binary(self) -> bool:
        return self.metric == "hamming"

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    @property
    def is_trained(self) -> bool:
        return bool(self.index.is_trained)

    def prepare(self, x: np.ndarray, owned: bool = False) -> np.ndarray:
        """Rows as the index takes them: contiguous, float32 (normalised for cosine, divided by
        their sums for Jensen-Shannon) or uint8 codes. ``x`` is left as it was unless
        ``owned`` (a block read for this call, changed in place to save a copy)."""
        if self.binary:
            x = np.ascontiguousarray(x, dtype=np.uint8)
            if x.ndim != 2 or x.shape[1] * 8 != self.index.d:
                raise ValueError(f"codes of {x.shape[-1]} bytes for an index of "
                                 f"{self.index.d // 8} bytes")
            return x
        x = np.array(x, dtype=np.float32, order="C", copy=None if owned else True)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"rows of {x.shape[-1] if x.ndim else 0} values for an index of "
                             f"dimension {self.dim}")
        if not np.isfinite(x).all():
            raise ValueError("rows hold NaN or infinite values")
        if self.metric == "cosine":
            zero = ~x.any(axis=1)
            if zero.any():  # Faiss would normalise it to zeros: equally far from everything
                raise ValueError(f"{int(zero.sum())} row(s) are all zero (the first is row "
                                 f"{int(np.flatnonzero(zero)[0])} of {len(x)} given): cosine "
                                 "distances to them are undefined")
            _faiss().normalize_L2(x)
        elif self.metric == "jensenshannon":
            if (x < 0).any():
                raise ValueError("Jensen-Shannon needs non-negative rows")
            sums = x.sum(axis=1, keepdims=True)
            if (sums <= 0).any():
                raise ValueError(f"row {int(np.flatnonzero(sums <= 0)[0])} sums to 0: "
                                 "Jensen-Shannon compares distributions")
            np.divide(x, sums, out=x)
            # Faiss computes 0 log 0 as NaN and then finds nothing for a row with a zero (ReLU
            # features have many): a tiny floor changes no distance by more than 1e-7.
            x += _JS_FLOOR
        return x

    def train(self, sample: np.ndarray, owned: bool = False) -> None:
        """Train on a sample of database rows (k-means for IVF, PCA, codebooks); with
        ``owned``, the sample is prepared in place."""
        if self.is_trained:
            return
        nlist = nlist_of(self.factory)
        if nlist is not None:
            per = len(sample) / nlist
            if per < MIN_POINTS_PER_CENTROID:
                logger.warning("training %s on %d points: %.1f per centroid, fewer than the "
                               "%d Faiss asks for; for N database rows nlist between 4 sqrt(N) "
                               "and 16 sqrt(N) is usual", self.factory, len(sample), per,
                               MIN_POINTS_PER_CENTROID)
        need = min_training_points(self.factory)
        if len(sample) < need:
            raise ValueError(f"index {self.factory} needs at least {need} training points, "
                             f"got {len(sample)}: use fewer lists or smaller codebooks")
        try:
            self.index.train(self.prepare(sample, owned=owned))
        except RuntimeError as exc:
            raise ValueError(f"index {self.factory} could not be trained "
                             f"({str(exc).strip().splitlines()[-1][:160]})") from None

    def add(self, blocks: Iterable[np.ndarray], total: int | None = None,
            show_progress: bool | None = None, owned: bool = False) -> None:
        """Add database rows block by block, in order (row ids are insertion order); with
        ``owned``, the blocks are the caller's to give away and are prepared in place."""
        if not self.is_trained:
            raise RuntimeError(f"index {self.factory} must be trained before adding")
        if total:
            self._reserve(total)
        bar = progress(total=total, desc=f"adding to {self.factory}", unit="row",
                       disable=None if show_progress is None else not show_progress)
        for block in blocks:
            self.index.add(self.prepare(block, owned=owned))
            bar.update(len(block))
        bar.close()

    def _reserve(self, rows: int) -> None:
        """Size a flat index's storage once: grown block by block, its vector would double
        its capacity and hold old and new buffers at once (up to 3x the database)."""
        index = self.index
        store = getattr(index, "xb", None) if self.binary else getattr(index, "codes", None)
        width = getattr(index, "code_size", None)
        if store is None or width is None or index.ntotal:
            return
        try:
            store.resize((index.ntotal + rows) * width)  # capacity stays after shrinking
            store.resize(0)
        except (AttributeError, RuntimeError, TypeError):
            return

    def set_params(self, params: dict[str, Any] | str | None) -> None:
        """Search parameters by Faiss's names (``nprobe``, ``efSearch``, ``ht``...)."""
        text = params if isinstance(params, str) else ",".join(
            f"{k}={v}" for k, v in (params or {}).items())
        if not text:
            return
        for item in text.split(","):
            key, _, value = item.partition("=")
            if key in _COUNT_PARAMS:
                try:
                    number = float(value)
                except ValueError:
                    number = float("nan")
                if not (number >= 1 and number == int(number)):
                    raise ValueError(f"search parameter {key} must be a whole number >= 1, "
                                     f"got {value!r}")
        faiss = _faiss()
        if self.binary:
            for item in text.split(","):
                key, _, value = item.partition("=")
                target = self.index
                if key == "efSearch" and hasattr(target, "hnsw"):
                    target.hnsw.efSearch = int(float(value))
                elif hasattr(target, key):
                    setattr(target, key, type(getattr(target, key))(float(value)))
                else:
                    raise ValueError(f"binary index {self.factory} has no parameter {key!r}")
            return
        space = (faiss.GpuParameterSpace() if self.device.startswith("cuda")
                 else faiss.ParameterSpace())
        try:
            space.set_index_parameters(self.index, text)
        except RuntimeError as exc:
            raise ValueError(f"index {self.factory}: cannot set {text!r} "
                             f"({str(exc).strip().splitlines()[-1][:160]})") from None

    def _distances(self, d: np.ndarray) -> np.ndarray:
        """Faiss's values to this library's distances."""
        d = d.astype(np.float32, copy=False)
        if self.metric == "l2":
            return np.sqrt(np.maximum(d, 0))
        if self.metric == "cosine":
            return np.clip((1 - d) / 2, 0, 1)
        if self.metric == "inner_product":
            return -d
        if self.metric == "jensenshannon":
            return np.sqrt(np.maximum(d, 0) / _LN2)
        if self.metric == "hamming":
            return d / self.n_bits
        return d

    def _radius(self, threshold: float) -> float:
        """A distance threshold as Faiss's range-search radius (results within it, ends
        included)."""
        t = float(threshold)
        if self.metric == "l2":
            r = t * t
        elif self.metric == "cosine":
            r = 1 - 2 * t
        elif self.metric == "inner_product":
            r = -t
        elif self.metric == "jensenshannon":
            r = t * t * _LN2
        elif self.metric == "hamming":
            return math.floor(t * self.n_bits + 1e-9) + 1  # Faiss keeps d < radius
        else:
            r = t
        similarity = self.metric in ("cosine", "inner_product")
        return float(np.nextafter(np.float32(r), np.float32(-np.inf if similarity else np.inf)))

    def search(self, queries: np.ndarray, k: int, batch_size: int | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest database rows of each query, by batches of queries.

        Returns
        -------
        distances : numpy.ndarray, shape (Q, k), float32
            On this library's scale, ascending; ``inf`` where fewer than k were found.
        indices : numpy.ndarray, shape (Q, k), int64
            Database rows (-1 where none).
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        q = self.prepare(queries)
        size = batch_size or len(q) or 1
        ds, ids = [], []
        for start in range(0, len(q), size):
            d, i = self.index.search(q[start:start + size], k)
            ds.append(d)
            ids.append(i)
        if not ds:
            return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
        d = self._distances(np.concatenate(ds))
        i = np.concatenate(ids).astype(np.int64, copy=False)
        d[i < 0] = np.inf
        return d, i

    def range_search(self, queries: np.ndarray, threshold: float
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every database row within ``threshold`` of each query.

        Returns
        -------
        lims : numpy.ndarray, shape (Q + 1,)
            Query ``i``'s results are ``lims[i]:lims[i + 1]``.
        distances, indices : numpy.ndarray

        Raises
        ------
        ValueError
            The index type has no range search (HNSW).
        """
        q = self.prepare(queries)
        if threshold < 0 and self.metric != "inner_product":  # no distance is negative
            return (np.zeros(len(q) + 1, np.int64), np.zeros(0, np.float32),
                    np.zeros(0, np.int64))
        try:
            lims, d, i = self.index.range_search(q, self._radius(threshold))
        except RuntimeError as exc:
            raise ValueError(f"index {self.factory} has no range search "
                             f"({str(exc).strip().splitlines()[-1][:120]})") from None
        return lims.astype(np.int64), self._distances(d), i.astype(np.int64)

    def nbytes(self) -> int:
        """Size of the index as `faiss.write_index` writes it (written to a temporary file:
        serialising in memory would hold a second copy of the index)."""
        faiss = _faiss()
        with tempfile.TemporaryDirectory(prefix="index-size-") as folder:
            path = str(Path(folder) / "index")
            if self.binary:
                faiss.write_index_binary(self.cpu_index(), path)
            else:
                faiss.write_index(self.cpu_index(), path)
            return Path(path).stat().st_size

    def cpu_index(self) -> Any:
        faiss = _faiss()
        if self.device.startswith("cuda"):
            return (faiss.index_binary_gpu_to_cpu(self.index) if self.binary
                    else faiss.index_gpu_to_cpu(self.index))
        return self.index

    def save(self, path: str | Path) -> Path:
        """Write the index with `faiss.write_index` (to a temporary name, then renamed)."""
        faiss = _faiss()
        path = Path(path)
        with atomic_path(path) as tmp:
            if self.binary:
                faiss.write_index_binary(self.cpu_index(), str(tmp))
            else:
                faiss.write_index(self.cpu_index(), str(tmp))
        return path

    def __repr__(self) -> str:
        return (f"SearchIndex({self.factory!r}, metric={self.metric!r}, dim={self.dim}, "
                f"ntotal={self.ntotal}, device={self.device!r})")


def _faiss_metric(metric: str) -> int:
    faiss = _faiss()
    return {"l2": faiss.METRIC_L2, "cosine": faiss.METRIC_INNER_PRODUCT,
            "inner_product": faiss.METRIC_INNER_PRODUCT, "l1": faiss.METRIC_L1,
            "jensenshannon": faiss.METRIC_JensenShannon}[metric]


def build_index(factory: str, metric: str, dim: int, n_bits: int | None = None,
                device: str = "cpu") -> SearchIndex:
    """An empty index from a Faiss factory string.

    Parameters
    ----------
    factory : str
        Any Faiss factory string: ``Flat``, ``IVF4096,Flat``, ``PCA256,IVF1024,PQ32``,
        ``HNSW32``, ``OPQ16_64,IVF256,PQ16``...; for binary codes (``metric="hamming"``)
        the binary factory's ``BFlat``, ``BIVF1024``, ``BHNSW32`` (a missing ``B`` is added).
    metric : str
        ``l2``, ``cosine``, ``inner_product``, ``l1``, ``jensenshannon`` or ``hamming``.
    dim : int
        Values per row; for ``hamming``, bytes per code.
    n_bits : int, optional
        For ``hamming``: the true bits per code (distances divide by it); default ``8 dim``.
    device : str
        ``cpu``, ``cuda`` (every GPU Faiss sees) or ``auto`` (GPUs when Faiss has them).

    Raises
    ------
    ValueError
        Unknown metric, a string Faiss rejects, a metric the index type cannot take, or
        ``cuda`` asked without a GPU build of Faiss or a GPU.
    """
    faiss = _faiss()
    _check_metric(metric)
    if dim < 1:
        raise ValueError(f"dim must be >= 1, got {dim}")
    device = faiss_device(device)
    _check_sizes(factory)
    if metric == "hamming":
        spec = factory if factory.startswith("B") else "B" + factory
        if not re.fullmatch(r"B(Flat|IVF\d+(,Flat)?|HNSW\d+(,Flat)?|IVF\d+_HNSW\d+(,Flat)?)",
                            spec):
            raise ValueError(f"binary index {factory!r}: binary codes take BFlat, BIVF<n>, "
                             "BHNSW<M> (Faiss's binary factory would drop the rest)")
        try:
            index = faiss.index_binary_factory(8 * dim, spec)
        except RuntimeError as exc:
            raise ValueError(f"binary index {factory!r}: Faiss cannot make it "
                             f"({str(exc).strip().splitlines()[-1][:160]}); binary strings "
                             "are BFlat, BIVF<n>, BHNSW<M>") from None
        bits = n_bits or 8 * dim
        if not 8 * (dim - 1) < bits <= 8 * dim:
            raise ValueError(f"{bits} bits do not fill {dim} bytes")
        if device.startswith("cuda"):  # Faiss's GPU binary support is BFlat only, partial
            logger.warning("binary indexes run on the CPU (%s)", spec)
            device = "cpu"
        return SearchIndex(index, spec, metric, dim, bits, device)
    if factory.startswith("B"):
        raise ValueError(f"index {factory!r} is a binary index; float features need a float "
                         "string such as Flat or IVF1024,Flat")
    _check_combination(factory, metric)
    spec = _with_l2norm(factory) if metric == "cosine" else factory
    try:
        index = faiss.index_factory(dim, spec, _faiss_metric(metric))
    except RuntimeError as exc:
        raise ValueError(f"index {factory!r}: Faiss cannot make it for dimension {dim} "
                         f"({str(exc).strip().splitlines()[-1][:160]})") from None
    if device.startswith("cuda"):
        try:
            index = faiss.index_cpu_to_all_gpus(index)
        except (RuntimeError, AttributeError) as exc:
            raise ValueError(f"index {factory!r} cannot move to the GPU "
                             f"({str(exc).strip().splitlines()[-1][:160]})") from None
    return SearchIndex(index, spec, metric, dim, None, device)


def faiss_device(device: str) -> str:
    """``cpu``, ``cuda`` or ``auto`` resolved for Faiss: ``auto`` is ``cuda`` where this Faiss
    build sees a GPU; ``cuda`` without one is a clear error (not a silent CPU run)."""
    faiss = _faiss()
    gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    if device == "auto":
        return "cuda" if gpus > 0 else "cpu"
    if device == "cpu":
        return device
    if device.startswith("cuda"):
        if gpus == 0:
            raise ValueError("--device cuda: this Faiss build sees no GPU (install faiss-gpu "
                             "on a machine with CUDA: make install FAISS=gpu); use --device "
                             "cpu")
        return device
    raise ValueError(f"device must be cpu, cuda or auto, got {device!r}")


def describe_index(index: Any) -> dict[str, Any]:
    """What a Faiss index is, as far as reuse is concerned: its class (outer and inner),
    dimension, metric, rows, trained or not, inverted lists."""
    faiss = _faiss()
    parts, current = [], index
    for _ in range(4):  # the wrappers: pre-transform, refine, then the index inside
        current = faiss.downcast_index(current) if not isinstance(
            current, faiss.IndexBinary) else faiss.downcast_IndexBinary(current)
        parts.append(type(current).__name__)
        inner = getattr(current, "index", None) or getattr(current, "base_index", None)
        if inner is None:
            break
        current = inner
    try:
        nlist = int(faiss.extract_index_ivf(index).nlist)
    except (RuntimeError, AttributeError, TypeError):  # not an inverted file
        nlist = 0
    return {"classes": parts, "d": int(index.d), "ntotal": int(index.ntotal),
            "is_trained": bool(index.is_trained),
            "metric_type": int(getattr(index, "metric_type", -1)), "nlist": nlist}


def load_index(path: str | Path, factory: str, metric: str, dim: int,
               n_bits: int | None = None, device: str = "cpu",
               expect: dict[str, Any] | None = None) -> SearchIndex:
    """An index written by `SearchIndex.save` (``factory`` and ``metric`` as it was built).

    Parameters
    ----------
    expect : dict, optional
        `describe_index` of the index as it was saved: a file replaced since (another type,
        other rows, an empty index) is refused instead of searched.

    Raises
    ------
    ValueError
        Not a Faiss index, another dimension, or not the index ``expect`` describes.
    """
    faiss = _faiss()
    _check_metric(metric)
    path = Path(path)
    try:
        index = (faiss.read_index_binary(str(path)) if metric == "hamming"
                 else faiss.read_index(str(path)))
    except RuntimeError as exc:
        raise ValueError(f"{path} is not a Faiss index "
                         f"({str(exc).strip().splitlines()[-1][:120]})") from None
    expected = 8 * dim if metric == "hamming" else dim
    if index.d != expected:
        raise ValueError(f"{path} holds an index of dimension {index.d}, expected {expected}")
    if expect is not None:
        found = describe_index(index)
        differ = sorted(k for k in expect if found.get(k) != expect[k])
        if differ:
            raise ValueError(f"{path} is not the index it was saved as ({', '.join(differ)} "
                             f"differ: {[found.get(k) for k in differ]} instead of "
                             f"{[expect[k] for k in differ]})")
    out = SearchIndex(index, factory, metric, dim,
                      n_bits or (8 * dim if metric == "hamming" else None), "cpu")
    if metric != "hamming" and faiss_device(device).startswith("cuda"):
        out.index = faiss.index_cpu_to_all_gpus(index)
        out.device = "cuda"
    return out
