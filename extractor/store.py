"""The feature store: ``<root>/<dataset>/<model>.npy`` (float32, memory-mappable), the records
of its rows ``<model>.records.csv`` (a manifest: image_id, path, source_id, attack_id, group, in
row order) and its JSON sidecar ``<model>.json`` (image ids in row order, model, transform,
dimension, dtype, skipped images).

The sidecar is written last and is what makes a store finished: an ``.npy`` without its
sidecar is an unfinished merge, which a rerun completes, and which `load_store` refuses.

Extraction writes fixed chunks of the image list into ``<model>.partial/`` (each chunk atomically,
so an interrupted run keeps what it finished) and merges them into the store at the end. A
rerun skips finished chunks; the batches inside a chunk do not depend on where a run stopped,
so a resumed extraction gives the same features. Under ``torchrun`` every process takes every
``world_size``-th chunk and the first process merges them: the store equals a single-process
extraction.

Hash codes live beside neural features in the same layout (`save_descriptors`,
`load_descriptors`): the rows are packed uint8 codes and the sidecar says how to compare them
(``metric``, and ``n_bits`` for codes). Local descriptors (keypoint methods) are stored as one
row per image, their padded (descriptors x length) array flattened, with the count of each
image, the norm and the cutoff in the sidecar. `load_descriptors` gives back the object
`hashing.describe` made.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import zipfile
from dataclasses import dataclass, field
from glob import escape as glob_escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from data_retrieval import ImageRecord, read_manifest, write_manifest
from data_retrieval.items import as_record
from helpers import (
    FolderLock,
    atomic_path,
    atomic_write,
    check_name,
    get_logger,
    load_npy,
    now_iso,
    package_versions,
    read_json,
    results_root,
    save_npy,
    write_json,
)
from helpers.descriptors import BinaryCodes, FloatFeatures, LocalDescriptors, MultiCodes
from helpers.outputs import TMP_PATTERN

if TYPE_CHECKING:  # reading a store needs no torch; extracting imports it
    from extractor.models import FeatureModel

logger = get_logger(__name__)

SIDE_CAR_VERSION = 1


def default_features_dir() -> Path:
    """``Results/features``."""
    return results_root() / "features"


@dataclass
class FeatureStore:
    """A finished store, loaded.

    Attributes
    ----------
    features : numpy.ndarray, shape (N, dim), float32 (memory-mapped by default)
    ids : list of str
    meta : dict
        The sidecar.
    records : list of ImageRecord
        Row by row: where each image came from (``source_id``, ``attack_id``, ``group``), so
        that attacked queries know their source. Stores written before records were kept get
        records with the id alone.
    """

    features: np.ndarray
    ids: list[str]
    meta: dict[str, Any]
    records: list[ImageRecord] = field(default_factory=list)


def store_paths(dataset: str, model: str, root: str | Path | None = None) -> tuple[Path, Path]:
    """``(<root>/<dataset>/<model>.npy, <model>.json)``.

    Raises
    ------
    helpers.OutputError
        ``dataset`` or ``model`` is not one plain name (``..``, ``a/b``, empty...).
    """
    check_name(dataset, "store name")
    check_name(model, "model name")
    folder = Path(root) if root is not None else default_features_dir()
    base = folder / dataset / model
    # Appended, not with_suffix: a label may hold a dot (a weights or reducer file's tag,
    # ``..._reduce=pca-128.pt-1a2b3c4d5e6f``), and everything after it is its identity.
    return base.with_name(base.name + ".npy"), base.with_name(base.name + ".json")


def load_store(dataset: str, model: str, root: str | Path | None = None,
               mmap: bool = True) -> FeatureStore:
    """Open a finished store.

    Raises
    ------
    FileNotFoundError
        No finished store there (an unfinished one says so).
    """
    npy, sidecar = store_paths(dataset, model, root)
    if not sidecar.exists():
        partial = npy.with_suffix(".partial")
        hint = (f" ({partial} holds an unfinished extraction: rerun it to resume)"
                if partial.exists() or npy.exists() else "")
        raise FileNotFoundError(f"no finished feature store {npy}{hint}")
    meta = _check_sidecar(read_json(sidecar), sidecar)
    if not npy.exists():
        raise FileNotFoundError(f"feature store {npy} is missing; its sidecar {sidecar} is "
                                "there: extract it again with overwrite")
    features = load_npy(npy, mmap)
    if features.shape != (meta["count"], meta["dim"]):
        raise ValueError(f"{npy} has shape {features.shape}, its sidecar says "
                         f"({meta['count']}, {meta['dim']})")
    ids = list(meta["ids"])
    records_file = records_path(npy)
    if meta.get("records") and records_file.exists():
        records = read_manifest(records_file)
        if [r.image_id for r in records] != ids:
            raise ValueError(f"{records_file} does not list the rows of {npy} in order")
    else:  # a store from before records were kept
        records = [ImageRecord(i, None) for i in ids]
    return FeatureStore(features, ids, meta, records)


def _check_sidecar(meta: Any, sidecar: Path) -> dict[str, Any]:
    """The sidecar's facts a store is read by, present and of their types."""
    if not isinstance(meta, dict):
        raise ValueError(f"{sidecar} is not a feature store sidecar (not a JSON object)")
    wrong = [key for key, kind in (("count", int), ("dim", int), ("ids", list))
             if not isinstance(meta.get(key), kind) or isinstance(meta.get(key), bool)]
    if wrong:
        raise ValueError(f"{sidecar} is not a complete feature store sidecar: "
                         f"{', '.join(wrong)} missing or of the wrong type")
    if len(meta["ids"]) != meta["count"]:
        raise ValueError(f"{sidecar} lists {len(meta['ids'])} ids for count {meta['count']}")
    return meta


