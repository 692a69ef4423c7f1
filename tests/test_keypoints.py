"""Keypoint methods (ORB, SIFT, FAST + DAISY, FAST + LATCH): descriptors are OpenCV's, and the
batched matching gives, pair by pair, what OpenCV's BFMatcher followed by a sort gives."""

from __future__ import annotations

import json
import logging
import math

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score

from data_retrieval import ImageRecord, load_dataset
from hashing import (
    BinaryCodes,
    FloatFeatures,
    LocalDescriptors,
    MultiCodes,
    describe,
    get_algorithm,
    load_descriptors,
    nearest,
    neighbours,
    pairwise,
    run_benchmark,
    save_descriptors,
)
from hashing.distances import native
from helpers import load_image

NORMS = {"hamming": cv2.NORM_HAMMING, "l2": cv2.NORM_L2, "l1": cv2.NORM_L1}


def bf_distances(queries: LocalDescriptors, database: LocalDescriptors) -> np.ndarray:
    """The oracle: every pair matched by OpenCV's BFMatcher, matches sorted, the cutoff-th."""
    bf = cv2.BFMatcher(NORMS[queries.norm], crossCheck=False)
    out = np.full((len(queries), len(database)), np.inf)
    for i, q in enumerate(queries.per_image()):
        for j, d in enumerate(database.per_image()):
            if len(q) == 0 or len(d) == 0:
                continue
            matches = sorted(bf.match(q, d), key=lambda m: m.distance)
            if len(matches) >= queries.cutoff:
                distance = matches[queries.cutoff - 1].distance
                out[i, j] = distance / (8 * q.shape[1]) if queries.norm == "hamming" \
                    else distance
    return out


@pytest.fixture(params=["compiled", "compiled-portable", "torch"])
def matching_path(request, monkeypatch):
    """Binary descriptors through the compiled kernel (its AVX-512 form where the CPU has
    one), its portable loop, and the torch path a machine without a C compiler uses."""
    native.reset()
    if request.param == "torch":
        monkeypatch.setenv("IMAGE_SIMILARITY_LAB_NO_NATIVE", "1")
    elif native.keypoint_kernel() is None:
        pytest.skip("no C compiler: the compiled kernel cannot be built")
    elif request.param == "compiled-portable":
        monkeypatch.setenv("IMAGE_SIMILARITY_LAB_NO_SIMD", "1")
    yield request.param
    native.reset()


@pytest.fixture(scope="module")
def images(sample_paths) -> list[Image.Image]:
    """Real photos, plus what breaks naive matching: a crop with few keypoints, a flat image
    with none, a small image, and a copy turned and cropped."""
    photos = [load_image(sample_paths[n]) for n in ("chelsea", "coffee", "rocket", "astronaut",
                                                     "motorcycle")]
    return photos + [
        photos[0].crop((0, 0, 70, 70)),
        Image.new("RGB", (200, 150), (120, 120, 120)),
        photos[1].resize((90, 64)),
        photos[2].rotate(10).crop((20, 20, 300, 280)),
    ]


@pytest.mark.parametrize("method,norm,cutoff", [
    ("orb", "hamming", 1), ("orb", "hamming", 3), ("latch", "hamming", 1),
    ("latch", "hamming", 2), ("sift", "l2", 1), ("sift", "l1", 2), ("daisy", "l2", 1),
    ("daisy", "l1", 4),
])
def test_batched_matching_equals_bfmatcher(images, matching_path, method, norm, cutoff):
    algorithm = get_algorithm(method, norm=norm, cutoff=cutoff, n_features=20)
    found = algorithm.describe(images)
    counts = found.counts.tolist()
    assert counts[6] == 0, "the flat image has no keypoint"
    assert 0 < min(c for c in counts if c) < 20 or method == "sift"
    ours = pairwise(found, found, device="cpu")
    reference = bf_distances(found, found)
    assert np.array_equal(np.isinf(ours), np.isinf(reference))
    finite = np.isfinite(reference)
    if method != "daisy":  # bits, and SIFT's integer sums: OpenCV's float32 distances exactly
        assert np.array_equal(ours[finite], reference[finite].astype(np.float32))
    # DAISY: OpenCV sums in float32, we in float64
    assert np.allclose(ours[finite], reference[finite], rtol=1e-6, atol=1e-6)
    # blocks of queries smaller than the whole set give the same matrix (float products may
    # round differently in blocks of another size)
    blocked = pairwise(found, found, device="cpu", max_block_elements=500)
    assert np.array_equal(blocked, ours) if norm == "hamming" else np.allclose(
        blocked, ours, rtol=1e-6, atol=1e-7)


