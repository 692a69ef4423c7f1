"""The multi-codes' matching rule (the crop-resistant hash: several segment codes per image),
for whole batches: all segments of a block of queries against the whole database at once.
"""

from __future__ import annotations

import logging

import numpy as np

from hashing.distances.dense import DEFAULT_BLOCK_ELEMENTS, pairwise
from helpers.descriptors import (
    MultiCodes,
    check_same_method,
)

logger = logging.getLogger(__name__)


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
