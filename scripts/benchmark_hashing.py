#!/usr/bin/env python3
"""Speed of our hashes and distances against their baselines, in the same run; writes JSON.

- ahash+phash+dhash+whash+colorhash on decoded photos vs imagehash's five functions per image;
- crop_resistant vs imagehash.crop_resistant_hash (same segment hashes, checked);
- Jensen-Shannon distance matrix vs scipy.spatial.distance.cdist(..., "jensenshannon");
- Hamming 1-NN on packed 64-bit codes vs faiss.IndexBinaryFlat;
- keypoint matching: ORB descriptors (20 per image) of 1,000 queries against a 250-image
  database, our batched matching vs the original study's loop over every (query, database)
  pair with OpenCV's BFMatcher (match, sort, the cutoff-th distance), same distances checked.

python scripts/benchmark_hashing.py --dataset bsds500 --n-images 250
python scripts/benchmark_hashing.py --parts keypoints --keypoints 1000 250 20
"""

from __future__ import annotations

import argparse
import math
import os
import platform

import imagehash
import numpy as np

from data_retrieval import load_dataset
from data_retrieval.cli import add_data_root_argument
from hashing import describe_all, get_algorithm, nearest, pairwise
from helpers import (
    add_output_file_arguments,
    available_cpus,
    available_memory,
    load_image,
    result_file,
    setup_logging,
    time_repeated,
)
from helpers.cli import integer, run_script, script_main

SCRIPT = "benchmark_hashing"

FIVE = ["ahash", "phash", "dhash", "whash", "colorhash"]
REFERENCE = [imagehash.average_hash, imagehash.phash, imagehash.dhash, imagehash.whash,
             imagehash.colorhash]


def timed(func, repeat: int = 1) -> tuple[float, object]:
    """Best of ``repeat`` runs and the last result (warm-ups are explicit at the call sites)."""
    timing = time_repeated(func, repeats=repeat, warmup=0)
    return timing.best, timing.result


def bench_hashes(images, workers: list[int]) -> dict:
    algorithms = [get_algorithm(n) for n in FIVE]
    # one-time colour table, outside timing
    describe_all(images[:2], algorithms, workers=1, show_progress=False)
    base, ref = timed(lambda: [[f(im).hash.flatten() for im in images] for f in REFERENCE])
    out = {"images": len(images), "imagehash_seconds": base, "ours": {}}
    for w in workers:
        t, codes = timed(lambda w=w: describe_all(images, algorithms, workers=w,
                                                       show_progress=False), repeat=2)
        same = all(np.array_equal(codes[a.label].to_bits(), np.stack(r))
                   for a, r in zip(algorithms, ref, strict=True))
        out["ours"][f"workers_{w}"] = {"seconds": t, "speedup": base / t, "bits_equal": same}
    return out


def bench_crop_resistant(images, n_reference: int, workers: list[int]) -> dict:
    sub = images[:n_reference]
    base, ref = timed(lambda: [imagehash.crop_resistant_hash(im) for im in sub])
    algorithm = get_algorithm("crop_resistant")
    out = {"images": len(images), "imagehash_images": len(sub),
           "imagehash_seconds_per_image": base / len(sub), "ours": {}}
    for w in workers:
        t, codes = timed(lambda w=w: describe_all(images, [algorithm], workers=w,
                                                  show_progress=False)[algorithm.label],
                         repeat=2)
        ours = codes.to_bits()[:len(sub)]
        same = all(sorted(x.tobytes() for x in a) == sorted(h.hash.flatten().tobytes()
                                                            for h in r.segment_hashes)
                   for a, r in zip(ours, ref, strict=True))
        per = t / len(images)
        out["ours"][f"workers_{w}"] = {"seconds_per_image": per,
                                       "speedup": (base / len(sub)) / per,
                                       "segments_equal": same}
    return out


