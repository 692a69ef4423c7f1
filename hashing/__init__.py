"""Descriptors, distances and the benchmark engine.

Classical perceptual hashes on batches (ahash, phash, dhash, whash and colorhash bit-identical
to ``imagehash``; crop_resistant with imagehash's segment hashes; hist_hash; block_mean), the
keypoint methods (orb, sift, daisy, latch: OpenCV's descriptors matched in batches), the
algorithm registry, batched CPU/GPU distances, and the copy-detection benchmark with its JSON
digest (`run_benchmark`, `write_digest`, `load_digest`) and figures (`hashing.plots`), the
separation analysis (`hashing.separation`: copies' distances against unrelated pairs' ones,
thresholds T1/T2 and at target false positive rates) and pair verification
(`hashing.verification`: `verify`, pair sets, thresholds chosen on validation pairs).
"""

from hashing import classical as _classical  # noqa: F401  (registers the hashes)
from hashing import keypoints as _keypoints  # noqa: F401  (registers orb, sift, daisy, latch)
from hashing.benchmark import BenchmarkResult, Protocol, load_records, run_benchmark, study_protocol
from hashing.describe import describe, describe_all
from hashing.digest import Digest, compute_digest, load_digest, score_matches, write_digest
from hashing.distances import METRICS, nearest, pairwise
from hashing.gray import GrayBatch
from hashing.keypoints import local_distances
from hashing.matching import descriptor_distances, multi_distances, neighbours
from hashing.neural import FEATURE_DISTANCES, simhash
from hashing.registry import (
    Algorithm,
    concat_descriptors,
    describe_many,
    get_algorithm,
    list_algorithms,
    parse_algorithm,
    register_algorithm,
    register_provider,
)
from hashing.separation import separation, separation_thresholds
from hashing.store import load_descriptors, save_descriptors
from hashing.verification import (
    PairSet,
    cross_validate,
    fit_threshold,
    make_pairs,
    pair_distances_many,
    pair_distances_of,
    pair_scores,
    read_pairs,
    verify,
    verify_pairs,
)
from helpers.descriptors import BinaryCodes, FloatFeatures, LocalDescriptors, MultiCodes

__all__ = [
    "METRICS",
    "Algorithm",
    "BenchmarkResult",
    "Protocol",
    "BinaryCodes",
    "FEATURE_DISTANCES",
    "FloatFeatures",
    "Digest",
    "GrayBatch",
    "MultiCodes",
    "LocalDescriptors",
    "compute_digest",
    "concat_descriptors",
    "describe",
    "describe_all",
    "describe_many",
    "descriptor_distances",
    "get_algorithm",
    "list_algorithms",
    "local_distances",
    "load_digest",
    "load_records",
    "multi_distances",
    "neighbours",
    "load_descriptors",
    "save_descriptors",
    "nearest",
    "pairwise",
    "parse_algorithm",
    "register_algorithm",
    "register_provider",
    "simhash",
    "run_benchmark",
    "study_protocol",
    "score_matches",
    "write_digest",
    "PairSet",
    "cross_validate",
    "fit_threshold",
    "make_pairs",
    "pair_distances_many",
    "pair_distances_of",
    "pair_scores",
    "read_pairs",
    "separation",
    "separation_thresholds",
    "verify",
    "verify_pairs",
]

