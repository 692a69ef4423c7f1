"""The evaluation protocols: the copy-detection benchmark and its digest, the metrics, the
separation analysis and its report, and pair verification. Every threshold and ROC comes from
the one sweep of `hashing.evaluation.operating_points` (a pair matches when distance <=
threshold; a threshold is the largest distance it accepts). Figures are in
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
from hashing.evaluation.operating_points import OperatingPoint, Sweep, sweep
from hashing.evaluation.separation_analysis import separation, separation_thresholds
from hashing.evaluation.separation_report import SeparationReport, run_separation_report
from hashing.evaluation.verification import (
    PairSet,
    VerificationProtocol,
    VerificationResult,
    cross_validate,
    fit_threshold,
    make_pairs,
    pair_distances_many,
    pair_distances_of,
    pair_scores,
    read_pairs,
    run_verification,
    verify,
    verify_pairs,
)

__all__ = [
    "BenchmarkResult",
    "Digest",
    "OperatingPoint",
    "PairSet",
    "Protocol",
    "SeparationReport",
    "Sweep",
    "VerificationProtocol",
    "VerificationResult",
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
    "run_separation_report",
    "run_verification",
    "score_matches",
    "separation",
    "separation_thresholds",
    "study_protocol",
    "sweep",
    "verify",
    "verify_pairs",
    "write_digest",
]