def bench_js(n_query: int, n_db: int, dim: int) -> dict:
    from scipy.spatial.distance import cdist

    from hashing.distances import native

    rng = np.random.default_rng(0)
    q = rng.random((n_query, dim)).astype(np.float32)
    d = rng.random((n_db, dim)).astype(np.float32)
    base, ref = timed(lambda: cdist(q.astype(np.float64), d.astype(np.float64),
                                    "jensenshannon"))
    ref = ref / np.sqrt(np.log(2))  # SciPy's base e -> base 2
    out = {"shape": [n_query, n_db, dim], "scipy_seconds": base}
    compiled = native.js_kernel() is not None  # compiles once, outside the timing
    paths = {"compiled_kernel": compiled, "torch": True}
    saved = os.environ.get(native.NO_NATIVE)
    for path, available in paths.items():
        if not available:
            out[path] = None
            continue
        os.environ[native.NO_NATIVE] = "0" if path == "compiled_kernel" else "1"
        native.reset()
        pairwise(q[:2], d[:2], "jensenshannon", "cpu")  # warm-up
        seconds, ours = timed(lambda: pairwise(q, d, "jensenshannon", "cpu"), repeat=5)
        out[path] = {"seconds": seconds, "speedup": base / seconds,
                     "max_abs_difference": float(np.abs(ours - ref).max())}
    if saved is None:
        os.environ.pop(native.NO_NATIVE)
    else:
        os.environ[native.NO_NATIVE] = saved
    native.reset()
    best = out["compiled_kernel"] or out["torch"]
    out.update({"ours_seconds": best["seconds"], "speedup": best["speedup"],
                "max_abs_difference": best["max_abs_difference"]})
    return out


