#!/usr/bin/env python3
"""Which threshold `clustering.find_duplicates` should use by default: measured on a folder of
originals and their common edits, and on a folder of distinct photos (issue 28).

Parts (all of them, in this order):
  folder       --count photos of --dataset (BSDS500's test photos by default, a seeded choice)
               and one copy of each by each of --attacks (JPEG 50, crop 20% and rescale,
               rotation 10 degrees, 30 characters of text, Gaussian noise 0.02, brightness
               1.5), written as files into one flat folder. Per method: `find_duplicates` on
               the folder at the method's default threshold, timed end to end (listing,
               decoding, describing, grouping; the model's loading included), then the same
               descriptors grouped at every threshold of the grid: V-measure against the
               records' source_id (scikit-learn's ``v_measure_score``, every image without
               duplicates its own cluster), groups of two or more, and the copies of each
               attack left alone. imagededup's PHash/DHash/WHash/AHash (when installed) on the
               same folder over a grid of bits, timed likewise.
  distinct     --distinct-count photos of --distinct-dataset (imagenet_samples: one photo per
               class, so every group of two or more is false) as a folder: the same methods
               and thresholds, the false groups, and the closest pairs to look at.
  calibration  thresholds chosen from each folder's own distances (--rules): ``pairs_fpr:F``,
               the threshold at false positive rate F of all the folder's pairs taken as
               unrelated (`hashing.evaluation.operating_points`); ``nn_quantile:Q``, the
               Q-quantile of every image's distance to its nearest other image;
               ``pairs_fraction:C``, C x the median distance of the folder's pairs. Each rule's
               V-measure on the first folder and false groups on the second.

The recommendation per method, for at most --max-false-groups false groups on the distinct
photos and for none: the middle of the grid's thresholds that also reach --target-v on the
copies folder, else the best V-measure among those with few enough false groups. False pairs
grow with the square of a folder's size: what is a handful on 1,000 photos is a hundred times
more on 10,000. Writes JSON (--output) with every number and the machine.

Examples
--------
python scripts/benchmark_duplicates.py
python scripts/benchmark_duplicates.py --methods dhash phash --count 10 --distinct-count 200
"""

from __future__ import annotations

import argparse
import logging
import platform
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components
from sklearn.metrics import homogeneity_completeness_v_measure

from clustering import find_duplicates
from clustering.duplicates import DEFAULT_THRESHOLDS, Duplicates
from data_retrieval import ImageRecord, load_dataset, sample_records
from generator import parse_attack_specs, write_attacks
from hashing import clear_caches, parse_algorithm
from hashing.distances import pairwise
from hashing.evaluation.operating_points import sweep
from helpers import add_output_file_arguments, available_cpus, result_file, setup_logging
from helpers.cli import MAX_COUNT, MAX_SEED, integer, real, run_script, script_main

SCRIPT = "benchmark_duplicates"
DEFAULT_OUTPUT = "benchmarks/duplicates.json"
#: The issue's common edits: one copy of each original by each.
ATTACKS = ["jpg_compression_50", "cropping_20_and_rescaling", "rotation_10_and_rescaling",
           "text_length_30", "gaussian_noise_0.02", "brightness_enhancement_1.5"]
#: Threshold grids in our distances: cosine as (1 - cos) / 2, Hamming as a bit error rate.
COSINE_GRID = [0.05, 0.075, 0.1, 0.125, 0.15, 0.175, 0.2, 0.225, 0.25, 0.275, 0.3, 0.35]
HAMMING_GRID = [0.0, 0.03, 0.05, 0.075, 0.1, 0.125, 0.15, 0.175, 0.2, 0.225, 0.25, 0.3]
#: imagededup's thresholds: differing bits of its 64-bit hashes (its default is 10).
DEDUP_BITS = [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20]
DEDUP_HASHES = ["PHash", "DHash", "WHash", "AHash"]
RULES = ["pairs_fpr:0.0001", "pairs_fpr:0.0003", "pairs_fpr:0.001", "pairs_fpr:0.003",
         "nn_quantile:0.05", "nn_quantile:0.1", "nn_quantile:0.25",
         "pairs_fraction:0.3", "pairs_fraction:0.4", "pairs_fraction:0.5"]
