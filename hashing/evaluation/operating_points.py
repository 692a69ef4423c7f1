"""Operating points of a distance: one sweep over the sorted distances, one convention.

Every threshold in `hashing.evaluation` (the benchmark and its digest, the separation analysis,
pair verification, ``clustering.threshold_from_digest``) comes from here:

- a pair (a query, a copy) **matches when ``distance <= threshold``**;
- the sweep sorts the distances once and cuts after each distinct value: a threshold cannot
  split a tie, so distances equal to the threshold are all accepted, and every rate below
  (false positive rate, precision) is the one of a whole tie group;
- the threshold of an operating point is **the largest distance it accepts**: ``distance <=
  threshold`` selects exactly the pairs the sweep counted there. When it accepts nothing the
  threshold is ``-inf`` (the largest of no distance; also ``sklearn.metrics.roc_curve``'s
  first point, whose score threshold is ``+inf``): the tightest threshold that selects what
  was counted, on the data swept and on any other.

`Sweep` holds the counts at every cut; its `Sweep.roc` is the exact ROC (one point per distinct
distance, AUC by the trapezoidal rule: ties count one half, as ``roc_auc_score``),
`Sweep.at_fpr` the operating point at a false positive rate, `Sweep.best_f1` the F1-optimal one
and `Sweep.at_precision` the one at a precision. `recall_at_fpr` and `threshold_at_fpr` read the
same operating point from a stored ROC curve (a digest's ``roc``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

#: The threshold of an operating point that accepts nothing.
NOTHING_ACCEPTED = -np.inf


@dataclass(frozen=True)
class OperatingPoint:
    """One cut of a `Sweep`: its threshold and counts.

    Attributes
    ----------
    threshold : float
        The largest distance accepted (``-inf``: nothing accepted).
    tp, fp, fn, tn : int
        Positives accepted, negatives accepted, positives rejected, negatives rejected.
    """

    threshold: float
    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def accepted(self) -> int:
        """Pairs with ``distance <= threshold``."""
        return self.tp + self.fp

    @property
    def precision(self) -> float:
        """``tp / accepted``; 1 when nothing is accepted (the usual convention at recall 0)."""
        return self.tp / self.accepted if self.accepted else 1.0

    @property
    def recall(self) -> float:
        """True positive rate; NaN without positives."""
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else float("nan")

    @property
    def fpr(self) -> float:
        """False positive rate; NaN without negatives."""
        return self.fp / (self.fp + self.tn) if self.fp + self.tn else float("nan")

    @property
    def f1(self) -> float:
        """``2 tp / (2 tp + fp + fn)``; 0 when no positive is accepted."""
        return 2 * self.tp / (2 * self.tp + self.fp + self.fn) if self.tp else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Threshold, counts and rates."""
        return {**asdict(self), "precision": self.precision, "recall": self.recall,
                "fpr": self.fpr, "f1": self.f1}


@dataclass(frozen=True)
class Sweep:
    """Counts at every cut of the sorted distances (see the module's convention).

    Attributes
    ----------
    thresholds : numpy.ndarray, float64, shape (C + 1,)
        ``-inf`` (accept nothing), then every distinct distance in ascending order (all
        infinite distances are one tie, accepted last).
    tp, fp : numpy.ndarray of int64, shape (C + 1,)
        Positives and negatives with ``distance <= thresholds[k]``.
    positives, negatives : int
    """

    thresholds: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    positives: int
    negatives: int

    def __len__(self) -> int:
        return len(self.thresholds)

    @property
    def tpr(self) -> np.ndarray:
        """Recall at every cut (NaN without positives)."""
        if not self.positives:
            return np.full(len(self), np.nan)
        return self.tp / self.positives

    recall = tpr

    @property
    def fpr(self) -> np.ndarray:
        """False positive rate at every cut (NaN without negatives)."""
        if not self.negatives:
            return np.full(len(self), np.nan)
        return self.fp / self.negatives

    @property
    def precision(self) -> np.ndarray:
        """Precision at every cut (1 where nothing is accepted)."""
        accepted = self.tp + self.fp
        return np.where(accepted > 0, self.tp / np.maximum(accepted, 1), 1.0)

    @property
    def f1(self) -> np.ndarray:
        """F1 at every cut (0 where no positive is accepted)."""
        denominator = self.tp + self.fp + self.positives  # 2 tp + fp + fn
        return np.where(self.tp > 0, 2 * self.tp / np.maximum(denominator, 1), 0.0)

    def point(self, k: int) -> OperatingPoint:
        """The operating point of cut ``k``."""
        tp, fp = int(self.tp[k]), int(self.fp[k])
        return OperatingPoint(float(self.thresholds[k]), tp, fp, self.positives - tp,
                              self.negatives - fp)

    def roc(self) -> dict[str, np.ndarray | float]:
        """The exact ROC: ``fpr``, ``tpr`` and ``thresholds`` (one point per cut, starting at
        (0, 0) and ``-inf``) and ``auc`` (trapezoidal rule: ties count one half, as
        ``sklearn.metrics.roc_auc_score``); NaN where a class is missing."""
        if len(self) == 1 and not self.positives + self.negatives:
            return {"fpr": np.zeros(1), "tpr": np.zeros(1),
                    "thresholds": self.thresholds.copy(), "auc": float("nan")}
        tpr, fpr = self.tpr, self.fpr
        auc = (float(np.trapezoid(tpr, fpr)) if self.positives and self.negatives
               else float("nan"))
        return {"fpr": fpr, "tpr": tpr, "thresholds": self.thresholds.copy(), "auc": auc}

    def at_fpr(self, max_fpr: float) -> OperatingPoint:
        """The operating point with the largest threshold whose false positive rate is at
        most ``max_fpr`` (its recall is the largest at that rate).

        Raises
        ------
        ValueError
            No negative (no false positive rate).
        """
        k = _index_at_fpr(self.fpr, max_fpr)
        if k is None:
            raise ValueError("a false positive rate needs negative pairs, got none")
        return self.point(k)

    def at_precision(self, min_precision: float) -> OperatingPoint:
        """The operating point with the largest threshold whose precision is at least
        ``min_precision`` and that accepts at least one positive.

        Raises
        ------
        ValueError
            No such threshold.
        """
        ok = np.flatnonzero((self.precision >= min_precision) & (self.tp > 0))
        if not len(ok):
            raise ValueError(f"no threshold reaches precision {min_precision}")
        return self.point(int(ok[-1]))

    def best_f1(self) -> OperatingPoint:
        """The F1-optimal operating point (the largest threshold among equal F1)."""
        f1 = self.f1
        return self.point(int(np.flatnonzero(f1 == f1.max())[-1]))

    def frame(self) -> pd.DataFrame:
        """One row per cut: ``threshold``, ``f1``, ``precision``, ``recall``, ``fpr``, ``tp``,
        ``fp``."""
        return pd.DataFrame({"threshold": self.thresholds, "f1": self.f1,
                             "precision": self.precision, "recall": self.recall,
                             "fpr": self.fpr, "tp": self.tp, "fp": self.fp})


