"""Command-line pieces shared by the clustering scripts (`scripts/cluster.py`,
`scripts/find_duplicates.py`)."""

from __future__ import annotations

import argparse
import logging

from clustering.methods import threshold_from_digest
from helpers.cli import real

logger = logging.getLogger(__name__)


def add_digest_threshold_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup,
                                   ) -> None:
    """Add ``--threshold-from``, ``--threshold-algorithm`` and ``--threshold-fpr``."""
    parser.add_argument("--threshold-from", default=None, metavar="DIGEST",
                        help="take the duplicates threshold from a benchmark digest folder")
    parser.add_argument("--threshold-algorithm", default=None,
                        help="the digest's algorithm label (when it holds several)")
    parser.add_argument("--threshold-fpr", type=real(0, 1), default=0.005,
                        help="false positive rate of the digest's operating point (0.005)")


def digest_threshold(args: argparse.Namespace) -> float | None:
    """The threshold ``--threshold-from`` names (``None`` without it).

    Raises
    ------
    ValueError
        ``--threshold`` given too, or what `threshold_from_digest` refuses.
    """
    if not args.threshold_from:
        return None
    if args.threshold is not None:
        raise ValueError("give --threshold or --threshold-from, not both")
    threshold = threshold_from_digest(args.threshold_from, args.threshold_algorithm,
                                      args.threshold_fpr)
    logger.info("threshold %.4g from %s at FPR %g", threshold, args.threshold_from,
                args.threshold_fpr)
    return threshold