#: The threshold of the timed run of a method without a default one.
FALLBACK_THRESHOLD = 0.1
#: Any threshold the rules and grids may give is a distance in [0, 1].
GRID_VALUE = real(0, 1)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=["sscd_distilled", "dhash", "phash"],
                        help="methods of the library (default: sscd_distilled dhash phash)")
    parser.add_argument("--dataset", default="bsds500",
                        help="originals of the copies folder (default: bsds500)")
    parser.add_argument("--subset", default="test",
                        help="keep the originals whose image id starts with SUBSET/ ('' for "
                             "all; default: test)")
    parser.add_argument("--count", type=integer(1, MAX_COUNT), default=30,
                        help="originals of the copies folder, a seeded choice (default: 30)")
    parser.add_argument("--attacks", nargs="+", default=ATTACKS,
                        help=f"attack ids, one copy each (default: {' '.join(ATTACKS)})")
    parser.add_argument("--distinct-dataset", default="imagenet_samples",
                        help="distinct photos, one per class (default: imagenet_samples)")
    parser.add_argument("--distinct-count", type=integer(2, MAX_COUNT), default=1000,
                        help="distinct photos, a seeded choice (default: 1000)")
    parser.add_argument("--cosine-grid", nargs="+", type=GRID_VALUE, default=COSINE_GRID,
                        help="thresholds of the float methods (default: 0.05 ... 0.35)")
    parser.add_argument("--hamming-grid", nargs="+", type=GRID_VALUE, default=HAMMING_GRID,
                        help="thresholds of the hashes, bit error rates (default: 0 ... 0.3)")
    parser.add_argument("--dedup-bits", nargs="*", type=integer(0, 64), default=DEDUP_BITS,
                        help="imagededup's max_distance_threshold grid (default: 0 ... 20; "
                             "none: imagededup is not run)")
    parser.add_argument("--rules", nargs="*", default=RULES,
                        help="folder-calibrated threshold rules (default: %(default)s)")
    parser.add_argument("--target-v", type=real(0, 1), default=0.97,
                        help="V-measure the copies folder must reach (default: 0.97)")
    parser.add_argument("--max-false-groups", type=integer(0, MAX_COUNT), default=5,
                        help="false groups allowed on the distinct photos (default: 5)")
    parser.add_argument("--closest-pairs", type=integer(0, 1000), default=10,
                        help="closest distinct pairs listed per method (default: 10)")
    parser.add_argument("--scale-count", type=integer(0, MAX_COUNT), default=0,
                        help="also time a folder of this many images end to end (originals of "
                             "--scale-datasets and their attacked copies; 0: skip)"
                             " (default: %(default)s)")
    parser.add_argument("--scale-datasets", nargs="+", default=["bsds500", "imagenet_samples"],
                        help="originals of the scale folder (default: %(default)s)")
    parser.add_argument("--batch-size", type=integer(1, 4096), default=64,
                        help="images described at once (default: 64)")
    parser.add_argument("--seed", type=integer(0, MAX_SEED), default=0,
                        help="choice of photos and random attacks (default: 0)")
    add_output_file_arguments(parser, DEFAULT_OUTPUT, log_level="WARNING")
    args = parser.parse_args(argv)
    for rule in args.rules:
        try:
            _parse_rule(rule)
        except ValueError as exc:
            parser.error(f"--rules: {exc}")
    return args


def _machine() -> dict[str, Any]:
    return {"platform": platform.platform(), "processor": platform.processor(),
            "cpus": available_cpus(), "python": platform.python_version()}


# --- folders -------------------------------------------------------------------------------------


