#!/usr/bin/env python3
"""Find the original of each query among a large database with Faiss, and measure how recall
trades against time and memory for exact and approximate indexes.

Inputs are feature stores (``dataset/method`` under --features-dir, or a store's .npy file):
the database (the originals), optional distractors (more stores; or --synthetic N vectors drawn
from a Gaussian fitted to the database, labelled as a speed and memory stand-in only), and the
queries: attacked copies whose records carry their source, as made by

    python scripts/extract_features.py --model sscd_distilled --dataset bsds500 \\
        --attacks jpg_compression:10,50 rotation --store-name bsds500_queries

(or a store of a manifest written by generate_attacks.py). Controls (queries whose source is
not in the database) count in micro-AP and range precision.

Every index string is a Faiss factory string ({nlist} becomes the study's 10 sqrt(N)); search
parameters use Faiss's names and are swept as a grid over the indexes that take them. Each
setting is timed after a warm-up (median of --repeats). Results: Results/<name>/search.json,
search.csv, experiment.json and figures/.

Examples
--------
python scripts/search_experiment.py --database bsds500/sscd_distilled \\
    --queries bsds500_queries/sscd_distilled --index Flat "IVF{nlist},Flat" HNSW32 \\
    --param nprobe=1,4,16,64 --param efSearch=16,64,256 --k 1 10 100
python scripts/search_experiment.py --database bsds500/dhash --queries q/dhash --index BFlat BIVF256
python scripts/search_experiment.py --database bsds500/sscd_distilled \\
    --distractors views/sscd_distilled --queries bsds500_queries/sscd_distilled \\
    --index "PCAW256,IVF1024,Flat" --metric cosine
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from extractor.store import default_features_dir
from fast_search import (
    DEFAULT_INDEXES,
    DEFAULT_KS,
    SEARCH_METRICS,
    load_search_set,
    run_search,
    synthetic_part,
)
from fast_search.experiment import (
    candidate_indexes,
    check_indexes,
    default_index_cache,
    merge_results,
    parse_search_params,
    recommend,
)
from fast_search.report import write_search
from helpers import add_output_arguments, experiment_run, get_logger, setup_logging
from helpers.cli import MAX_COUNT, MAX_SEED, integer, real, run_script, script_main
from helpers.params import parse_size
from helpers.runs import folder_type

SCRIPT = "search_experiment"
logger: logging.Logger = get_logger(SCRIPT)


def _cache_type(text: str) -> str:
    """``--index-cache``: a folder the script writes trained indexes into, or ``none``."""
    return text if text == "none" else folder_type(text)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    data = parser.add_argument_group("data")
    data.add_argument("--database", nargs="+", required=True, metavar="STORE",
                      help="stores of the originals: dataset/method, or a store's .npy")
    data.add_argument("--distractors", nargs="*", default=[], metavar="STORE",
                      help="stores of distractors (no query's source)")
    data.add_argument("--synthetic", type=integer(0, MAX_COUNT), default=0, metavar="N",
                      help="add N synthetic distractors drawn from a Gaussian fitted to the "
                           "first database store: speed and memory only, labelled so "
                           "(default: 0)")
    data.add_argument("--synthetic-seed", type=integer(0, MAX_SEED), default=0,
                      help="seed of the synthetic distractor vectors (default: %(default)s)")
    data.add_argument("--queries", required=True, metavar="STORE",
                      help="store of the queries (records carry their source_id)")
    data.add_argument("--features-dir", default=None,
                      help="feature folder of the dataset/method stores "
                           "(default: Results/features)")
    search = parser.add_argument_group("search")
    search.add_argument("--index", nargs="+", default=None, metavar="FACTORY",
                        help="Faiss factory strings; binary codes take BFlat, BIVF<n>, "
                             "BHNSW<M> ({nlist} = 10 sqrt(N); default: "
                             f"{' '.join(DEFAULT_INDEXES)}, or BFlat BIVF{{nlist}} for codes)")
    search.add_argument("--metric", nargs="+", default=None, choices=SEARCH_METRICS,
                        help="one or more (the study compared l2 and cosine); default: the "
                             "stores' metric")
    search.add_argument("--k", nargs="+", type=integer(1, 100_000), default=list(DEFAULT_KS),
                        help="recall@k for each (default: %(default)s)")
    search.add_argument("--param", action="append", default=[], metavar="NAME=V1,V2",
                        help="search parameter values by Faiss's names, repeatable "
                             "(default: nprobe=1,2,4,8,16,32,64,80 as the study swept it)")
    search.add_argument("--thresholds", type=real(-1e9, 1e9), nargs="+", default=None,
                        help="distances at which to measure range-search precision / recall")
    search.add_argument("--train-size", type=integer(1, MAX_COUNT), default=None,
                        help="training points sampled from the database (default: 256 per "
                             "inverted list, at least 50,000, at most the database)")
    search.add_argument("--seed", type=integer(0, MAX_SEED), default=0,
                        help="training sample seed (0)")
    search.add_argument("--index-cache", type=_cache_type, default=None, metavar="DIR",
                        help="trained indexes are saved there and reused by any later run on "
                             "the same database with the same string, metric, training size "
                             "and seed (default: Results/indexes; 'none' to keep none)")
    advice = parser.add_argument_group("recommendation")
    advice.add_argument("--recommend", action="store_true",
                        help="name the index string and parameters with the best recall@k "
                             "within --max-memory and --max-ms-per-query on these stores "
                             "(without --index: exact, IVF, HNSW, SQ8 and PQ candidates)")
    advice.add_argument("--max-memory", default=None, metavar="SIZE",
                        help="index size budget, e.g. 500MB, 2GB (default: none)")
    advice.add_argument("--max-ms-per-query", type=real(0, 1e9, low_open=True), default=None,
                        help="time per query budget in milliseconds (default: none)")
    run = parser.add_argument_group("run")
    run.add_argument("--device", default="cpu", help="cpu, cuda (faiss-gpu) or auto")
    run.add_argument("--batch-size", type=integer(1, 65_536), default=None,
                     help="queries per search call (default: all; 1: one at a time)")
    run.add_argument("--repeats", type=integer(1, 1000), default=3,
                     help="timed searches per setting after the warm-up; median kept (3)")
    run.add_argument("--warmup", type=integer(0, 1000), default=1,
                     help="untimed searches first (1; 0 for long exact searches)")
    run.add_argument("--threads", type=integer(1, 1024), default=None,
                     help="Faiss's OpenMP threads (default: Faiss's own)")
    run.add_argument("--no-figures", action="store_true", help="skip the figures")
    add_output_arguments(parser, f"Results/<name> (default: {SCRIPT})", default_name=SCRIPT)
    return parser.parse_args(argv)


def check_values(args: argparse.Namespace) -> None:
    """What the flags' types cannot check alone (ranges are checked when parsed)."""
    args.max_bytes = parse_size(args.max_memory)
    if (args.max_bytes or args.max_ms_per_query) and not args.recommend:
        raise ValueError("--max-memory and --max-ms-per-query go with --recommend")
    if args.device not in ("cpu", "cuda", "auto"):
        raise ValueError(f"--device must be cpu, cuda or auto, got {args.device!r}")