def sweep(distances: np.ndarray, positive: np.ndarray) -> Sweep:
    """Sort ``distances`` once and count the positives and negatives at or below each
    distinct value.

    Parameters
    ----------
    distances : numpy.ndarray, shape (N,)
        Smaller means more alike; ``+inf`` is allowed (nothing found), NaN is not.
    positive : numpy.ndarray of bool, shape (N,)
        The pair is a true match (a copy of its source).

    Raises
    ------
    ValueError
        Lengths differ, or a NaN distance (leave out the pairs that could not be measured).
    """
    distances = np.asarray(distances, dtype=np.float64).ravel()
    positive = np.asarray(positive, dtype=bool).ravel()
    if len(distances) != len(positive):
        raise ValueError(f"{len(distances)} distances for {len(positive)} labels")
    if np.isnan(distances).any():
        raise ValueError("operating points: a distance is NaN (leave such pairs out)")
    order = np.argsort(distances, kind="stable")
    d, labels = distances[order], positive[order]
    n_pos = int(labels.sum())
    # d[1:] != d[:-1], not diff: infinite distances are one tie
    last = np.r_[np.nonzero(d[1:] != d[:-1])[0], len(d) - 1] if len(d) else np.zeros(0, int)
    tp = np.cumsum(labels)[last]
    return Sweep(np.r_[NOTHING_ACCEPTED, d[last]], np.r_[0, tp].astype(np.int64),
                 np.r_[0, last + 1 - tp].astype(np.int64), n_pos, len(d) - n_pos)


def roc(distances: np.ndarray, positive: np.ndarray) -> dict[str, np.ndarray | float]:
    """Exact ROC of detection by distance (smaller means more likely a copy): `Sweep.roc`.

    Returns
    -------
    dict
        ``fpr``, ``tpr`` and ``thresholds`` (one point per distinct distance, starting at
        (0, 0) with threshold ``-inf``), and ``auc``; NaN when one class is missing.
    """
    return sweep(distances, positive).roc()


def _index_at_fpr(fpr: np.ndarray, max_fpr: float) -> int | None:
    """The last cut whose false positive rate is at most ``max_fpr`` (None: no rate)."""
    ok = np.flatnonzero(np.asarray(fpr, dtype=np.float64) <= max_fpr)
    return int(ok[-1]) if len(ok) else None


def recall_at_fpr(curve: dict, max_fpr: float) -> float:
    """Recall of a ROC curve's (`roc`, or a digest's ``roc``) operating point at
    ``max_fpr`` (`Sweep.at_fpr`); 0.0 without negatives."""
    k = _index_at_fpr(curve["fpr"], max_fpr)
    return float(np.asarray(curve["tpr"])[k]) if k is not None else 0.0


def threshold_at_fpr(curve: dict, max_fpr: float) -> float:
    """Threshold of a ROC curve's operating point at ``max_fpr`` (`Sweep.at_fpr`): the
    largest distance accepted, ``-inf`` when even the smallest distance is over the rate,
    NaN without negatives."""
    k = _index_at_fpr(curve["fpr"], max_fpr)
    return float(np.asarray(curve["thresholds"], dtype=np.float64)[k]) if k is not None \
        else float("nan")
