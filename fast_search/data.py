"""Search sets: a database (originals and distractors), queries, and each query's true source.

A search set is built from feature stores or descriptor objects, never from file names: the
ground truth is the join of the queries' ``source_id`` with the database ids
(`data_retrieval.source_rows`). The database is never gathered into one matrix: it is a list of
parts read block by block (a stored ``.npy`` through plain file reads, an array by slicing,
synthetic vectors generated block by block), so the only full copy of it is the one the index
holds. A 500k x 1280 float32 database needs its own size in RAM plus one block.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from data_retrieval import ImageRecord, source_rows
from extractor.store import load_store, store_paths
from hashing import load_descriptors, parse_algorithm
from helpers import get_logger
from helpers.descriptors import BinaryCodes, FloatFeatures, LocalDescriptors, MultiCodes

logger = get_logger(__name__)

#: Bytes of database rows read at a time (a block, and its prepared copy, are all the memory a
#: search set needs beside the index).
DEFAULT_BLOCK_BYTES = 32 << 20


@dataclass
class Part:
    """One source of database rows.

    Attributes
    ----------
    name : str
        Where the rows come from (a store, ``array``, ``synthetic:<store>``).
    rows : int
    synthetic : bool
        Vectors drawn from a Gaussian fitted to a real store: a stand-in for speed and memory
        only, never evidence about search quality.
    """

    name: str
    rows: int
    synthetic: bool = False
    key: str = ""  # what makes the rows (synthetic: fitted store, seed, sample)
    records: tuple | None = None  # who each row is, when the store says
    _array: Any = None
    _file: tuple[Path, int, np.dtype, int] | None = None  # path, offset, dtype, row width
    _generate: Any = None  # a _Synthetic

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` as a new in-memory array (the caller may change it)."""
        if self._generate is not None:
            return self._generate.read(start, stop)
        if self._file is not None:
            path, offset, dtype, width = self._file
            with open(path, "rb") as handle:
                handle.seek(offset + start * width * dtype.itemsize)
                out = np.fromfile(handle, dtype=dtype, count=(stop - start) * width)
            if out.size != (stop - start) * width:
                raise ValueError(f"{path} is shorter than its header says")
            return out.reshape(stop - start, width)
        return np.array(self._array[start:stop], order="C", copy=True)

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The rows at sorted positions ``rows``, reading only those (a training sample
        without a pass over the whole part)."""
        if self._generate is not None:
            return self._generate.take(rows)
        if self._file is not None:
            path, offset, dtype, width = self._file
            mapped = np.memmap(path, dtype=dtype, mode="r", offset=offset,
                               shape=(self.rows, width))
            out = np.array(mapped[rows])
            del mapped
            return out
        return np.array(self._array[rows], order="C")


@dataclass
class SearchSet:
    """A database, queries and the ground truth that joins them.

    Attributes
    ----------
    parts : list of Part
        The database rows, part after part (originals first, then distractors).
    queries : numpy.ndarray
        (Q, dim) float32, or (Q, bytes) uint8 packed codes.
    truth : numpy.ndarray, shape (Q,), int64
        Database row of each query's source; -1 for a query whose source is not in the
        database (a control).
    database_ids, query_ids : list of str
    query_records : list of ImageRecord
    metric : str
        How the stores say their rows compare (``hamming`` for codes).
    n_bits : int or None
        Bits per code (binary sets).
    method : str or None
        The method that made the rows (all parts and the queries agree).
    dim : int
        Values per row (bytes per code for binary sets).
    originals : int
        Rows of the database stores (the distractors follow them).
    query_store : str
        Where the queries come from (a store's ``.npy``, or the method of an array).
    """

    parts: list[Part]
    queries: np.ndarray
    truth: np.ndarray
    database_ids: list[str]
    query_ids: list[str]
    query_records: list[ImageRecord]
    metric: str
    n_bits: int | None
    method: str | None
    dim: int
    originals: int = 0
    query_store: str = ""

    @property
    def binary(self) -> bool:
        return self.n_bits is not None

    @property
    def n_database(self) -> int:
        return sum(p.rows for p in self.parts)

    @property
    def synthetic_rows(self) -> int:
        return sum(p.rows for p in self.parts if p.synthetic)

    @property
    def n_positive(self) -> int:
        """Queries whose source is in the database."""
        return int((self.truth >= 0).sum())

    def block_rows(self) -> int:
        """Rows per block: `DEFAULT_BLOCK_BYTES` of them."""
        width = self.queries.shape[1] * self.queries.dtype.itemsize
        return max(1, DEFAULT_BLOCK_BYTES // max(width, 1))

    def blocks(self, rows: int | None = None) -> Iterator[np.ndarray]:
        """The database, ``rows`` at a time (default `block_rows`), in row order; each block
        a new array."""
        rows = rows or self.block_rows()
        for part in self.parts:
            for start in range(0, part.rows, rows):
                block = part.read(start, min(start + rows, part.rows))
                if block.dtype.kind == "f" and not np.isfinite(block).all():
                    bad = start + int(np.flatnonzero(~np.isfinite(block).all(axis=1))[0])
                    raise ValueError(f"{part.name}: row {bad} holds NaN or infinite values")
                yield block

    def sample(self, n: int, seed: int = 0) -> np.ndarray:
        """``n`` database rows drawn without replacement (seeded), in row order: a training
        sample that never needs the whole database in memory."""
        total = self.n_database
        n = min(n, total)
        chosen = np.sort(np.random.default_rng(seed).choice(total, size=n, replace=False))
        out, base = [], 0
        for part in self.parts:
            mine = chosen[(chosen >= base) & (chosen < base + part.rows)] - base
            if len(mine):
                out.append(part.take(mine))
            base += part.rows
        return np.concatenate(out) if out else self.queries[:0]

    def database_record(self, row: int) -> ImageRecord:
        """Who database row ``row`` is (a record with its id alone where the store kept
        none, as for synthetic rows)."""
        offset = row
        for part in self.parts:
            if offset < part.rows:
                if part.records is not None:
                    return part.records[offset]
                return ImageRecord(self.database_ids[row], None)
            offset -= part.rows
        raise IndexError(f"database row {row} of {self.n_database}")

    def to_array(self) -> np.ndarray:
        """The whole database in memory (small sets, tests)."""
        return np.concatenate(list(self.blocks())) if self.parts else self.queries[:0]

    def database_fingerprint(self) -> str:
        """A digest of the database: its parts (files by size and time, arrays by value,
        synthetic rows by how they are made), ids, metric and dimension. A saved index is
        reused only for the same database."""
        digest = hashlib.sha256()
        for part in self.parts:
            digest.update(f"{part.name}|{part.rows}|{part.synthetic}|{part.key}\n".encode())
            if part._file is not None:
                stat = part._file[0].stat()
                digest.update(f"{stat.st_size}|{stat.st_mtime_ns}\n".encode())
            elif part._array is not None:  # rows in memory: their values
                for start in range(0, part.rows, 65536):
                    digest.update(np.ascontiguousarray(part._array[start:start + 65536]))
        digest.update("\n".join(self.database_ids).encode("utf-8", "surrogatepass"))
        digest.update(f"{self.metric}|{self.dim}|{self.n_bits}".encode())
        return digest.hexdigest()

    def describe(self) -> dict[str, Any]:
        """What the set is made of, for result files."""
        return {"method": self.method, "metric": self.metric, "n_bits": self.n_bits,
                "dim": self.dim, "database": self.n_database, "originals": self.originals,
                "distractors": self.n_database - self.originals,
                "synthetic_distractors": self.synthetic_rows,
                "queries": len(self.query_ids), "positive_queries": self.n_positive,
                "parts": [{"name": p.name, "rows": p.rows, "synthetic": p.synthetic}
                          for p in self.parts]}


@dataclass
class _Loaded:
    name: str
    descriptors: Any  # BinaryCodes or FloatFeatures
    meta: dict = field(default_factory=dict)  # the store's metadata, if a store


def _open(source: Any, root: str | os.PathLike | None, role: str) -> _Loaded:
    """A descriptor object from a store spec (``dataset/method``), a ``.npy`` path, or an
    object as it is."""
    if isinstance(source, BinaryCodes | FloatFeatures):
        return _Loaded(source.method or "array", source)
    if isinstance(source, MultiCodes | LocalDescriptors):
        raise TypeError(f"{role}: {source.method or 'this method'} gives several descriptors "
                        "per image (crop_resistant, keypoint methods), which a Faiss index "
                        "cannot hold; use hashing.nearest or hashing.neighbours")
    if hasattr(source, "features") and hasattr(source, "meta"):  # an extractor FeatureStore
        return _Loaded(str(source.meta.get("model")), _from_store(source), dict(source.meta))
    if not isinstance(source, str | os.PathLike):
        raise TypeError(f"{role}: expected a store ('dataset/method'), a .npy path or "
                        f"descriptors, got a {type(source).__name__}")
    text = os.fspath(source)
    path = Path(text)
    if path.suffix in (".npy", ".json") and path.exists():
        dataset, method, store_root = path.parent.name, path.stem, path.parent.parent
    else:
        dataset, sep, method = text.partition("/")
        if not sep or not dataset or not method:
            raise ValueError(f"{role}: {text!r} is neither a store 'dataset/method' nor an "
                             "existing .npy file")
        store_root = root
    if ":" in method:  # a spec, as describe takes it: its identity names the store
        method = parse_algorithm(method).label
    try:
        store = load_store(dataset, method, store_root)
    except FileNotFoundError:
        load_descriptors(dataset, method, store_root)  # raises, listing the stores there
        raise
    return _Loaded(str(store_paths(dataset, method, store_root)[0]), _from_store(store, method),
                   dict(store.meta))


def open_descriptors(source: Any, root: str | os.PathLike | None = None,
                     role: str = "features") -> BinaryCodes | FloatFeatures:
    """The descriptor object of a store spec (``dataset/method``), a store's ``.npy`` path,
    an `extractor.FeatureStore` or a descriptor object (returned as it is); rows stay
    memory-mapped.

    Raises
    ------
    ValueError, TypeError, FileNotFoundError
        Naming ``role`` and what was given (multi-codes have no single row per image).
    """
    return _open(source, root, role).descriptors


def open_described(source: Any, root: str | os.PathLike | None = None,
                   role: str = "features") -> tuple[BinaryCodes | FloatFeatures, dict]:
    """`open_descriptors` and the store's metadata (``{}`` for a descriptor object): how its
    rows were made, e.g. ``copies`` / ``protocol`` (the seed and options of the attacked
    images made on the fly, which lets a gallery make them again)."""
    loaded = _open(source, root, role)
    return loaded.descriptors, loaded.meta


def _from_store(store: Any, method: str | None = None) -> BinaryCodes | FloatFeatures:
    """The descriptor object of a loaded `extractor.FeatureStore`."""
    meta = store.meta
    identity = {"ids": tuple(store.ids), "records": tuple(store.records),
                "method": method or meta.get("model")}
    if meta.get("kind") == "binary":
        return BinaryCodes(store.features, int(meta["n_bits"]), **identity)
    if meta.get("kind") == "local":
        raise TypeError(f"{identity['method']}: a keypoint method's store holds several "
                        "descriptors per image, which a Faiss index cannot hold and "
                        "clustering cannot take as rows; use hashing.load_descriptors with "
                        "hashing.nearest or hashing.neighbours")
    return FloatFeatures(store.features, meta.get("metric", "cosine"), **identity)


def _part(loaded: _Loaded) -> Part:
    d = loaded.descriptors
    values = d.packed if isinstance(d, BinaryCodes) else d.values
    if isinstance(values, np.memmap) and values.filename and values.flags.c_contiguous:
        return Part(loaded.name, len(values), records=d.records,
                    _file=(Path(values.filename), int(values.offset), values.dtype,
                           int(values.shape[1])))
    return Part(loaded.name, len(values), records=d.records, _array=values)


def _kind(d: Any) -> tuple[str, int | None, int]:
    if isinstance(d, BinaryCodes):
        return "hamming", d.n_bits, d.packed.shape[1]
    return d.metric, None, d.values.shape[1]


def load_search_set(
    database: Any | Sequence[Any],
    queries: Any,
    distractors: Any | Sequence[Any] = (),
    root: str | os.PathLike | None = None,
) -> SearchSet:
    """Database, distractors and queries from feature stores or descriptor objects.

    Parameters
    ----------
    database : store or list of stores
        The originals: a store spec ``"dataset/method"`` (under ``root``), a ``.npy`` store
        file, an `extractor.FeatureStore`, or `BinaryCodes` / `FloatFeatures` with ids (and
        records).
    queries : store
        Attacked copies whose records carry their ``source_id`` (as `generate_attacks.py`
        manifests and ``extract_features.py --attacks`` stores do); controls (sources not in
        the database) are negatives.
    distractors : store, Part, or a list of them
        More database rows that are no query's source (real photos, views of photos made by
        ``scripts/make_distractors.py``, or `synthetic_part` vectors, labelled so).
    root : str or Path, optional
        Feature folder of the store specs (default ``Results/features``).

    Returns
    -------
    SearchSet

    Raises
    ------
    ValueError
        Stores of different methods, metrics, bit counts or dimensions; an empty store;
        database ids that repeat; queries without records.
    """
    originals = [_open(s, root, "database") for s in _listed(database)]
    distractors = [distractors] if isinstance(distractors, Part) else _listed(distractors)
    generated = [s for s in distractors if isinstance(s, Part)]
    extra = [_open(s, root, "distractors") for s in distractors if not isinstance(s, Part)]
    query = _open(queries, root, "queries")
    if not originals:
        raise ValueError("the database needs at least one store")
    metric, n_bits, dim = _one_method(originals + extra + [query], query)
    for part in generated:
        width = part.read(0, 1).shape[1] if part.rows else dim
        if width != dim:
            raise ValueError(f"{part.name} rows have {width} values, the queries {dim}")
    database_ids = [i for item in originals + extra for i in item.descriptors.ids]
    database_ids += [f"{part.name}#{r}" for part in generated for r in range(part.rows)]
    query_values = _query_rows(query, _unique_ids(originals + extra))
    q = query.descriptors
    records = list(q.records) if q.records is not None else [ImageRecord(i, None) for i in q.ids]
    n_originals = sum(len(item.descriptors) for item in originals)
    truth = _truth(records, database_ids, n_originals)
    if q.records is None or not (truth >= 0).any():
        logger.warning("no query has its source in the database (%d queries): recall is "
                       "undefined; are these the attacked copies of these originals?", len(truth))
    return SearchSet(
        parts=[_part(item) for item in originals + extra] + generated,
        queries=np.ascontiguousarray(query_values),
        truth=truth, database_ids=database_ids, query_ids=list(q.ids), query_records=records,
        metric=metric, n_bits=n_bits, method=q.method, dim=dim, originals=n_originals,
        query_store=query.name)


def _listed(value: Any) -> list[Any]:
    """One store (spec, path, descriptors, FeatureStore) or a sequence of them, as a list."""
    if isinstance(value, str | os.PathLike | BinaryCodes | FloatFeatures | MultiCodes
                  | LocalDescriptors):
        return [value]
    if hasattr(value, "features") and hasattr(value, "meta"):
        return [value]
    if not isinstance(value, Sequence | set | tuple):
        raise TypeError(f"expected a store ('dataset/method'), a .npy path, descriptors "
                        f"or a list of them, got a {type(value).__name__}")
    return list(value)


def _one_method(everything: list[_Loaded], query: _Loaded) -> tuple[str, int | None, int]:
    """The metric, bit count and width that every store shares with the queries.

    Raises
    ------
    ValueError
        An empty store, descriptors without ids, stores of another kind or method.
    """
    for item in everything:
        if len(item.descriptors) == 0:
            raise ValueError(f"store {item.name} is empty")
        if item.descriptors.ids is None:
            raise ValueError(f"{item.name}: descriptors need ids (make them with "
                             "hashing.describe or load a store)")
    reference = _kind(query.descriptors)
    for item in everything:
        kind = _kind(item.descriptors)
        if kind != reference:
            raise ValueError(
                f"{item.name} holds {_explain(kind)} but the queries {query.name} hold "
                f"{_explain(reference)}: database, distractors and queries must come from one "
                "method")
        method = item.descriptors.method
        if method and query.descriptors.method and method != query.descriptors.method:
            raise ValueError(f"{item.name} was made by {method!r}, the queries by "
                             f"{query.descriptors.method!r}: compare one method's descriptors")
    return reference


def _unique_ids(sources: list[_Loaded]) -> dict[str, int]:
    """``{database id: position of its store}``, refusing an id that repeats (within a store
    or in two of them)."""
    seen: dict[str, int] = {}
    for position, item in enumerate(sources):
        for image_id in item.descriptors.ids:
            if image_id in seen:
                first = seen[image_id]
                where = (f"repeats within {item.name}" if first == position else
                         f"is in both {sources[first].name} (store {first + 1}) and "
                         f"{item.name} (store {position + 1})")
                raise ValueError(f"database id {image_id!r} {where}")
            seen[image_id] = position
    return seen


def _query_rows(query: _Loaded, database_ids: dict[str, int]) -> np.ndarray:
    """The queries' rows, refused when an id repeats, is a database row, or holds NaN or
    infinite values."""
    q = query.descriptors
    if len(set(q.ids)) != len(q.ids):
        repeated = next(i for i in q.ids if q.ids.count(i) > 1)
        raise ValueError(f"query id {repeated!r} repeats in {query.name}")
    both = set(q.ids) & database_ids.keys()
    if both:
        raise ValueError(f"{len(both)} queries of {query.name} are database rows (e.g. "
                         f"{sorted(both)[0]!r}): each would find itself; the queries are the "
                         "attacked copies (extract_features.py --attacks, search_stores.py)")
    values = q.packed if isinstance(q, BinaryCodes) else q.values
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        bad = int(np.flatnonzero(~np.isfinite(values).all(axis=1))[0])
        raise ValueError(f"{query.name}: query {q.ids[bad]!r} holds NaN or infinite values")
    return values


def _truth(records: list[ImageRecord], database_ids: list[str], n_originals: int
           ) -> np.ndarray:
    """Each query's source row (`source_rows`), refused when it is a distractor."""
    truth = source_rows(records, database_ids)
    if (truth >= n_originals).any():
        bad = records[int(np.flatnonzero(truth >= n_originals)[0])]
        raise ValueError(f"query {bad.image_id!r} has its source {bad.source_id!r} among the "
                         "distractors: distractors must be no query's source")
    return truth


