"""Command-line pieces shared by the clustering scripts (`scripts/cluster.py`,
`scripts/find_duplicates.py`)."""

from __future__ import annotations

import argparse
import logging

from PIL import Image

from clustering.methods import threshold_from_digest
from hashing.methods.describing import parse_algorithm
from helpers.cli import real
from helpers.descriptors import BinaryCodes, LocalDescriptors, MultiCodes

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


def descriptor_kind(method: str) -> str:
    """What ``method`` (a hash spec or a model) makes per image, known before describing any
    image: ``"float"`` (a model, float hashes), ``"binary"`` (one code), ``"multi"`` (several
    codes: crop_resistant) or ``"local"`` (keypoint descriptors: orb, sift...).

    A hash describes one small gray image to find out (milliseconds); a model is not loaded.

    Raises
    ------
    ValueError
        An unknown method or parameter.
    """
    from extractor import list_models  # extractor: on use (no torch on import)

    algorithm = parse_algorithm(method)
    if algorithm.name in list_models():
        return "float"
    sample = algorithm.describe([Image.new("RGB", (64, 48), "gray")])
    if isinstance(sample, MultiCodes):
        return "multi"
    if isinstance(sample, LocalDescriptors):
        return "local"
    return "binary" if isinstance(sample, BinaryCodes) else "float"


def check_one_row_method(method: str, flag: str = "--method") -> str:
    """Refuse, before any work, a method that makes several descriptors per image (they have no
    single row to cluster or store); returns its `descriptor_kind`.

    Raises
    ------
    ValueError
    """
    kind = descriptor_kind(method)
    if kind in ("multi", "local"):
        what = "several codes" if kind == "multi" else "keypoint descriptors"
        raise ValueError(f"{flag} {method}: it makes {what} per image, which have no single "
                         "row to group; use a hash with one code per image (dhash, phash...) "
                         "or a model (sscd_distilled...)")
    return kind
