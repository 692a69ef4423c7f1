#!/usr/bin/env python3
"""Speed of our hashes and distances against their baselines, in the same run; writes JSON.

- ahash+phash+dhash+whash+colorhash on decoded photos vs imagehash's five functions per image;
- draft decode (``decode='draft'``, issue 30), from the files: the five hashes with a draft
  decode against imagehash's five functions per image (each file decoded whole) and against
  our exact decode, on the dataset's photos and on ~12 MP JPEGs made at run time in a
  temporary folder (see `make_large_jpegs`), per hash and together (``draft_speed``); and the
  AUC of the study's protocol on the dataset with the database drafted, per hash and per
  attack family, against the exact decode (``draft_auc``);
- crop_resistant vs imagehash.crop_resistant_hash (same segment hashes, checked);
- Jensen-Shannon distance matrix vs scipy.spatial.distance.cdist(..., "jensenshannon");
- Hamming 1-NN on packed 64-bit codes vs faiss.IndexBinaryFlat;
- keypoint matching: ORB descriptors (20 per image) of 1,000 queries against a 250-image
  database, our batched matching vs the original study's loop over every (query, database)
  pair with OpenCV's BFMatcher (match, sort, the cutoff-th distance), same distances checked.

python scripts/benchmark_hashing.py --dataset bsds500 --n-images 250
python scripts/benchmark_hashing.py --parts keypoints --keypoints 1000 250 20
python scripts/benchmark_hashing.py --parts draft_speed draft_auc --name draft.json
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image

from data_retrieval import load_dataset
from data_retrieval.cli import add_data_root_argument
from generator import parse_attack_specs
from hashing import describe, describe_all, get_algorithm, nearest, pairwise, study_protocol
from hashing.evaluation.operating_points import roc
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


#: The ~12 MP JPEGs of the draft benchmark: size (landscape; portrait photos turned to
#: 3000 x 4000), JPEG quality (Pillow's default 4:2:0 chroma subsampling) and mosaic tiles.
LARGE_SIZE = (4000, 3000)
LARGE_QUALITY = 92
LARGE_TILE = (250, 300)
LARGE_HOW = ("from the first photos of the dataset, in a temporary folder at run time: "
             "'upscaled': one photo resized with Pillow's LANCZOS to 4000x3000 (3000x4000 "
             "for a portrait photo); 'mosaic': 160 photos, each centre-cropped (no "
             "resampling) to 250x300, tiled 16 x 10 into 4000x3000, so every pixel holds a "
             "photo's own detail; both saved by Pillow as JPEG at quality 92 (4:2:0)")


def _centre_crop(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    left, top = (image.width - size[0]) // 2, (image.height - size[1]) // 2
    return image.crop((left, top, left + size[0], top + size[1]))


def make_large_jpegs(records, folder: Path, count: int) -> dict[str, list[Path]]:
    """``count`` upscaled and ``count`` mosaic ~12 MP JPEGs in ``folder`` (`LARGE_HOW`)."""
    cols, rows = LARGE_SIZE[0] // LARGE_TILE[0], LARGE_SIZE[1] // LARGE_TILE[1]
    out: dict[str, list[Path]] = {"upscaled": [], "mosaic": []}
    for k in range(count):
        photo = load_image(records[k % len(records)].path)
        size = LARGE_SIZE if photo.width >= photo.height else LARGE_SIZE[::-1]
        out["upscaled"].append(folder / f"upscaled_{k}.jpg")
        photo.resize(size, Image.Resampling.LANCZOS).save(out["upscaled"][-1],
                                                          quality=LARGE_QUALITY)
        canvas = Image.new("RGB", LARGE_SIZE)
        for t in range(cols * rows):
            tile = load_image(records[(k * cols * rows + t) % len(records)].path)
            canvas.paste(_centre_crop(tile, LARGE_TILE),
                         ((t % cols) * LARGE_TILE[0], (t // cols) * LARGE_TILE[1]))
        out["mosaic"].append(folder / f"mosaic_{k}.jpg")
        canvas.save(out["mosaic"][-1], quality=LARGE_QUALITY)
    return out


def _imagehash_files(paths, functions, draft: int | None = None) -> list[list[np.ndarray]]:
    """imagehash's per-image functions on each file, decoded whole (or drafted)."""
    out = []
    for path in paths:
        image = load_image(path, draft=draft)
        out.append([f(image).hash.flatten() for f in functions])
    return out


