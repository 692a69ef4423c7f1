"""The distance engine: batched distance matrices and nearest neighbours on CPU or GPU, every
kind of descriptor by its matching rule.

`dense` (metrics over codes and vectors, in blocks), `multi` (crop-resistant multi-codes),
`local` (keypoint descriptors), `compare` (each kind to its rule: `pairwise`, `nearest`,
`neighbours`) and `native` (the compiled C kernels beside it, with their torch fallbacks).
"""

from hashing.distances.compare import (
    MATCHING_RULES,
    descriptor_distances,
    nearest,
    neighbours,
    pairwise,
)
from hashing.distances.dense import DEFAULT_BLOCK_ELEMENTS, METRICS
from hashing.distances.local import local_distances
from hashing.distances.multi import multi_distances

__all__ = [
    "DEFAULT_BLOCK_ELEMENTS",
    "MATCHING_RULES",
    "METRICS",
    "descriptor_distances",
    "local_distances",
    "multi_distances",
    "nearest",
    "neighbours",
    "pairwise",
]