def _explain(kind: tuple[str, int | None, int]) -> str:
    metric, n_bits, dim = kind
    return f"{n_bits}-bit codes" if n_bits is not None else f"{dim}-d features ({metric})"


def synthetic_part(like: Any, rows: int, seed: int = 0, name: str | None = None,
                   sample: int = 20000, root: str | os.PathLike | None = None) -> Part:
    """Vectors drawn from a Gaussian fitted to a real store (mean and covariance of up to
    ``sample`` rows), generated block by block when read: a stand-in for speed and memory at
    scale, labelled ``synthetic`` wherever it goes. Their neighbours say nothing about real
    search quality or real IVF behaviour.

    Parameters
    ----------
    like : FloatFeatures, BinaryCodes, FeatureStore or store spec
        The real store to fit (binary codes: each bit drawn with its frequency).
    rows : int
    seed : int
    root : str or Path, optional
        Feature folder of a store spec.
    """
    if rows < 0:
        raise ValueError(f"synthetic rows must be >= 0, got {rows}")
    loaded = _open(like, root, "synthetic distractors")
    d = loaded.descriptors
    if len(d) < 2:
        raise ValueError(f"{loaded.name}: fitting a Gaussian needs at least 2 rows, got {len(d)}")
    if isinstance(d, BinaryCodes):  # bits drawn with each bit's frequency
        p = d[:sample].to_bits().mean(axis=0)

        def generate(block: int, n: int) -> np.ndarray:
            return np.packbits(_block_rng(seed, block).random((n, d.n_bits)) < p, axis=1)
    else:
        values = np.asarray(d.values[:sample], dtype=np.float64)
        mean = values.mean(axis=0).astype(np.float32)
        cov = np.cov(values, rowvar=False) + 1e-6 * np.eye(values.shape[1])
        factor = np.linalg.cholesky(cov).astype(np.float32)
        nonneg = bool((values >= 0).all())

        def generate(block: int, n: int) -> np.ndarray:
            z = _block_rng(seed, block).standard_normal((n, len(mean)), dtype=np.float32)
            out = z @ factor.T + mean
            if nonneg:  # Jensen-Shannon needs non-negative rows, like the features fitted
                np.maximum(out, 0, out=out)
            return out
    return Part(name or f"synthetic:{loaded.name}", rows, True,
                key=f"gaussian|seed={seed}|sample={sample}|fitted={loaded.name}|"
                    f"{len(d)}|{d.method}",
                _generate=_Synthetic(generate, rows))


