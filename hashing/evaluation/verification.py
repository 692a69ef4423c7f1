"""Pair verification: "are these two images the same picture?", with a threshold chosen on
validation data.

- `verify(a, b, method, threshold)` and `verify_pairs(pairs, method, threshold)`: the distance of
  each pair by the method's own metric and the decision ``distance <= threshold``.
- Pair sets (`PairSet`): made from a dataset and the attack generator (`make_pairs`: positives are
  an image and one of its attacked copies; negatives an image and an attacked copy of another
  image, random or hard: the nearest non-copy by the method's own distance), or read from a CSV of
  path pairs with labels (`read_pairs`, the usual form of competition data).
- Threshold choice that never looks at test pairs: `fit_threshold` on validation distances (the
  F1-optimal threshold, or the one reaching a target precision or false positive rate, from the
  one sweep of `hashing.evaluation.operating_points`: a threshold is the largest distance it
  accepts, no longer a midpoint between neighbouring distances), `split_pairs` by the copy's
  source image (no original's copies on both sides; a negative's other original may be on
  either), and `cross_validate` (choose on k-1 folds, score on the held-out one, as face
  verification reports it); `pair_scores` gives F1, precision, recall and accuracy, `f1_curve`
  the curve of F1 against threshold.
- The protocol of ``scripts/verify_pairs.py``: `run_verification` (distances of every method,
  split, fit, score, cross-validate, as a `VerificationProtocol` says) returns a
  `VerificationResult`; `write_verification` writes its files.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from data_retrieval import ImageRecord
from data_retrieval.items import as_record
from hashing.distances import nearest
from hashing.evaluation.operating_points import sweep
from hashing.evaluation.separation_analysis import pair_distances
from hashing.methods.describing import describe, describe_all, parse_algorithm
from helpers import (
    ImageLoadError,
    figure_style,
    new_figure,
    save_figure,
    spreadsheet_unescape,
    unknown_name,
    write_csv,
)
from helpers.display import html_table

log = logging.getLogger(__name__)

#: Threshold rules of `fit_threshold`.
RULES = ("f1", "precision", "fpr")


# --- pair sets ---------------------------------------------------------------------------------

@dataclass
class PairSet:
    """Pairs of images with labels.

    Attributes
    ----------
    a, b : list
        The two sides: anything `hashing.describe` takes per item (paths, records,
        `generator.AttackedImage` objects...).
    same : numpy.ndarray of bool
        True for a pair of one picture (an image and its copy).
    kind : list of str
        ``positive``, ``negative`` (random) or ``hard`` (nearest non-copy), or ``csv``.
    group : list of str
        The source image of each pair, which splits keep on one side.
    attack : list of str
        The attack on the ``b`` side (empty when unknown).
    """

    a: list
    b: list
    same: np.ndarray
    kind: list[str]
    group: list[str]
    attack: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.same = np.asarray(self.same, bool)
        n = len(self.a)
        if not self.attack:
            self.attack = [""] * n
        if not (len(self.b) == len(self.same) == len(self.kind) == len(self.group)
                == len(self.attack) == n):
            raise ValueError("every field of a pair set needs one entry per pair")

    def __len__(self) -> int:
        return len(self.a)

    def subset(self, rows: Sequence[int] | np.ndarray) -> PairSet:
        """The pairs at ``rows``."""
        rows = np.asarray(rows, int)
        return PairSet([self.a[i] for i in rows], [self.b[i] for i in rows], self.same[rows],
                       [self.kind[i] for i in rows], [self.group[i] for i in rows],
                       [self.attack[i] for i in rows])

    def frame(self) -> pd.DataFrame:
        """One row per pair: ``a``, ``b`` (ids), ``same``, ``kind``, ``group``, ``attack``."""
        return pd.DataFrame({"a": [as_record(x, i).image_id for i, x in enumerate(self.a)],
                             "b": [as_record(x, i).image_id for i, x in enumerate(self.b)],
                             "same": self.same, "kind": self.kind, "group": self.group,
                             "attack": self.attack})


_TRUE = {"1", "true", "yes", "same", "match", "positive", "y", "t"}
_FALSE = {"0", "false", "no", "different", "nonmatch", "non-match", "negative", "n", "f"}


def read_pairs(path: str | os.PathLike, a_column: str | None = None,
               b_column: str | None = None, label_column: str | None = None) -> PairSet:
    """Pairs from a CSV: two path columns and a label column (``1``/``0``, ``true``/``false``,
    ``same``/``different``...). Relative paths are relative to the CSV's folder. Columns are
    found by name when not given: ``a``/``path_a``/``image_a``/``query``/``img1``,
    ``b``/``path_b``/``image_b``/``reference``/``img2``, ``label``/``same``/``is_match``/``match``.

    Raises
    ------
    ValueError
        A missing column or a label that is neither true nor false (the row is named).
    FileNotFoundError
        No such CSV.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pairs file {path} not found")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise ValueError(f"pairs file {path} is empty") from None
    frame = frame.map(spreadsheet_unescape)  # our own CSVs quote formula-like text

    def column(given: str | None, names: tuple[str, ...], what: str) -> str:
        if given is not None:
            if given not in frame.columns:
                raise ValueError(f"{path}: no column {given!r}; columns: {list(frame.columns)}")
            return given
        for name in names:
            if name in frame.columns:
                return name
        raise ValueError(f"{path}: no {what} column (one of {', '.join(names)}); columns: "
                         f"{list(frame.columns)}")

    ca = column(a_column, ("a", "path_a", "image_a", "query", "img1", "left"), "first image")
    cb = column(b_column, ("b", "path_b", "image_b", "reference", "img2", "right"),
                "second image")
    cl = column(label_column, ("label", "same", "is_match", "match", "is_same"), "label")
    labels = []
    for row, value in enumerate(frame[cl], start=2):
        text = value.strip().lower()
        if text in _TRUE:
            labels.append(True)
        elif text in _FALSE:
            labels.append(False)
        else:
            raise ValueError(f"{path} line {row}: label {value!r} is neither true nor false")

    def resolve(p: str) -> str:
        q = Path(p).expanduser()
        return str(q if q.is_absolute() else path.parent / q)

    a = [resolve(p) for p in frame[ca]]
    b = [resolve(p) for p in frame[cb]]
    return PairSet(a, b, np.array(labels, bool), ["csv"] * len(a), a.copy())


