"""The evaluation protocols: the copy-detection benchmark and its digest, the metrics and
operating points, the separation analysis and pair verification. Figures are in
`hashing.evaluation.plots` (imported on demand: matplotlib)."""

from hashing.evaluation.benchmark import (
    BenchmarkResult,
    Protocol,
    load_records,
    run_benchmark,
    study_protocol,
)
from hashing.evaluation.digest import (
    Digest,
    compute_digest,
    load_digest,
    score_matches,
    write_digest,
)
from hashing.evaluation.separation import separation, separation_thresholds
from hashing.evaluation.verification import (
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

__all__ = [
    "BenchmarkResult",
    "Digest",
    "PairSet",
    "Protocol",
    "compute_digest",
    "cross_validate",
    "fit_threshold",
    "load_digest",
    "load_records",
    "make_pairs",
    "pair_distances_many",
    "pair_distances_of",
    "pair_scores",
    "read_pairs",
    "run_benchmark",
    "score_matches",
    "separation",
    "separation_thresholds",
    "study_protocol",
    "verify",
    "verify_pairs",
    "write_digest",
]