#: Synthetic rows are made in aligned blocks of this many, each from its own seed.
_SYNTH_BLOCK = 8192


def _block_rng(seed: int, block: int) -> np.random.Generator:
    return np.random.default_rng([seed, block])


class _Synthetic:
    """Rows of a synthetic part: each aligned block generated from its own seed, so a row's
    values do not depend on how the part is read."""

    def __init__(self, generate, rows: int):
        self.generate, self.rows = generate, rows

    def read(self, start: int, stop: int) -> np.ndarray:
        out = []
        for block in range(start // _SYNTH_BLOCK, (stop - 1) // _SYNTH_BLOCK + 1):
            lo = block * _SYNTH_BLOCK
            hi = min(lo + _SYNTH_BLOCK, self.rows)
            out.append(self.generate(block, hi - lo)[max(start, lo) - lo: min(stop, hi) - lo])
        return np.concatenate(out)

    def take(self, rows: np.ndarray) -> np.ndarray:
        """Rows at sorted positions, generating only the blocks that hold them."""
        blocks = rows // _SYNTH_BLOCK
        out = []
        for block in np.unique(blocks):
            lo = int(block) * _SYNTH_BLOCK
            made = self.generate(int(block), min(lo + _SYNTH_BLOCK, self.rows) - lo)
            out.append(made[rows[blocks == block] - lo])
        return np.concatenate(out)
