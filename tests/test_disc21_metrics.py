"""Micro-average precision and recall at 90% precision as DISC21's reference evaluation
(facebookresearch/isc2021) defines them, against an implementation written here from that
definition: every (query, database image, score) is a prediction; predictions are ranked by
score, the wrong ones first within a tie; precision and recall after every prediction; AP is
the sum of precision times the recall increase."""

from __future__ import annotations

import numpy as np
import pytest

import fast_search as fs
from hashing.evaluation.metrics import micro_average_precision


def reference(distances, correct, n_ground_truth):
    """The definition, one prediction at a time, in plain Python."""
    predictions = sorted((d, bool(c)) for d, c in zip(distances, correct, strict=True)
                         if d != float("inf"))  # (d, False) sorts before (d, True)
    if n_ground_truth == 0:
        return float("nan"), float("nan")
    ap, tp, best = 0.0, 0, 0.0
    previous_recall = 0.0
    for rank, (_, right) in enumerate(predictions, start=1):
        tp += right
        precision, recall = tp / rank, tp / n_ground_truth
        ap += (recall - previous_recall) * precision
        previous_recall = recall
        if precision >= 0.9:
            best = max(best, recall)
    return ap, best


def test_the_issue_s_minimal_tie():
    """DISC21 gives 0.583 (the tie's right answers come after nothing better); the
    per-distinct-distance convention gave 0.667."""
    ap, _ = micro_average_precision([0.0, 0.5, 0.5], [False, True, True], 2)
    assert ap == pytest.approx(0.5 * 0.5 + 0.5 * 2 / 3)
    assert ap == pytest.approx(reference([0.0, 0.5, 0.5], [False, True, True], 2)[0])


@pytest.mark.parametrize("seed", range(20))
def test_random_predictions_with_ties_equal_the_definition(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 300))
    distances = rng.integers(0, 6, n) / 64  # hash-like: few distinct values
    if seed % 3 == 0:
        distances[rng.random(n) < 0.1] = np.inf
    correct = rng.random(n) < rng.random()
    n_gt = int(correct.sum() + rng.integers(0, 20))
    got = micro_average_precision(distances, correct, n_gt)
    want = reference(distances, correct, n_gt)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("distances, correct, n_gt", [
    ([0.3] * 50, [True] * 25 + [False] * 25, 30),     # all distances equal
    ([0.1, 0.2, 0.3], [False, False, False], 0),      # controls only: no ground truth
    ([0.1, 0.2, 0.3, 0.4], [False, True, False, True], 4),  # never 90% precise
    ([np.inf, np.inf, 0.5], [True, True, False], 2),  # nothing found for two queries
    ([], [], 3),
])
def test_adversarial_inputs_equal_the_definition(distances, correct, n_gt):
    got = micro_average_precision(np.array(distances, float), np.array(correct, bool), n_gt)
    np.testing.assert_allclose(got, reference(distances, correct, n_gt), atol=1e-12)


def test_all_equal_distances_cannot_raise_ap():
    """The reason for the convention: a method that scores everything alike gets the worst
    order, not an average of orders."""
    ap, r90 = micro_average_precision([0.3] * 4, [True, False, True, False], 2)
    assert ap == pytest.approx(0.5 * 1 / 3 + 0.5 * 2 / 4) and r90 == 0.0


def test_duplicate_predictions_are_refused():
    """A (query, database image) pair predicted twice would count one source twice: the old
    code returned a recall of 2.0 for micro_average_precision([.1, .2], [True, True], 1)."""
    with pytest.raises(ValueError, match="more than once"):
        micro_average_precision([0.1, 0.2], [True, True], 1, pairs=[[0, 7], [0, 7]])
    with pytest.raises(ValueError, match="more than once"):
        fs.knn_micro_ap(np.array([[0.1, 0.2]]), np.array([[7, 7]]), np.array([7]))


@pytest.mark.parametrize("seed", range(5))
def test_k_candidates_per_query_are_all_predictions(seed):
    """fast_search's micro-AP over k-NN results equals the definition on the flattened
    (query, neighbour, distance) triplets; k = 1 is the nearest alone."""
    rng = np.random.default_rng(seed)
    q, k, n_db = 40, 5, 30
    indices = np.stack([rng.choice(n_db, k, replace=False) for _ in range(q)])
    distances = np.sort(np.round(rng.random((q, k)), 1), axis=1)
    truth = np.where(rng.random(q) < 0.7, rng.integers(0, n_db, q), -1)
    hit = (truth >= 0) & (rng.random(q) < 0.5)  # half the queries find their source first
    indices[hit, 0] = truth[hit]
    indices = np.stack([_unique_row(row, n_db, rng) for row in indices])
    indices[0, -1], distances[0, -1] = -1, np.inf  # a missing neighbour
    correct = (indices == truth[:, None]) & (truth[:, None] >= 0)
    n_gt = int((truth >= 0).sum())
    for columns in (k, 1):
        got = fs.knn_micro_ap(distances[:, :columns], indices[:, :columns], truth)
        want = reference(distances[:, :columns].ravel(), correct[:, :columns].ravel(), n_gt)
        assert got["micro_ap"] == pytest.approx(want[0], abs=1e-12)
        assert got["recall_at_p90"] == pytest.approx(want[1], abs=1e-12)


def _unique_row(row, n, rng):
    seen, out = set(), []
    for value in row:
        while value in seen:
            value = int(rng.integers(0, n))
        seen.add(value)
        out.append(value)
    return np.array(out)


def test_run_search_reports_k_candidates_and_the_nearest_alone():
    """A search run's micro-AP takes every returned neighbour (DISC21's k candidates); the
    nearest alone, what the hashing benchmark scores, is reported beside it."""
    from data_retrieval import ImageRecord
    from helpers.descriptors import FloatFeatures

    rng = np.random.default_rng(0)
    base = rng.standard_normal((40, 8)).astype(np.float32)
    database = FloatFeatures(base, "l2", ids=[f"d{i}" for i in range(40)], method="m")
    noisy = base[:20] + 0.8 * rng.standard_normal((20, 8)).astype(np.float32)

    queries = FloatFeatures(noisy, "l2", ids=[f"q{i}" for i in range(20)], method="m",
                            records=tuple(ImageRecord(f"q{i}", None, source_id=f"d{i}")
                                          for i in range(20)))
    search_set = fs.load_search_set(database, queries)
    run = fs.run_search(search_set, ["Flat"], ks=[1, 5], repeats=1).runs[0]
    exact = fs.build_index("Flat", "l2", 8)
    exact.add([base])
    d, i = exact.search(noisy, 5)
    assert run["micro_ap_candidates"] == 5
    assert run["micro_ap"] == pytest.approx(fs.knn_micro_ap(d, i, search_set.truth)["micro_ap"])
    assert run["micro_ap_nearest"] == pytest.approx(
        fs.knn_micro_ap(d[:, :1], i[:, :1], search_set.truth)["micro_ap"])