def _agreement(codes, reference: list[list[np.ndarray]], index: int) -> dict:
    """How far codes are from imagehash's on the full decode: share of identical codes and
    mean number of differing bits."""
    bits = codes.to_bits().reshape(len(reference), -1)
    ref = np.stack([r[index] for r in reference]).reshape(len(reference), -1)
    differ = (bits != ref).sum(axis=1)
    return {"identical_share": float((differ == 0).mean()),
            "mean_bits_differing": float(differ.mean()), "bits": int(ref.shape[1])}


def bench_draft_files(paths: list[Path], workers: list[int]) -> dict:
    """The five hashes from files: imagehash's functions per image on the full decode (and on
    a draft decode, for reference), our exact decode and our draft decode, timed interleaved
    (best of 2); then each hash alone (imagehash: decode + that function; ours: `describe`
    with one worker), best of 2."""
    exact = [get_algorithm(n) for n in FIVE]
    draft = [get_algorithm(n, decode="draft") for n in FIVE]
    side = draft[0].draft_side
    describe_all(paths[:1], exact + draft, workers=1, show_progress=False)  # colour table
    funcs = {"imagehash": lambda: _imagehash_files(paths, REFERENCE),
             "imagehash_draft_decode": lambda: _imagehash_files(paths, REFERENCE, side)}
    for w in workers:
        for mode, algorithms in (("exact", exact), ("draft", draft)):
            funcs[f"{mode}_workers_{w}"] = (lambda a=algorithms, w=w: describe_all(
                paths, a, workers=w, show_progress=False))
    timing = time_repeated(funcs, repeats=2, warmup=0)
    base = timing["imagehash"].best
    sizes = [Image.open(p).size for p in paths]
    out = {"images": len(paths), "draft_sides": {a.name: a.draft_side for a in draft},
           "imagehash_draft_decode_side": side,
           "megapixels_mean": float(np.mean([w * h for w, h in sizes]) / 1e6),
           "file_megabytes_mean": float(np.mean([os.path.getsize(p) for p in paths]) / 1e6),
           "imagehash_seconds": timing["imagehash"].as_dict(),
           "imagehash_draft_decode_seconds": timing["imagehash_draft_decode"].as_dict(),
           "ours": {}}
    for w in workers:
        e, d = timing[f"exact_workers_{w}"].best, timing[f"draft_workers_{w}"].best
        out["ours"][f"workers_{w}"] = {
            "exact_seconds": e, "draft_seconds": d, "exact_speedup_vs_imagehash": base / e,
            "draft_speedup_vs_imagehash": base / d, "draft_speedup_vs_exact": e / d}
    reference = timing["imagehash"].result
    codes = timing[f"exact_workers_{workers[0]}"].result
    drafted = timing[f"draft_workers_{workers[0]}"].result
    out["exact_bits_equal_imagehash"] = all(
        _agreement(codes[a.label], reference, i)["identical_share"] == 1.0
        for i, a in enumerate(exact))
    out["draft_vs_imagehash_full_decode"] = {
        a.name: _agreement(drafted[a.label], reference, i) for i, a in enumerate(draft)}
    out["per_hash_one_worker"] = _per_hash(paths, exact, draft)
    return out


def _per_hash(paths: list[Path], exact: list, draft: list) -> dict:
    """Each hash alone from the files, best of 2 interleaved runs: imagehash's function
    (decode included), our exact and our draft `describe` with one worker."""
    out = {}
    for function, e, d in zip(REFERENCE, exact, draft, strict=True):
        timing = time_repeated({
            "imagehash": lambda f=function: _imagehash_files(paths, [f]),
            "exact": lambda a=e: describe(paths, a, workers=1, show_progress=False),
            "draft": lambda a=d: describe(paths, a, workers=1, show_progress=False),
        }, repeats=2, warmup=0)
        base = timing["imagehash"].best
        out[e.name] = {"imagehash_seconds": base, "exact_seconds": timing["exact"].best,
                       "draft_seconds": timing["draft"].best,
                       "draft_speedup_vs_imagehash": base / timing["draft"].best,
                       "draft_speedup_vs_exact": timing["exact"].best / timing["draft"].best}
    return out


def bench_draft_speed(records, n_images: int, large_count: int, workers: list[int]) -> dict:
    """`bench_draft_files` on the dataset's photos and on the two kinds of large JPEGs."""
    out = {"dataset_photos": bench_draft_files([r.path for r in records[:n_images]], workers)}
    with tempfile.TemporaryDirectory(prefix="draft_jpegs_") as folder:
        large = make_large_jpegs(records, Path(folder), large_count)
        out["large_jpegs_made"] = LARGE_HOW
        for kind, paths in large.items():
            out[f"large_{kind}"] = bench_draft_files(paths, workers)
    return out


