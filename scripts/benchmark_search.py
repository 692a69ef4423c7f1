#!/usr/bin/env python3
"""Speed and memory of fast_search, against Faiss called directly, in the same run.

Parts (--parts, all by default):
  overhead  a Flat search through fast_search against the same Faiss calls made directly
            (normalise, IndexFlatIP, search): queries per second of both, and their ratio;
  memory    peak memory of a search set of --memory-rows x --memory-dim float32 read from a
            store on disk, with a Flat index over it and one search, over the raw size
            (measured in a fresh process);
  scale     --scale-rows vectors (the real stores of the quality part padded with labelled
            synthetic vectors, or synthetic alone): build, add and search time, queries
            per second and peak memory for Flat, IVF and HNSW;
  quality   recall@1 against queries per second on real stores (--database, --query-store,
            --distractors): exact search and an IVF / HNSW sweep, and whether the best
            approximate setting keeps recall@1 >= 0.95 of exact search's at >= 10x its speed.

Writes JSON (--output) with the machine beside the numbers.

Examples
--------
python scripts/benchmark_search.py --parts overhead memory
python scripts/benchmark_search.py --parts quality --database bsds500_database/sscd_distilled \\
    --query-store bsds500_queries/sscd_distilled --distractors views100k/sscd_distilled
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import numpy as np

from data_retrieval import ImageRecord
from extractor.store import default_features_dir
from fast_search import load_search_set, prepare_index, run_search, synthetic_part
from fast_search.experiment import parse_search_params
from helpers import (
    add_output_file_arguments,
    available_cpus,
    result_file,
    setup_logging,
    time_repeated,
)
from helpers.cli import MAX_COUNT, MAX_SEED, integer, run_script, script_main
from helpers.descriptors import FloatFeatures

REPO = Path(__file__).resolve().parents[1]
SCRIPT = "benchmark_search"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", nargs="+", default=["overhead", "memory", "scale", "quality"],
                        choices=["overhead", "memory", "scale", "quality"],
                        help="which measurements to run (default: %(default)s)")
    parser.add_argument("--overhead-rows", type=integer(1, MAX_COUNT), default=200000,
                        help="database rows of the overhead part (default: %(default)s)")
    parser.add_argument("--overhead-dim", type=integer(1, 65_536), default=512,
                        help="vector dimension of the overhead part (default: %(default)s)")
    parser.add_argument("--queries", type=integer(1, MAX_COUNT), default=1000, dest="n_queries",
                        help="queries of the overhead and scale parts (default: 1000)")
    parser.add_argument("--memory-rows", type=integer(1, MAX_COUNT), default=500000,
                        help="database rows of the memory part (default: %(default)s)")
    parser.add_argument("--memory-dim", type=integer(1, 65_536), default=1280,
                        help="vector dimension of the memory part (default: %(default)s)")
    parser.add_argument("--scale-rows", type=integer(1, MAX_COUNT), default=1000000,
                        help="database rows of the scale part (default: %(default)s)")
    parser.add_argument("--scale-dim", type=integer(1, 65_536), default=512,
                        help="vector dimension of the scale part (default: %(default)s)")
    parser.add_argument("--scale-indexes", nargs="+", default=["Flat", "IVF1024,Flat",
                                                                 "HNSW32"],
                        help="Faiss factory strings of the scale part (default: %(default)s)")
    parser.add_argument("--scale-train-size", type=integer(1, MAX_COUNT), default=65536,
                        help="training points of the scale part's IVF (k-means on 2 cores "
                             "is the slow step; default: 65536)")
    parser.add_argument("--database", nargs="+", default=None, metavar="STORE",
                        help="database stores of the quality part (dataset/method)")
    parser.add_argument("--query-store", default=None, metavar="STORE",
                        help="queries store of the quality part")
    parser.add_argument("--distractors", nargs="*", default=[], metavar="STORE",
                        help="distractor stores of the quality part (dataset/method; default: "
                             "none)")
    parser.add_argument("--features-dir", default=None,
                        help="feature stores' folder (default: Results/features)")
    parser.add_argument("--quality-indexes", nargs="+",
                        default=["Flat", "IVF1024,Flat", "HNSW32", "IVF1024,PQ64x4fs,RFlat"],
                        help="the last default is an IVF whose lists hold 4-bit fast-scan PQ "
                             "codes, re-ranked with exact distances (k_factor_rf)")
    parser.add_argument("--quality-repeats", type=integer(1, 1000), default=1,
                        help="timed searches per setting of the quality part (1: an exact "
                             "search of 11,600 queries in 100k rows takes minutes)")
    parser.add_argument("--quality-params", nargs="+",
                        default=["nprobe=1,2,4,8,16,32,64,96,128", "efSearch=16,32,64,128,256",
                                 "k_factor_rf=8"],
                        help="search parameters of the quality part, name=v1,v2,... (default: "
                             "%(default)s)")
    parser.add_argument("--quality-threads", type=integer(1, 4096), default=1,
                        help="Faiss threads of the quality part (default: 1, the speed of "
                             "one core, as docs/performance.md's real run)")
    parser.add_argument("--repeats", type=integer(1, 1000), default=5,
                        help="timing repeats (the median is reported) (default: %(default)s)")
    parser.add_argument("--seed", type=integer(0, MAX_SEED), default=0,
                        help="seed of the synthetic vectors and samples (default: %(default)s)")
    add_output_file_arguments(parser, "benchmarks/search.json", log_level="WARNING")
    return parser.parse_args(argv)


def _machine() -> dict[str, Any]:
    import faiss

    return {"platform": platform.platform(), "processor": platform.processor(),
            "cpus": available_cpus(), "faiss": faiss.__version__,
            "faiss_threads": faiss.omp_get_max_threads(),
            "faiss_gpus": faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0}


def _random_set(rows: int, dim: int, n_queries: int, seed: int):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, dim), dtype=np.float32)
    sources = rng.choice(rows, n_queries, replace=False)
    q = x[sources] + 0.1 * rng.standard_normal((n_queries, dim), dtype=np.float32)
    records = tuple(ImageRecord(f"q{i}", None, source_id=f"d{s}", attack_id="noise")
                    for i, s in enumerate(sources))
    db = FloatFeatures(x, "cosine", ids=tuple(f"d{i}" for i in range(rows)), method="random")
    queries = FloatFeatures(q, "cosine", ids=tuple(r.image_id for r in records),
                            records=records, method="random")
    return db, queries


def overhead(args) -> dict[str, Any]:
    """fast_search's Flat search against the same Faiss calls, interleaved."""
    import faiss

    db, queries = _random_set(args.overhead_rows, args.overhead_dim, args.n_queries, args.seed)
    search_set = load_search_set(db, queries)
    index, _ = prepare_index(search_set, "Flat", show_progress=False)
    direct = faiss.IndexFlatIP(args.overhead_dim)
    x = db.values.copy()
    faiss.normalize_L2(x)
    direct.add(x)
    del x

    def ours():
        return index.search(search_set.queries, 10)

    def faiss_direct():
        q = np.array(queries.values, copy=True)
        faiss.normalize_L2(q)
        return direct.search(q, 10)

    timings = time_repeated({"fast_search": ours, "faiss": faiss_direct},
                            repeats=args.repeats, warmup=1)
    same = bool(np.array_equal(timings["fast_search"].result[1], timings["faiss"].result[1]))
    qps = {k: args.n_queries / t.median for k, t in timings.items()}
    return {"rows": args.overhead_rows, "dim": args.overhead_dim, "queries": args.n_queries,
            "k": 10, "same_neighbours": same,
            "seconds": {k: t.as_dict() for k, t in timings.items()},
            "queries_per_s": qps, "ratio": qps["fast_search"] / qps["faiss"]}