def write_copies_folder(args, folder: Path) -> tuple[dict[Path, str], dict[Path, str]]:
    """The originals (their own files, copied) and their attacked copies (PNG) in one flat
    folder; every file's source image and every copy's attack, from the generator's
    records."""
    records = load_dataset(args.dataset).records
    if args.subset:
        records = [r for r in records if r.image_id.startswith(f"{args.subset}/")]
    originals = []
    for record in sample_records(records, args.count, args.seed, what=args.dataset):
        name = record.image_id.replace("/", "__")
        path = folder / f"{name}{Path(record.path).suffix.lower()}"
        shutil.copyfile(record.path, path)
        originals.append(ImageRecord(name, path, source_id=name))
    report = write_attacks(originals, parse_attack_specs(args.attacks), folder, seed=args.seed,
                           image_format="png", workers=0, show_progress=False)
    if report.bad:
        raise ValueError(f"copies could not be made: {report.bad[:3]}")
    (folder / "manifest.csv").unlink(missing_ok=True)  # not an image: the folder holds images
    truth = {Path(r.path).resolve(): r.source_id for r in originals}
    truth.update({Path(r.path).resolve(): r.source_id for r in report.records})
    return truth, {Path(r.path).resolve(): r.attack_id for r in report.records}


def write_distinct_folder(args, folder: Path) -> list[Path]:
    """The distinct photos, their own files copied into one folder."""
    records = load_dataset(args.distinct_dataset).records
    paths = []
    for record in sample_records(records, args.distinct_count, args.seed,
                                 what=args.distinct_dataset):
        path = folder / Path(record.path).name
        shutil.copyfile(record.path, path)
        paths.append(path)
    return paths


# --- measures ------------------------------------------------------------------------------------


def labels_of(found: Duplicates) -> np.ndarray:
    """One label per image in input order: its group, or its own label when it has none."""
    groups = found.to_frame()["group"].to_numpy()
    alone = groups < 0
    out = groups.copy()
    out[alone] = groups.max(initial=-1) + 1 + np.arange(int(alone.sum()))
    return out


def _image_paths(found: Duplicates) -> list[Path]:
    return [Path(p).resolve() for p in found.to_frame()["image"]]


def copies_scores(found: Duplicates, truth: dict[Path, str],
                  attack_of: dict[Path, str]) -> dict[str, Any]:
    """V-measure against the truth (scikit-learn), groups, and the copies left apart from
    their original per attack."""
    paths = _image_paths(found)
    labels = labels_of(found)
    sources = [truth[p] for p in paths]
    h, c, v = homogeneity_completeness_v_measure(sources, labels)
    label_of_source = {s: lab for p, s, lab in zip(paths, sources, labels, strict=True)
                       if p not in attack_of}
    apart: dict[str, int] = {}
    for p, s, lab in zip(paths, sources, labels, strict=True):
        if p in attack_of:
            apart[attack_of[p]] = apart.get(attack_of[p], 0) + int(lab != label_of_source[s])
    return {"v_measure": float(v), "homogeneity": float(h), "completeness": float(c),
            "groups": found.n_groups, "clusters": int(len(set(labels))),
            "copies_apart_from_original": apart}


def components(distances: np.ndarray, threshold: float) -> int:
    """Groups of two or more of the graph ``distance <= threshold`` (scipy, from the full
    matrix: a check of `find_duplicates` independent of its Faiss graph)."""
    graph = csr_matrix(np.triu(distances <= threshold, 1))
    _, labels = connected_components(graph, directed=False)
    return int((np.bincount(labels) > 1).sum())


def all_pairs(found: Duplicates) -> np.ndarray:
    """The full distance matrix of the images (the diagonal +inf)."""
    described = found.points.descriptors()
    d = np.asarray(pairwise(described, described, device="cpu"), dtype=np.float64)
    np.fill_diagonal(d, np.inf)
    return d


