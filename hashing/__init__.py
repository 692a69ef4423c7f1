"""Descriptors, distances and the benchmark engine, in three sub-packages by role.

- `hashing.methods`: the classical perceptual hashes on batches (ahash, phash, dhash, whash and
  colorhash bit-identical to ``imagehash``; crop_resistant with imagehash's segment hashes;
  hist_hash; block_mean), the keypoint methods (orb, sift, daisy, latch), the neural methods
  (every `extractor` model), the algorithm registry and `describe` / `describe_all`;
- `hashing.distances`: batched CPU/GPU distances (`pairwise`, `nearest`, `neighbours`), each
  kind of descriptor by its matching rule, with the compiled kernels beside their Python;
- `hashing.evaluation`: the copy-detection benchmark and its JSON digest (`run_benchmark`,
  `write_digest`, `load_digest`), operating points, figures (`hashing.evaluation.plots`), the
  separation analysis and pair verification (`verify`, pair sets, fitted thresholds).

`clear_caches()` frees the networks and matchers kept between calls.
"""

from hashing.caches import clear_caches
from hashing.distances import (
    METRICS,
    descriptor_distances,
    multi_distances,
    nearest,
    neighbours,
    pairwise,
)
from hashing.evaluation import (
    BenchmarkResult,
    Digest,
    PairSet,
    Protocol,
    compute_digest,
    cross_validate,
    fit_threshold,
    load_digest,
    load_records,
    make_pairs,
    pair_distances_many,
    pair_distances_of,
    pair_scores,
    read_pairs,
    run_benchmark,
    score_matches,
    separation,
    separation_thresholds,
    study_protocol,
    verify,
    verify_pairs,
    write_digest,
)
from hashing.methods import (
    Algorithm,
    GrayBatch,
    describe,
    describe_all,
    get_algorithm,
    list_algorithms,
    load_descriptors,
    parse_algorithm,
    register_algorithm,
    register_provider,
    save_descriptors,
    simhash,
)
from helpers.descriptors import BinaryCodes, FloatFeatures, LocalDescriptors, MultiCodes

__all__ = [
    "clear_caches",
    "METRICS",
    "Algorithm",
    "BenchmarkResult",
    "Protocol",
    "BinaryCodes",
    "FloatFeatures",
    "Digest",
    "GrayBatch",
    "MultiCodes",
    "LocalDescriptors",
    "compute_digest",
    "describe",
    "describe_all",
    "descriptor_distances",
    "get_algorithm",
    "list_algorithms",
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

