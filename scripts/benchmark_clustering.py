#!/usr/bin/env python3
"""How well and how fast the clustering methods group near-duplicates, and against imagededup.

Parts (--parts, all by default):
  quality     on ground-truth stores (--features, e.g. bsds500_copies/sscd_distilled written by
              `search_stores.py --copies`: originals and their attacked copies, each copy with
              its source): every method over its parameter grid; per method the best V-measure
              and the best pairwise F1 with their settings, and the time.
  scale       --scale-rows x --scale-dim float32 descriptors (the rows of --scale-store, or
              labelled synthetic blobs): each method in a fresh process, its time and peak RSS
              (target: <= 4 GB for every method but the dense-matrix linkages); a method still
              running after --scale-timeout seconds is reported as such.
  edges       the exact distances of --edge-count neighbour-graph edges (random pairs of the
              scale part's rows, sorted by first row as a graph's are) recomputed by the
              compiled kernel (hashing/pairs.c) against the NumPy path, cosine and l2: the
              step that decides every graph method's edges at their thresholds.
  imagededup  --dedup-originals originals and their attacked copies written as files: our
              find_duplicates grouping (dhash, sscd_distilled) against imagededup's
              find_duplicates (PHash, DHash, WHash; its CNN where its weights load), each at its
              best threshold, with wall time. imagededup is optional (pip install imagededup).

Writes JSON (--output) with the machine beside the numbers.

Examples
--------
python scripts/benchmark_clustering.py --parts quality --features bsds500_copies/dhash \\
    bsds500_copies/sscd_distilled
python scripts/benchmark_clustering.py --parts scale --scale-rows 50000
python scripts/benchmark_clustering.py --parts edges --edge-count 2000000
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from extractor.store import default_features_dir
from helpers import (
    add_output_file_arguments,
    available_cpus,
    available_memory,
    result_file,
    setup_logging,
)
from helpers.cli import MAX_COUNT, MAX_SEED, integer, real, run_script, script_main

REPO = Path(__file__).resolve().parents[1]
SCRIPT = "benchmark_clustering"
#: Threshold / eps grids of the quality part (our scales: cosine (1 - cos) / 2, Hamming BER).
GRIDS = {"cosine": [0.05, 0.075, 0.1, 0.125, 0.15, 0.175, 0.2, 0.225],
         "hamming": [0.05, 0.075, 0.1, 0.125, 0.15, 0.175, 0.2],
         "l2": [0.3, 0.4, 0.5, 0.6, 0.7, 0.8]}
#: Methods of the scale part; ``n_clusters`` there is the rows / 100.
SCALE_METHODS = {
    "duplicates": {"threshold": [0.1]},
    "dbscan": {"eps": [0.1], "min_samples": 5},
    "hdbscan": {"min_cluster_size": [5]},
    "kmeans": {},
    "hierarchical_single": {"linkage": "single"},
    "hierarchical_ward": {"linkage": "ward"},
    "hierarchical_average_knn": {"linkage": "average", "connectivity": 10},
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", nargs="+",
                        default=["quality", "scale", "edges", "imagededup"],
                        choices=["quality", "scale", "edges", "imagededup"],
                        help="which measurements to run (default: %(default)s)")
    parser.add_argument("--features", nargs="*", default=[], metavar="STORE",
                        help="ground-truth stores of the quality part")
    parser.add_argument("--features-dir", default=None,
                        help="feature stores' folder (default: Results/features)")
    parser.add_argument("--methods", nargs="+",
                        default=["duplicates", "dbscan", "hdbscan", "kmeans",
                                 "hierarchical_average", "hierarchical_ward"],
                        help="quality part (hierarchical_<linkage>; ward runs on l2)")
    parser.add_argument("--max-memory", default="8GB",
                        help="budget of the dense-matrix linkages of the quality part")
    parser.add_argument("--scale-rows", type=integer(2, MAX_COUNT), default=50000,
                        help="rows of the scale and edges parts (default: 50000)")
    parser.add_argument("--scale-dim", type=integer(1, 65_536), default=512,
                        help="dimension of the synthetic rows (default: 512)")
    parser.add_argument("--scale-store", default=None,
                        help="take the scale part's rows from this store (default: blobs)")
    parser.add_argument("--scale-methods", nargs="+", default=list(SCALE_METHODS),
                        choices=list(SCALE_METHODS),
                        help="methods of the scale part (default: %(default)s)")
    parser.add_argument("--scale-timeout", type=real(0, 7 * 86400, low_open=True),
                        default=1800, help="seconds a scale method may run (default: 1800)")
    parser.add_argument("--edge-count", type=integer(1, MAX_COUNT), default=2_000_000,
                        help="edges of the edges part")
    parser.add_argument("--dedup-originals", type=integer(1, MAX_COUNT), default=100,
                        help="BSDS500 originals of the imagededup part (x 58 copies)")
    parser.add_argument("--dedup-dataset", default="bsds500",
                        help="photos of the duplicates part (a dataset name or folder:<path>) "
                             "(default: %(default)s)")
    parser.add_argument("--seed", type=integer(0, MAX_SEED), default=0,
                        help="seed of samples and attacked copies (default: %(default)s)")
    add_output_file_arguments(parser, "benchmarks/clustering.json", log_level="WARNING")
    parser.add_argument("--run-one", default=None, choices=list(SCALE_METHODS),
                        help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _machine() -> dict[str, Any]:
    return {"platform": platform.platform(), "processor": platform.processor(),
            "cpus": available_cpus()}


# --- quality -----------------------------------------------------------------------------

def _grid(method: str, points, groups: int) -> tuple[str, dict[str, Any], str | None]:
    """(cluster method, params, metric) of one benchmark method over its grid."""
    grid = GRIDS.get("hamming" if points.binary else points.metric) or _quantile_grid(points)
    counts = sorted({max(2, int(groups * f)) for f in (0.5, 0.75, 1.0, 1.25, 1.5)})
    if method == "duplicates":
        return "duplicates", {"threshold": grid}, None
    if method == "dbscan":
        return "dbscan", {"eps": grid, "min_samples": 5}, None
    if method == "hdbscan":
        return "hdbscan", {"min_cluster_size": [5, 10, 20, 40]}, None
    if method == "kmeans":
        return "kmeans", {"n_clusters": counts}, None
    linkage = method.split("_", 1)[1]
    metric = "l2" if linkage in ("ward", "centroid", "median") and not points.binary else None
    return "hierarchical", {"linkage": linkage, "n_clusters": counts}, metric


def _quantile_grid(points, sample: int = 2000) -> list[float]:
    """Thresholds for a metric without a fixed scale (l1, Jensen-Shannon...): quantiles of
    the distances of a sample of rows to their nearest other row."""
    from clustering import knn

    rows = np.random.default_rng(0).choice(len(points), min(sample, len(points)),
                                           replace=False)
    nearest = knn(points.take(np.sort(rows)), 1, device="cpu", show_progress=False)[0][:, 0]
    return [float(q) for q in np.unique(np.quantile(nearest, [0.5, 0.7, 0.8, 0.9, 0.95, 0.99]))]


def quality(args) -> dict[str, Any]:
    from clustering import as_points, cluster, external_measures, truth_labels
    from helpers.params import parse_size

    if not args.features:
        return {"skipped": "give --features (stores of originals and copies)"}
    root = args.features_dir or None
    out: dict[str, Any] = {}
    for spec in args.features:
        points = as_points(spec, root=root)
        truth = truth_labels(points.records)
        groups = len(set(truth))
        rows: dict[str, Any] = {"images": len(points), "groups": groups,
                                "metric": points.metric, "methods": {}}
        for method in args.methods:
            kind, params, metric = _grid(method, points, groups)
            print(f"  {spec}: {method} {params}", flush=True)
            try:
                result = cluster(points, kind, metric, max_memory=parse_size(args.max_memory),
                                 **params)
            except (MemoryError, ValueError) as exc:
                rows["methods"][method] = {"error": str(exc)}
                continue
            scored = [{"setting": s, **external_measures(truth, lab)}
                      for s, lab in zip(result.settings, result.labels, strict=True)]
            best_v = max(scored, key=lambda r: r["v_measure"])
            best_f = max(scored, key=lambda r: r["pair_f1"])
            rows["methods"][method] = {
                "metric": result.metric, "seconds": result.seconds, "notes": result.notes,
                "best_v_measure": best_v, "best_pair_f1": best_f, "settings": scored}
            print(f"    V {best_v['v_measure']:.4f} ({best_v['setting']}), pair F1 "
                  f"{best_f['pair_f1']:.4f} ({best_f['setting']}), {result.seconds:.1f} s",
                  flush=True)
        out[spec] = rows
    return out


# --- scale -------------------------------------------------------------------------------

def _scale_points(args):
    from clustering import as_points
    from clustering.points import Points

    if args.scale_store:
        points = as_points(args.scale_store, root=args.features_dir)
        if len(points) < args.scale_rows:
            raise ValueError(f"{args.scale_store} has {len(points)} rows, fewer than "
                             f"--scale-rows {args.scale_rows}")
        return points.take(slice(args.scale_rows))
    # the rows, the float64 noise added to them and their float32 copy, at once
    _check_memory(args.scale_rows * args.scale_dim * 16, f"--scale-rows {args.scale_rows} x "
                  f"--scale-dim {args.scale_dim} synthetic rows")
    rng = np.random.default_rng(args.seed)
    groups = max(1, args.scale_rows // 50)
    centres = rng.normal(size=(groups, args.scale_dim)).astype(np.float32)
    values = centres[rng.integers(0, groups, args.scale_rows)]
    values += 0.3 * rng.normal(size=values.shape).astype(np.float32)
    return Points(values, "cosine", None, [str(i) for i in range(args.scale_rows)], None,
                  "synthetic blobs")


def _check_memory(nbytes: int, what: str) -> None:
    """Refuse, before allocating, what would not fit in the memory available now."""
    free = available_memory()
    if free is not None and nbytes > 0.8 * free:
        raise ValueError(f"{what} need about {nbytes / 1e9:.1f} GB, more than the "
                         f"{free / 1e9:.1f} GB of memory available: choose fewer")


def run_one(args) -> int:
    """One scale method in this process: prints its JSON line."""
    from clustering import cluster
    from fast_search.experiment import peak_rss_bytes, rss_bytes

    points = _scale_points(args)
    params = dict(SCALE_METHODS[args.run_one])
    kind = args.run_one.split("_")[0]
    if kind in ("kmeans", "hierarchical"):
        params["n_clusters"] = [max(2, args.scale_rows // 100)]
    metric = "l2" if params.get("linkage") == "ward" else None
    before = rss_bytes()
    start = time.perf_counter()
    result = cluster(points, kind, metric, **params)
    print(json.dumps({"method": args.run_one, "seconds": time.perf_counter() - start,
                      "clusters": result.n_clusters(), "rss_before_bytes": before,
                      "peak_rss_bytes": peak_rss_bytes(), "notes": result.notes}))
    return 0


def scale(args) -> dict[str, Any]:
    out = {"rows": args.scale_rows, "dim": args.scale_dim,
           "data": args.scale_store or "synthetic blobs (50 rows a group, cosine)",
           "timeout_s": args.scale_timeout, "runs": []}
    for method in args.scale_methods:
        command = [sys.executable, __file__, "--run-one", method, "--scale-rows",
                   str(args.scale_rows), "--scale-dim", str(args.scale_dim), "--seed",
                   str(args.seed)]
        if args.scale_store:
            command += ["--scale-store", args.scale_store]
        if args.features_dir:
            command += ["--features-dir", args.features_dir]
        start = time.perf_counter()
        try:
            done = subprocess.run(command, capture_output=True, text=True,
                                  timeout=args.scale_timeout)
        except subprocess.TimeoutExpired:
            run = {"method": method, "timed_out": True,
                   "seconds": time.perf_counter() - start}
        else:
            if done.returncode != 0:
                run = {"method": method, "error": done.stderr.strip().splitlines()[-1:]}
            else:
                run = json.loads(done.stdout.strip().splitlines()[-1])
                run["within_4gb"] = run["peak_rss_bytes"] <= 4 * 2**30
        print(f"  {json.dumps(run)}", flush=True)
        out["runs"].append(run)
    return out


# --- edges -------------------------------------------------------------------------------

def edges(args) -> dict[str, Any]:
    """Time the edge-distance kernel against the NumPy path on the same edges."""
    from clustering.graph import _edge_distances_numpy, exact_edge_distances
    from clustering.points import Points
    from hashing.distances import native

    # rows and columns (int64), the distances of both paths and their temporaries
    _check_memory(args.edge_count * 48, f"--edge-count {args.edge_count} edges")
    points = _scale_points(args)
    rng = np.random.default_rng(args.seed)
    rows = np.sort(rng.integers(0, len(points), args.edge_count))
    cols = rng.integers(0, len(points), args.edge_count)
    out: dict[str, Any] = {"rows": len(points), "dim": points.values.shape[1],
                           "edges": args.edge_count, "data": args.scale_store or "synthetic",
                           "threads": available_cpus(),
                           "kernel": native.pair_kernel() is not None, "runs": []}
    if not out["kernel"]:
        out["skipped"] = "no compiled kernel (no C compiler, or IMAGE_SIMILARITY_LAB_NO_NATIVE)"
        return out
    for metric in ("cosine", "l2"):
        p = Points(points.values, metric, None, points.ids)
        faiss_d = np.zeros(len(rows), np.float32)  # what the recomputation replaces
        exact_edge_distances(p, rows[:10], cols[:10], faiss_d[:10])  # compile, norms
        start = time.perf_counter()
        ours = exact_edge_distances(p, rows, cols, faiss_d)
        kernel_s = time.perf_counter() - start
        start = time.perf_counter()
        baseline = _edge_distances_numpy(p, rows, cols)
        numpy_s = time.perf_counter() - start
        run = {"metric": metric, "kernel_s": kernel_s, "numpy_s": numpy_s,
               "speedup": numpy_s / kernel_s,
               "max_abs_difference": float(np.abs(ours - baseline).max())}
        print(f"  {json.dumps(run)}", flush=True)
        out["runs"].append(run)
    return out


# --- imagededup --------------------------------------------------------------------------

def _write_copies(args, folder: Path) -> list:
    """The first originals of the dataset and their attacked copies as files; records."""
    from data_retrieval import ImageRecord, load_dataset
    from generator import attacked_images, parse_attack_specs
    from helpers import load_image

    dataset = load_dataset(args.dedup_dataset)
    originals = dataset.records[: args.dedup_originals]
    records = []
    def file(image_id: str) -> Path:  # ids may hold folders (test/100007): one flat folder
        return folder / (image_id.replace("/", "__") + ".png")

    for r in originals:
        path = file(r.image_id)
        load_image(r.path).save(path)
        records.append(ImageRecord(r.image_id, path))
    for item in attacked_images(originals, parse_attack_specs(["default"], {}), args.seed):
        path = file(item.record.image_id)
        item.load().save(path)
        records.append(ImageRecord(item.record.image_id, path, source_id=item.record.source_id,
                                   attack_id=item.record.attack_id))
    return records


def _score_groups(records, groups: dict[str, int]) -> dict[str, float]:
    from clustering import external_measures

    truth = np.array([r.source_id for r in records], dtype=object)
    labels = np.array([groups[r.path.name] for r in records])
    m = external_measures(truth, labels)
    return {k: m[k] for k in ("v_measure", "pair_f1", "pair_precision", "pair_recall",
                              "n_clusters")}


def _components(names: list[str], pairs: dict[str, list]) -> dict[str, int]:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    index = {n: i for i, n in enumerate(names)}
    rows, cols = [], []
    for a, found in pairs.items():
        for b in found:
            b = b[0] if isinstance(b, tuple | list) else b
            rows.append(index[a])
            cols.append(index[b])
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(names),) * 2)
    labels = connected_components(graph, directed=False)[1]
    return {n: int(labels[i]) for n, i in index.items()}


def dedup(args) -> dict[str, Any]:
    from clustering import as_points, cluster
    from hashing import describe

    out: dict[str, Any] = {"ours": {}, "imagededup": {}}
    with tempfile.TemporaryDirectory(prefix="dedup-") as tmp:
        folder = Path(tmp)
        records = _write_copies(args, folder)
        out["images"] = len(records)
        names = [r.path.name for r in records]
        for method, grid in (("dhash", GRIDS["hamming"]), ("sscd_distilled", GRIDS["cosine"])):
            start = time.perf_counter()
            described = describe(str(folder), method)
            describe_s = time.perf_counter() - start
            result = cluster(as_points(described), "duplicates", threshold=grid)
            seconds = time.perf_counter() - start
            by_id = {i: n for i, n in zip(described.ids, names_from(described), strict=True)}
            scores = []
            for setting, labels in zip(result.settings, result.labels, strict=True):
                groups = {by_id[i]: int(lab) for i, lab in zip(result.ids, labels,
                                                               strict=True)}
                scores.append({"threshold": setting["threshold"],
                               **_score_groups(records, groups)})
            best = max(scores, key=lambda s: s["pair_f1"])
            out["ours"][method] = {"seconds": seconds, "describe_s": describe_s,
                                   "group_s": result.seconds, "thresholds": len(grid),
                                   "best": best, "grid": scores}
            print(f"  ours {method}: pair F1 {best['pair_f1']:.4f} at {best['threshold']}, "
                  f"{seconds:.1f} s", flush=True)
        try:
            from imagededup import methods as dedup_methods
        except ImportError:
            out["imagededup"] = {"skipped": "imagededup is not installed (pip install "
                                             "imagededup)"}
            return out
        for name in ("PHash", "DHash", "WHash"):
            hasher = getattr(dedup_methods, name)(verbose=False)
            start = time.perf_counter()
            encodings = hasher.encode_images(image_dir=str(folder))
            encode_s = time.perf_counter() - start
            scores = []
            for bits in (3, 5, 7, 10, 13, 16):
                t0 = time.perf_counter()
                found = hasher.find_duplicates(encoding_map=encodings,
                                               max_distance_threshold=bits)
                scores.append({"max_distance_threshold": bits,
                               "seconds": encode_s + time.perf_counter() - t0,
                               **_score_groups(records, _components(names, found))})
            best = max(scores, key=lambda s: s["pair_f1"])
            out["imagededup"][name] = {"encode_s": encode_s, "best": best, "grid": scores}
            print(f"  imagededup {name}: pair F1 {best['pair_f1']:.4f} at "
                  f"{best['max_distance_threshold']} bits, {best['seconds']:.1f} s",
                  flush=True)
        try:
            cnn = dedup_methods.CNN(verbose=False)
            out["imagededup"]["CNN"] = {"loaded": True}
            del cnn
        except Exception as exc:  # noqa: BLE001 (its weights download from the internet)
            out["imagededup"]["CNN"] = {"skipped": f"its weights could not be loaded: "
                                                   f"{type(exc).__name__}: {exc}"[:300]}
    return out


def names_from(described) -> list[str]:
    return [Path(r.path).name for r in described.records]


@script_main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    if args.run_one:
        return run_one(args)
    root = args.features_dir or default_features_dir()
    with result_file(args, SCRIPT, "benchmarks/clustering.json", roots=[root]) as output:
        out: dict[str, Any] = {"machine": _machine()}
        for part in args.parts:
            print(f"{part}...", flush=True)
            out[part] = {"quality": quality, "scale": scale, "edges": edges,
                         "imagededup": dedup}[part](args)
            output.write(out)  # each finished part is kept
    print(f"wrote {output.path}")
    return 0


if __name__ == "__main__":
    run_script(main)