def make_pairs(records: Sequence[Any], attacks: Sequence[Any], method: Any = None,
               negatives: float = 1.0, hard: float = 0.5, seed: int = 0,
               batch_size: int = 64) -> PairSet:
    """Pairs from originals and the attack generator.

    Every original gets one positive: the original and a copy made with one of ``attacks``
    (drawn with ``seed``). Negatives pair an original with a copy of another original:
    ``negatives`` of them per positive, of which the share ``hard`` are hard negatives (the
    original nearest to the copy by ``method``'s distance that is not its source) and the rest
    random. Copies are made when described (`generator.AttackedImage`), never written.

    Parameters
    ----------
    records : sequence of ImageRecord
        The originals (at least 2).
    attacks : sequence of Attack
    method : str or Algorithm, optional
        Needed for hard negatives.
    negatives : float
        Negatives per positive (1: balanced).
    hard : float
        Share of the negatives that are hard, in [0, 1].
    seed : int
    batch_size : int
        For describing the images when hard negatives are searched.

    Raises
    ------
    ValueError
        Fewer than 2 originals, no attack, a ratio out of range, hard negatives without a method.
    """
    # reason: the attack generator loads only when pairs are made, not with `import hashing`
    from generator import AttackedImage
    from generator.pipeline import attacked_record  # the generator: on use

    records = list(records)
    _check_pair_settings(len(records), attacks, method, negatives, hard)
    rng = np.random.default_rng(seed)  # the attacks, then the hard, then the random negatives
    n = len(records)
    chosen = rng.integers(0, len(attacks), size=n)
    copies = [AttackedImage(attacked_record(r, attacks[k]), r, attacks[k], seed)
              for r, k in zip(records, chosen, strict=True)]
    rows = _Rows()
    for r, c in zip(records, copies, strict=True):
        rows.add(r, c, True, "positive", r.image_id)
    n_neg = int(round(negatives * n))
    n_hard = int(round(hard * n_neg))
    if n_hard:
        _hard_negatives(rows, records, copies, method, n_hard, rng, batch_size)
    _random_negatives(rows, records, copies, n_neg - n_hard, rng)
    return PairSet(rows.a, rows.b, np.array(rows.same), rows.kind, rows.group, rows.attack)