def _query_codes(protocol, algorithms: list, workers: int | None, batch: int = 256
                 ) -> tuple[dict, list]:
    """Every algorithm's codes of the protocol's queries (attacked on the fly, in memory),
    batch by batch, and the queries' records."""
    parts: dict[str, list] = {a.label: [] for a in algorithms}
    records = []
    stream = iter(protocol.queries())
    while chunk := list(islice(stream, batch)):
        found = describe_all(chunk, algorithms, batch_size=len(chunk), workers=workers,
                             on_error="raise", show_progress=False)
        for label, codes in found.items():
            parts[label].append(codes)
        records += [r for r, _ in chunk]
    protocol.finish()
    return {label: type(p[0]).concat(p) for label, p in parts.items()}, records


def _aucs(queries, database, positive: np.ndarray, family: np.ndarray) -> dict:
    """Detection AUC as the benchmark computes it (each query's distance to its nearest
    database image; positives: copies of a database image), overall and per attack family
    (its copies against its negatives)."""
    best = pairwise(queries, database, device="cpu").min(axis=1)
    out = {"all": roc(best, positive)["auc"]}
    for name in sorted(set(family.tolist())):
        mask = family == name
        out[name] = roc(best[mask], positive[mask])["auc"]
    return out


def _change(exact: dict, other: dict) -> dict:
    """AUC of exact and other decode, overall and per family, and the largest change."""
    families = {f: {"exact": exact[f], "draft": other[f], "change": other[f] - exact[f]}
                for f in exact if f != "all"}
    worst = max(families, key=lambda f: abs(families[f]["change"]))
    return {"exact": exact["all"], "draft": other["all"], "change": other["all"] - exact["all"],
            "largest_family_change": {"family": worst, "change": families[worst]["change"]},
            "families": families}


def _described(items: list, algorithms: list, workers: int | None, side: int | None = None,
               chunk: int = 16) -> dict:
    """`describe_all` of (record, file) pairs ``chunk`` at a time (12 MP photos: 36 MB each
    decoded), files read by `describe_all` itself or, with ``side``, drafted to that side
    first (so hashed as given)."""
    parts: dict[str, list] = {a.label: [] for a in algorithms}
    for k in range(0, len(items), chunk):
        batch = items[k:k + chunk]
        if side is not None:
            batch = [(r, load_image(path, draft=side)) for r, path in batch]
        found = describe_all(batch, algorithms, workers=workers, on_error="raise",
                             show_progress=False)
        for label, codes in found.items():
            parts[label].append(codes)
    return {label: type(p[0]).concat(p) for label, p in parts.items()}


def _database_aucs(items: list, exact: list, draft: list, sides: list[int],
                   queries: dict, positive: np.ndarray, family: np.ndarray,
                   workers: int | None) -> dict:
    """AUC of each hash with the database ``items`` ((record, file) pairs) described with the
    exact decode, with the draft decode (each hash's own side), and with the exact hashes on
    drafts of each side of ``sides``; the queries' codes are given."""
    database = _described(items, exact + draft, workers)
    out: dict = {"hashes": {}, "sides": {}}
    exact_aucs = {}
    for e, d in zip(exact, draft, strict=True):
        exact_aucs[e.name] = _aucs(queries[e.label], database[e.label], positive, family)
        out["hashes"][e.name] = _change(exact_aucs[e.name], _aucs(
            queries[d.label], database[d.label], positive, family))
        same = (database[e.label].to_bits() == database[d.label].to_bits()).all(axis=1)
        out["hashes"][e.name]["database_codes_identical_share"] = float(same.mean())
    for side in sides:
        drafted = _described(items, exact, workers, side)
        out["sides"][str(side)] = {e.name: _change(exact_aucs[e.name], _aucs(
            queries[e.label], drafted[e.label], positive, family)) for e in exact}
        for summary in out["sides"][str(side)].values():
            del summary["families"]
    return out


def _upscaled(record, index: int, folder: Path) -> Path:
    """The record's photo upscaled to ~12 MP as `make_large_jpegs` makes its 'upscaled' kind
    (file named by its position: ids may hold folders)."""
    photo = load_image(record.path)
    size = LARGE_SIZE if photo.width >= photo.height else LARGE_SIZE[::-1]
    path = folder / f"{index}.jpg"
    photo.resize(size, Image.Resampling.LANCZOS).save(path, quality=LARGE_QUALITY)
    return path


