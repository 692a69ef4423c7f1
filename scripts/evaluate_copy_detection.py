#!/usr/bin/env python3
"""The study's copy-detection evaluation: perceptual hashes (and any method) against attacked
copies. (Formerly ``hashing_benchmark.py``; the speed benchmark of the hashes is
``benchmark_hashing.py``.)

The dataset's originals are split (seeded) into an experimental group, the database, and a
control group; ``--n-attacked`` images of each group are attacked (on the fly, or read from a
manifest with --queries); every algorithm describes the database and all queries, every query
is matched against the database, and the digest plus figures go to Results/<name>/.

Examples
--------
python scripts/evaluate_copy_detection.py                      # the study's protocol on BSDS500
python scripts/evaluate_copy_detection.py --dataset sample --n-experimental 6 --n-control 5 \
    --n-attacked 6 --name demo
python scripts/evaluate_copy_detection.py --algorithms phash phash:hash_size=16 \
    crop_resistant:cutoff=2
"""

from __future__ import annotations

import argparse
import logging

from PIL import Image

from data_retrieval import load_dataset, read_manifest
from data_retrieval.cli import add_data_root_argument
from generator.cli import add_attack_arguments, attacks_from_args
from hashing import list_algorithms, parse_algorithm
from hashing.evaluation.benchmark import run_benchmark, study_protocol
from hashing.evaluation.digest import REPORT_FPR, load_digest, write_digest
from hashing.evaluation.plots import plot_digest
from helpers import add_output_arguments, experiment_run, resolve_device, setup_logging
from helpers.cli import MAX_COUNT, MAX_SEED, fail, integer, real, run_script, script_main

SCRIPT = "evaluate_copy_detection"
DEFAULT_ALGORITHMS = ["ahash", "phash", "dhash", "whash", "crop_resistant"]
logger = logging.getLogger(SCRIPT)


def checked_algorithm(spec: str):
    """The algorithm of a ``name:key=value,...`` spec, tried on one small image so that a bad
    parameter value shows now, not after the database is described."""
    algorithm = parse_algorithm(spec)
    try:
        algorithm.describe([Image.new("RGB", (64, 48), "gray")])
    except (TypeError, ValueError, OSError, ImportError) as exc:  # OSError: missing weights
        raise ValueError(f"algorithm {spec!r}: {exc}") from exc
    return algorithm


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", default="bsds500",
                      help="dataset name or folder:<path> (default: bsds500)")
    add_data_root_argument(data)
    data.add_argument("--n-experimental", type=integer(0, MAX_COUNT), default=250,
                      help="originals in the database (default: 250)")
    data.add_argument("--n-control", type=integer(0, MAX_COUNT), default=250,
                      help="originals kept out of the database (default: 250)")
    data.add_argument("--n-attacked", type=integer(0, MAX_COUNT), default=100,
                      help="images of each group that are attacked (default: 100)")
    data.add_argument("--split-seed", type=integer(0, MAX_SEED), default=0,
                      help="seed of the group split and of the attacked subsets (default: 0)")
    data.add_argument("--queries", default=None, metavar="MANIFEST",
                      help="read the attacked queries from this manifest CSV instead of making "
                           "them (source_id tells positives from negatives)")
    add_attack_arguments(parser)
    method = parser.add_argument_group("methods")
    method.add_argument("--algorithms", nargs="+", default=DEFAULT_ALGORITHMS,
                        metavar="NAME[:K=V,...]",
                        help="algorithms and parameters (default: %(default)s); known: "
                             + ", ".join(list_algorithms()))
    method.add_argument("--thresholds", type=real(0, 1e9), nargs="+", default=None,
                        help="thresholds for every algorithm (default: an automatic grid of 51 "
                             "points over the observed distances)")
    method.add_argument("--summary-threshold", type=real(0, 1e9), default=0.2,
                        help="fixed threshold whose detection and identification metrics "
                             "summary.csv adds, and of the galleries (default: 0.2), for "
                             "methods with distances on a common scale; L1/L2 methods (sift, "
                             "daisy, l2 features) are summarised at their threshold at FPR "
                             "0.005 (column threshold_rule); the printed summary uses the "
                             "study's operating point, FPR 0.005")
    method.add_argument("--index", default=None, metavar="FACTORY",
                        help="match through a Faiss index of this factory string instead of "
                             "exact distances, e.g. 'IVF1024,Flat' or 'IVF{nlist},Flat' "
                             "(hashes get its binary form, BIVF...; crop_resistant stays "
                             "exact; default: exact)")
    method.add_argument("--index-param", action="append", default=[], metavar="NAME=V",
                        help="search parameter of --index by Faiss's name, e.g. nprobe=16 "
                             "(repeatable)")
    run = parser.add_argument_group("run")
    run.add_argument("--batch-size", type=integer(1, 65_536), default=256,
                     help="images per batch (256)")
    run.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    run.add_argument("--workers", type=integer(0, 1024), default=None,
                     help="threads that hash and processes that attack (default: the cores)")
    run.add_argument("--no-figures", action="store_true", help="skip the figures")
    add_output_arguments(parser, "result folder under Results/ ($RESULTS_DIR when set; "
                                 "default: evaluate_copy_detection)", default_name=SCRIPT)
    return parser.parse_args(argv)


