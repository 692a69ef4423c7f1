"""Descriptors, distances and (to come) the benchmark engine.

Classical perceptual hashes computed on batches (bit-identical to ``imagehash``), batched
CPU/GPU distances (`hashing.distances`), and the algorithm registry. Still to come: the colour,
crop-resistant, histogram and block-mean hashes, neural descriptors, and the benchmark that
writes the study's JSON digests and figures.
"""

from hashing import classical as _classical  # noqa: F401  (registers the hashes)
from hashing.classical import GrayBatch
from hashing.descriptors import BinaryCodes, MultiCodes
from hashing.distances import METRICS, nearest, pairwise
from hashing.registry import (
    Algorithm,
    concat_descriptors,
    describe_many,
    get_algorithm,
    list_algorithms,
    register_algorithm,
)

__all__ = [
    "METRICS",
    "Algorithm",
    "BinaryCodes",
    "GrayBatch",
    "MultiCodes",
    "concat_descriptors",
    "describe_many",
    "get_algorithm",
    "list_algorithms",
    "nearest",
    "pairwise",
    "register_algorithm",
]