def _check_pair_settings(n: int, attacks: Sequence[Any], method: Any, negatives: float,
                         hard: float) -> None:
    if n < 2:
        raise ValueError(f"pairs need at least 2 originals, got {n}")
    if not attacks:
        raise ValueError("pairs need at least one attack")
    if negatives < 0 or not 0 <= hard <= 1:
        raise ValueError(f"negatives must be >= 0 and hard in [0, 1], got {negatives}, {hard}")
    if hard > 0 and negatives > 0 and method is None:
        raise ValueError("hard negatives are the nearest non-copies by a method: give method")


@dataclass
class _Rows:
    """The columns of a pair set as it is made."""

    a: list = field(default_factory=list)
    b: list = field(default_factory=list)
    same: list = field(default_factory=list)
    kind: list = field(default_factory=list)
    group: list = field(default_factory=list)
    attack: list = field(default_factory=list)

    def add(self, original: Any, copy: Any, same: bool, kind: str, group: str) -> None:
        self.a.append(original)
        self.b.append(copy)
        self.same.append(same)
        self.kind.append(kind)
        self.group.append(group)
        self.attack.append(copy.record.attack_id or "")


def _hard_negatives(rows: _Rows, records: list, copies: list, method: Any, count: int,
                    rng: np.random.Generator, batch_size: int) -> None:
    """``count`` hard negatives: each copy (in a seeded order) with the nearest original that
    is not its source by ``method``; past one round, the next nearest."""
    n = len(records)
    originals = describe(records, method, batch_size=batch_size, on_error="raise")
    described = describe(copies, method, batch_size=batch_size, on_error="raise")
    rounds = -(-count // n)  # more hard negatives than copies: the next nearest
    _, index = nearest(described, originals, k=min(n, rounds + 1))
    order = rng.permutation(n)
    for position, q in enumerate(np.resize(order, count)):
        others = [int(i) for i in index[q] if int(i) != q]
        row = others[min(position // n, len(others) - 1)]
        rows.add(records[row], copies[q], False, "hard", records[q].image_id)


def _random_negatives(rows: _Rows, records: list, copies: list, count: int,
                      rng: np.random.Generator) -> None:
    """``count`` random negatives, each (original, copy of another) pair made once (never
    again as a random negative of a hard one).

    Raises
    ------
    ValueError
        Fewer distinct pairs than asked.
    """
    n = len(records)
    taken = {(id(x), id(y)) for x, y, s in zip(rows.a, rows.b, rows.same, strict=True)
             if not s}
    possible = n * (n - 1) - len(taken)
    if count > possible:
        raise ValueError(f"{count} random negatives asked, {n} originals give "
                         f"{possible} distinct ones beside the hard negatives")
    for _ in range(count):
        while True:
            q = int(rng.integers(n))
            other = int(rng.integers(n - 1))
            other += other >= q
            if (id(records[other]), id(copies[q])) not in taken:
                break
        taken.add((id(records[other]), id(copies[q])))
        rows.add(records[other], copies[q], False, "negative", records[q].image_id)


def split_pairs(pairs: PairSet, fractions: Sequence[float] = (0.5, 0.5), seed: int = 0
                ) -> list[PairSet]:
    """Split pairs by their ``group`` (the source of the copy on the ``b`` side) in the given
    proportions, seeded: no group has pairs on two sides (the other original of a negative pair
    may appear on both)."""
    groups = np.array(sorted(set(pairs.group)), dtype=object)
    fractions = np.asarray(fractions, float)
    if (fractions <= 0).any() or not np.isclose(fractions.sum(), 1):
        raise ValueError(f"fractions must be positive and sum to 1, got {list(fractions)}")
    if len(groups) < len(fractions):
        raise ValueError(f"{len(groups)} source images cannot make {len(fractions)} splits")
    order = np.random.default_rng(seed).permutation(len(groups))
    bounds = np.rint(np.cumsum(fractions) * len(groups)).astype(int)
    where = {}
    start = 0
    for part, stop in enumerate(bounds):
        for g in groups[order[start:stop]]:
            where[g] = part
        start = stop
    side = np.array([where[g] for g in pairs.group])
    return [pairs.subset(np.flatnonzero(side == k)) for k in range(len(fractions))]


# --- distances and decisions -------------------------------------------------------------------

def pair_distances_of(pairs: PairSet, method: Any, device: str = "auto", batch_size: int = 64,
                      show_progress: bool | None = None) -> np.ndarray:
    """The distance of every pair by ``method`` (each distinct image described once).

    Pairs with an image that could not be read are logged and get NaN.
    """
    algorithm = parse_algorithm(method)
    return pair_distances_many(pairs, [algorithm], device, batch_size,
                               show_progress)[algorithm.label]


def pair_distances_many(pairs: PairSet, methods: Sequence[Any], device: str = "auto",
                        batch_size: int = 64, show_progress: bool | None = None
                        ) -> dict[str, np.ndarray]:
    """The distance of every pair by each of ``methods``: each distinct image decoded (or
    attacked) once for all of them, and a network shared by several methods (a model with
    and without reducers) run once per batch.

    Returns
    -------
    dict
        ``{label: (len(pairs),) float32}``; NaN for a pair with an image that could not be
        read (logged, naming the image).
    """
    items, rows = [], {}
    sides = []
    for side in (pairs.a, pairs.b):
        index = []
        for item in side:
            # a file is the same image wherever it appears; anything else (a PIL image, an
            # attacked image) is the same only as the same object
            key = _item_key(item)
            if key not in rows:
                rows[key] = len(items)
                items.append(_numbered(item, len(items)))
            index.append(rows[key])
        sides.append(np.array(index, int))
    described = describe_all(items, methods, batch_size=batch_size, on_error="skip",
                             show_progress=show_progress)
    # every item is named by its position ("#k"): the rows that came back (the same for every
    # method: one decode) say which were read
    first = next(iter(described.values()))
    where = np.full(len(items), -1)
    where[[int(i[1:]) for i in first.ids]] = np.arange(len(first))
    a, b = where[sides[0]], where[sides[1]]
    ok = (a >= 0) & (b >= 0)
    if not ok.all():
        log.warning("%d of %d pairs have an image that could not be read (%s): their distance "
                    "is NaN", int((~ok).sum()), len(pairs),
                    "; ".join(f"{p}: {r}" for _, p, r in first.bad[:3]))
    out = {}
    for label, found in described.items():
        distances = np.full(len(pairs), np.nan, np.float32)
        if ok.any():
            distances[ok] = pair_distances(found[a[ok]], found[b[ok]], device)
        out[label] = distances
    return out


def _item_key(item: Any) -> tuple:
    if isinstance(item, str | os.PathLike):
        return ("file", str(Path(item)))
    if isinstance(item, ImageRecord) and item.path is not None:
        return ("file", str(item.path))
    return ("object", id(item))


def _numbered(item: Any, k: int) -> Any:
    """``item`` named ``#k`` for `hashing.describe` (ids must tell the rows apart)."""
    # reason: the attack generator loads only when pairs are verified, not with `import hashing`
    from generator import AttackedImage

    name = f"#{k}"
    if isinstance(item, str | os.PathLike):
        return ImageRecord(name, Path(item))
    if isinstance(item, ImageRecord):
        return dataclasses.replace(item, image_id=name)
    if isinstance(item, AttackedImage):
        return dataclasses.replace(item, record=dataclasses.replace(item.record,
                                                                    image_id=name))
    if isinstance(item, Image.Image):
        return (name, item)
    if isinstance(item, tuple) and len(item) == 2:
        return (name, item[1])
    raise TypeError(f"a pair's image must be a path, record, PIL image or attacked image, got "
                    f"{type(item).__name__}")


def verify(image_a: Any, image_b: Any, method: Any, threshold: float,
           device: str = "auto") -> tuple[float, bool]:
    """``(distance, same)`` of two images by ``method``: same when distance <= threshold.

    Parameters
    ----------
    image_a, image_b : a path, record, PIL image or attacked image
    method : str or Algorithm
    threshold : float
    """
    pairs = PairSet([image_a], [image_b], np.array([False]), ["?"], ["?"])
    d = float(pair_distances_of(pairs, method, device, show_progress=False)[0])
    if np.isnan(d):
        for index, item in enumerate((image_a, image_b)):
            path = as_record(item, index).path
            if path is not None and not Path(path).is_file():
                raise ImageLoadError(path, "file not found")
        raise ImageLoadError(str(image_a), "one of the two images could not be read")
    return d, bool(d <= threshold)


def verify_pairs(pairs: PairSet, method: Any, threshold: float, device: str = "auto",
                 batch_size: int = 64) -> pd.DataFrame:
    """The batched `verify`: `PairSet.frame` with ``distance`` and ``decision`` columns."""
    d = pair_distances_of(pairs, method, device, batch_size)
    frame = pairs.frame()
    frame["distance"] = d
    frame["decision"] = d <= threshold
    return frame


# --- thresholds and scores ---------------------------------------------------------------------

def pair_scores(distances: np.ndarray, same: np.ndarray, threshold: float) -> dict[str, float]:
    """F1, precision, recall, accuracy and false positive rate of ``distance <= threshold``
    (precision is 1 when nothing is accepted; F1 0 when nothing is right)."""
    d = np.asarray(distances, float)
    y = np.asarray(same, bool)
    keep = ~np.isnan(d)  # pairs whose images could not be read
    d, y = d[keep], y[keep]
    accepted = d <= threshold
    tp = int(np.sum(accepted & y))
    fp = int(np.sum(accepted & ~y))
    fn = int(np.sum(~accepted & y))
    tn = int(np.sum(~accepted & ~y))
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return {"threshold": float(threshold), "f1": f1, "precision": precision, "recall": recall,
            "accuracy": (tp + tn) / max(len(d), 1), "fpr": fp / (fp + tn) if fp + tn else 0.0,
            "tp": tp, "fp": fp, "fn": fn, "tn": tn, "pairs": len(d)}


def f1_curve(distances: np.ndarray, same: np.ndarray) -> pd.DataFrame:
    """F1, precision, recall and FPR at every cut of the sorted distances (`Sweep.frame`):
    thresholds ``-inf`` (accept nothing), then every distinct distance."""
    d = np.asarray(distances, float)
    keep = ~np.isnan(d)  # pairs whose images could not be read
    return sweep(d[keep], np.asarray(same, bool)[keep]).frame()[
        ["threshold", "f1", "precision", "recall", "fpr"]]


def fit_threshold(distances: np.ndarray, same: np.ndarray, rule: str = "f1",
                  target: float | None = None) -> float:
    """A threshold chosen on labelled distances (validation data, never test data), by the
    convention of `hashing.evaluation.operating_points`: the largest distance the operating
    point accepts (a tie is never split; ``-inf`` when nothing may be accepted). Thresholds
    were midpoints between neighbouring distances before: the pairs accepted are the same, the
    number is now a distance that was seen.

    Parameters
    ----------
    distances, same : arrays
    rule : {"f1", "precision", "fpr"}
        ``f1``: the F1-optimal threshold (the largest among ties); ``precision``: the largest
        threshold whose precision is >= ``target`` (accepting at least one positive); ``fpr``:
        the largest threshold whose false positive rate is <= ``target``.
    target : float
        For ``precision`` and ``fpr``.

    Raises
    ------
    ValueError
        Unknown rule, a missing target, no positive or no negative pair, or no threshold reaching
        the target.
    """
    if rule not in RULES:
        raise ValueError(unknown_name("threshold rule", rule, RULES))
    same = np.asarray(same, bool)
    distances = np.asarray(distances, float)
    keep = ~np.isnan(distances)
    distances, same = distances[keep], same[keep]
    if not same.any() or same.all():
        raise ValueError(f"choosing a threshold needs positive and negative pairs, got "
                         f"{int(same.sum())} positive and {int((~same).sum())} negative")
    points = sweep(distances, same)
    if rule == "f1":
        return points.best_f1().threshold
    if target is None or not 0 <= target <= 1:
        raise ValueError(f"rule {rule!r} needs a target in [0, 1], got {target}")
    if rule == "precision":
        return points.at_precision(target).threshold
    return points.at_fpr(target).threshold


def parse_rule(text: str) -> tuple[str, float | None]:
    """``"f1"``, ``"precision:0.99"``, ``"fpr:0.01"`` -> ``(rule, target)``."""
    rule, _, value = text.partition(":")
    if rule not in RULES:
        raise ValueError(unknown_name("threshold rule", rule, RULES))
    if rule == "f1":
        if value:
            raise ValueError("rule f1 takes no target")
        return rule, None
    try:
        target = float(value)
    except ValueError:
        raise ValueError(f"threshold rule {text!r}: give {rule}:<number>, e.g. {rule}:0.01"
                         ) from None
    if not 0 <= target <= 1:
        raise ValueError(f"threshold rule {text!r}: the target must be in [0, 1]")
    return rule, target


def cross_validate(distances: np.ndarray, same: np.ndarray, groups: Sequence[str],
                   folds: int = 10, rule: str = "f1", target: float | None = None,
                   seed: int = 0) -> pd.DataFrame:
    """k-fold cross-validation of the threshold: for each fold, the threshold chosen on the
    other k-1 folds and the scores on the held-out one (folds by ``groups``, seeded).

    Returns
    -------
    pandas.DataFrame
        One row per fold (`pair_scores` of the held-out fold at the threshold of the others).
    """
    groups = np.asarray(groups, dtype=object)
    unique = np.array(sorted(set(groups.tolist())), dtype=object)
    if folds < 2 or folds > len(unique):
        raise ValueError(f"folds must be in [2, {len(unique)}] (the source images), got {folds}")
    fold_of = dict(zip(unique[np.random.default_rng(seed).permutation(len(unique))],
                       np.arange(len(unique)) % folds, strict=True))
    fold = np.array([fold_of[g] for g in groups])
    d = np.asarray(distances, float)
    y = np.asarray(same, bool)
    rows = []
    for k in range(folds):
        held = fold == k
        threshold = fit_threshold(d[~held], y[~held], rule, target)
        rows.append({"fold": k, **pair_scores(d[held], y[held], threshold)})
    return pd.DataFrame(rows)


# --- the protocol ------------------------------------------------------------------------------

@dataclass(frozen=True)
class VerificationProtocol:
    """How a pair set is verified.

    Attributes
    ----------
    threshold : float, optional
        Decide every pair with this threshold (nothing is fitted; one split, ``all``).
    rule, target : str, float
        Otherwise the threshold is chosen by `fit_threshold` (``rule``, ``target``) on the
        validation pairs and scored on them and on the test pairs.
    validation_fraction : float
        Share of the source images whose pairs choose the threshold (`split_pairs`).
    folds : int
        Also k-fold cross-validation over all pairs (`cross_validate`) when >= 2; 0: none.
    seed : int
        Of the split and of the folds.

    Raises
    ------
    ValueError
        An unknown rule, a rule without its target, a fraction outside (0, 1), or 1 fold.
    """

    threshold: float | None = None
    rule: str = "f1"
    target: float | None = None
    validation_fraction: float = 0.5
    folds: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ValueError(unknown_name("threshold rule", self.rule, RULES))
        if self.rule != "f1" and (self.target is None or not 0 <= self.target <= 1):
            raise ValueError(f"rule {self.rule!r} needs a target in [0, 1], got {self.target}")
        if not 0 < self.validation_fraction < 1:
            raise ValueError(f"the validation fraction must be in (0, 1), got "
                             f"{self.validation_fraction}")
        if self.folds == 1 or self.folds < 0:
            raise ValueError(f"folds must be 0 (none) or >= 2, got {self.folds}")

    def splits(self, pairs: PairSet) -> np.ndarray:
        """The split of every pair: ``validation`` or ``test`` (by source image, seeded), or
        ``all`` with a fixed threshold. Cheap: call it to refuse a pair set before any work.

        Raises
        ------
        ValueError
            No pair, more folds than source images, or a split without positive or negative
            pairs.
        """
        if not len(pairs):
            raise ValueError("no pair to verify")
        groups = len(set(pairs.group))
        if self.folds > groups:
            raise ValueError(f"{self.folds} folds: the pairs have {groups} source images")
        if self.threshold is not None:
            return np.full(len(pairs), "all", dtype=object)
        validation, test = split_pairs(pairs, (self.validation_fraction,
                                               1 - self.validation_fraction), self.seed)
        for part, name in ((validation, "validation"), (test, "test")):
            if not part.same.any() or part.same.all():
                raise ValueError(
                    f"the {name} split has {int(part.same.sum())} positive and "
                    f"{int((~part.same).sum())} negative pairs: it needs both (change the "
                    "validation fraction, or give more images)")
        in_validation = set(validation.group)
        return np.array(["validation" if g in in_validation else "test" for g in pairs.group],
                        dtype=object)


@dataclass
class VerificationResult:
    """What `run_verification` found.

    Attributes
    ----------
    pairs : PairSet
    frame : pandas.DataFrame
        One row per pair: `PairSet.frame`, ``split``, and per method ``distance:<label>``
        (NaN: an image could not be read) and ``decision:<label>``.
    scores : pandas.DataFrame
        One row per method and split: ``method``, ``split`` and `pair_scores`.
    thresholds : dict
        ``{label: threshold}`` (chosen on the validation pairs, or the fixed one).
    curves : dict
        ``{label: f1_curve of the validation pairs}`` (empty with a fixed threshold).
    cross_validation : pandas.DataFrame, optional
        `cross_validate`'s rows of every method (column ``method`` first); None without folds.
    unread : dict
        ``{label: pairs without a distance}``, for the methods that have any.
    """

    pairs: PairSet
    frame: pd.DataFrame
    scores: pd.DataFrame
    thresholds: dict[str, float]
    curves: dict[str, pd.DataFrame]
    cross_validation: pd.DataFrame | None
    unread: dict[str, int]

    def to_frame(self) -> pd.DataFrame:
        """The scores: one row per method and split (``method``, ``split``, `pair_scores`),
        with ``unread`` (pairs without a distance) and, with folds, the cross-validation's
        ``cv_f1_mean``, ``cv_f1_std`` and ``cv_accuracy_mean`` of the method."""
        frame = self.scores.copy()
        frame["unread"] = frame["method"].map(lambda m: self.unread.get(m, 0))
        for method, values in self.cross_validation_summary().items():
            for key, value in values.items():
                frame.loc[frame["method"] == method, f"cv_{key}"] = value
        return frame

    def __repr__(self) -> str:
        """One line: pairs, and each method's F1 on its test pairs (or on all with a fixed
        threshold) at its threshold."""
        same = np.asarray(self.pairs.same, bool)
        split = "test" if (self.scores["split"] == "test").any() else "all"
        rows = self.scores[self.scores["split"] == split]
        methods = [f"{r.method}: F1 {r.f1:.3f} at {r.threshold:.4g}"
                   for r in rows.head(4).itertuples()]
        if len(rows) > 4:
            methods.append(f"{len(rows) - 4} more")
        unread = sum(self.unread.values())
        return (f"VerificationResult({len(same)} pairs ({int(same.sum())} positive), "
                f"{split}: " + "; ".join(methods)
                + (f", {unread} distances unread" if unread else "") + ")")

    def _repr_html_(self) -> str:
        return html_table(self.to_frame(), repr(self))

    def cross_validation_summary(self) -> dict[str, dict[str, float]]:
        """``{label: {f1_mean, f1_std, accuracy_mean}}`` over the folds (empty without)."""
        if self.cross_validation is None:
            return {}
        return {m: {"f1_mean": float(g["f1"].mean()), "f1_std": float(g["f1"].std()),
                    "accuracy_mean": float(g["accuracy"].mean())}
                for m, g in self.cross_validation.groupby("method", sort=False)}


def run_verification(pairs: PairSet, methods: Sequence[Any],
                     protocol: VerificationProtocol | None = None, device: str = "auto",
                     batch_size: int = 64, show_progress: bool | None = None
                     ) -> VerificationResult:
    """Verify a pair set with every method: distances (each image decoded once for all
    methods, `pair_distances_many`), the split, the threshold fitted on the validation pairs
    (or fixed), the scores of each split and the cross-validation of ``protocol``.

    Parameters
    ----------
    pairs : PairSet
    methods : sequence of str or Algorithm
    protocol : VerificationProtocol, optional
        Default: the F1-optimal threshold chosen on half of the source images.
    device, batch_size, show_progress
        As `pair_distances_many`.

    Raises
    ------
    ValueError
        A method given twice, or what `VerificationProtocol.splits` refuses.
    """
    protocol = protocol or VerificationProtocol()
    algorithms = [parse_algorithm(m) for m in methods]
    labels = [a.label for a in algorithms]
    if len(set(labels)) != len(labels):
        raise ValueError(f"the methods repeat a method: {labels}")
    frame = pairs.frame()
    frame["split"] = protocol.splits(pairs)
    distances = pair_distances_many(pairs, algorithms, device, batch_size, show_progress)
    scores, folds, curves, thresholds, unread = [], [], {}, {}, {}
    for label in labels:
        d = distances[label]
        if np.isnan(d).any():
            unread[label] = int(np.isnan(d).sum())
        frame[f"distance:{label}"] = d
        thresholds[label], rows = _fit_and_score(d, pairs.same, frame["split"].to_numpy(),
                                                 protocol, curves, label)
        scores.extend({"method": label, **row} for row in rows)
        frame[f"decision:{label}"] = d <= thresholds[label]
        if protocol.folds:
            cv = cross_validate(d, pairs.same, pairs.group, protocol.folds, protocol.rule,
                                protocol.target, protocol.seed)
            cv.insert(0, "method", label)
            folds.append(cv)
    return VerificationResult(pairs, frame, pd.DataFrame(scores), thresholds, curves,
                              pd.concat(folds, ignore_index=True) if folds else None, unread)


def _fit_and_score(d: np.ndarray, same: np.ndarray, split: np.ndarray,
                   protocol: VerificationProtocol, curves: dict[str, pd.DataFrame],
                   label: str) -> tuple[float, list[dict[str, Any]]]:
    """One method's threshold (fixed, or fitted on the validation pairs: its F1 curve goes
    into ``curves``) and the `pair_scores` of each split."""
    if protocol.threshold is not None:
        return protocol.threshold, [{"split": "all",
                                     **pair_scores(d, same, protocol.threshold)}]
    val = split == "validation"
    threshold = fit_threshold(d[val], same[val], protocol.rule, protocol.target)
    curves[label] = f1_curve(d[val], same[val])
    return threshold, [{"split": name, **pair_scores(d[rows], same[rows], threshold)}
                       for name, rows in (("validation", val), ("test", ~val))]


def write_verification(result: VerificationResult, folder: str | os.PathLike) -> None:
    """``pairs.csv`` (`VerificationResult.frame`), ``scores.csv``, ``cross_validation.csv``
    (with folds) and ``figures/f1_curve`` (with fitted thresholds) into ``folder``."""
    folder = Path(folder)
    write_csv(result.frame, folder / "pairs.csv")
    write_csv(result.scores, folder / "scores.csv")
    if result.cross_validation is not None:
        write_csv(result.cross_validation, folder / "cross_validation.csv")
    if result.curves:
        plot_f1_curve(result.curves, result.thresholds, folder / "figures")


def plot_f1_curve(curves: dict[str, pd.DataFrame], thresholds: dict[str, float],
                  folder: Any = None, name: str = "f1_curve") -> Any:
    """F1 against threshold for each method, its chosen threshold marked.

    Returns the `Figure` when ``folder`` is None (a notebook shows it); otherwise saves it
    there (PDF and PNG) and returns the files written.
    """
    with figure_style():
        fig, ax = new_figure(figsize=(5.5, 3.6))
        for k, (label, curve) in enumerate(curves.items()):
            finite = np.isfinite(curve["threshold"])
            ax.plot(curve["threshold"][finite], curve["f1"][finite], color=f"C{k}", label=label)
            if label in thresholds:
                ax.axvline(thresholds[label], color=f"C{k}", linestyle="--", linewidth=0.8)
        ax.set_xlabel("threshold (distance)")
        ax.set_ylabel("F1")
        ax.set_ylim(0, 1.02)
        ax.legend(fontsize=7)
        return fig if folder is None else save_figure(fig, folder, name)
