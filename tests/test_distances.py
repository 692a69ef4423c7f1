"""Distances against SciPy's cdist and hand-computed examples."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist, jensenshannon

from hashing.distances import native, nearest, pairwise
from helpers.descriptors import BinaryCodes, FloatFeatures
from tests.conftest import compiled_or_fallback

RNG = np.random.default_rng(0)


def scipy_reference(q: np.ndarray, d: np.ndarray, metric: str) -> np.ndarray:
    q64, d64 = q.astype(np.float64), d.astype(np.float64)
    if metric == "hamming":
        return cdist(np.unpackbits(q, axis=1), np.unpackbits(d, axis=1), "hamming")
    if metric == "cosine":
        return cdist(q64, d64, "cosine") / 2
    if metric == "jensenshannon":  # SciPy's function, pair by pair (it normalises itself)
        return np.array([[jensenshannon(a, b, base=2) for b in d64] for a in q64])
    return cdist(q64, d64, {"l1": "cityblock", "l2": "euclidean"}[metric])


def data(metric: str, nq: int = 37, nd: int = 53, dim: int = 48):
    if metric == "hamming":
        return (RNG.integers(0, 256, (nq, dim // 8), dtype=np.uint8),
                RNG.integers(0, 256, (nd, dim // 8), dtype=np.uint8))
    if metric == "jensenshannon":
        q = RNG.random((nq, dim), dtype=np.float32) * (RNG.random((nq, dim)) > 0.3)
        return q.astype(np.float32), RNG.random((nd, dim), dtype=np.float32)
    return (RNG.standard_normal((nq, dim)).astype(np.float32),
            RNG.standard_normal((nd, dim)).astype(np.float32))


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("metric", ["hamming", "cosine", "jensenshannon", "l1", "l2"])
def test_pairwise_matches_scipy(metric, device):
    q, d = data(metric)
    ours = pairwise(q, d, metric, device=device)
    assert ours.dtype == np.float32 and ours.shape == (37, 53)
    np.testing.assert_allclose(ours, scipy_reference(q, d, metric), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("metric", ["hamming", "cosine", "jensenshannon", "l1", "l2"])
def test_small_blocks_give_the_same_answer(metric):
    q, d = data(metric)
    whole = pairwise(q, d, metric, device="cpu")
    np.testing.assert_allclose(pairwise(q, d, metric, device="cpu", max_block_elements=100),
                               whole, atol=1e-6)
    dist, idx = nearest(q, d, metric, k=3, device="cpu", max_block_elements=200)
    ref = scipy_reference(q, d, metric)
    np.testing.assert_allclose(dist, np.sort(ref, axis=1)[:, :3], atol=1e-5)
    np.testing.assert_allclose(np.take_along_axis(ref, idx, 1), dist, atol=1e-5)


def test_near_duplicates_are_close_to_zero():
    p = RNG.random((5, 1280), dtype=np.float32)
    q = p * (1 + 1e-4 * RNG.standard_normal(p.shape).astype(np.float32))
    q = np.abs(q)
    for metric in ("jensenshannon", "cosine", "l2"):
        np.testing.assert_allclose(pairwise(q, p, metric), scipy_reference(q, p, metric),
                                   atol=1e-5)
        assert np.allclose(np.diag(pairwise(p, p, metric)), 0, atol=1e-6)


def test_hamming_by_hand():
    a = np.array([[0b11110000]], dtype=np.uint8)
    b = np.array([[0b11110000], [0b11111111], [0b00001111], [0b01110000]], dtype=np.uint8)
    np.testing.assert_allclose(pairwise(a, b, "hamming")[0], [0, 0.5, 1, 0.125])
    dist, idx = nearest(b, b, "hamming", k=1)
    assert idx.ravel().tolist() == [0, 1, 2, 3] and (dist == 0).all()


def test_nearest_ties_go_to_the_lowest_index():
    db = np.array([[1], [2], [1], [2]], dtype=np.uint8)
    q = np.array([[0], [3], [2]], dtype=np.uint8)  # 0 and 3 are one bit from 1 and from 2
    for block in (16, 1 << 20):
        dist, idx = nearest(q, db, "hamming", k=1, max_block_elements=block)
        assert idx.ravel().tolist() == [0, 0, 1]
        np.testing.assert_allclose(dist.ravel(), [0.125, 0.125, 0])


def test_errors_are_clear():
    with pytest.raises(ValueError, match="metrics: hamming"):
        pairwise(np.ones((2, 3)), np.ones((2, 3)), "euclid")
    with pytest.raises(ValueError, match="queries row 1 has negative values"):
        pairwise(np.array([[1.0, 2], [-1, 3]]), np.ones((2, 2)), "jensenshannon")
    with pytest.raises(ValueError, match="database row 0 sums to 0"):
        pairwise(np.ones((2, 2)), np.zeros((1, 2)), "jensenshannon")
    with pytest.raises(ValueError, match="packed uint8"):
        pairwise(np.ones((2, 2)), np.ones((2, 2)), "hamming")
    with pytest.raises(ValueError, match="dimensions"):
        pairwise(np.ones((2, 2)), np.ones((2, 3)), "l2")
    with pytest.raises(ValueError, match="k must be in"):
        nearest(np.ones((2, 2)), np.ones((2, 2)), "l2", k=3)


@pytest.mark.parametrize("n_bytes", [8, 13, 32])
def test_hamming_nearest_on_long_codes_matches_scipy(n_bytes):
    q = RNG.integers(0, 256, (40, n_bytes), dtype=np.uint8)
    d = RNG.integers(0, 256, (300, n_bytes), dtype=np.uint8)
    ref = scipy_reference(q, d, "hamming")
    for k in (1, 4):
        dist, idx = nearest(q, d, "hamming", k=k)
        np.testing.assert_allclose(dist, np.sort(ref, axis=1)[:, :k], atol=1e-7)
        np.testing.assert_allclose(np.take_along_axis(ref, idx, 1), dist, atol=1e-7)
    dist, idx = nearest(q, d, "hamming", k=1)
    first = (ref == ref.min(axis=1, keepdims=True)).argmax(axis=1)  # lowest index on ties
    assert idx.ravel().tolist() == first.tolist()


# --- Jensen-Shannon: the compiled kernel and the torch path -----------------------------------

@pytest.fixture(params=["compiled", "torch"])
def js_path(request, monkeypatch):
    """Run a test once with the compiled kernel (hashing.distances.native) and once with torch."""
    yield from compiled_or_fallback(request, monkeypatch, native.js_kernel, "Jensen-Shannon")


def hard_js_cases() -> tuple[np.ndarray, np.ndarray]:
    """Queries and database rows with zeros on either side, disjoint supports, tiny values,
    identical rows and near-duplicates at several scales."""
    dim = 300
    d = RNG.random((40, dim), dtype=np.float32)
    d[:10] *= RNG.random((10, dim)) > 0.5  # zeros in the database
    d[10, :] = 0
    d[10, 0] = 1  # one-hot
    d[11] = np.where(np.arange(dim) < 150, 1e-30, 1.0).astype(np.float32)  # tiny entries
    q = [d[0], d[5], d[12]]  # identical rows
    for scale in (1e-2, 1e-3, 1e-4, 1e-5):  # near-duplicates
        q.append(np.abs(d[13] * (1 + scale * RNG.standard_normal(dim))))
    q.append(np.where(np.arange(dim) == 1, 1.0, 0.0))  # disjoint from d[10]: distance 1
    q.append(np.where(np.arange(dim) < 150, 0.0, 1.0))  # zeros exactly where d[11] is tiny
    q.extend(RNG.random((6, dim)) * (RNG.random((6, dim)) > 0.3))  # zeros in the queries
    return np.array(q, dtype=np.float32), d


def test_jensenshannon_paths_match_scipy(js_path):
    q, d = hard_js_cases()
    ref = scipy_reference(q, d, "jensenshannon")
    ours = pairwise(q, d, "jensenshannon", device="cpu")
    np.testing.assert_allclose(ours, ref, atol=1e-6)
    assert ours[0, 0] == 0 and ours[1, 5] == 0 and ours[2, 12] == 0
    assert ours[7, 10] == pytest.approx(1.0, abs=1e-7)
    dist, idx = nearest(q, d, "jensenshannon", k=2, device="cpu", max_block_elements=5000)
    np.testing.assert_allclose(dist, np.sort(ref, axis=1)[:, :2], atol=1e-6)
    np.testing.assert_allclose(np.take_along_axis(ref, idx, 1), dist, atol=1e-6)


def test_jensenshannon_paths_on_wide_blocks(js_path):
    """More database rows than queries (the kernel splits the database over threads)."""
    q = RNG.random((3, 1280), dtype=np.float32)
    d = np.concatenate([q * (1 + 1e-3 * RNG.standard_normal(q.shape).astype(np.float32)),
                        RNG.random((97, 1280), dtype=np.float32)])
    np.testing.assert_allclose(pairwise(q, np.abs(d), "jensenshannon", device="cpu"),
                               scipy_reference(q, np.abs(d), "jensenshannon"), atol=1e-6)


def test_compiled_log1p_is_accurate():
    native.reset()
    lib = native.js_kernel()
    if lib is None:
        pytest.skip("no C compiler here: the compiled Jensen-Shannon kernel cannot be built")
    y = np.concatenate([np.linspace(-0.5, 10, 200_001), np.geomspace(1e-12, 1e36, 20_001),
                        -np.geomspace(1e-12, 0.5, 20_001), [0.0]]).astype(np.float32)
    exact = np.log1p(y.astype(np.float64))
    ours = native.js_log1p(lib, y).astype(np.float64)
    nonzero = exact != 0
    assert np.max(np.abs(ours - exact)[nonzero] / np.abs(exact[nonzero])) < 2e-7
    assert ours[~nonzero].tolist() == [0.0]


def test_without_a_compiler_the_torch_path_answers(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("IMAGE_SIMILARITY_LAB_CACHE", str(tmp_path))
    monkeypatch.delenv("IMAGE_SIMILARITY_LAB_NO_NATIVE", raising=False)
    monkeypatch.setattr(native, "_compiler", lambda: None)
    native.reset()
    try:
        with caplog.at_level("WARNING", logger="hashing.distances.native"):
            assert native.js_kernel() is None
        assert "no C compiler found" in caplog.text
        q, d = data("jensenshannon")
        np.testing.assert_allclose(pairwise(q, d, "jensenshannon", device="cpu"),
                                   scipy_reference(q, d, "jensenshannon"), atol=1e-6)
    finally:
        native.reset()


def test_the_kernel_is_compiled_once_into_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("IMAGE_SIMILARITY_LAB_CACHE", str(tmp_path))
    monkeypatch.delenv("IMAGE_SIMILARITY_LAB_NO_NATIVE", raising=False)
    native.reset()
    try:
        if native.js_kernel() is None:
            pytest.skip("no C compiler here: the compiled Jensen-Shannon kernel cannot be built")
        built = sorted(tmp_path.iterdir())
        assert len(built) == 1 and built[0].suffix == ".so"
        stamp = built[0].stat().st_mtime_ns
        native.reset()
        assert native.js_kernel() is not None
        assert sorted(tmp_path.iterdir()) == built and built[0].stat().st_mtime_ns == stamp
    finally:
        native.reset()


# --- codes of any length: the true bit count, one place ------------------------------------------


@pytest.fixture(scope="module")
def sample_images():
    from data_retrieval import sample_files
    from helpers import load_image

    return [load_image(p) for p in sample_files().values()]


def test_bit_error_rate_of_42_bit_codes_equals_imagehash(sample_images):
    """colorhash codes are 42 bits packed in 6 bytes: 33 differing bits of 66 must give 0.5,
    not 33/72. The oracle is imagehash's own subtraction."""
    import imagehash

    from hashing import get_algorithm

    codes = get_algorithm("colorhash").describe(sample_images)
    assert codes.n_bits == 42 and codes.packed.shape[1] == 6
    theirs = [imagehash.colorhash(im) for im in sample_images]
    expected = np.array([[(a - b) / 42 for b in theirs] for a in theirs], dtype=np.float32)
    for device in ("cpu",) + (("cuda",) if torch.cuda.is_available() else ()):
        np.testing.assert_allclose(pairwise(codes, codes, device=device), expected, atol=1e-7)
        dist, idx = nearest(codes[:3], codes, k=2, device=device)
        np.testing.assert_allclose(dist, np.sort(expected[:3], axis=1)[:, :2], atol=1e-7)
    assert codes[0] - codes[1] == theirs[0] - theirs[1]
    assert [str(h) for h in theirs] == codes.to_hex()
    again = BinaryCodes.from_hex([str(h) for h in theirs], 42)
    np.testing.assert_array_equal(again.packed, codes.packed)