def _parse_rule(rule: str) -> tuple[str, float]:
    kind, _, value = rule.partition(":")
    if kind not in ("pairs_fpr", "nn_quantile", "pairs_fraction"):
        raise ValueError(f"unknown rule {rule!r} (pairs_fpr:F, nn_quantile:Q, pairs_fraction:C)")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"rule {rule!r}: {value!r} is not a number") from None
    if not 0 <= number <= 1:
        raise ValueError(f"rule {rule!r}: {number} is not in [0, 1]")
    return kind, number


def calibrated_threshold(rule: str, distances: np.ndarray) -> float:
    """The threshold a rule chooses from a folder's own distance matrix."""
    kind, value = _parse_rule(rule)
    upper = distances[np.triu_indices(len(distances), 1)]
    if kind == "pairs_fpr":  # every pair taken as unrelated: the threshold at that rate
        threshold = float(sweep(upper, np.zeros(len(upper), bool)).at_fpr(value).threshold)
        return max(threshold, 0.0)  # -inf (no pair may be accepted): identical images only
    if kind == "nn_quantile":
        return float(np.quantile(distances.min(axis=1), value))
    return float(value * np.median(upper))


def _describe_folder(folder: Path, method: str, args) -> tuple[Duplicates, dict[str, float]]:
    """`find_duplicates` on the folder at the default threshold, timed from a cold start."""
    clear_caches()
    label = parse_algorithm(method).label
    threshold = DEFAULT_THRESHOLDS.get(label, FALLBACK_THRESHOLD)
    start = time.perf_counter()
    found = find_duplicates(folder, method, threshold, batch_size=args.batch_size,
                            show_progress=False)
    seconds = time.perf_counter() - start
    start = time.perf_counter()
    find_duplicates(found.points, threshold=found.threshold)
    group_s = time.perf_counter() - start
    return found, {"images": len(found), "threshold": threshold, "end_to_end_s": seconds,
                   "images_per_s": len(found) / seconds, "group_s": group_s,
                   "skipped": len(found.skipped)}


def _grid(args, found: Duplicates) -> list[float]:
    return sorted(set(args.hamming_grid if found.points.binary else args.cosine_grid))


def distance_summary(distances: np.ndarray, truth: list[str] | None,
                     attack: list[str | None] | None, grid: list[float]) -> dict[str, Any]:
    """How far copies lie from their original (per attack: median, 90th percentile, largest)
    and how near unrelated images come (pairs of different sources: the smallest distance,
    low quantiles, the pairs at or below each threshold of the grid)."""
    upper = np.triu_indices(len(distances), 1)
    d = distances[upper]
    out: dict[str, Any] = {}
    if truth is not None:
        sources = np.array(truth, dtype=object)
        related = sources[upper[0]] == sources[upper[1]]
        per_attack: dict[str, list[float]] = {}
        original = {s: i for i, (s, a) in enumerate(zip(truth, attack, strict=True))
                    if a is None}
        for i, (s, a) in enumerate(zip(truth, attack, strict=True)):
            if a is not None:
                per_attack.setdefault(a, []).append(float(distances[i, original[s]]))
        out["copy_to_original"] = {
            a: {"median": float(np.median(v)), "p90": float(np.quantile(v, 0.9)),
                "max": float(np.max(v))} for a, v in sorted(per_attack.items())}
        d = d[~related]
    out["unrelated_pairs"] = {
        "pairs": int(len(d)), "min": float(d.min()),
        "quantiles": {str(q): float(np.quantile(d, q)) for q in (1e-5, 1e-4, 1e-3, 0.01, 0.5)},
        "at_or_below": {str(t): int((d <= t).sum()) for t in grid}}
    return out


def _closest_pairs(found: Duplicates, distances: np.ndarray, count: int) -> list[dict]:
    names = found.files
    upper = np.triu_indices(len(distances), 1)
    d = distances[upper]
    order = np.argsort(d, kind="stable")[:count]
    return [{"a": names[upper[0][k]], "b": names[upper[1][k]], "distance": float(d[k])}
            for k in order]


# --- imagededup ----------------------------------------------------------------------------------