def memory(args) -> dict[str, Any]:
    """Peak RSS of a search set read from disk, a Flat index over it and one search."""
    from hashing import save_descriptors

    rows, dim = args.memory_rows, args.memory_dim
    with tempfile.TemporaryDirectory(prefix="bench-search-") as folder:
        rng = np.random.default_rng(args.seed)
        values = np.lib.format.open_memmap(Path(folder) / "raw.npy", "w+", np.float32,
                                           (rows, dim))
        for start in range(0, rows, 65536):
            values[start:start + 65536] = rng.random((min(65536, rows - start), dim),
                                                     dtype=np.float32)
        values.flush()
        store = FloatFeatures(np.load(Path(folder) / "raw.npy", mmap_mode="r"), "l2",
                              ids=tuple(f"d{i}" for i in range(rows)), method="m")
        save_descriptors(store, "db", root=folder)
        save_descriptors(FloatFeatures(np.asarray(store.values[:10]), "l2",
                                       ids=tuple(f"q{i}" for i in range(10)), method="m"),
                         "q", root=folder)
        del store, values
        (Path(folder) / "raw.npy").unlink()
        code = textwrap.dedent(f"""
            import json, time, faiss, fast_search as fs
            from fast_search.experiment import peak_rss_bytes as peak
            before = peak()
            t = time.perf_counter()
            s = fs.load_search_set("db/m", "q/m", root={folder!r})
            loaded = peak()
            index, _ = fs.prepare_index(s, "Flat", show_progress=False)
            index.search(s.queries, 1)
            print(json.dumps({{"before": before, "after_load": loaded, "after": peak(),
                              "seconds": time.perf_counter() - t}}))
        """)
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              cwd=REPO, check=True)
        numbers = json.loads(done.stdout)
    raw = rows * dim * 4
    return {"rows": rows, "dim": dim, "raw_bytes": raw,
            "peak_rss_increase_bytes": numbers["after"] - numbers["before"],
            "load_rss_increase_bytes": numbers["after_load"] - numbers["before"],
            "ratio_to_raw": (numbers["after"] - numbers["before"]) / raw,
            "seconds": numbers["seconds"],
            "note": "peak RSS of a fresh process after importing faiss, over the raw size of "
                    "the float32 database (the Flat index holds one copy)"}