def _chunks(n: int, size: int) -> list[tuple[int, int]]:
    return [(start, min(start + size, n)) for start in range(0, n, size)]


def _chunk_file(partial: Path, start: int, end: int) -> Path:
    return partial / f"chunk_{start:09d}_{end:09d}.npz"


def _chunk_done(path: Path) -> bool:
    """Whether a chunk file from an earlier run is whole (it is read back; a damaged one is
    removed and made again)."""
    if not path.exists():
        return False
    try:
        with np.load(path) as data:
            rows = len(data["ids"])
            ok = data["features"].shape[0] == rows and data["bad"].ndim == 1
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        ok = False
    if not ok:
        logger.warning("chunk %s is damaged: extracting it again", path)
        path.unlink(missing_ok=True)
    return ok


def extract_to_store(
    model: FeatureModel,
    images: list[Any],
    dataset: str,
    root: str | Path | None = None,
    batch_size: int = 32,
    workers: int = 0,
    chunk_size: int = 4096,
    rank: int = 0,
    world_size: int = 1,
    overwrite: bool = False,
    barrier=None,
    extra_meta: dict[str, Any] | None = None,
) -> Path | None:
    """Extract features of ``images`` into the store, resuming finished chunks.

    Parameters
    ----------
    model : FeatureModel
        Already on its device.
    images : list
        Paths or `ImageRecord` objects (ids must be unique), in the order rows will have.
    dataset : str
        Store folder name.
    root : str or Path, optional
        Feature folder (default ``Results/features``).
    batch_size, workers
        As in `extractor.extract`.
    chunk_size : int
        Images per chunk file (rounded up to a multiple of ``batch_size``).
    rank, world_size : int
        This process's share under ``torchrun`` (every ``world_size``-th chunk).
    overwrite : bool
        Replace a finished store (otherwise it is an error).
    barrier : callable, optional
        Waits for every process (``torch.distributed.barrier``) before the merge.
    extra_meta : dict, optional
        Added to the sidecar (e.g. the command line).

    Returns
    -------
    Path or None
        The ``.npy`` written (``None`` on ranks other than 0).

    Raises
    ------
    FileExistsError
        A finished store exists and ``overwrite`` is false.
    ValueError
        Repeated ids, an unfinished extraction of other images or another model, or no image
        could be processed (the message gives the first reasons).
    helpers.OutputError
        Another run holds the store's lock, or a name is not a plain name.
    """
    npy, sidecar = store_paths(dataset, model.name, root)
    if sidecar.exists() and not overwrite:
        raise FileExistsError(f"feature store {npy} exists; pass overwrite=True (--overwrite) "
                              "to replace it")
    records = [as_record(item, i) for i, item in enumerate(images)]
    ids = [r.image_id for r in records]
    if len(set(ids)) != len(ids):
        raise ValueError("image ids repeat; a store needs one row per id")
    with contextlib.ExitStack() as stack:
        if rank == 0:
            npy.parent.mkdir(parents=True, exist_ok=True)
            stack.enter_context(FolderLock(npy.parent, f".{model.name}.lock", reenter=True))
            # overwrite: the old store stays readable until the new one replaces it (_write)
        return _extract_chunks(model, images, records, npy, sidecar, dataset, batch_size,
                               workers, chunk_size, rank, world_size, overwrite, barrier,
                               extra_meta)


