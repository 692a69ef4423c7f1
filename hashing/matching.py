"""Distances between descriptors of any kind: binary codes, multi-codes, float features.

Binary codes use the bit error rate; multi-codes (crop-resistant hash) use the rule of
`MultiCodes`; local descriptors (keypoint methods) the rule of `LocalDescriptors`
(`hashing.keypoints`); float features a metric of `hashing.distances`. Everything is computed
for whole batches: all queries of a batch against the whole database.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from hashing.distances import DEFAULT_BLOCK_ELEMENTS, pairwise
from helpers.descriptors import (
    BinaryCodes,
    FloatFeatures,
    LocalDescriptors,
    MultiCodes,
    check_same_method,
)

logger = logging.getLogger(__name__)


def descriptor_distances(
    queries: Any, database: Any, metric: str | None = None, device: str = "auto"
) -> np.ndarray:
    """Distance matrix (Q, N) float32 between two sets of descriptors of the same kind.

    Parameters
    ----------
    queries, database : BinaryCodes, MultiCodes, FloatFeatures, LocalDescriptors or ndarray
    metric : str, optional
        For plain arrays of float features (``cosine``, ``jensenshannon``, ``l1``, ``l2``);
        codes and `FloatFeatures` know theirs.
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda"``.
    """
    if type(queries) is not type(database):
        raise TypeError(f"cannot compare {type(queries).__name__} with "
                        f"{type(database).__name__}")
    if isinstance(queries, BinaryCodes | MultiCodes | FloatFeatures | LocalDescriptors):
        return pairwise(queries, database, device=device)
    if metric is None:
        raise ValueError("float features need a metric")
    return pairwise(queries, database, metric, device)


def multi_distances(queries: MultiCodes, database: MultiCodes, device: str = "auto",
                    max_block_elements: int = DEFAULT_BLOCK_ELEMENTS) -> np.ndarray:
    """Multi-code distances (Q, N): for each query image, the ``cutoff``-th smallest over its
    segments of the segment's lowest bit error rate against the database image's segments;
    infinite for a query with fewer segments than ``cutoff``. So ``distance <= t`` is exactly
    imagehash's ``matches(other, region_cutoff=cutoff, bit_error_rate=t)``, which needs
    ``cutoff`` matching segments (as keypoint methods treat too few keypoints).

    Every segment of a block of queries is compared with every database segment in one
    matrix product; minima per database image and per query image are segment reductions.
    """
    if not isinstance(queries, MultiCodes) or not isinstance(database, MultiCodes):
        raise TypeError(f"cannot compare {type(queries).__name__} with "
                        f"{type(database).__name__}")
    check_same_method(queries, database)
    if queries.n_bits != database.n_bits:
        raise ValueError(f"segment codes of {queries.n_bits} and {database.n_bits} bits")
    n_query, n_db = len(queries), len(database)
    out = np.empty((n_query, n_db), dtype=np.float32)
    if n_query == 0 or n_db == 0:
        return out
    db_starts = database.offsets[:-1]
    per_row = max(1, int(database.offsets[-1]))
    rows_per_block = max(1, max_block_elements // per_row)
    q_off = queries.offsets
    first = 0
    while first < n_query:
        last = first + 1
        while last < n_query and q_off[last + 1] - q_off[first] <= rows_per_block:
            last += 1
        segs = pairwise(queries.packed[q_off[first]:q_off[last]], database.packed, "hamming",
                        device, n_bits=queries.n_bits)
        per_db = np.minimum.reduceat(segs, db_starts, axis=1)  # (segments, N)
        starts = q_off[first:last] - q_off[first]
        if queries.cutoff == 1:
            out[first:last] = np.minimum.reduceat(per_db, starts, axis=0)
        else:
            ends = q_off[first + 1:last + 1] - q_off[first]
            for i, (a, b) in enumerate(zip(starts, ends, strict=True)):
                k = queries.cutoff - 1
                out[first + i] = (np.partition(per_db[a:b], k, axis=0)[k] if b - a > k
                                  else np.inf)
        first = last
    return out


def neighbours(queries: Any, database: Any, k: int = 5, device: str = "auto") -> pd.DataFrame:
    """The ``k`` nearest database images of every query, by id: one row per (query, rank).

    Parameters
    ----------
    queries, database : BinaryCodes, MultiCodes, FloatFeatures or LocalDescriptors
        Descriptor objects of one method (as `hashing.describe` makes them); rows without ids
        are named by their position.
    k : int
        Neighbours per query (at most the database size).
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda"``.

    Returns
    -------
    pandas.DataFrame
        Columns ``query_id``, ``rank`` (1 = nearest), ``neighbour_id``, ``distance``. An
        image at an infinite distance (a keypoint method's image without keypoints, or
        fewer than the cutoff) is nobody's neighbour: such a query has fewer than ``k`` rows
        or none (logged).
    """
    from hashing.distances import nearest

    if not 1 <= k <= len(database):
        raise ValueError(f"k must be in [1, {len(database)}] (the database size), got {k}")
    dist, index = nearest(queries, database, k=k, device=device)
    q_ids = np.asarray(queries.ids if queries.ids is not None
                       else [str(i) for i in range(len(queries))], dtype=object)
    d_ids = np.asarray(database.ids if database.ids is not None
                       else [str(i) for i in range(len(database))], dtype=object)
    n_query, kk = index.shape
    finite = np.isfinite(dist)
    alone = q_ids[~finite.any(axis=1)]
    if len(alone):
        logger.warning("%d of %d queries have no neighbour at a finite distance (no keypoint, "
                       "or fewer than the cutoff): %s", len(alone), n_query,
                       ", ".join(map(str, alone[:5])) + (" ..." if len(alone) > 5 else ""))
    return pd.DataFrame({
        "query_id": np.repeat(q_ids, kk)[finite.ravel()],
        "rank": np.tile(np.arange(1, kk + 1), n_query)[finite.ravel()],
        "neighbour_id": d_ids[index[finite]],
        "distance": dist[finite],
    }).reset_index(drop=True)