def test_66_bit_codes_divide_by_66():
    """Hand-computed: two 66-bit codes differing in 33 bits are at 0.5."""
    a = np.zeros((1, 66), bool)
    b = a.copy()
    b[0, ::2] = True  # 33 bits set
    codes = BinaryCodes.from_bits(np.concatenate([a, b]))
    assert codes.packed.shape == (2, 9)
    assert pairwise(codes[:1], codes[1:])[0, 0] == pytest.approx(0.5)
    assert nearest(codes[1:], codes[:1])[0][0, 0] == pytest.approx(0.5)
    assert pairwise(codes.packed[:1], codes.packed[1:], "hamming", n_bits=66)[0, 0] == 0.5
    with pytest.raises(ValueError, match="n_bits 80"):
        pairwise(codes.packed, codes.packed, "hamming", n_bits=80)
    with pytest.raises(ValueError, match="not a hex code"):
        BinaryCodes.from_hex(["zz"], 66)
    with pytest.raises(ValueError, match="more than 4 bits"):
        BinaryCodes.from_hex(["1f"], 4)


def test_descriptor_objects_carry_their_metric():
    values = np.abs(np.random.default_rng(0).normal(size=(5, 8))).astype(np.float32)
    features = FloatFeatures(values, "jensenshannon")
    expected = cdist(values, values, lambda u, v: jensenshannon(u, v, base=2))
    np.testing.assert_allclose(pairwise(features, features), expected, atol=1e-6)
    with pytest.raises(TypeError, match="cannot compare"):
        pairwise(features, BinaryCodes.from_bits(values > 0.5))
    with pytest.raises(ValueError, match="need a metric"):
        pairwise(values, values)


