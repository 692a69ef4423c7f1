"""Descriptor objects: packed binary codes, multi-codes (several codes per image) and float
features.

Each knows how it is compared (``metric``) and, when it was made by `hashing.describe` or
`extractor.extract`, who its rows are (``ids``, and ``records`` when records were given), which
method made it (``method``, the method's identity such as ``phash_hash_size=16``) and which
images were skipped as unreadable (``bad``). Distances, search and clustering take these objects
as they are. They live in `helpers` because both `extractor` and `hashing` make them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: The distances of float features (`FloatFeatures.metric`): every package takes these names.
FLOAT_METRICS = ("cosine", "jensenshannon", "l1", "l2")
#: Every distance of the library: the float ones and ``hamming`` (bit error rate) of codes.
METRICS = ("hamming", *FLOAT_METRICS)


def _check_parts(parts: Sequence[Any], cls: type) -> None:
    """``concat`` needs one part at least (its length, metric...) and parts of its kind."""
    if not len(parts):
        raise ValueError(f"{cls.__name__}.concat needs at least one part (an empty list has "
                         "no code length or metric)")
    for k, part in enumerate(parts):
        if not isinstance(part, cls):
            raise TypeError(f"{cls.__name__}.concat: part {k} is {type(part).__name__}")


def _identity(parts: list[Any]) -> dict[str, Any]:
    """``ids``, ``records``, ``method`` and ``bad`` of concatenated parts (ids and records kept
    when every part has them; parts of two methods are refused)."""
    methods = {p.method for p in parts}
    if len(methods) > 1:
        raise ValueError("cannot join descriptors of different methods: "
                         f"{sorted(map(str, methods))}")
    ids = (tuple(i for p in parts for i in p.ids)
           if all(p.ids is not None for p in parts) else None)
    records = (tuple(r for p in parts for r in p.records)
               if all(p.records is not None for p in parts) else None)
    return {"ids": ids, "records": records, "method": parts[0].method,
            "bad": tuple(b for p in parts for b in p.bad)}


def check_same_method(queries: Any, database: Any) -> None:
    """Refuse to compare descriptors that two different methods made (``phash`` codes against
    ``dhash`` codes have the same shape and would give meaningless distances).

    Raises
    ------
    ValueError
    """
    a, b = getattr(queries, "method", None), getattr(database, "method", None)
    if a is not None and b is not None and a != b:
        raise ValueError(f"cannot compare descriptors of {a!r} with descriptors of {b!r}")


class _Identity:
    """What every descriptor object shares: its rows' identity, its method, and the images
    that were skipped."""

    ids: tuple[str, ...] | None
    records: tuple | None
    method: str | None
    bad: tuple[tuple[str, str, str], ...]

    def _check_identity(self, n: int) -> None:
        object.__setattr__(self, "bad", tuple(tuple(map(str, b)) for b in self.bad))
        if any(len(b) != 3 for b in self.bad):
            raise ValueError("bad images are (image id, path, reason) triples")
        if self.ids is not None:
            object.__setattr__(self, "ids", tuple(self.ids))
            if len(self.ids) != n:
                raise ValueError(f"{len(self.ids)} ids for {n} descriptors")
        if self.records is not None:
            object.__setattr__(self, "records", tuple(self.records))
            if len(self.records) != n:
                raise ValueError(f"{len(self.records)} records for {n} descriptors")

    def _rows(self, index) -> dict[str, Any]:
        rows = np.arange(len(self))[index]
        rows = np.atleast_1d(rows)
        return {"ids": None if self.ids is None else tuple(self.ids[i] for i in rows),
                "records": (None if self.records is None
                            else tuple(self.records[i] for i in rows)),
                "method": self.method}

    def _facts(self) -> list[str]:
        """What the one-line repr says after the count and the method (sizes, metric)."""
        return []

    def __repr__(self) -> str:
        """One line: the count of images, the method ("no method" when none is known), the
        sizes and the metric; never the arrays (``BinaryCodes(60 images, phash, 64 bits)``)."""
        n = len(self)
        parts = [f"{n} image{'' if n == 1 else 's'}", self.method or "no method",
                 *self._facts()]
        if self.bad:
            parts.append(f"{len(self.bad)} skipped")
        return f"{type(self).__name__}({', '.join(parts)})"

    def with_identity(self, ids=None, records=None, method=None, bad=None):
        """A copy that names its rows, its method and the skipped images (what is not given is
        kept)."""
        changes = {k: v for k, v in (("ids", ids), ("records", records), ("method", method),
                                     ("bad", bad)) if v is not None}
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True, repr=False)
class BinaryCodes(_Identity):
    """Binary codes of N images, packed 8 bits a byte (``np.packbits`` order).

    The true code length ``n_bits`` lives here, once: every distance divides by it, never by
    the packed width (a 42-bit colour hash takes 6 bytes). Like imagehash's ``ImageHash``, the
    code of one image subtracts from another's (``codes[0] - codes[1]`` is the number of
    differing bits) and goes to and from hex text (`to_hex`, `from_hex`: imagehash's
    ``str(hash)`` and ``hex_to_hash`` format).

    Attributes
    ----------
    packed : numpy.ndarray, shape (N, ceil(n_bits / 8)), uint8
    n_bits : int
        Bits per code.
    """

    packed: np.ndarray
    n_bits: int
    ids: tuple[str, ...] | None = None
    records: tuple | None = None
    method: str | None = None
    bad: tuple[tuple[str, str, str], ...] = ()

    def __post_init__(self) -> None:
        packed = np.asarray(self.packed)
        if packed.ndim != 2 or packed.dtype != np.uint8:
            raise ValueError(f"packed codes must be a 2-D uint8 array, got {packed.dtype} "
                             f"{packed.shape}")
        if not 0 < self.n_bits <= 8 * packed.shape[1] < self.n_bits + 8:
            raise ValueError(f"{self.n_bits} bits do not fill {packed.shape[1]} bytes")
        self._check_identity(len(packed))

    def __getitem__(self, index) -> BinaryCodes:
        """The codes of some rows (an int gives a one-row `BinaryCodes`), ids kept."""
        rows = self.packed[index]
        return BinaryCodes(rows[None] if rows.ndim == 1 else rows, self.n_bits,
                           **self._rows(index))

    def __sub__(self, other: BinaryCodes) -> int | np.ndarray:
        """Differing bits between codes row by row (one int for one-row codes).

        Raises
        ------
        ValueError
            Codes of two different methods (``phash`` and SimHash bits of the same length).
        """
        if not isinstance(other, BinaryCodes) or other.n_bits != self.n_bits:
            return NotImplemented
        check_same_method(self, other)
        counts = np.bitwise_count(self.packed ^ other.packed).sum(axis=1, dtype=np.int64)
        return int(counts[0]) if len(counts) == 1 else counts

    def to_hex(self) -> list[str]:
        """One hex string per code: the bits read as one big-endian number, ``ceil(n_bits /
        4)`` digits (imagehash's ``str(hash)``)."""
        digits = -(-self.n_bits // 4)
        shift = 8 * self.packed.shape[1] - self.n_bits  # padding bits at the end
        return [format(int.from_bytes(row.tobytes(), "big") >> shift, f"0{digits}x")
                for row in self.packed]

    @classmethod
    def from_hex(cls, texts, n_bits: int) -> BinaryCodes:
        """Codes from `to_hex` strings (or imagehash's ``str(hash)``) of ``n_bits`` bits: a
        list of strings, or one string for one code.

        Raises
        ------
        ValueError
            A string that is not hex or holds more than ``n_bits`` bits.
        TypeError
            Something that is not a string.
        """
        width = -(-n_bits // 8)
        if isinstance(texts, str):
            texts = [texts]
        rows = []
        for text in texts:
            if not isinstance(text, str):
                raise TypeError(f"hex codes are strings, got a {type(text).__name__} "
                                "(for an imagehash value, pass str(hash))")
            try:
                value = int(text, 16)
            except (TypeError, ValueError):
                raise ValueError(f"{text!r} is not a hex code") from None
            if value >> n_bits:
                raise ValueError(f"{text!r} holds more than {n_bits} bits")
            rows.append((value << (8 * width - n_bits)).to_bytes(width, "big"))
        packed = np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(len(rows), width)
        return cls(packed.copy(), n_bits)

    @classmethod
    def from_bits(cls, bits: np.ndarray) -> BinaryCodes:
        """Pack a boolean array of shape (N, ...) (flattened row-major per image)."""
        flat = np.asarray(bits, dtype=bool).reshape(len(bits), -1)
        return cls(np.packbits(flat, axis=1), flat.shape[1])

    @classmethod
    def concat(cls, parts: list[BinaryCodes]) -> BinaryCodes:
        """Codes of several batches, in order."""
        _check_parts(parts, cls)
        return cls(np.concatenate([p.packed for p in parts]), parts[0].n_bits,
                   **_identity(parts))

    def to_bits(self) -> np.ndarray:
        """Boolean array (N, n_bits): for a hash, ``imagehash.<fn>(im).hash.flatten()``."""
        return np.unpackbits(self.packed, axis=1, count=self.n_bits).astype(bool)

    def __len__(self) -> int:
        return len(self.packed)

    @property
    def metric(self) -> str:
        """Distance used to compare these codes."""
        return "hamming"

    def _facts(self) -> list[str]:
        return [f"{self.n_bits} bits"]


@dataclass(frozen=True, repr=False)
class MultiCodes(_Identity):
    """Several binary codes per image (one per segment, as the crop-resistant hash makes).

    Attributes
    ----------
    packed : numpy.ndarray, shape (S, ceil(n_bits / 8)), uint8
        Every segment code of every image, image by image.
    offsets : numpy.ndarray, shape (N + 1,), int64
        Image ``i`` owns rows ``offsets[i]:offsets[i + 1]`` (at least one each).
    n_bits : int
        Bits per segment code.
    cutoff : int
        Matching rule (Jain et al.): the distance between two images is the ``cutoff``-th
        smallest, over the query's segments, of each segment's lowest bit error rate against
        the other image's segments.
    """

    packed: np.ndarray
    offsets: np.ndarray
    n_bits: int
    cutoff: int = 1
    ids: tuple[str, ...] | None = None
    records: tuple | None = None
    method: str | None = None
    bad: tuple[tuple[str, str, str], ...] = ()

    def __post_init__(self) -> None:
        self._check_identity(len(self.offsets) - 1)

    @classmethod
    def from_bits(cls, bits: list[np.ndarray], cutoff: int = 1) -> MultiCodes:
        """Pack a list of boolean (segments, n_bits) arrays, one per image."""
        if any(len(b) == 0 for b in bits):
            raise ValueError("every image needs at least one segment code")
        counts = [len(b) for b in bits]
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        n_bits = bits[0].shape[1] if bits else 0
        flat = np.concatenate(bits) if bits else np.zeros((0, n_bits), bool)
        return cls(np.packbits(flat.astype(bool), axis=1), offsets, n_bits, cutoff)

    @classmethod
    def concat(cls, parts: list[MultiCodes]) -> MultiCodes:
        """Codes of several batches, in order."""
        _check_parts(parts, cls)
        offsets = [parts[0].offsets[:1]]
        base = 0
        for p in parts:
            offsets.append(p.offsets[1:] + base)
            base += p.offsets[-1]
        return cls(np.concatenate([p.packed for p in parts]), np.concatenate(offsets),
                   parts[0].n_bits, parts[0].cutoff, **_identity(parts))

    def __getitem__(self, index) -> MultiCodes:
        """The codes of some images (all their segments), ids kept."""
        rows = np.atleast_1d(np.arange(len(self))[index])
        starts, ends = self.offsets[rows], self.offsets[rows + 1]
        segments = np.concatenate([np.arange(a, b) for a, b in zip(starts, ends, strict=True)]
                                  ) if len(rows) else np.zeros(0, np.int64)
        offsets = np.concatenate([[0], np.cumsum(ends - starts)]).astype(np.int64)
        return MultiCodes(self.packed[segments], offsets, self.n_bits, self.cutoff,
                          **self._rows(index))

    def to_hex(self) -> list[list[str]]:
        """Per image, the hex of each segment code (imagehash's segment hashes' ``str``)."""
        flat = BinaryCodes(self.packed, self.n_bits).to_hex()
        return [flat[a:b] for a, b in zip(self.offsets[:-1], self.offsets[1:], strict=True)]

    @classmethod
    def from_hex(cls, texts, n_bits: int, cutoff: int = 1) -> MultiCodes:
        """Codes from hex text, per image either a list of segment hex strings (`to_hex`) or
        one string of comma-separated segment codes (imagehash's ``str(ImageMultiHash)``, what
        its ``hex_to_multihash`` reads); a single string is one image.

        Raises
        ------
        ValueError
            An image without segments, or a segment that is not a hex code of ``n_bits`` bits.
        """
        if isinstance(texts, str):
            texts = [texts]
        images = [t.split(",") if isinstance(t, str) else list(t) for t in texts]
        if any(not segments or "" in segments for segments in images):
            raise ValueError("every image needs at least one segment hex code")
        flat = BinaryCodes.from_hex([h for segments in images for h in segments], n_bits)
        offsets = np.concatenate([[0], np.cumsum([len(s) for s in images])]).astype(np.int64)
        return cls(flat.packed, offsets, n_bits, cutoff)

    def to_bits(self) -> list[np.ndarray]:
        """Per image, a boolean (segments, n_bits) array."""
        flat = np.unpackbits(self.packed, axis=1, count=self.n_bits).astype(bool)
        return [flat[a:b] for a, b in zip(self.offsets[:-1], self.offsets[1:], strict=True)]

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def metric(self) -> str:
        """Distance used to compare these codes."""
        return "multi_hamming"

    def _facts(self) -> list[str]:
        return [f"{len(self.packed)} codes of {self.n_bits} bits", f"cutoff {self.cutoff}"]


@dataclass(frozen=True, repr=False)
class FloatFeatures(_Identity):
    """Float features of N images with the distance that compares them (neural methods).

    Attributes
    ----------
    values : numpy.ndarray, shape (N, dim), float32
    metric : str
        ``cosine``, ``jensenshannon``, ``l1`` or ``l2`` (see `hashing.distances`).
    """

    values: np.ndarray
    metric: str
    ids: tuple[str, ...] | None = None
    records: tuple | None = None
    method: str | None = None
    bad: tuple[tuple[str, str, str], ...] = ()

    def __post_init__(self) -> None:
        self._check_identity(len(self.values))

    @classmethod
    def concat(cls, parts: list[FloatFeatures]) -> FloatFeatures:
        """Features of several batches, in order."""
        _check_parts(parts, cls)
        return cls(np.concatenate([p.values for p in parts]), parts[0].metric,
                   **_identity(parts))

    def __getitem__(self, index) -> FloatFeatures:
        """The features of some rows, ids kept."""
        rows = self.values[index]
        return FloatFeatures(rows[None] if rows.ndim == 1 else rows, self.metric,
                             **self._rows(index))

    def __len__(self) -> int:
        return len(self.values)

    def _facts(self) -> list[str]:
        shape = np.shape(self.values)
        return [f"{shape[1]}-d" if len(shape) == 2 else f"shape {shape}", str(self.metric)]


#: Norms that compare local descriptors (`LocalDescriptors.norm`).
LOCAL_NORMS = ("hamming", "l1", "l2")


@dataclass(frozen=True, repr=False)
class LocalDescriptors(_Identity):
    """Local (keypoint) descriptors of N images: one padded array and a count per image.

    Image ``i`` owns ``values[i, :counts[i]]``; the rows after them are padding, never
    compared. An image with no keypoint (count 0) is at an infinite distance from every image.

    Attributes
    ----------
    values : numpy.ndarray, shape (N, K, D)
        ``uint8`` bytes of binary descriptors (ORB, LATCH: ``8 D`` bits each) or ``float32``
        vectors (SIFT, DAISY); ``K`` is the largest count.
    counts : numpy.ndarray, shape (N,), int64
        Descriptors per image, ``0 <= counts <= K``.
    norm : {"hamming", "l1", "l2"}
        How two descriptors are compared: ``hamming`` as a bit error rate (differing bits
        over ``8 D``), ``l1`` and ``l2`` as OpenCV's ``NORM_L1`` and ``NORM_L2``.
    cutoff : int
        Matching rule of the original study: the distance from a query image to a database
        image is the ``cutoff``-th smallest, over the query's descriptors, of each
        descriptor's distance to its nearest descriptor in the database image (OpenCV's
        ``BFMatcher.match`` then a sort); infinite when the query has fewer descriptors.
    """

    values: np.ndarray
    counts: np.ndarray
    norm: str
    cutoff: int = 1
    ids: tuple[str, ...] | None = None
    records: tuple | None = None
    method: str | None = None
    bad: tuple[tuple[str, str, str], ...] = ()

    def __post_init__(self) -> None:
        values, counts = np.asarray(self.values), np.asarray(self.counts, dtype=np.int64)
        if values.ndim != 3:
            raise ValueError(f"local descriptors are an (images, descriptors, dim) array, got "
                             f"shape {values.shape}")
        if counts.shape != (len(values),):
            raise ValueError(f"{counts.shape} counts for {len(values)} images")
        if len(counts) and (counts.min() < 0 or counts.max() > values.shape[1]):
            raise ValueError(f"counts must lie in [0, {values.shape[1]}]")
        if self.norm not in LOCAL_NORMS:
            raise ValueError(f"unknown norm {self.norm!r} for local descriptors; norms: "
                             f"{', '.join(LOCAL_NORMS)}")
        if (self.norm == "hamming") != (values.dtype == np.uint8):
            raise ValueError(f"{values.dtype} descriptors cannot be compared with "
                             f"{self.norm!r}: hamming compares uint8 binary descriptors, l1 "
                             "and l2 float ones")
        if isinstance(self.cutoff, bool) or not isinstance(self.cutoff, int | np.integer) \
                or self.cutoff < 1:
            raise ValueError(f"cutoff must be an integer >= 1, got {self.cutoff!r}")
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "counts", counts)
        self._check_identity(len(values))

    @classmethod
    def from_list(cls, descriptors: list[np.ndarray | None], norm: str, cutoff: int = 1,
                  dim: int | None = None) -> LocalDescriptors:
        """Pad a list of per-image (count, D) arrays (``None`` or empty: no keypoint), as
        OpenCV's ``compute`` returns them; ``dim`` is needed when no image has any."""
        shapes = [d.shape[1] for d in descriptors if d is not None and len(d)]
        if dim is None:
            if not shapes:
                raise ValueError("no image has a descriptor: give dim")
            dim = shapes[0]
        if any(s != dim for s in shapes):
            raise ValueError(f"descriptors of dimension {sorted(set(shapes))}, expected {dim}")
        counts = np.array([0 if d is None else len(d) for d in descriptors], dtype=np.int64)
        dtype = np.uint8 if norm == "hamming" else np.float32
        values = np.zeros((len(descriptors), int(counts.max(initial=0)), dim), dtype)
        for i, d in enumerate(descriptors):
            if counts[i]:
                values[i, :counts[i]] = d
        return cls(values, counts, norm, cutoff)

    @classmethod
    def concat(cls, parts: list[LocalDescriptors]) -> LocalDescriptors:
        """Descriptors of several batches, in order (padded to the largest count)."""
        _check_parts(parts, cls)
        width = max(p.values.shape[1] for p in parts)
        values = np.concatenate([np.pad(p.values, ((0, 0), (0, width - p.values.shape[1]),
                                                   (0, 0))) for p in parts])
        return cls(values, np.concatenate([p.counts for p in parts]), parts[0].norm,
                   parts[0].cutoff, **_identity(parts))

    def __getitem__(self, index) -> LocalDescriptors:
        """The descriptors of some images, ids kept."""
        rows = np.atleast_1d(np.arange(len(self))[index])
        return LocalDescriptors(self.values[rows], self.counts[rows], self.norm, self.cutoff,
                                **self._rows(index))

    def per_image(self) -> list[np.ndarray]:
        """Per image, its (count, D) descriptors (as OpenCV gave them)."""
        return [v[:c] for v, c in zip(self.values, self.counts, strict=True)]

    def __len__(self) -> int:
        return len(self.values)

    @property
    def n_bits(self) -> int | None:
        """Bits of one binary descriptor (``None`` for float descriptors)."""
        return 8 * self.values.shape[2] if self.norm == "hamming" else None

    @property
    def metric(self) -> str:
        """Distance used to compare these descriptors' images."""
        return f"local_{self.norm}"

    def _facts(self) -> list[str]:
        size = (f"{self.n_bits} bits" if self.norm == "hamming"
                else f"{self.values.shape[2]}-d")
        return [f"{int(self.counts.sum())} descriptors of {size}", self.norm,
                f"cutoff {self.cutoff}"]