def index_cache(args: argparse.Namespace) -> Path | None:
    """The trained-index cache folder, checked before any work: a folder this run can write
    (a read-only one would fail only after the first index is trained)."""
    if args.index_cache == "none":
        return None
    cache = Path(args.index_cache) if args.index_cache else default_index_cache()
    existing = next(p for p in (cache, *cache.parents) if p.exists())
    if not existing.is_dir():
        raise ValueError(f"--index-cache {cache}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"--index-cache {cache}: {existing} is not writable; give a folder "
                         "this run can write, or --index-cache none")
    return cache


@script_main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    check_values(args)
    params = parse_search_params(args.param)
    root = Path(args.features_dir) if args.features_dir else default_features_dir()
    cache = index_cache(args)
    distractors = list(args.distractors)
    if args.synthetic:
        distractors.append(synthetic_part(args.database[0], args.synthetic,
                                          seed=args.synthetic_seed, root=root))
    search_set = load_search_set(args.database, args.queries, distractors, root)
    if args.index is None:
        args.index = (candidate_indexes(search_set.dim, search_set.binary)
                      if args.recommend else ["BFlat", "BIVF{nlist}"]
                      if search_set.binary else list(DEFAULT_INDEXES))
    for metric in args.metric or [None]:
        check_indexes(args.index, search_set, metric, args.train_size)
    if params is None and args.recommend:
        params = {"nprobe": [1, 4, 16, 64], "efSearch": [16, 64, 256]}
    if args.threads:
        import faiss

        faiss.omp_set_num_threads(args.threads)
    with experiment_run(args, SCRIPT, roots=[root]) as run:
        output = run.folder
        config = {**vars(args), "params": params, "search_set": search_set.describe()}
        run.record(config)
        results = [run_search(search_set, args.index, metric, args.k, params, args.device,
                              args.batch_size, args.repeats, args.train_size, args.seed,
                              args.thresholds, cache_dir=cache, warmup=args.warmup)
                   for metric in (args.metric or [None])]
        result = merge_results(results)
        extra: dict = {"runs": len(result.runs)}
        if args.recommend:
            best = recommend(result, args.max_bytes, args.max_ms_per_query)
            extra["recommendation"] = best and {
                "index": best["index"], "params": best["params"], "recall": best["recall"],
                "ms_per_query": best["ms_per_query"], "index_bytes": best["index_bytes"]}
        write_search(result, output, figures=not args.no_figures)
        run.config = config | {"index": args.index}
        run.finish(**extra)
    frame = result.frame()
    columns = ["index", "metric", "params"] + [c for c in frame.columns
                                               if c.startswith("recall@")] \
        + ["micro_ap", "queries_per_s", "index_bytes", "pareto"]
    print(frame[columns].to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    if search_set.synthetic_rows:
        print(f"note: {search_set.synthetic_rows} distractors are synthetic (speed and "
              "memory only)")
    print(f"{search_set.n_database} database rows, {len(search_set.queries)} queries, "
          f"{len(result.runs)} runs -> {output}")
    if args.recommend:
        best = extra["recommendation"]
        if best is None:
            print("recommendation: none: no index fits the budget (raise --max-memory "
                  "or --max-ms-per-query), or no query has its source in the database")
        else:
            k = min(best["recall"])
            flags = " ".join([f"--index {best['index']!r}"] + [
                f"--param {n}={v}" for n, v in best["params"].items()])
            print(f"recommendation: {flags} (recall@{k} {best['recall'][k]:.4f}, "
                  f"{best['ms_per_query']:.4g} ms/query, "
                  f"{_size(best['index_bytes'])})")
    return 0


def _size(nbytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if nbytes < 1024 or unit == "GiB":
            return f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return f"{nbytes:.1f} GiB"


if __name__ == "__main__":
    run_script(main)
