"""The feature store: ``<root>/<dataset>/<model>.npy`` (float32, memory-mappable) and its JSON
sidecar ``<model>.json`` (image ids in row order, model, transform, dimension, dtype, skipped
images).

Extraction writes fixed chunks of the image list into ``<model>.partial/`` (each chunk atomically,
so an interrupted run keeps what it finished) and merges them into the store at the end. A
rerun skips finished chunks; the batches inside a chunk do not depend on where a run stopped,
so a resumed extraction gives the same features. Under ``torchrun`` every process takes every
``world_size``-th chunk and the first process merges them: the store equals a single-process
extraction.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from extractor.extract import extract
from extractor.models import FeatureModel
from helpers import (
    atomic_write,
    get_logger,
    now_iso,
    package_versions,
    read_json,
    results_root,
    save_npy,
    write_json,
)

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
    """

    features: np.ndarray
    ids: list[str]
    meta: dict[str, Any]


def store_paths(dataset: str, model: str, root: str | Path | None = None) -> tuple[Path, Path]:
    """``(<root>/<dataset>/<model>.npy, <model>.json)``."""
    folder = Path(root) if root is not None else default_features_dir()
    base = folder / dataset / model
    return base.with_suffix(".npy"), base.with_suffix(".json")


def load_store(dataset: str, model: str, root: str | Path | None = None,
               mmap: bool = True) -> FeatureStore:
    """Open a finished store.

    Raises
    ------
    FileNotFoundError
        No finished store there (an unfinished one says so).
    """
    npy, sidecar = store_paths(dataset, model, root)
    if not npy.exists() or not sidecar.exists():
        partial = npy.with_suffix(".partial")
        hint = f" ({partial} holds an unfinished extraction: rerun it to resume)" \
            if partial.exists() else ""
        raise FileNotFoundError(f"no feature store {npy}{hint}")
    meta = read_json(sidecar)
    features = np.load(npy, mmap_mode="r" if mmap else None)
    if features.shape != (meta["count"], meta["dim"]):
        raise ValueError(f"{npy} has shape {features.shape}, its sidecar says "
                         f"({meta['count']}, {meta['dim']})")
    return FeatureStore(features, list(meta["ids"]), meta)


def _chunks(n: int, size: int) -> list[tuple[int, int]]:
    return [(start, min(start + size, n)) for start in range(0, n, size)]


def _chunk_file(partial: Path, start: int, end: int) -> Path:
    return partial / f"chunk_{start:09d}_{end:09d}.npz"


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
        Repeated ids, or an unfinished extraction of other images or another model.
    """
    from extractor.extract import _id_and_source

    npy, sidecar = store_paths(dataset, model.name, root)
    if npy.exists() and not overwrite:
        raise FileExistsError(f"feature store {npy} exists; pass overwrite=True (--overwrite) "
                              "to replace it")
    ids = [_id_and_source(item, i)[0] for i, item in enumerate(images)]
    if len(set(ids)) != len(ids):
        raise ValueError("image ids repeat; a store needs one row per id")
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
    todo = [c for c in mine if not _chunk_file(partial, *c).exists()]
    if len(todo) < len(mine):
        logger.info("%s: resuming, %d of %d chunks already done", model.name,
                    len(mine) - len(todo), len(mine))
    for start, end in todo:
        part = extract(model, images[start:end], batch_size=batch_size, workers=workers)
        bad = np.array([json.dumps(b) for b in part.bad], dtype=str)
        with atomic_write(_chunk_file(partial, start, end), "wb") as handle:
            np.savez(handle, features=part.features, ids=np.array(part.ids, dtype=str), bad=bad)
    if barrier is not None:
        barrier()
    if rank != 0:
        return None
    return _merge(model, chunks, partial, npy, sidecar, dataset, extra_meta)


def _hash_ids(ids: list[str]) -> str:
    import hashlib

    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


def _merge(model: FeatureModel, chunks, partial: Path, npy: Path, sidecar: Path, dataset: str,
           extra_meta: dict[str, Any] | None) -> Path:
    feats, ids, bad = [], [], []
    for start, end in chunks:
        path = _chunk_file(partial, start, end)
        if not path.exists():
            raise RuntimeError(f"chunk {path} is missing: a process did not finish")
        with np.load(path) as data:
            feats.append(data["features"])
            ids += data["ids"].tolist()
            bad += [json.loads(b) for b in data["bad"].tolist()]
    features = np.concatenate(feats) if feats else np.empty((0, model.dim), np.float32)
    save_npy(npy, features.astype(np.float32, copy=False))
    meta = {
        "version": SIDE_CAR_VERSION,
        "dataset": dataset,
        "model": model.name,
        "dim": model.dim,
        "dtype": "float32",
        "transform": model.info.get("transform"),
        "count": len(ids),
        "ids": ids,
        "bad": [{"id": b[0], "path": b[1], "reason": b[2]} for b in bad],
        "model_info": model.info,
        "created": now_iso(),
        "versions": package_versions(),
        **(extra_meta or {}),
    }
    write_json(sidecar, meta)
    shutil.rmtree(partial, ignore_errors=True)
    logger.info("wrote %s (%d x %d, %d skipped)", npy, len(ids), model.dim, len(bad))
    return npy
