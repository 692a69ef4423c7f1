#!/usr/bin/env python3
"""How far do attacked copies stand from unrelated images? Several methods side by side.

The originals of --dataset and their attacked copies (made on the fly with --attacks and
--seed, never written) are described by every method of --methods. Every feature method
(a neural model) is also reduced by every reducer of --reducers (PCA, whitened PCA, random
projection, autoencoders; see extractor.reduce), fitted on the originals' features or on
--fit-dataset, and optionally quantised to bytes (--quantize). For each method: the distances
of pairs of distinct originals give mu and sigma, the thresholds T1 = mu - 2 sigma and
T2 = mu - sigma, and thresholds at the target false positive rates --fprs (the largest
unrelated distance within the rate, -inf when not one pair may be accepted; marked unreliable
when fewer than 10 unrelated pairs fall below them); then, per attack, the share of copies
whose distance to their original is above each threshold (0 is best).

Writes Results/<name>/: separation.csv (method x attack: copies, mean and median distance,
above_t1, above_t2, above_fpr_*), shares_above_t1.csv, shares_above_t2.csv and
shares_above_fpr_<largest --fprs>.csv (attacks x methods), thresholds.json,
explained_variance.csv, figures/ (the histograms of every method, the share heat maps, the
cumulative explained variance), reducers/<method>/*.pt (reusable: get_algorithm(method,
reduce=<file>)), experiment.json. The protocol is the library's
(`hashing.evaluation.separation_report.run_separation_report`).

Examples
--------
python scripts/separation_report.py --dataset sample --methods dhash phash efficientnet_lite0 \\
    --reducers pca:8 rp:8 --attacks jpg_compression:50 cropping_and_rescaling:20
python scripts/separation_report.py --dataset bsds500 --methods dhash phash efficientnet_lite0 \\
    sscd_distilled --reducers pca:256 pca:128 pca:64 pca:32 ae:256 --quantize uint8
"""

from __future__ import annotations

import argparse
import logging

from data_retrieval import load_dataset, sample_records
from data_retrieval.cli import add_data_root_argument
from extractor.reduce import parse_reducer
from generator.cli import add_attack_arguments, attacks_from_args
from hashing import parse_algorithm
from hashing.evaluation.separation_analysis import DEFAULT_FPRS, DEFAULT_MAX_PAIRS
from hashing.evaluation.separation_report import run_separation_report, write_separation_report
from helpers import add_output_arguments, experiment_run, setup_logging
from helpers.cli import MAX_COUNT, integer, real, run_script, script_main