def check_values(args: argparse.Namespace) -> None:
    """Refuse bad values before any work or any folder is made (one-line errors)."""
    repeated = sorted({s for s in args.algorithms if args.algorithms.count(s) > 1})
    if repeated:
        raise ValueError(f"--algorithms names {', '.join(repeated)} more than once")
    args.device = resolve_device(args.device)
    args.index_params = None
    if args.index is not None:
        from fast_search.experiment import parse_search_params

        params = parse_search_params(args.index_param, "--index-param") or {}
        if any(len(v) != 1 for v in params.values()):
            raise ValueError("--index-param takes one value per parameter (NAME=V)")
        args.index_params = {k: v[0] for k, v in params.items()}


def check_index(args: argparse.Namespace, algorithms) -> None:
    """A string or parameter the index cannot take fails now, not after the database is
    described: tried on each method's descriptors of one small image."""
    if args.index is None:
        return
    from fast_search.experiment import check_index_matcher

    for algorithm in algorithms:
        sample = algorithm.describe([Image.new("RGB", (64, 48), "gray")])
        try:
            check_index_matcher(sample, args.index, args.index_params, args.n_experimental)
        except ValueError as exc:
            raise ValueError(f"--index for {algorithm.label}: {exc}") from None


@script_main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    check_values(args)
    algorithms = [checked_algorithm(spec) for spec in args.algorithms]
    check_index(args, algorithms)
    labels = [a.label for a in algorithms]
    if len(set(labels)) != len(labels):
        raise ValueError(f"--algorithms gives the same method twice: {labels}")
    attacks, seed, options = attacks_from_args(args)
    dataset = load_dataset(args.dataset, args.data_root)
    protocol = study_protocol(
        dataset.records, attacks, args.n_experimental, args.n_control,
        args.n_attacked, args.split_seed, seed,
        read_manifest(args.queries) if args.queries else None, args.workers)
    config = {**{k: v for k, v in vars(args).items() if k not in ("attacks",)},
              "algorithms": labels,
              "attacks": [a.id for a in attacks], "seed": seed,
              "options": {k: str(v) for k, v in options.items()},
              "database": [r.image_id for r in protocol.database]}
    # --queries (a manifest) is found among the flags; the named dataset's folder is not
    with experiment_run(args, SCRIPT, inputs=[dataset.root], config=config) as run:
        output = run.folder
        run.record()
        protocol.bad += [(str(b.path), b.reason) for b in dataset.bad]
        try:
            result = run_benchmark(algorithms, protocol.database_images(), protocol.queries(),
                                   batch_size=args.batch_size, device=args.device,
                                   workers=args.workers, total_queries=protocol.n_queries,
                                   matcher=_matcher(args))
        except ValueError as exc:  # nothing readable to match
            run.finish(error=str(exc), bad_inputs=_bad_rows(protocol.bad))
            return fail(f"{exc}; see {output / 'experiment.json'}")
        bad = result.bad = protocol.finish()
        n_matched = result.matches["query_id"].nunique()
        thresholds = {a.label: args.thresholds for a in algorithms} if args.thresholds else None
        digest = write_digest(result, output, thresholds, args.summary_threshold)
        run.finish(counts={"database": len(result.database),
                           "queries_planned": protocol.n_queries,
                           "queries": n_matched, "bad": len(bad)},
                   bad_inputs=_bad_rows(bad),
                   wall_seconds=round(result.wall_seconds, 3))
        if not args.no_figures:
            plot_digest(load_digest(output), output / "figures", args.summary_threshold)
    # The study's operating point (FPR 0.005 on the control queries) means the same for
    # every method, whatever the scale of its distances; a fixed threshold does not.
    op = f"fpr_{REPORT_FPR}"
    columns = {"algorithm": "algorithm", "auc": "auc", "micro_ap": "micro_ap",
               "recall_at_p90": "recall@p90", f"recall_at_{op}": f"recall@{op}",
               f"threshold_at_{op}": f"threshold@{op}", "db_seconds_per_image": "db_s/img",
               "match_seconds_per_image": "query_s/img"}
    table = digest["summary"][list(columns)].rename(columns=columns)
    print(table.to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    print(f"{len(result.database)} database images, {n_matched} queries, "
          f"{len(algorithms)} algorithms in {result.wall_seconds:.1f} s -> {output}")
    if bad:
        print(f"skipped {len(bad)} bad input(s), listed in {output / 'bad_images.csv'}")
    return 0


def _matcher(args: argparse.Namespace):
    """Matching through a Faiss index (fast_search), or exact (None)."""
    if args.index is None:
        return None
    from fast_search import index_matcher

    # "auto": Faiss's GPUs when its build has them (fast_search decides), else the CPU
    return index_matcher(args.index, args.index_params,
                         "auto" if args.device.startswith("cuda") else "cpu")


def _bad_rows(bad: list[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"path": p, "reason": r} for p, r in bad]


if __name__ == "__main__":
    run_script(main)