def test_real_photos_and_their_copies_equal_bfmatcher(bsds_root):
    photos = load_dataset("bsds500", bsds_root, limit=6).records
    originals = [load_image(r.path) for r in photos]
    copies = [im.rotate(5).resize((im.width // 2, im.height // 2)) for im in originals]
    copies += [originals[0].crop((100, 80, 220, 180))]
    for method in ("orb", "sift", "latch", "daisy"):
        algorithm = get_algorithm(method)
        database, queries = algorithm.describe(originals), algorithm.describe(copies)
        ours = pairwise(queries, database, device="cpu")
        reference = bf_distances(queries, database)
        finite = np.isfinite(reference)
        assert np.array_equal(np.isinf(ours), ~finite)
        assert np.allclose(ours[finite], reference[finite], rtol=1e-6, atol=1e-6), method
        if method in ("orb", "sift"):  # rotation-invariant: turned copies find their originals
            assert (ours[:6].argmin(1) == np.arange(6)).mean() >= 5 / 6, method


def test_descriptors_are_opencv_s(images):
    gray = np.asarray(images[0].convert("L"))
    orb = get_algorithm("orb", n_features=30).describe(images[:1])
    expected = cv2.ORB_create(nfeatures=30).detectAndCompute(gray, None)[1]
    assert orb.values.dtype == np.uint8 and np.array_equal(orb.per_image()[0], expected)
    sift = get_algorithm("sift").describe(images[:1])
    assert np.array_equal(sift.per_image()[0],
                          cv2.SIFT_create(nfeatures=20).detectAndCompute(gray, None)[1])
    keypoints = cv2.ORB_create(nfeatures=20).detect(gray, None)
    for method, extractor in (("daisy", cv2.xfeatures2d.DAISY_create()),
                              ("latch", cv2.xfeatures2d.LATCH_create())):
        ours = get_algorithm(method).describe(images[:1]).per_image()[0]
        assert np.array_equal(ours, extractor.compute(gray, keypoints)[1]), method


def test_parameters_are_checked_and_named():
    with pytest.raises(ValueError, match="hamming only"):
        get_algorithm("orb", norm="l2").describe([Image.new("L", (64, 64))])
    with pytest.raises(ValueError, match="l2 or l1"):
        get_algorithm("sift", norm="hamming").describe([Image.new("L", (64, 64))])
    with pytest.raises(ValueError, match="n_features must be >= 1"):
        get_algorithm("daisy", n_features=0).describe([Image.new("L", (64, 64))])
    assert get_algorithm("orb").label == "orb"
    assert get_algorithm("sift", n_features=300, norm="l1").label.startswith("sift_")


def test_no_keypoint_is_infinitely_far_and_reported(tmp_path, sample_paths, caplog):
    Image.new("RGB", (120, 90), (30, 60, 90)).save(tmp_path / "flat.png")
    load_image(sample_paths["coffee"]).save(tmp_path / "coffee.png")
    with caplog.at_level(logging.WARNING):
        found = describe(str(tmp_path), "orb")
    assert found.ids == ("coffee", "flat") and found.counts.tolist() == [20, 0]
    assert "no keypoint in 1 of 2 images" in caplog.text and "flat" in caplog.text
    distances = pairwise(found, found)
    assert distances[0, 0] == 0 and np.isinf(distances[1]).all() and np.isinf(distances[:, 1]).all()


def test_benchmark_scores_keypoint_methods(images):
    database = [(ImageRecord(f"db{i}", None), im) for i, im in enumerate(images[:5])]
    queries = [(ImageRecord(f"q{i}", None, source_id=f"db{i}", attack_id="turn"),
                im.rotate(4)) for i, im in enumerate(images[:5])]
    queries.append((ImageRecord("flat", None, source_id="db0", attack_id="flat"), images[6]))
    queries.append((ImageRecord("other", None, source_id="other", attack_id="none"),
                    images[7]))
    result = run_benchmark([get_algorithm("orb"), get_algorithm("sift")], database, queries,
                           device="cpu")
    for label, rows in result.matches.groupby("algorithm"):
        flat = rows[rows["query_id"] == "flat"].iloc[0]
        assert math.isinf(flat["distance"]) and not flat["correct"]
        assert flat["nearest_index"] == -1 and flat["nearest_id"] == ""
        assert rows[rows["query_id"].str.startswith("q")]["correct"].all(), label
    from hashing.evaluation.metrics import roc

    rows = result.matches[result.matches["algorithm"] == "orb"]
    positive = (rows["kind"] == "positive").to_numpy()
    scores = -rows["distance"].replace(np.inf, 1e9).to_numpy()
    assert roc(rows["distance"].to_numpy(), positive)["auc"] == pytest.approx(
        roc_auc_score(positive, scores))
    # the summary of SIFT's L2 distances (tens to hundreds) is taken at its own operating
    # point, ORB's bit error rates at the fixed threshold; detection counted by hand
    from hashing.evaluation.digest import compute_digest

    summary = compute_digest(result, summary_threshold=0.2)["summary"].set_index("algorithm")
    assert result.metrics == {"orb": "local_hamming", "sift": "local_l2"}
    assert summary.loc["orb", "threshold_rule"] == "fixed"
    assert summary.loc["orb", "threshold"] == 0.2
    assert summary.loc["sift", "threshold_rule"] == "fpr_0.005"
    t = summary.loc["sift", "threshold"]
    assert t == summary.loc["sift", "threshold_at_fpr_0.005"] and t > 1
    for label in ("orb", "sift"):
        rows = result.matches[result.matches["algorithm"] == label]
        pos = rows[rows["kind"] == "positive"]
        at = summary.loc[label, "threshold"]
        assert summary.loc[label, "detection_recall"] == pytest.approx(
            (pos["distance"] <= at).mean())


def test_store_nearest_and_neighbours(images, tmp_path, caplog):
    found = get_algorithm("sift", cutoff=2).describe(images).with_identity(
        ids=[f"im{i}" for i in range(len(images))], method="sift_cutoff=2")
    save_descriptors(found, "photos", root=tmp_path)
    meta = json.loads((tmp_path / "photos" / "sift_cutoff=2.json").read_text())
    assert meta["kind"] == "local" and meta["counts"] == found.counts.tolist()
    back = load_descriptors("photos", "sift_cutoff=2", root=tmp_path)
    assert isinstance(back, LocalDescriptors) and back.ids == found.ids
    assert np.array_equal(back.values, found.values) and back.cutoff == 2
    matrix = pairwise(found, found)
    assert np.array_equal(pairwise(back, found), matrix)
    dist, index = nearest(back, found, k=3)
    order = np.argsort(matrix, axis=1, kind="stable")[:, :3]
    assert np.array_equal(index, order)
    assert np.array_equal(dist, np.take_along_axis(matrix, order, 1))
    table = neighbours(back[:2], found, k=2)
    assert table["neighbour_id"].tolist()[::2] == ["im0", "im1"]
    # the flat image (im6, no keypoint) is nobody's neighbour and has none: no rows at an
    # infinite distance, which would name arbitrary images
    with caplog.at_level(logging.WARNING, logger="hashing.distances.compare"):
        table = neighbours(back, found, k=len(found))
    assert np.isfinite(table["distance"]).all()
    assert "im6" not in set(table["query_id"]) | set(table["neighbour_id"])
    assert "im6" in caplog.text
    finite = np.isfinite(matrix)
    assert len(table) == finite.sum()


def test_descriptor_object_pads_joins_and_refuses():
    a = LocalDescriptors.from_list([np.ones((2, 4), np.uint8), None], "hamming")
    b = LocalDescriptors.from_list([np.zeros((3, 4), np.uint8)], "hamming")
    joined = LocalDescriptors.concat([a, b])
    for cls in (LocalDescriptors, BinaryCodes, FloatFeatures, MultiCodes):
        with pytest.raises(ValueError, match="at least one part"):
            cls.concat([])
    with pytest.raises(TypeError, match="part 1 is BinaryCodes"):
        LocalDescriptors.concat([a, BinaryCodes(np.zeros((1, 1), np.uint8), 8)])
    assert joined.values.shape == (3, 3, 4) and joined.counts.tolist() == [2, 0, 3]
    assert joined[2].per_image()[0].shape == (3, 4) and joined.n_bits == 32
    with pytest.raises(ValueError, match="cannot be compared"):
        LocalDescriptors(np.zeros((1, 2, 4), np.float32), [1], "hamming")
    with pytest.raises(ValueError, match="counts must lie"):
        LocalDescriptors(np.zeros((1, 2, 4), np.uint8), [3], "hamming")
    orb = LocalDescriptors(np.zeros((1, 1, 32), np.uint8), [1], "hamming", method="orb")
    latch = LocalDescriptors(np.zeros((1, 1, 32), np.uint8), [1], "hamming", method="latch")
    with pytest.raises(ValueError, match="cannot compare descriptors of 'orb'"):
        pairwise(orb, latch)
    from clustering import cluster
    from fast_search import build_index  # noqa: F401  (the package a user reaches for)
    from fast_search.data import _open

    with pytest.raises(TypeError, match="several descriptors per image"):
        cluster(joined, "duplicates", threshold=0.1)
    with pytest.raises(TypeError, match="cannot hold"):
        _open(orb, None, "database")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matching_equals_cpu(images):
    for method in ("orb", "sift"):
        found = get_algorithm(method).describe(images)
        assert np.allclose(pairwise(found, found, device="cuda"),
                           pairwise(found, found, device="cpu"), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("length,widths", [(32, (21, 7)), (16, (5, 3)), (40, (4, 9)),
                                           (32, (6, 21))])
def test_binary_matching_of_any_shape_equals_brute_force(matching_path, length, widths):
    """Odd descriptor counts, database images of one partial block of 8 descriptors and of
    several (the AVX-512 kernel's blocks), short descriptors (zero-padded to 256 bits) and
    long ones (the torch path), every cutoff: against NumPy's popcount over every pair."""
    rng = np.random.default_rng(length)
    sets = []
    for width, n in zip(widths, (9, 6), strict=True):
        counts = rng.integers(0, width + 1, n)
        counts[0] = width
        sets.append(LocalDescriptors.from_list(
            [rng.integers(0, 256, (c, length), dtype=np.uint8) for c in counts], "hamming",
            dim=length))
    for cutoff in (1, 2, 5):
        queries = LocalDescriptors(sets[0].values, sets[0].counts, "hamming", cutoff)
        bits = np.bitwise_count(queries.values[:, None, :, None, :]
                                ^ sets[1].values[None, :, None, :, :]).sum(-1)  # q, d, i, t
        bits = np.where(np.arange(widths[1]) < sets[1].counts[None, :, None, None], bits,
                        10 ** 6).min(-1).astype(float)
        bits[bits >= 10 ** 6] = np.inf
        bits = np.where(np.arange(widths[0])[None, None, :] < queries.counts[:, None, None],
                        bits, np.inf)
        expected = np.sort(bits, axis=2)[:, :, cutoff - 1] / (8 * length) \
            if cutoff <= widths[0] else np.full(bits.shape[:2], np.inf)
        assert np.array_equal(pairwise(queries, sets[1], device="cpu"),
                              expected.astype(np.float32))


def test_benchmark_script_and_study_protocol_take_keypoints(tmp_path):
    """The speed benchmark's keypoint part (checks its own distances against the study's
    loop), and the benchmark script with keypoint methods, figures included."""
    import subprocess
    import sys

    from tests.conftest import REPO

    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, "scripts/benchmark_hashing.py", "--dataset",
                           "sample", "--parts", "keypoints", "--keypoints", "12", "5", "20",
                           "--output", str(out)], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    part = json.loads(out.read_text())["keypoints"]
    assert part["same_distances"] and part["queries"] == 12 and part["database"] == 5
    assert part["study_loop_seconds"]["median"] > 0 and part["speedup_median"] > 0
    refused = subprocess.run([sys.executable, "scripts/benchmark_hashing.py", "--dataset",
                              "sample", "--parts", "keypoints", "--keypoints", "4", "50", "20",
                              "--output", str(tmp_path / "b2.json")], cwd=REPO,
                             capture_output=True, text=True)
    assert refused.returncode == 2 and "sample has 11" in refused.stderr
    done = subprocess.run([sys.executable, "scripts/evaluate_copy_detection.py", "--dataset",
                           "sample", "--n-experimental", "4", "--n-control", "3",
                           "--n-attacked", "3", "--attacks", "jpg_compression_50",
                           "rotation_20_and_rescaling", "--algorithms", "orb",
                           "sift:n_features=30", "--output", str(tmp_path / "kp")],
                          cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    import pandas as pd

    summary = pd.read_csv(tmp_path / "kp" / "summary.csv")
    assert list(summary.algorithm) == ["orb", "sift_n_features=30"]
    assert summary["auc"].between(0, 1).all()
    assert (tmp_path / "kp" / "figures" / "roc.png").is_file()


def test_images_opencv_cannot_look_at_and_stored_sets_refused(tmp_path, sample_paths, caplog):
    """An image one pixel wide (ORB's pyramid fails on it) has no keypoint instead of failing
    the batch; a stored keypoint method is refused by Faiss search and clustering as the
    in-memory one is."""
    folder = tmp_path / "photos"
    folder.mkdir()
    load_image(sample_paths["coffee"]).save(folder / "coffee.png")
    Image.new("RGB", (1, 1)).save(folder / "dot.png")
    load_image(sample_paths["rocket"]).crop((0, 0, 300, 1)).save(folder / "line.png")
    for method in ("orb", "sift", "daisy", "latch"):
        with caplog.at_level(logging.WARNING):
            found = describe(str(folder), method)
        assert found.ids == ("coffee", "dot", "line") and found.counts[0] > 0, method
        assert (found.counts[1:] == 0).all(), method
        save_descriptors(found, "photos", root=tmp_path / "features")
    from clustering import cluster
    from fast_search import load_search_set

    with pytest.raises(TypeError, match="several descriptors per image"):
        load_search_set(["photos/orb"], queries="photos/orb", root=tmp_path / "features")
    with pytest.raises(TypeError, match="several descriptors per image"):
        cluster("photos/sift", "duplicates", metric="l2", threshold=0.1,
                root=str(tmp_path / "features"))


def test_matcher_is_made_once_per_database_and_not_kept_after_it(images):
    """A benchmark matches batch after batch against one database: its layout is made once,
    and forgotten (with its memory) when the database goes."""
    import gc

    from hashing.distances import local as keypoints

    found = get_algorithm("orb").describe(images)
    latch = get_algorithm("latch").describe(images)
    database, other = found[:5], latch[:5]
    first = pairwise(found[5:], database, device="cpu")
    matcher = keypoints._CACHED[-1][3]
    # another method's database in between (a benchmark of several methods) evicts nothing
    pairwise(latch[5:], other, device="cpu")
    second = pairwise(found[:3], database, device="cpu")
    mine = [entry for entry in keypoints._CACHED if entry[0]() is database]
    assert len(mine) == 1 and mine[0][3] is matcher
    assert np.array_equal(second, pairwise(found[:3], found[:5], device="cpu"))
    assert np.array_equal(first, pairwise(found[5:], found[:5], device="cpu"))
    gc.collect()
    assert any(entry[0]() is database for entry in keypoints._CACHED)
    del database, mine
    gc.collect()
    assert all(entry[0]() is other for entry in keypoints._CACHED)
    assert len(keypoints._CACHED) == 1
