#!/usr/bin/env python3
"""Pair verification: are these two images the same picture? Thresholds chosen on validation
pairs, scored on test pairs.

Pairs come from --pairs (a CSV of two image paths and a label per row, the usual form of
competition data; --dataset, --count, --negatives and --hard then do not apply; a pair with an
image that cannot be read is reported and left out) or are made from --dataset with the attack
generator: one positive per original (the original and a copy by one of --attacks),
--negatives negatives per positive (an original and a copy of another one), of which the share
--hard are hard negatives (the nearest non-copy by the distance of --hard-method, default the
first method). Copies are made in memory, never written.

Every method of --methods gives each pair a distance. With --threshold the decision is
distance <= threshold on every pair. Otherwise the pairs are split into validation and test
by the source of the copy (--validation-fraction; no original's copies on both sides), the
threshold is chosen on the validation pairs by --rule (f1: the F1-optimal threshold;
precision:P; fpr:F; a threshold is the largest validation distance it accepts), and F1,
precision, recall and accuracy are measured on the test pairs; --folds K adds k-fold
cross-validation over all pairs (choose on k-1 folds, score the held-out one). The protocol
is the library's (`hashing.evaluation.verification.run_verification`).

Writes Results/<name>/: pairs.csv (pair, label, kind, split, distance and decision per method),
scores.csv (method x split), cross_validation.csv, figures/f1_curve (validation F1 against
threshold), experiment.json.

Examples
--------
python scripts/verify_pairs.py --dataset bsds500 --subset test --methods phash sscd_distilled
python scripts/verify_pairs.py --pairs pairs.csv --methods sscd_distilled --threshold 0.2
python scripts/verify_pairs.py --dataset sample --methods dhash efficientnet_lite0 \\
    --attacks jpg_compression:50 --rule fpr:0.05 --folds 5
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pandas as pd

from data_retrieval import load_dataset, sample_records
from data_retrieval.cli import add_data_root_argument
from generator.cli import add_attack_arguments, attacks_from_args
from hashing import parse_algorithm
from hashing.evaluation.verification import (
    VerificationProtocol,
    make_pairs,
    parse_rule,
    read_pairs,
    run_verification,
    write_verification,
)
from helpers import add_output_arguments, experiment_run, setup_logging
from helpers.cli import MAX_COUNT, integer, real, run_script, script_main

SCRIPT = "verify_pairs"
DEFAULT_METHODS = ["phash", "sscd_distilled"]
logger = logging.getLogger(SCRIPT)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    data = parser.add_argument_group("pairs")
    data.add_argument("--pairs", default=None, metavar="CSV",
                      help="read labelled path pairs from this CSV instead of making them")
    data.add_argument("--dataset", default="bsds500",
                      help="originals to make pairs from (default: bsds500)")
    data.add_argument("--subset", default=None, help="e.g. test (bsds500)")
    add_data_root_argument(data)
    data.add_argument("--count", type=integer(0, MAX_COUNT), default=0,
                      help="a seeded sample of this many originals (default 0: all)")
    data.add_argument("--negatives", type=real(0, 1000), default=1.0,
                      help="negatives per positive (default 1: balanced)")
    data.add_argument("--hard", type=real(0, 1), default=0.5,
                      help="share of the negatives that are hard (default 0.5)")
    data.add_argument("--hard-method", default=None,
                      help="the method whose nearest non-copies are the hard negatives "
                           "(default: the first of --methods)")
    add_attack_arguments(parser)
    method = parser.add_argument_group("methods and thresholds")
    method.add_argument("--methods", nargs="+", default=DEFAULT_METHODS, metavar="SPEC",
                        help="algorithm specs, e.g. phash sscd_distilled "
                             "\"sscd_distilled:reduce='pca:128'\" (default: phash "
                             "sscd_distilled)")
    method.add_argument("--threshold", type=real(0, 1e9), default=None,
                        help="decide every pair with this threshold (no fitting)")
    method.add_argument("--rule", default="f1",
                        help="how the threshold is chosen on validation pairs: f1, "
                             "precision:P or fpr:F (default: f1)")
    method.add_argument("--validation-fraction", type=real(0, 1, low_open=True), default=0.5,
                        help="share of the source images whose pairs choose the threshold "
                             "(default 0.5)")
    method.add_argument("--folds", type=integer(0, 1000), default=0,
                        help="also k-fold cross-validation over all pairs (default 0: no)")
    work = parser.add_argument_group("work")
    work.add_argument("--batch-size", type=integer(1, 65_536), default=64,
                      help="images described at once (default: %(default)s)")
    work.add_argument("--device", default="auto", help="where distances are computed")
    add_output_arguments(parser, "Results/<name> (default: verify_<dataset>, or "
                                 "verify_<CSV name> with --pairs)")
    return parser.parse_args(argv)


def _pairs(args: argparse.Namespace, algorithms, attacks, seed):
    if args.pairs:  # the CSV is an input by its flag; images inside the output are never the
        return read_pairs(args.pairs), None  # earlier run's, so --overwrite refuses them
    dataset = load_dataset(args.dataset, args.data_root, subset=args.subset)
    records = sample_records(dataset.records, args.count, seed, args.dataset)
    hard_method = parse_algorithm(args.hard_method) if args.hard_method else algorithms[0]
    pairs = make_pairs(records, attacks, hard_method, args.negatives, args.hard, seed,
                       args.batch_size)
    return pairs, dataset.root


def _protocol(args: argparse.Namespace, seed: int) -> VerificationProtocol:
    """The verification protocol of the flags (refused in their names)."""
    rule, target = parse_rule(args.rule)
    if not 0 < args.validation_fraction < 1:
        raise ValueError(f"--validation-fraction must be in (0, 1), got "
                         f"{args.validation_fraction}")
    if args.folds == 1:
        raise ValueError(f"--folds must be 0 (none) or >= 2, got {args.folds}")
    if not args.pairs and args.threshold is None and not args.negatives > 0:
        raise ValueError("choosing a threshold needs negative pairs: --negatives > 0")
    return VerificationProtocol(args.threshold, rule, target, args.validation_fraction,
                                args.folds, seed)


@script_main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    attacks, seed, _ = attacks_from_args(args)
    protocol = _protocol(args, seed)
    algorithms = [parse_algorithm(m) for m in args.methods]
    labels = [a.label for a in algorithms]
    if len(set(labels)) != len(labels):
        raise ValueError(f"--methods repeat a method: {labels}")
    pairs, root = _pairs(args, algorithms, attacks, seed)
    protocol.splits(pairs)  # a pair set the protocol refuses is refused before the folder
    default = (Path(args.pairs).stem if args.pairs else args.dataset).replace(":", "_")
    with experiment_run(args, SCRIPT, name=f"verify_{default}".replace("/", "_"),
                        inputs=[root]) as run:
        run.record({**{k: v for k, v in vars(args).items() if k != "attacks"},
                    "attacks": [a.id for a in attacks], "seed": seed,
                    "methods_resolved": labels,
                    "pairs_made": {k: int(v) for k, v in
                                   pd.Series(pairs.kind).value_counts().items()}})
        result = run_verification(pairs, algorithms, protocol, args.device, args.batch_size)
        write_verification(result, run.folder)
        summary = result.cross_validation_summary()
        run.finish(scores=result.scores.to_dict("records"), cross_validation=summary,
                   pairs_not_read=result.unread)
    table = result.scores
    shown = table[table["split"] != "validation"][
        ["method", "split", "threshold", "f1", "precision", "recall", "accuracy"]]
    print(shown.to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    for method_name, values in summary.items():
        print(f"{method_name}: {args.folds}-fold F1 {values['f1_mean']:.4f} +- "
              f"{values['f1_std']:.4f}")
    print(f"{len(pairs)} pairs ({int(pairs.same.sum())} positive) -> {run.folder}")
    return 0


if __name__ == "__main__":
    run_script(main)