def _extract_chunks(model, images, records, npy, sidecar, dataset, batch_size, workers,
                    chunk_size, rank, world_size, overwrite, barrier, extra_meta) -> Path | None:
    from extractor.extraction import extract  # torch, only when extracting

    ids = [r.image_id for r in records]
    chunk_size = -(-max(chunk_size, 1) // batch_size) * batch_size
    partial = npy.with_suffix(".partial")
    plan = {"model": model.name, "dim": model.dim, "count": len(ids), "chunk_size": chunk_size,
            "batch_size": batch_size, "ids_hash": _hash_ids(ids)}
    plan_file = partial / "plan.json"
    if rank == 0:
        if partial.exists() and plan_file.exists():
            previous = read_json(plan_file)
            if previous != plan:
                if not overwrite:
                    raise ValueError(f"{partial} holds an unfinished extraction of other images "
                                     "or settings; pass overwrite=True to start again")
                shutil.rmtree(partial)
        partial.mkdir(parents=True, exist_ok=True)
        if not plan_file.exists():
            write_json(plan_file, plan)
    if barrier is not None:
        barrier()
    chunks = _chunks(len(ids), chunk_size)
    mine = [c for k, c in enumerate(chunks) if k % world_size == rank]
    todo = [c for c in mine if not _chunk_done(_chunk_file(partial, *c))]
    if len(todo) < len(mine):
        logger.info("%s: resuming, %d of %d chunks already done", model.name,
                    len(mine) - len(todo), len(mine))
    for start, end in todo:
        part = extract(model, images[start:end], batch_size=batch_size, workers=workers)
        bad = np.array([json.dumps(b) for b in part.bad], dtype=str)
        with atomic_write(_chunk_file(partial, start, end), "wb") as handle:
            np.savez(handle, features=part.values, ids=np.array(part.ids, dtype=str), bad=bad)
    if barrier is not None:
        barrier()
    if rank != 0:
        return None
    return _merge(model, chunks, partial, npy, sidecar, dataset, extra_meta,
                  {r.image_id: r for r in records})


def _hash_ids(ids: list[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode("utf-8", "surrogatepass")).hexdigest()


def records_path(npy: Path) -> Path:
    """``<model>.records.csv`` beside ``<model>.npy``."""
    return npy.with_name(npy.stem + ".records.csv")


def _merge(model: FeatureModel, chunks, partial: Path, npy: Path, sidecar: Path, dataset: str,
           extra_meta: dict[str, Any] | None, by_id: dict[str, ImageRecord]) -> Path:
    feats, ids, bad = [], [], []
    for start, end in chunks:
        path = _chunk_file(partial, start, end)
        if not path.exists():
            raise RuntimeError(f"chunk {path} is missing: a process did not finish")
        with np.load(path) as data:
            feats.append(data["features"])
            ids += data["ids"].tolist()
            bad += [json.loads(b) for b in data["bad"].tolist()]
    if not ids:  # nothing processed is an error, not an empty store
        shutil.rmtree(partial, ignore_errors=True)
        reasons = "; ".join(f"{b[1] or b[0]}: {b[2]}" for b in bad[:3])
        raise ValueError(f"no image could be processed ({len(bad)} failed"
                         f"{': ' + reasons if reasons else ''}{' ...' if len(bad) > 3 else ''})")
    features = np.concatenate(feats).astype(np.float32, copy=False)
    _write(npy, features, [by_id[i] for i in ids], {
        "dataset": dataset, "model": model.name, "kind": "float",
        "transform": model.info.get("transform"),
        "bad": [{"id": b[0], "path": b[1], "reason": b[2]} for b in bad],
        "model_info": model.info, **(extra_meta or {})})
    shutil.rmtree(partial, ignore_errors=True)
    logger.info("wrote %s (%d x %d, %d skipped)", npy, len(ids), model.dim, len(bad))
    return npy


def _write(npy: Path, array: np.ndarray, records: list[ImageRecord],
           meta: dict[str, Any]) -> None:
    """The store's three files: rows, their records, then the sidecar that finishes it.

    All three are written aside first (temporary names in the same folder) and renamed into
    place together at the end, the sidecar last: a store being replaced stays readable, old,
    until the new one is complete; a kill or a full disk while writing leaves the old store
    (and the temporary files, removed by the next write). `load_store` checks that the rows,
    records and sidecar agree, should a process die between the renames."""
    sidecar, records_file = npy.with_suffix(".json"), records_path(npy)
    for path in (npy, records_file, sidecar):  # what a killed write of this store left
        for tmp in npy.parent.glob(f".{glob_escape(path.name)}.*.tmp"):
            if TMP_PATTERN.match(tmp.name):
                tmp.unlink(missing_ok=True)
    # atomic_path renames when its block ends: the innermost (rows) first, the sidecar last
    with atomic_path(sidecar) as meta_tmp, atomic_path(records_file) as records_tmp, \
            atomic_path(npy) as rows_tmp:
        save_npy(rows_tmp, array)
        write_manifest(records, records_tmp)
        write_json(meta_tmp, {
            "version": SIDE_CAR_VERSION, "dim": int(array.shape[1]), "dtype": str(array.dtype),
            "count": len(records), "ids": [r.image_id for r in records],
            "records": records_file.name, "created": now_iso(),
            "versions": package_versions(), **meta})



def save_store(array: np.ndarray, records: list[ImageRecord], dataset: str, name: str,
               root: str | Path | None = None, meta: dict[str, Any] | None = None,
               overwrite: bool = False) -> Path:
    """Write rows already computed (float features, or packed binary codes) as a store
    ``<root>/<dataset>/<name>.npy`` with its records and sidecar, under the store's lock.

    Parameters
    ----------
    array : numpy.ndarray, shape (N, D)
    records : list of ImageRecord
        One per row, ids unique.
    dataset, name : str
        The store folder and the method's identity (plain names).
    meta : dict, optional
        Added to the sidecar (e.g. ``kind``, ``metric``, ``n_bits``).
    overwrite : bool
        Replace a finished store of that name.

    Raises
    ------
    FileExistsError
        A finished store exists and ``overwrite`` is false.
    ValueError
        Rows and records disagree, or ids repeat.
    """
    npy, sidecar = store_paths(dataset, name, root)
    array = np.asarray(array)
    if array.ndim != 2 or len(array) != len(records):
        raise ValueError(f"{len(records)} records for rows of shape {array.shape}")
    if len({r.image_id for r in records}) != len(records):
        raise ValueError("image ids repeat; a store needs one row per id")
    if sidecar.exists() and not overwrite:
        raise FileExistsError(f"feature store {npy} exists; pass overwrite=True to replace it")
    npy.parent.mkdir(parents=True, exist_ok=True)
    with FolderLock(npy.parent, f".{name}.lock", reenter=True):
        _write(npy, array, list(records), {"dataset": dataset, "model": name,
                                           **(meta or {})})
    return npy


def save_descriptors(descriptors: BinaryCodes | FloatFeatures | LocalDescriptors, dataset: str,
                     root: str | Path | None = None, overwrite: bool = False,
                     meta: dict[str, Any] | None = None) -> Path:
    """Store descriptors made by `hashing.describe` as ``<root>/<dataset>/<method>.npy``.

    Parameters
    ----------
    descriptors : BinaryCodes, FloatFeatures or LocalDescriptors
        With ``ids`` and ``method`` (as `describe` makes them).
    dataset : str
        The store folder (a plain name).
    root : str or Path, optional
        Default ``Results/features`` (``$RESULTS_DIR/features``).
    overwrite : bool
        Replace a finished store of the same method.
    meta : dict, optional
        Added to the sidecar (how the images were made: attacks, seed, command...).

    Returns
    -------
    Path
        The ``.npy`` written.

    Raises
    ------
    ValueError
        Descriptors without ids or method.
    TypeError
        Multi-codes (several codes per image) are not stored yet.
    """
    if not isinstance(descriptors, BinaryCodes | FloatFeatures | MultiCodes | LocalDescriptors):
        raise TypeError(f"save_descriptors takes what hashing.describe returns, got a "
                        f"{type(descriptors).__name__}")
    if isinstance(descriptors, MultiCodes):
        raise TypeError("multi-codes (crop_resistant) cannot be stored yet: describe them "
                        "again, or store a single-code method")
    if descriptors.ids is None or not descriptors.method:
        raise ValueError("descriptors need ids and a method to be stored: make them with "
                         "hashing.describe, or .with_identity(ids=..., method=...)")
    records = list(descriptors.records or (ImageRecord(i, None) for i in descriptors.ids))
    if isinstance(descriptors, BinaryCodes):
        array, kind = descriptors.packed, {"kind": "binary", "metric": "hamming",
                                           "n_bits": descriptors.n_bits}
    elif isinstance(descriptors, LocalDescriptors):
        n, width, length = descriptors.values.shape
        array = descriptors.values.reshape(n, width * length)
        kind = {"kind": "local", "metric": descriptors.metric, "norm": descriptors.norm,
                "cutoff": int(descriptors.cutoff), "descriptors": int(width),
                "length": int(length), "counts": descriptors.counts.tolist()}
    else:
        array, kind = descriptors.values.astype("float32", copy=False), {
            "kind": "float", "metric": descriptors.metric}
    return save_store(array, records, dataset, descriptors.method, root,
                      {**(meta or {}), **kind}, overwrite)


def load_descriptors(dataset: str, method: str, root: str | Path | None = None,
                     mmap: bool = True, metric: str | None = None) -> Any:
    """A stored method's rows as a descriptor object, with ids, records and method.

    Parameters
    ----------
    dataset, method : str
        The store folder and the method's identity (``efficientnet_lite0``,
        ``phash_hash_size=16``); `hashing.load_descriptors` also takes the spec `describe`
        took (``phash:hash_size=16``).
    mmap : bool
        Map the rows instead of reading them (stores larger than memory).
    metric : str, optional
        For float features: the distance to compare them with, when the store does not say
        (stores written by extraction; default ``cosine``).

    Raises
    ------
    FileNotFoundError
        No finished store (the message lists the stores of that folder).
    ValueError
        ``metric`` differs from the one the store records.
    """
    if ":" in method:
        raise ValueError(f"{method!r} is a method spec: give its identity "
                         f"(hashing.load_descriptors resolves specs)")
    try:
        store = load_store(dataset, method, root, mmap=mmap)
    except FileNotFoundError as exc:
        folder = store_paths(dataset, method, root)[0].parent
        there = sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []
        raise FileNotFoundError(f"{exc}; stores in {folder}: {', '.join(there) or 'none'}"
                                ) from None
    recorded = store.meta.get("metric")
    if metric and recorded and metric != recorded:
        raise ValueError(f"store {method} records metric {recorded!r}, not {metric!r}")
    identity = {"ids": tuple(store.ids), "records": tuple(store.records), "method": method}
    if store.meta.get("kind") == "binary":
        return BinaryCodes(store.features, int(store.meta["n_bits"]), **identity)
    if store.meta.get("kind") == "local":
        meta = store.meta
        values = store.features.reshape(len(store.features), int(meta["descriptors"]),
                                        int(meta["length"]))
        return LocalDescriptors(values, meta["counts"], meta["norm"], int(meta["cutoff"]),
                                **identity)
    return FloatFeatures(store.features, recorded or metric or "cosine", **identity)