def _dedup_labels(names: list[str], found: dict[str, list]) -> np.ndarray:
    index = {n: i for i, n in enumerate(names)}
    rows = [index[a] for a, others in found.items() for _ in others]
    cols = [index[b] for others in found.values() for b in others]
    graph = csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(names),) * 2)
    return connected_components(graph, directed=False)[1]


def run_imagededup(args, folder: Path, truth: dict[Path, str] | None) -> dict[str, Any]:
    """imagededup's hashes on the folder: time (encode + find at its default, 10 bits) and
    V-measure (with ``truth``) or false groups per bit threshold."""
    try:
        from imagededup import methods  # optional: pip install imagededup (the compare extra)
    except ImportError as exc:
        return {"skipped": f"imagededup cannot be imported: {exc}"}
    out: dict[str, Any] = {}
    for name in DEDUP_HASHES:
        hasher = getattr(methods, name)(verbose=False)
        for logger_name in list(logging.root.manager.loggerDict):  # its own INFO handlers
            if logger_name.startswith("imagededup"):
                logging.getLogger(logger_name).setLevel(args.log_level)
        start = time.perf_counter()
        encodings = hasher.encode_images(image_dir=str(folder))
        encode_s = time.perf_counter() - start
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            start = time.perf_counter()
            hasher.find_duplicates(encoding_map=encodings, max_distance_threshold=10)
            find_s = time.perf_counter() - start
        names = sorted(encodings)
        grid = []
        for bits in args.dedup_bits:
            with warnings.catch_warnings():  # "num_enc_workers has no effect" on each call
                warnings.simplefilter("ignore", RuntimeWarning)
                labels = _dedup_labels(names, hasher.find_duplicates(
                    encoding_map=encodings, max_distance_threshold=bits))
            row: dict[str, Any] = {"bits": bits,
                                   "groups": int((np.bincount(labels) > 1).sum())}
            if truth is not None:
                sources = [truth[(folder / n).resolve()] for n in names]
                row["v_measure"] = float(homogeneity_completeness_v_measure(sources, labels)[2])
            grid.append(row)
        out[name] = {"images": len(encodings), "end_to_end_s": encode_s + find_s,
                     "encode_s": encode_s, "find_s_at_10_bits": find_s,
                     "images_per_s": len(encodings) / (encode_s + find_s), "grid": grid}
        print(f"  imagededup {name}: {len(encodings)} images, {encode_s + find_s:.1f} s, "
              + ", ".join(f"{r['bits']}:{r.get('v_measure', r['groups']):.3g}" for r in grid),
              flush=True)
    return out


# --- the parts -----------------------------------------------------------------------------------


def write_scale_folder(args, folder: Path) -> dict[Path, str]:
    """``--scale-count`` images in one folder: every original of ``--scale-datasets`` and
    attacked copies of them (``--attacks`` in turn, seeded) until the count; each file's
    source."""
    originals = []
    for dataset in args.scale_datasets:
        for record in load_dataset(dataset).records:
            name = f"{dataset}__{record.image_id.replace('/', '__')}"
            path = folder / f"{name}{Path(record.path).suffix.lower()}"
            shutil.copyfile(record.path, path)
            originals.append(ImageRecord(name, path, source_id=name))
    remaining = max(0, args.scale_count - len(originals))
    truth = {Path(r.path).resolve(): r.source_id for r in originals}
    for attack in parse_attack_specs(args.attacks):  # each attack on every original in turn
        chosen = originals[:remaining]
        if not chosen:
            break
        report = write_attacks(chosen, [attack], folder, seed=args.seed, image_format="jpg",
                               workers=0, show_progress=False)
        truth.update({Path(r.path).resolve(): r.source_id for r in report.records})
        remaining -= len(report.records)
    (folder / "manifest.csv").unlink(missing_ok=True)
    return truth