# --- a database larger than memory: blocks in, running k best out --------------------------------


@pytest.mark.parametrize("metric", ["hamming", "cosine", "jensenshannon", "l2"])
def test_nearest_over_a_stream_of_blocks_equals_the_whole(metric, tmp_path):
    """faiss.contrib's exhaustive search over blocks: the same neighbours whether the database
    is one array, a memory-mapped file read in slices, or a generator of blocks."""
    rng = np.random.default_rng(3)
    if metric == "hamming":
        db = rng.integers(0, 256, (700, 8), dtype=np.uint8)
        q = db[rng.choice(700, 20)] ^ rng.integers(0, 2, (20, 8), dtype=np.uint8)
    else:
        db = np.abs(rng.normal(size=(700, 16))).astype(np.float32)
        q = np.abs(db[rng.choice(700, 20)] + rng.normal(0, 0.05, (20, 16))).astype(np.float32)
    whole_d, whole_i = nearest(q, db, metric, k=5, device="cpu")
    path = tmp_path / "db.npy"
    np.save(path, db)
    mapped = np.load(path, mmap_mode="r")
    small = 16 * 8 * 64 * 16  # forces many slices of the memory map
    for database in (mapped, (db[i:i + 97] for i in range(0, 700, 97)),
                     [db[:300], db[300:]]):
        d, i = nearest(q, database, metric, k=5, device="cpu", max_block_elements=small)
        np.testing.assert_allclose(d, whole_d, atol=1e-6)
        np.testing.assert_array_equal(i, whole_i)
    # the oracle: SciPy's full matrix
    ref = pairwise(q, db, metric, device="cpu")
    np.testing.assert_allclose(whole_d, np.sort(ref, axis=1)[:, :5], atol=1e-6)