def scale(args) -> dict[str, Any]:
    """Build, add and search at --scale-rows vectors: the real stores (--database,
    --query-store, --distractors) padded with synthetic vectors fitted to the database, or
    synthetic alone. Synthetic rows measure speed and memory only."""
    from fast_search.experiment import peak_rss_bytes

    if args.database and args.query_store:
        real = load_search_set(args.database, args.query_store, args.distractors,
                               args.features_dir)
        pad = max(0, args.scale_rows - real.n_database)
        search_set = load_search_set(args.database, args.query_store, list(args.distractors)
                                     + [synthetic_part(args.database[0], pad, seed=args.seed,
                                                       root=args.features_dir)],
                                     args.features_dir)
        queries = search_set.queries[: args.n_queries]
    else:
        rng = np.random.default_rng(args.seed)
        base = FloatFeatures(rng.standard_normal((2000, args.scale_dim), dtype=np.float32),
                             "l2", ids=tuple(f"r{i}" for i in range(2000)), method="gauss")
        sources = rng.choice(2000, args.n_queries, replace=True)
        records = tuple(ImageRecord(f"q{i}", None, source_id=f"r{s}", attack_id="noise")
                        for i, s in enumerate(sources))
        q = FloatFeatures(base.values[sources] + 0.05 * rng.standard_normal(
            (args.n_queries, args.scale_dim), dtype=np.float32), "l2",
            ids=tuple(r.image_id for r in records), records=records, method="gauss")
        search_set = load_search_set(base, q, [synthetic_part(base, args.scale_rows - 2000,
                                                              seed=args.seed)])
        queries = search_set.queries
    out = {"rows": search_set.n_database, "dim": search_set.dim, "queries": len(queries),
           "metric": search_set.metric, "synthetic_rows": search_set.synthetic_rows,
           "note": "synthetic rows: speed and memory only, not search quality", "runs": []}
    for factory in args.scale_indexes:
        index, info = prepare_index(search_set, factory, train_size=args.scale_train_size,
                                    show_progress=False)
        grid = {"IVF": {"nprobe": 16}, "HNSW": {"efSearch": 64}}
        setting = next((v for k, v in grid.items() if k in info["factory"]), {})
        index.set_params(setting)
        timing = time_repeated(lambda i=index: i.search(queries, 10),
                               repeats=max(1, args.repeats // 2), warmup=1)
        out["runs"].append({**info, "params": setting, "search_s": timing.median,
                            "queries_per_s": len(queries) / timing.median,
                            "peak_rss_bytes": peak_rss_bytes()})
        print(json.dumps(out["runs"][-1]), flush=True)
        del index
    return out


def quality(args) -> dict[str, Any]:
    """Exact against approximate search on real stores."""
    if not args.database or not args.query_store:
        return {"skipped": "give --database and --query-store (feature stores)"}
    search_set = load_search_set(args.database, args.query_store, args.distractors,
                                 args.features_dir)
    import faiss

    params = parse_search_params(args.quality_params, "--quality-params")
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(args.quality_threads)
    try:
        result = run_search(search_set, args.quality_indexes, ks=[1, 10], params=params,
                            repeats=args.quality_repeats, show_progress=False, warmup=0)
    finally:
        faiss.omp_set_num_threads(threads)
    exact = next(r for r in result.runs if r["index"] in ("Flat", "BFlat"))
    best = None
    for r in result.runs:
        if r is exact:
            continue
        good = r["recall"][1] >= 0.95 * exact["recall"][1]
        fast = r["queries_per_s"] >= 10 * exact["queries_per_s"]
        if good and fast and (best is None or r["queries_per_s"] > best["queries_per_s"]):
            best = r
    return {"search_set": result.search_set, "threads": args.quality_threads, "exact": exact,
            "best_meeting_target": best,
            "target_met": best is not None,
            "front": [result.runs[i] for i in result.pareto], "runs": result.runs}


@script_main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    root = args.features_dir or default_features_dir()
    with result_file(args, SCRIPT, "benchmarks/search.json", roots=[root]) as output:
        out: dict[str, Any] = {"machine": _machine()}
        for part in args.parts:
            print(f"{part}...", flush=True)
            out[part] = {"overhead": overhead, "memory": memory, "scale": scale,
                         "quality": quality}[part](args)
            print(json.dumps({k: v for k, v in out[part].items() if k not in ("runs", "front")},
                             default=str)[:1500], flush=True)
            output.write(out)  # each finished part is kept
    print(f"wrote {output.path}")
    return 0


if __name__ == "__main__":
    run_script(main)
