#!/usr/bin/env python3
"""Cluster the descriptors of a feature store and measure the clusters.

The features are a store (``dataset/method`` under --features-dir, or a store's ``.npy``) or
``dataset:method`` (described now, not stored). Hierarchical clustering is cut at every
--n-clusters and --distance-threshold from one linkage; DBSCAN runs once per --eps (and
--min-samples) on one sparse radius graph; HDBSCAN on a sparse k-NN graph; near-duplicate groups
(--method duplicates) at every --threshold, or at the operating point of a benchmark digest
(--threshold-from DIGEST: the threshold at false positive rate --threshold-fpr).

Measures against the truth (the records' source_id: an attacked copy's original, a meme's
template), cluster attributes in the metric clustered with, figures, galleries and an HTML
page go to Results/<name>/ (assignments.csv, clusters.json, figures/, index.html,
experiment.json).

Defaults are the study's: ward linkage cut at 400, 350, ..., 100 clusters; DBSCAN with
min_samples 5. Distances are those of hashing.distances: cosine is (1 - cos) / 2 in [0, 1],
Hamming a bit error rate. HDBSCAN is slow on raw high-dimensional vectors in most libraries;
here it reads a k-NN graph made by Faiss, and --pca N projects float features first when
wanted.

Examples
--------
python scripts/cluster.py --features bsds500_copies/sscd_distilled --method hierarchical \\
    --linkage average --n-clusters 400 500 600 --name copies_average
python scripts/cluster.py --features sample:dhash --method duplicates --threshold 0.1 0.2
python scripts/cluster.py --features bsds500_copies/dhash --method duplicates \\
    --threshold-from Results/bsds500_hashes --threshold-algorithm dhash
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from clustering import LINKAGES, as_points, cluster
from clustering.cli import add_digest_threshold_arguments, digest_threshold
from clustering.methods import CLUSTER_METHODS
from clustering.methods import method_params as registered_params
from clustering.points import Points, concat_points
from clustering.report import evaluate, write_clustering
from extractor.store import default_features_dir
from helpers import (
    add_output_arguments,
    available_memory,
    experiment_run,
    get_logger,
    parse_key_values,
    setup_logging,
)
from helpers.cli import MAX_COUNT, integer, real, run_script, script_main
from helpers.descriptors import METRICS
from helpers.params import parse_size

SCRIPT = "cluster"
logger = get_logger(SCRIPT)
STUDY_COUNTS = list(range(400, 99, -50))
#: DBSCAN eps grids where none is given (our scales: cosine and Hamming in [0, 1]).
DEFAULT_EPS = {"cosine": [0.02, 0.05, 0.1, 0.15, 0.2], "hamming": [0.05, 0.1, 0.15, 0.2, 0.25],
               "jensenshannon": [0.1, 0.2, 0.3, 0.4]}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    data = parser.add_argument_group("data")
    data.add_argument("--features", required=True, nargs="+",
                      help="store 'dataset/method', a store's .npy, or 'dataset:method' "
                           "(described now); several of one method are clustered together "
                           "(originals and their copies)")
    data.add_argument("--features-dir", default=None,
                      help="feature store root (default: Results/features)")
    data.add_argument("--partition", default=None, metavar="FILE",
                      help="a file of image ids, one per line: cluster only these (the "
                           "study's 'clean' set is such a list)")
    how = parser.add_argument_group("method")
    how.add_argument("--method", default="hierarchical", choices=CLUSTER_METHODS.names(),
                     help="a registered clustering method (default: hierarchical); one "
                          "without flags of its own takes --param")
    how.add_argument("--param", action="append", default=[], metavar="K=V",
                     help="a parameter of a method this script has no flag for (repeatable; "
                          "values as Python literals)")
    how.add_argument("--metric", default=None,
                     choices=METRICS,
                     help="default: the features' own (hamming for codes)")
    how.add_argument("--linkage", default=None, choices=LINKAGES,
                     help="hierarchical (default: ward, the study's, for l2 distances; "
                          "average for other metrics: ward, centroid and median take "
                          "Euclidean distances only)")
    how.add_argument("--n-clusters", type=integer(1, MAX_COUNT), nargs="+", default=None,
                     help="hierarchical cuts / k-means sizes (default for both: 400 350 ... "
                          "100, the study's)")
    how.add_argument("--distance-threshold", type=real(0, 1e9), nargs="+", default=None,
                     help="hierarchical cuts by merge distance")
    how.add_argument("--connectivity", type=integer(1, 10_000), default=None, metavar="K",
                     help="hierarchical on a K-NN connectivity graph (memory O(N K); "
                          "scikit-learn)")
    how.add_argument("--eps", type=real(0, 1e9, low_open=True), nargs="+", default=None,
                     help="DBSCAN radii (default per metric: cosine 0.02..0.2, hamming "
                          "0.05..0.25, jensenshannon 0.1..0.4; required for l1 / l2)")
    how.add_argument("--min-samples", type=integer(1, 100_000), default=None,
                     help="DBSCAN (default 5) and HDBSCAN (default: min_cluster_size)")
    how.add_argument("--min-cluster-size", type=integer(2, MAX_COUNT), nargs="+", default=[5],
                     help="HDBSCAN (default: 5)")
    how.add_argument("--k", type=integer(1, 100_000), default=None,
                     help="HDBSCAN's k-NN graph (default: twice the largest of min_samples "
                          "and min_cluster_size)")
    how.add_argument("--pca", type=integer(1, 65_536), default=None, metavar="N",
                     help="HDBSCAN: project float features to N dimensions first")
    how.add_argument("--threshold", type=real(0, 1e9), nargs="+", default=None,
                     help="duplicates: group images within this distance")
    add_digest_threshold_arguments(how)
    how.add_argument("--niter", type=integer(1, 100_000), default=25,
                     help="k-means iterations (25)")
    how.add_argument("--seed", type=integer(0, 2**32 - 1), default=0,
                     help="k-means seed, gallery draws")
    run = parser.add_argument_group("run")
    run.add_argument("--max-memory", default=None, metavar="SIZE",
                     help="refuse, before starting, a method whose distance matrix or graph "
                          "would exceed SIZE (500MB, 4GB; default: 80%% of the memory "
                          "available when the run starts)")
    run.add_argument("--device", default="auto",
                     help="auto (GPU where faiss-gpu sees one), cpu or cuda")
    run.add_argument("--no-attributes", action="store_true",
                     help="skip diameter / dispersion / separation per cluster")
    run.add_argument("--no-figures", action="store_true",
                     help="write the tables only, no figures (default: figures)")
    run.add_argument("--galleries", type=integer(0, 1000), default=12,
                     help="clusters shown as image grids (the largest of the best setting)")
    add_output_arguments(parser, "Results/<name> (default: from the features and method)")
    return parser.parse_args(argv)


def load_points(spec: str, root: Path, metric: str | None, min_rows: int = 2) -> Points:
    """A store, a store's .npy, or ``dataset:method`` described now (``min_rows``: 1 for one
    of several inputs, whose rows are counted together)."""
    if "/" not in spec and ":" in spec and not Path(spec).exists():
        from hashing import describe

        dataset, _, method = spec.partition(":")
        described = describe(dataset, method)
        return as_points(described, metric, min_rows=min_rows)
    return as_points(spec, metric, root, min_rows=min_rows)


#: The methods this script has flags for (any other registered method takes --param K=V).
FLAGGED = ("hierarchical", "kmeans", "dbscan", "hdbscan", "duplicates")


def method_params(args: argparse.Namespace, points: Points) -> dict[str, Any]:
    """The method's parameters from the flags, with the study's defaults."""
    if args.param and args.method in FLAGGED:
        raise ValueError(f"--param is for methods without flags of their own; {args.method} "
                         "takes its flags (see --help)")
    if args.method == "hierarchical":
        counts = args.n_clusters
        if counts is None and args.distance_threshold is None:
            counts = [c for c in STUDY_COUNTS if c <= len(points)] or [len(points)]
        linkage = args.linkage or ("ward" if points.metric == "l2" else "average")
        if args.linkage is None and linkage != "ward":
            logger.info("linkage: average (ward needs l2 distances; these are %s)",
                        points.metric)
        return {"linkage": linkage, "n_clusters": counts,
                "distance_threshold": args.distance_threshold,
                "connectivity": args.connectivity}
    if args.method == "kmeans":
        counts = args.n_clusters or [c for c in STUDY_COUNTS if c <= len(points)] or [2]
        return {"n_clusters": counts, "niter": args.niter, "seed": args.seed}
    if args.method == "dbscan":
        eps = args.eps or DEFAULT_EPS.get(points.metric)
        if eps is None:
            raise ValueError(f"--eps is required with metric {points.metric} (its scale "
                             "depends on the features)")
        return {"eps": eps, "min_samples": args.min_samples or 5}
    if args.method == "hdbscan":
        return {"min_cluster_size": args.min_cluster_size, "min_samples": args.min_samples,
                "k": args.k, "pca": args.pca}
    if args.method != "duplicates":  # a method registered elsewhere: its own K=V parameters
        params = parse_key_values(args.param, f"--param of {args.method}")
        unknown = sorted(set(params) - set(registered_params(args.method)))
        if unknown:
            raise ValueError(f"{args.method} has no parameter(s) {unknown}; its parameters: "
                             f"{', '.join(registered_params(args.method)) or 'none'}")
        return params
    from_digest = digest_threshold(args)
    threshold = [from_digest] if from_digest is not None else args.threshold
    if not threshold:
        raise ValueError("--method duplicates needs --threshold or --threshold-from DIGEST")
    return {"threshold": threshold}


def _short(spec: str) -> str:
    """``bsds500_copies/dhash`` and ``.../bsds500_copies/dhash.npy`` -> ``bsds500_copies_dhash``;
    ``sample:dhash`` -> ``sample_dhash``."""
    path = Path(spec)
    if path.suffix in (".npy", ".json"):
        return f"{path.parent.name}_{path.stem}"
    return spec.strip("/").replace(":", "_").replace("/", "_")


def _keep(points: Points, partition: str) -> Points:
    wanted = [line.strip() for line in Path(partition).read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    index = {image_id: i for i, image_id in enumerate(points.ids)}
    missing = [w for w in wanted if w not in index]
    if missing:
        raise ValueError(f"--partition {partition}: {len(missing)} ids are not in the "
                         f"features (first: {missing[0]!r})")
    rows = sorted({index[w] for w in wanted})
    if len(rows) < 2:
        raise ValueError(f"--partition {partition} keeps {len(rows)} images; at least 2")
    return points.take(rows)


@script_main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    max_memory = parse_size(args.max_memory)
    if max_memory is None and (free := available_memory()) is not None:
        max_memory = 0.8 * free  # refused now rather than killed by the OS later
        logger.info("--max-memory: %.1f GB (80%% of the memory available)", max_memory / 1e9)
    root = Path(args.features_dir) if args.features_dir else default_features_dir()
    several = 1 if len(args.features) > 1 else 2
    points = concat_points([load_points(f, root, args.metric, several) for f in args.features])
    if args.partition:
        points = _keep(points, args.partition)
    params = method_params(args, points)
    name = "_".join(["cluster", *[_short(f) for f in args.features], args.method])
    # the image files the galleries draw (records may point anywhere, this folder included)
    drawn = [r.path for r in points.records or () if getattr(r, "path", None)]
    with experiment_run(args, SCRIPT, name=name, inputs=drawn, roots=[root]) as run:
        run.record({**vars(args), "params": params, "images": len(points),
                    "features_method": points.method, "metric_used": points.metric})
        result = cluster(points, args.method, device=args.device, max_memory=max_memory,
                         **params)
        evaluation = evaluate(result, points, attributes=not args.no_attributes,
                              device=args.device)
        write_clustering(result, run.folder, evaluation, points=points,
                         figures=not args.no_figures, galleries=args.galleries,
                         extra={"features_spec": args.features, "partition": args.partition})
        run.finish(seconds=result.seconds, notes=result.notes)
    for note in result.notes:
        print(f"note: {note}")
    for entry in evaluation:
        m = entry.get("measures")
        scores = (f"V {m['v_measure']:.4f}  ARI {m['ari']:.4f}  pair F1 "
                  f"{m['pair_f1']:.4f}  IoU {m['mean_iou']:.4f}") if m else ""
        print(f"{entry['name']:<32} {entry['n_clusters']:>7} clusters "
              f"{entry['n_noise']:>6} noise  {scores}")
    print(f"{args.method} of {len(points)} images ({points.method}, {points.metric}) in "
          f"{result.seconds:.1f} s -> {run.folder}")
    return 0


if __name__ == "__main__":
    run_script(main)