def bench_draft_auc(records, sizes: list[int], sides: list[int], large_sides: list[int],
                    workers: int | None) -> dict:
    """The study's protocol (seeded split, the 58 default attacks, seed 0) on the dataset:
    the queries as the protocol makes them (attacked in memory, so hashed as given in both
    modes), matched against the database originals read from their files with the exact
    and with the draft decode (and with the exact hashes on drafts of each of ``sides``, for
    the rule); then the same with the database originals upscaled to ~12 MP JPEGs
    (`LARGE_HOW`, 'upscaled'; ``large_sides``). AUC per hash and per attack family."""
    tic = time.perf_counter()
    attacks = parse_attack_specs(["default"])
    protocol = study_protocol(records, attacks, *sizes, workers=workers)
    exact = [get_algorithm(n) for n in FIVE]
    draft = [get_algorithm(n, decode="draft") for n in FIVE]
    queries, query_records = _query_codes(protocol, exact + draft, workers)
    ids = {r.image_id for r in protocol.database}
    positive = np.array([r.source_id in ids for r in query_records])
    families = {a.id: a.family for a in attacks}
    family = np.array([str(families[r.attack_id]) for r in query_records])
    out = {"protocol": {"database": len(ids), "queries": len(query_records),
                        "positives": int(positive.sum()), "attacks": len(attacks),
                        "sizes": sizes, "split_seed": 0, "seed": 0},
           "draft_sides": {a.name: a.draft_side for a in draft}}
    out["dataset_files"] = _database_aucs([(r, r.path) for r in protocol.database], exact,
                                          draft, sides, queries, positive, family, workers)
    with tempfile.TemporaryDirectory(prefix="draft_database_") as folder:
        with ThreadPoolExecutor(max(1, workers or 1)) as pool:
            paths = list(pool.map(lambda k: _upscaled(protocol.database[k], k, Path(folder)),
                                  range(len(protocol.database))))
        out["large_database_made"] = (
            "each database original resized with Pillow's LANCZOS to 4000x3000 (3000x4000 "
            "for a portrait photo) and saved by Pillow as JPEG at quality 92 (4:2:0), in a "
            "temporary folder at run time; the queries unchanged")
        out["large_database"] = _database_aucs(list(zip(protocol.database, paths, strict=True)),
                                               exact, draft, large_sides, queries, positive,
                                               family, workers)
    out["seconds"] = time.perf_counter() - tic
    return out

PARTS = ("five_hashes", "crop_resistant", "jensenshannon", "hamming_1nn", "keypoints",
         "draft_speed", "draft_auc")
#: Parts that run only when asked (minutes on two cores): not in the default list.
OPT_IN = ("draft_auc",)


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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The flags, three-number flags checked."""
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
    parser.add_argument("--large-count", type=integer(1, 1000), default=8,
                        help="draft_speed: ~12 MP JPEGs of each kind made from the photos "
                             "(upscaled and mosaic; 8)")
    parser.add_argument("--auc-sizes", type=integer(1, 100_000), nargs="+",
                        default=[250, 250, 100], metavar=("E", "C A"),
                        help="draft_auc: the protocol's database, control and attacked "
                             "images per group (the study's 250 250 100)")
    parser.add_argument("--draft-sides", type=integer(1, 4096), nargs="*", default=[32, 64],
                        help="draft_auc: other short sides the database is drafted to, with "
                             "the exact hashes, to compare with each hash's own rule (32 64)")
    parser.add_argument("--large-draft-sides", type=integer(1, 4096), nargs="*",
                        default=[400, 1000],
                        help="draft_auc: the same for the ~12 MP database (1/4 and 1/2 scale "
                             "there; every side up to 375 is 1/8; 400 1000)")
    parser.add_argument("--parts", nargs="+", choices=PARTS,
                        default=[p for p in PARTS if p not in OPT_IN],
                        help=f"which measurements to run (all but {', '.join(OPT_IN)}, "
                             "which takes minutes)")
    add_output_file_arguments(parser, "benchmarks/hashing.json")
    args = parser.parse_args(argv)
    for flag in ("js", "hamming", "keypoints", "auc_sizes"):
        if len(getattr(args, flag)) != 3:
            parser.error(f"argument --{flag.replace('_', '-')}: expected 3 numbers, got "
                         f"{len(getattr(args, flag))}")
    return args


@script_main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
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
            "draft_speed": lambda: bench_draft_speed(records, args.n_images, args.large_count,
                                                     workers),
            "draft_auc": lambda: bench_draft_auc(
                load_dataset(args.dataset, args.data_root).records, args.auc_sizes,
                args.draft_sides, args.large_draft_sides, available_cpus()),
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