def bench_hamming(n_query: int, n_db: int, n_bits: int) -> dict:
    import faiss

    rng = np.random.default_rng(1)
    q = rng.integers(0, 256, (n_query, n_bits // 8), dtype=np.uint8)
    d = rng.integers(0, 256, (n_db, n_bits // 8), dtype=np.uint8)

    def run_faiss():
        index = faiss.IndexBinaryFlat(n_bits)
        index.add(d)
        return index.search(q, 1)

    base, (fd, _) = timed(run_faiss, repeat=2)
    ours_t, (od, _) = timed(lambda: nearest(q, d, "hamming", device="cpu"), repeat=2)
    return {"shape": [n_query, n_db, n_bits], "faiss_seconds": base, "ours_seconds": ours_t,
            "throughput_ratio": base / ours_t,
            "distances_equal": bool(np.array_equal(od[:, 0] * n_bits, fd[:, 0]))}


def study_distance(bf, query, train, cutoff: int, n_bits: int | None) -> float:
    """One pair as the original study matched it: OpenCV's BFMatcher, matches sorted by
    distance, the cutoff-th; infinite without descriptors; Hamming as a bit error rate."""
    if query is None or train is None or len(query) == 0 or len(train) == 0:
        return math.inf
    matches = sorted(bf.match(query, train), key=lambda m: m.distance)
    if len(matches) < cutoff:
        return math.inf
    distance = matches[cutoff - 1].distance
    return distance / n_bits if n_bits else distance


def bench_keypoints(images, n_query: int, n_db: int, n_features: int,
                    method: str = "orb", repeats: int = 3) -> dict:
    """Batched keypoint matching vs the study's per-pair BFMatcher loop."""
    import cv2

    from hashing.distances import native

    algorithm = get_algorithm(method, n_features=n_features)
    database = algorithm.describe(images[:n_db])
    # queries: the photos again, turned a little more on each pass, so they are copies with
    # their own keypoints (the loop's time does not depend on which)
    sources = [images[i % len(images)].rotate(3 * (i // len(images)), expand=True)
               for i in range(n_query)]
    queries = algorithm.describe(sources)
    norm = {"hamming": cv2.NORM_HAMMING, "l2": cv2.NORM_L2, "l1": cv2.NORM_L1}[database.norm]
    bf = cv2.BFMatcher(norm, crossCheck=False)
    db_sets = dict(zip(range(n_db), database.per_image(), strict=True))
    q_sets = queries.per_image()

    def study_loop() -> np.ndarray:
        return np.array([[study_distance(bf, q, d, queries.cutoff, database.n_bits)
                          for d in db_sets.values()] for q in q_sets])

    kernel = native.keypoint_kernel()  # compiled once, outside the timing
    compiled = kernel is not None
    simd = compiled and database.norm == "hamming" and native.keypoint_simd(kernel)
    timings = time_repeated({
        "study_loop": study_loop,
        "ours": lambda: pairwise(queries, database, device="cpu"),
    }, repeats=repeats, warmup=1)
    reference, ours = timings["study_loop"].result, timings["ours"].result
    out = {
        "method": algorithm.label, "queries": n_query, "database": n_db,
        "descriptors_per_image": {"queries_mean": float(queries.counts.mean()),
                                  "database_mean": float(database.counts.mean())},
        "compiled_kernel": compiled,
        "avx512_kernel": simd,
        "study_loop_seconds": timings["study_loop"].as_dict(),
        "ours_seconds": timings["ours"].as_dict(),
        "speedup_median": timings["study_loop"].median / timings["ours"].median,
        "same_distances": bool(np.array_equal(np.isinf(reference), np.isinf(ours)) and
                               np.allclose(reference, ours, rtol=1e-6, atol=1e-7)),
    }
    if simd:  # the kernel's portable loop, as on a CPU without AVX-512 VPOPCNTDQ
        os.environ[native.NO_SIMD] = "1"
        try:
            portable = time_repeated(lambda: pairwise(queries, database, device="cpu"),
                                     repeats=repeats, warmup=1)
        finally:
            del os.environ[native.NO_SIMD]
        out["portable_kernel_seconds"] = portable.as_dict()
        out["portable_kernel_same"] = bool(np.array_equal(portable.result, ours))
    if compiled and database.norm == "hamming":  # the torch path, as without a compiler
        os.environ[native.NO_NATIVE] = "1"
        native.reset()
        try:
            torch_path = time_repeated(lambda: pairwise(queries, database, device="cpu"),
                                       repeats=repeats, warmup=1)
        finally:
            del os.environ[native.NO_NATIVE]
            native.reset()
        out["torch_path_seconds"] = torch_path.as_dict()
        out["torch_path_same"] = bool(np.allclose(torch_path.result, ours, rtol=0, atol=0))
    import torch

    if torch.cuda.is_available():
        def on_gpu() -> np.ndarray:
            return pairwise(queries, database, device="cuda")

        gpu = time_repeated(on_gpu, repeats=repeats, warmup=1, sync=torch.cuda.synchronize)
        out["cuda_seconds"] = gpu.as_dict()
        out["cuda_same"] = bool(np.allclose(gpu.result, ours, rtol=1e-6, atol=1e-7))
    return out


PARTS = ("five_hashes", "crop_resistant", "jensenshannon", "hamming_1nn", "keypoints")


def check_sizes(args: argparse.Namespace) -> None:
    """Sizes that cannot run: a code length Faiss cannot take, matrices larger than the memory
    available (refused now, not killed by the OS after the other parts)."""
    n_bits = args.hamming[2]
    if "hamming_1nn" in args.parts and n_bits % 8:
        raise ValueError(f"--hamming BITS must be a multiple of 8 (packed bytes), got {n_bits}")
    needs = {}
    if "jensenshannon" in args.parts:
        q, n, d = args.js
        # float32 and float64 copies of both sets, SciPy's and our distance matrices
        needs["--js"] = 12 * (q + n) * d + 12 * q * n
    if "hamming_1nn" in args.parts:
        q, n, _ = args.hamming
        needs["--hamming"] = 2 * (q + n) * n_bits // 8 + 16 * q
    free = available_memory()
    limit = 0.8 * free if free is not None else 16e9  # unknown: a desktop's share
    for flag, bytes_ in needs.items():
        if bytes_ > limit:
            raise ValueError(f"{flag} {' '.join(map(str, getattr(args, flag[2:])))} needs about "
                             f"{bytes_ / 1e9:.1f} GB; {limit / 1e9:.1f} GB of memory may be "
                             "used")


@script_main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="bsds500",
                        help="photos to hash (a dataset name or folder:<path>) (default: "
                             "%(default)s)")
    add_data_root_argument(parser)
    parser.add_argument("--n-images", type=integer(1, 10_000), default=200,
                        help="photos hashed, all decoded in memory (200)")
    parser.add_argument("--n-crop-reference", type=integer(1, 10_000), default=20,
                        help="images imagehash's slow crop-resistant hash is timed on (20)")
    # three numbers each; nargs="+" and a count check, so that a bad first value is named
    # by argparse with its flag rather than hidden behind "expected 3 arguments"
    parser.add_argument("--js", type=integer(1, 1_000_000), nargs="+", default=[500, 250, 1280],
                        metavar=("Q", "N D"),
                        help="Jensen-Shannon matrix: three numbers, queries, database rows, "
                             "dimension (500 250 1280)")
    parser.add_argument("--hamming", type=integer(1, 10_000_000), nargs="+",
                        default=[10000, 100000, 64], metavar=("Q", "N BITS"),
                        help="Hamming 1-NN: three numbers, queries, database codes, bits per "
                             "code (a multiple of 8; 10000 100000 64)")
    parser.add_argument("--keypoints", type=integer(1, 1_000_000), nargs="+",
                        default=[1000, 250, 20], metavar=("Q", "N FEATURES"),
                        help="keypoint matching: three numbers, queries, database images, ORB "
                             "features per image (1000 250 20)")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS),
                        help="which measurements to run (all)")
    add_output_file_arguments(parser, "benchmarks/hashing.json")
    args = parser.parse_args(argv)
    for flag in ("js", "hamming", "keypoints"):
        if len(getattr(args, flag)) != 3:
            parser.error(f"argument --{flag}: expected 3 numbers, got "
                         f"{len(getattr(args, flag))}")
    setup_logging(args.log_level)
    check_sizes(args)
    # the keypoint part's database needs that many photos, whatever --n-images says
    wanted = max(args.n_images, args.keypoints[1] if "keypoints" in args.parts else 0)
    records = load_dataset(args.dataset, args.data_root, limit=wanted).records
    if not records:
        raise ValueError(f"{args.dataset}: no image to hash")
    if "keypoints" in args.parts and len(records) < args.keypoints[1]:
        raise ValueError(f"--keypoints asks for a database of {args.keypoints[1]} images; "
                         f"{args.dataset} has {len(records)}")
    with result_file(args, SCRIPT, "benchmarks/hashing.json") as output:
        images = [load_image(r.path) for r in records]
        workers = sorted({1, available_cpus()})
        all_images, images = images, images[:args.n_images]
        runs = {
            "five_hashes": lambda: bench_hashes(images, workers),
            "crop_resistant": lambda: bench_crop_resistant(images, args.n_crop_reference,
                                                           workers),
            "jensenshannon": lambda: bench_js(*args.js),
            "hamming_1nn": lambda: bench_hamming(*args.hamming),
            "keypoints": lambda: bench_keypoints(all_images, *args.keypoints),
        }
        result = {
            "machine": {"platform": platform.platform(), "cpus": available_cpus(),
                        "processor": platform.processor()},
            "dataset": args.dataset,
        }
        for part in args.parts:
            result[part] = runs[part]()
            output.write(result)  # each finished part is kept
    print(f"wrote {output.path}")
    for key in args.parts:
        print(key, result[key])
    return 0


if __name__ == "__main__":
    run_script(main)