def measure_scale(args, folder: Path) -> dict[str, Any]:
    """The scale folder grouped end to end by each method at its default threshold and by
    imagededup's PHash at its default (10 bits): time and V-measure against the sources."""
    truth = write_scale_folder(args, folder)
    out: dict[str, Any] = {"images": len(truth), "datasets": args.scale_datasets}
    for method in args.methods:
        found, timing = _describe_folder(folder, method, args)
        sources = [truth[p.resolve()] for p in _image_paths(found)]
        timing["v_measure"] = float(homogeneity_completeness_v_measure(
            sources, labels_of(found))[2])
        out[method] = timing
        print(f"  scale {method}: {timing['images']} images, {timing['end_to_end_s']:.1f} s, "
              f"V {timing['v_measure']:.3f}", flush=True)
    try:
        from imagededup import methods  # optional: pip install imagededup (the compare extra)
    except ImportError as exc:
        out["imagededup"] = {"skipped": f"imagededup cannot be imported: {exc}"}
        return out
    hasher = methods.PHash(verbose=False)
    start = time.perf_counter()
    encodings = hasher.encode_images(image_dir=str(folder))
    with warnings.catch_warnings():  # "num_enc_workers has no effect" on each call
        warnings.simplefilter("ignore", RuntimeWarning)
        found = hasher.find_duplicates(encoding_map=encodings, max_distance_threshold=10)
    seconds = time.perf_counter() - start
    names = sorted(encodings)
    labels = _dedup_labels(names, found)
    sources = [truth[(folder / n).resolve()] for n in names]
    out["imagededup_PHash"] = {
        "images": len(names), "end_to_end_s": seconds, "images_per_s": len(names) / seconds,
        "v_measure": float(homogeneity_completeness_v_measure(sources, labels)[2])}
    return out


def measure(args, copies_dir: Path, distinct_dir: Path) -> dict[str, Any]:
    print("copies folder...", flush=True)
    truth, attack_of = write_copies_folder(args, copies_dir)
    print("distinct folder...", flush=True)
    distinct_paths = write_distinct_folder(args, distinct_dir)
    folder_out: dict[str, Any] = {"images": len(truth), "originals": len(set(truth.values())),
                                  "attacks": list(args.attacks), "methods": {}}
    distinct_out: dict[str, Any] = {"images": len(distinct_paths), "methods": {}}
    calibration: dict[str, Any] = {}
    recommendation: dict[str, Any] = {}
    for method in args.methods:
        print(f"{method}...", flush=True)
        copies, copies_time = _describe_folder(copies_dir, method, args)
        distinct, distinct_time = _describe_folder(distinct_dir, method, args)
        copies_d, distinct_d = all_pairs(copies), all_pairs(distinct)
        copies_grid, distinct_grid = [], []
        paths, grid = _image_paths(copies), _grid(args, copies)
        for t in grid:
            found = find_duplicates(copies.points, threshold=t)
            copies_grid.append({"threshold": t, **copies_scores(found, truth, attack_of),
                                "scipy_groups": components(copies_d, t)})
            false = find_duplicates(distinct.points, threshold=t)
            sizes = false.groups["group"].value_counts().to_numpy()
            distinct_grid.append({"threshold": t, "false_groups": false.n_groups,
                                  "images_in_false_groups": len(false.groups),
                                  "largest_false_group": int(sizes.max(initial=0)),
                                  "scipy_groups": components(distinct_d, t)})
            print(f"  {t:.3f}: V {copies_grid[-1]['v_measure']:.4f}, "
                  f"{copies_grid[-1]['groups']} groups; {false.n_groups} false groups",
                  flush=True)
        default = copies.threshold
        folder_out["methods"][method] = {
            "default_threshold": DEFAULT_THRESHOLDS.get(method), "timing": copies_time,
            "at_default": copies_scores(copies, truth, attack_of), "grid": copies_grid,
            "distances": distance_summary(copies_d, [truth[p] for p in paths],
                                          [attack_of.get(p) for p in paths], grid)}
        distinct_out["methods"][method] = {
            "timing": distinct_time, "at_default": {"threshold": default,
                                                    "false_groups": distinct.n_groups},
            "grid": distinct_grid, "distances": distance_summary(distinct_d, None, None, grid),
            "closest_pairs": _closest_pairs(distinct, distinct_d, args.closest_pairs)}
        calibration[method] = {}
        for rule in args.rules:
            t_copies = calibrated_threshold(rule, copies_d)
            t_distinct = calibrated_threshold(rule, distinct_d)
            scores = copies_scores(find_duplicates(copies.points, threshold=t_copies), truth,
                                   attack_of)
            false = find_duplicates(distinct.points, threshold=t_distinct).n_groups
            calibration[method][rule] = {
                "copies": {"threshold": t_copies, "v_measure": scores["v_measure"],
                           "groups": scores["groups"]},
                "distinct": {"threshold": t_distinct, "false_groups": false},
                "both_targets": scores["v_measure"] >= args.target_v
                and false <= args.max_false_groups}
        recommendation[method] = {
            f"at_most_{limit}_false_groups": recommend(args, copies_grid, distinct_grid, limit)
            for limit in sorted({args.max_false_groups, 0})}
        print(f"  recommended: {recommendation[method]}", flush=True)
    if args.dedup_bits:
        print("imagededup...", flush=True)
        folder_out["imagededup"] = run_imagededup(args, copies_dir, truth)
        distinct_out["imagededup"] = run_imagededup(args, distinct_dir, None)
    return {"folder": folder_out, "distinct": distinct_out, "calibration": calibration,
            "recommendation": recommendation}


