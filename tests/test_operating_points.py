"""The one sweep of operating points against scikit-learn, with ties and random data, and the
users of its convention (metrics, separation, verification) against it."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_recall_curve, roc_auc_score, roc_curve

from hashing.evaluation.metrics import roc as metrics_roc
from hashing.evaluation.metrics import threshold_at_fpr as metrics_threshold_at_fpr
from hashing.evaluation.operating_points import (
    OperatingPoint,
    recall_at_fpr,
    roc,
    sweep,
    threshold_at_fpr,
)
from hashing.evaluation.separation_analysis import (
    unrelated_threshold_at_fpr as separation_threshold_at_fpr,
)
from hashing.evaluation.verification import fit_threshold


def _data(seed: int, n: int = 400, ties: bool = True) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    positive = rng.random(n) < 0.4
    d = np.where(positive, rng.normal(0.3, 0.12, n), rng.normal(0.55, 0.12, n)).clip(0, None)
    return (np.round(d, 2) if ties else d), positive  # rounding: many ties of both classes


CASES = [_data(0), _data(1, ties=False), _data(2, n=60), _data(3, n=9)]


@pytest.mark.parametrize("d, y", CASES)
def test_roc_equals_scikit_learn(d, y):
    curve = roc(d, y)
    fpr, tpr, thresholds = roc_curve(y, -d, drop_intermediate=False)
    np.testing.assert_allclose(curve["fpr"], fpr, rtol=0, atol=1e-15)
    np.testing.assert_allclose(curve["tpr"], tpr, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(curve["thresholds"], -thresholds)  # first: -inf (= +inf)
    assert curve["auc"] == pytest.approx(roc_auc_score(y, -d), abs=1e-12)


@pytest.mark.parametrize("d, y", CASES)
@pytest.mark.parametrize("max_fpr", [0.0, 0.005, 0.05, 0.1, 1 / 3, 0.5, 1.0])
def test_threshold_at_fpr_is_the_largest_threshold_within_the_rate(d, y, max_fpr):
    fpr, tpr, thresholds = roc_curve(y, -d, drop_intermediate=False)
    k = np.flatnonzero(fpr <= max_fpr)[-1]
    point = sweep(d, y).at_fpr(max_fpr)
    assert point.threshold == -thresholds[k]
    assert point.recall == pytest.approx(tpr[k]) and point.fpr == pytest.approx(fpr[k])
    # distance <= threshold selects exactly the pairs counted: the tie at the threshold included
    accepted = d <= point.threshold
    assert (point.tp, point.fp) == ((accepted & y).sum(), (accepted & ~y).sum())
    assert point.fpr <= max_fpr
    # the next distance up would break the rate (a tie is never split)
    above = d[d > point.threshold]
    if len(above):
        assert np.mean(d[~y] <= above.min()) > max_fpr
    curve = roc(d, y)
    assert threshold_at_fpr(curve, max_fpr) == point.threshold
    assert recall_at_fpr(curve, max_fpr) == point.recall


@pytest.mark.parametrize("d, y", CASES)
def test_best_f1_is_the_best_cut_by_scikit_learn(d, y):
    point = sweep(d, y).best_f1()
    values = np.unique(d)
    best = max(f1_score(y, d <= v) for v in values)
    assert point.f1 == pytest.approx(best)
    assert f1_score(y, d <= point.threshold) == pytest.approx(best)
    assert point.threshold in values
    # the largest threshold among equal F1
    larger = values[values > point.threshold]
    assert all(f1_score(y, d <= v) < best - 1e-12 for v in larger)


@pytest.mark.parametrize("d, y", CASES)
@pytest.mark.parametrize("target", [0.5, 0.8, 0.9, 0.95, 1.0])
def test_threshold_at_precision_against_precision_recall_curve(d, y, target):
    precision, recall, scores = precision_recall_curve(y, -d, drop_intermediate=False)
    # scikit-learn's points are by ascending score (descending distance); the last point
    # (precision 1, recall 0) has no threshold
    ok = (precision[:-1] >= target) & (recall[:-1] > 0)
    points = sweep(d, y)
    if not ok.any():
        with pytest.raises(ValueError, match="no threshold reaches precision"):
            points.at_precision(target)
        return
    expected = -scores[np.flatnonzero(ok)[0]]  # the smallest score: the largest distance
    point = points.at_precision(target)
    assert point.threshold == expected
    accepted = d <= point.threshold
    assert point.precision == pytest.approx(np.mean(y[accepted])) and point.precision >= target


def test_ties_and_edges_by_hand():
    d = np.array([0.1, 0.2, 0.2, 0.2, 0.3, np.inf, np.inf])
    y = np.array([True, True, False, True, False, True, False])
    points = sweep(d, y)
    np.testing.assert_array_equal(points.thresholds, [-np.inf, 0.1, 0.2, 0.3, np.inf])
    np.testing.assert_array_equal(points.tp, [0, 1, 3, 3, 4])
    np.testing.assert_array_equal(points.fp, [0, 0, 1, 2, 3])
    # FPR 1/3 allows one negative: the tie at 0.2 (one negative) is accepted whole
    assert points.at_fpr(1 / 3).threshold == 0.2
    # FPR 0.2 allows none: the tie at 0.2 cannot be split, the threshold stays at 0.1
    assert points.at_fpr(0.2) == OperatingPoint(0.1, 1, 0, 3, 3)
    assert points.at_precision(1.0).threshold == 0.1
    assert points.best_f1().threshold == 0.2  # F1 6/8 at 0.2, 6/9 at 0.3 and 8/11 at inf
    first_negative = sweep(np.array([0.1, 0.2]), np.array([False, True]))
    assert first_negative.at_fpr(0.0).threshold == -np.inf  # accepts nothing
    assert first_negative.at_fpr(0.0).accepted == 0 and first_negative.at_fpr(0.0).recall == 0
    with pytest.raises(ValueError, match="negative"):
        sweep(d[y], y[y]).at_fpr(0.1)
    with pytest.raises(ValueError, match="NaN"):
        sweep(np.array([0.1, np.nan]), np.array([True, False]))
    empty = roc(np.zeros(0), np.zeros(0, bool))
    assert empty["thresholds"].tolist() == [-np.inf] and np.isnan(empty["auc"])


def test_every_user_gives_the_same_threshold_at_a_false_positive_rate():
    """The three ways of issue 27 now agree: metrics (the benchmark), separation (negatives
    alone) and verification (rule fpr), ties included."""
    d, y = _data(4)
    negatives = d[~y]
    for max_fpr in (0.0, 0.01, 0.1, 0.25):
        expected = sweep(d, y).at_fpr(max_fpr).threshold
        assert metrics_threshold_at_fpr(metrics_roc(d, y), max_fpr) == expected
        assert fit_threshold(d, y, "fpr", max_fpr) == expected
        # separation sweeps the unrelated (negative) distances alone: the largest of them
        # whose share at or below it is within the rate, -inf when none may be accepted
        t = separation_threshold_at_fpr(negatives, max_fpr)
        assert t == sweep(negatives, np.zeros(len(negatives), bool)).at_fpr(max_fpr).threshold
        assert np.mean(negatives <= t) <= max_fpr
        assert t in negatives or (t == -np.inf and np.mean(negatives <= negatives.min())
                                  > max_fpr)
        above = negatives[negatives > t]
        assert not len(above) or np.mean(negatives <= above.min()) > max_fpr
    assert fit_threshold(d, y) == sweep(d, y).best_f1().threshold
    assert fit_threshold(d, y, "precision", 0.9) == sweep(d, y).at_precision(0.9).threshold


def test_a_digest_gives_back_the_thresholds_the_sweep_made(tmp_path):
    """JSON has no infinity: the digest stores null, and loading it gives back -inf for the
    curve's first point (nothing accepted) and +inf for infinite distances, so the threshold
    at an FPR is the same number before and after the round trip."""
    import pandas as pd

    from hashing.evaluation.digest import _curve, _roc_frame
    from hashing.evaluation.operating_points import sweep, threshold_at_fpr

    curve = sweep(np.array([0.1, 0.3, np.inf, 0.2]),
                  np.array([False, True, True, False])).roc()
    back = _roc_frame(_curve(curve), algorithm="a")
    assert isinstance(back, pd.DataFrame)
    np.testing.assert_array_equal(back["threshold"].to_numpy(), curve["thresholds"])
    for fpr in (0.0, 0.5, 1.0):
        assert threshold_at_fpr({"fpr": back["fpr"].to_numpy(),
                                 "thresholds": back["threshold"].to_numpy()}, fpr) == \
            threshold_at_fpr(curve, fpr)