SCRIPT = "separation_report"
DEFAULT_METHODS = ["dhash", "phash", "efficientnet_lite0", "sscd_distilled"]
DEFAULT_REDUCERS = ["pca:256", "pca:128", "pca:64", "pca:32", "ae:256"]
logger = logging.getLogger(SCRIPT)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", default="bsds500",
                      help="the originals: dataset name or folder:<path> (default: bsds500)")
    data.add_argument("--subset", default=None, help="e.g. test (bsds500)")
    add_data_root_argument(data)
    data.add_argument("--count", type=integer(0, MAX_COUNT), default=0,
                      help="use a seeded sample of this many originals (default 0: all)")
    add_attack_arguments(parser)
    methods = parser.add_argument_group("methods")
    methods.add_argument("--methods", nargs="+", default=DEFAULT_METHODS, metavar="SPEC",
                         help="algorithm specs (default: " + " ".join(DEFAULT_METHODS) + ")")
    methods.add_argument("--reducers", nargs="*", default=DEFAULT_REDUCERS, metavar="SPEC",
                         help="reducers fitted for every feature method: pca:D, pcaw:D, rp:D, "
                              "ae:D[:linear|sigmoid|relu], ae:W1-...-D (default: "
                              + " ".join(DEFAULT_REDUCERS) + "; none: no flag values)")
    methods.add_argument("--fit-dataset", default=None,
                         help="fit the reducers on this dataset's features (default: on the "
                              "originals themselves, as the related work did)")
    methods.add_argument("--quantize", choices=["uint8", "sq8"], default=None,
                         help="also compare every reducer's output quantised to bytes")
    methods.add_argument("--ae-epochs", type=integer(1, 100_000), default=30,
                         help="autoencoder reducers' training epochs (default: %(default)s)")
    methods.add_argument("--ae-lr", type=real(0, 10, low_open=True), default=1e-3,
                         help="autoencoder reducers' learning rate (default: %(default)s)")
    methods.add_argument("--ae-batch-size", type=integer(1, 65_536), default=256,
                         help="autoencoder reducers' batch size (default: %(default)s)")
    analysis = parser.add_argument_group("analysis")
    analysis.add_argument("--fprs", nargs="+", type=real(0, 1, low_open=True),
                          default=list(DEFAULT_FPRS),
                          help="target false positive rates (default: 1e-3 1e-4 1e-5)")
    analysis.add_argument("--max-pairs", type=integer(1, 100_000_000),
                          default=DEFAULT_MAX_PAIRS,
                          help="unrelated pairs: all pairs of originals up to this many, "
                               "else a seeded sample of this size (default: 2,000,000)")
    work = parser.add_argument_group("work")
    work.add_argument("--batch-size", type=integer(1, 65_536), default=64,
                      help="images described at once (default: %(default)s)")
    work.add_argument("--device", default="auto", help="where distances are computed")
    work.add_argument("--workers", type=integer(0, 1024), default=0,
                      help="processes making the attacked copies (default 0: this one)")
    add_output_arguments(parser, "Results/<name> (default: separation_<dataset>)")
    return parser.parse_args(argv)


def _records(args: argparse.Namespace):
    dataset = load_dataset(args.dataset, args.data_root, subset=args.subset)
    records = sample_records(dataset.records, args.count, args.seed, args.dataset)
    if len(records) < 2:
        raise ValueError(f"{args.dataset} has {len(records)} originals; separation needs 2")
    return dataset, records


@script_main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    for f in args.fprs:
        if not 0 < f < 1:
            raise ValueError(f"--fprs must be in (0, 1), got {f}")
    reducers = list(dict.fromkeys(parse_reducer(r) for r in args.reducers))
    algorithms = list(dict.fromkeys(parse_algorithm(m) for m in args.methods))
    if len(algorithms) < len(args.methods):
        logger.warning("a method given twice is reported once")
    attacks, seed, _ = attacks_from_args(args)
    args.seed = seed
    dataset, records = _records(args)
    fit_records = (load_dataset(args.fit_dataset, args.data_root).records
                   if args.fit_dataset else None)
    name = f"separation_{args.dataset.replace(':', '_')}".replace("/", "_")
    with experiment_run(args, SCRIPT, name=name, inputs=[dataset.root]) as run:
        run.record({**{k: v for k, v in vars(args).items() if k != "attacks"},
                    "attacks": [a.id for a in attacks], "originals": len(records),
                    "methods_resolved": [a.label for a in algorithms]})
        report = run_separation_report(
            records, attacks, algorithms, run.folder, reducers=reducers,
            fit_records=fit_records, quantize=args.quantize,
            reducer_options={"epochs": args.ae_epochs, "lr": args.ae_lr,
                             "batch_size": args.ae_batch_size},
            fprs=args.fprs, max_pairs=args.max_pairs, seed=seed, device=args.device,
            batch_size=args.batch_size, workers=args.workers)
        write_separation_report(report, run.folder)
        run.finish(bad_inputs=[{"path": str(b.path), "reason": b.reason} for b in report.bad],
                   copies=report.copies, reducer_files=report.reducer_files)
    print(report.summary().to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    print(f"{len(records)} originals, {report.copies} copies, {len(report.results)} methods "
          f"-> {run.folder}")
    return 0


if __name__ == "__main__":
    run_script(main)