def recommend(args, copies_grid: list[dict], distinct_grid: list[dict],
              max_false_groups: int) -> dict[str, Any]:
    """The threshold to recommend: the middle of the grid's thresholds that reach both
    targets (--target-v on the copies; at most ``max_false_groups`` false groups on the
    distinct photos, holding at most three times as many images, so that one giant false
    group does not pass for few), the widest margin on both sides; when none does, the best
    V-measure among the thresholds with few false groups."""
    allowed = [(c, d) for c, d in zip(copies_grid, distinct_grid, strict=True)
               if d["false_groups"] <= max_false_groups
               and d["images_in_false_groups"] <= 3 * max_false_groups]
    both = [(c, d) for c, d in allowed if c["v_measure"] >= args.target_v]
    best_v = max(copies_grid, key=lambda c: c["v_measure"])
    out: dict[str, Any] = {"both_targets_at": [c["threshold"] for c, _ in both],
                           "best_v_measure": {"threshold": best_v["threshold"],
                                              "v_measure": best_v["v_measure"]}}
    if both:
        c, d = both[(len(both) - 1) // 2]
        out["rule"] = "the middle of the thresholds that reach both targets"
    elif allowed:
        c, d = max(allowed, key=lambda cd: cd[0]["v_measure"])
        out["rule"] = (f"no threshold reaches both targets: the best V-measure with at most "
                       f"{max_false_groups} false groups")
    else:
        out["rule"] = f"no threshold of the grid has at most {max_false_groups} false groups"
        return out
    out.update(threshold=c["threshold"], v_measure=c["v_measure"],
               false_groups=d["false_groups"])
    return out


@script_main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    with result_file(args, SCRIPT, DEFAULT_OUTPUT) as output:
        out: dict[str, Any] = {"machine": _machine()}
        with tempfile.TemporaryDirectory(prefix="duplicates-") as tmp:
            copies_dir, distinct_dir = Path(tmp, "copies"), Path(tmp, "distinct")
            copies_dir.mkdir()
            distinct_dir.mkdir()
            out.update(measure(args, copies_dir, distinct_dir))
            if args.scale_count:
                scale_dir = Path(tmp, "scale")
                scale_dir.mkdir()
                out["scale"] = measure_scale(args, scale_dir)
        output.write(out)
    print(f"wrote {output.path}")
    return 0


if __name__ == "__main__":
    run_script(main)
