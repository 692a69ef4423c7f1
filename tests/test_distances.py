"""Distances against SciPy's cdist and hand-computed examples."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist, jensenshannon

from hashing.distances import nearest, pairwise

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