def test_a_bad_row_deep_in_a_stream_is_named_with_its_global_row():
    db = np.ones((50, 4), np.float32)
    bad = db.copy()
    bad[7, 2] = np.nan
    with pytest.raises(ValueError, match="database row 57 has NaN"):
        nearest(db[:2], [db, bad], "cosine", device="cpu")
    with pytest.raises(ValueError, match=r"k must be in \[1, 100\]"):
        nearest(db[:2], (b for b in [db, db]), "cosine", k=101, device="cpu")


@pytest.mark.parametrize("metric", ["hamming", "cosine"])
def test_many_queries_are_converted_a_block_at_a_time(metric):
    """A k-NN graph of a whole store (queries = database): the same answer with a budget that
    forces blocks of queries as with one block."""
    rng = np.random.default_rng(5)
    if metric == "hamming":
        x = rng.integers(0, 256, (300, 4), dtype=np.uint8)
    else:
        x = rng.normal(size=(300, 12)).astype(np.float32)
    d, i = nearest(x, x, metric, k=3, device="cpu")
    d2, i2 = nearest(x, x, metric, k=3, device="cpu", max_block_elements=32 * 12)
    np.testing.assert_allclose(d2, d, atol=1e-6)
    np.testing.assert_array_equal(i2, i)
    np.testing.assert_allclose(pairwise(x, x, metric, device="cpu", max_block_elements=32 * 12),
                               pairwise(x, x, metric, device="cpu"), atol=1e-6)
