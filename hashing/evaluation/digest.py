"""The benchmark digest: the original study's JSON files plus ``summary.csv``, and loading them.

Files under ``Results/<name>/``:

- ``general.json``: metrics per algorithm, task and threshold; per algorithm AUC, micro-AP,
  recall at 90% precision and at FPR 0.005; the ROC curves;
- ``attacks.json``: the same per attack;
- ``images_pos.json``: per algorithm, threshold and database image: copies, detected,
  identified;
- ``images_neg.json``: per algorithm, threshold and database image: negatives matched to it;
- ``match_time.json``, ``db_time.json``: seconds per algorithm, in total and per image;
- ``matches.csv``: the per-query arrays every metric comes from;
- ``summary.csv``: one row per algorithm (detection and identification at the summary
  threshold, or for L1/L2 distances at the algorithm's threshold at FPR 0.005);
- ``experiment.json`` (written by the script): configuration, versions, commit.

Tables are stored column-wise (``{"columns": [...], "data": [[...], ...]}``), so pandas reads
them back as they were.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hashing.evaluation.benchmark import POSITIVE, BenchmarkResult
from hashing.evaluation.metrics import (
    micro_average_precision,
    per_image_counts,
    threshold_metrics,
)
from hashing.evaluation.operating_points import (
    Sweep,
    recall_at_fpr,
    sweep,
    threshold_at_fpr,
)
from helpers import read_json, write_csv, write_json

#: False-positive rate at which recall is reported (the study's operating point).
REPORT_FPR = 0.005
#: Metrics whose distances have no common scale (SIFT's L2 is in the hundreds): a fixed
#: summary threshold means nothing for them, so their summary row is taken at their own
#: operating point, the threshold at `REPORT_FPR`.
UNSCALED_METRICS = frozenset({"l1", "l2", "local_l1", "local_l2"})
#: Points of an automatic threshold grid.
AUTO_POINTS = 51

TABLE_FILES = {
    "general": "general.json", "attacks": "attacks.json", "images_pos": "images_pos.json",
    "images_neg": "images_neg.json", "match_time": "match_time.json", "db_time": "db_time.json",
}


def auto_thresholds(distances: np.ndarray, points: int = AUTO_POINTS) -> np.ndarray:
    """A grid from 0 to the largest finite observed distance (at least 1e-6)."""
    finite = np.asarray(distances, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    top = max(float(finite.max()) if finite.size else 1.0, 1e-6)
    return np.linspace(0.0, top, points)


def threshold_grid(grid: Sequence[float], required: float) -> np.ndarray:
    """Sorted thresholds holding ``required`` exactly and no two values that `numpy.isclose`
    takes for one (such a pair, 0.19999999 beside 0.2, would make two rows of one threshold).
    """
    values = np.asarray(grid, dtype=np.float64)
    values = values[np.isfinite(values) & ~np.isclose(values, required)]
    kept: list[float] = []
    for value in np.sort(np.r_[values, required]):
        if kept and np.isclose(value, kept[-1]):
            if value == required:
                kept[-1] = value
            continue
        kept.append(float(value))
    return np.array(kept)


def _table(frame: pd.DataFrame) -> dict[str, Any]:
    clean = frame.astype(object).where(frame.notna(), None)
    return {"columns": list(frame.columns), "data": clean.values.tolist()}


def _frame(table: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame(table["data"], columns=table["columns"])


def _curve(curve: dict) -> dict[str, Any]:
    return {k: (None if not np.isfinite(v) else float(v)) if np.isscalar(v)
            else [None if not np.isfinite(x) else float(x) for x in v]
            for k, v in curve.items()}


def score_matches(matches: pd.DataFrame) -> dict[str, Any]:
    """The summary scores of some rows of a benchmark's ``matches`` (one algorithm): ``auc``,
    ``micro_ap``, ``recall_at_p90``, recall and threshold at the reporting false positive rate,
    ``positives``, ``negatives``. E.g. the rows of the hardest attacks with their negatives."""
    if matches["algorithm"].nunique() > 1:
        raise ValueError("score_matches takes the rows of one algorithm")
    return _scores(matches, np.array([0.0]))[1]


def _scores(group: pd.DataFrame, thresholds: np.ndarray, points: Sweep | None = None
            ) -> tuple[pd.DataFrame, dict, dict]:
    """Metrics at ``thresholds``, the summary scores and the ROC of some rows of one
    algorithm (``points``: their sweep, when the caller has it)."""
    positive = (group["kind"] == POSITIVE).to_numpy()
    dist = group["distance"].to_numpy()
    correct = group["correct"].to_numpy(bool)
    table = threshold_metrics(dist, correct, positive, thresholds)
    curve = (points if points is not None else sweep(dist, positive)).roc()
    ap, r90 = micro_average_precision(dist, correct, int(positive.sum()))
    summary = {"auc": curve["auc"], "micro_ap": ap, "recall_at_p90": r90,
               f"recall_at_fpr_{REPORT_FPR}": recall_at_fpr(curve, REPORT_FPR),
               f"threshold_at_fpr_{REPORT_FPR}": threshold_at_fpr(curve, REPORT_FPR),
               "positives": int(positive.sum()), "negatives": int((~positive).sum())}
    return table, summary, curve


def _summary_threshold(points: Sweep, metric: str | None, fixed: float) -> tuple[float, str]:
    """The summary's threshold of one algorithm and its rule: ``fixed``, or for a metric in
    `UNSCALED_METRICS` its threshold at `REPORT_FPR` (when that accepts anything)."""
    if metric in UNSCALED_METRICS:
        own = threshold_at_fpr(points.roc(), REPORT_FPR)
        if np.isfinite(own):
            return float(own), f"fpr_{REPORT_FPR}"
    return fixed, "fixed"


def _attack_tables(label: str, group: pd.DataFrame, grid: np.ndarray
                   ) -> tuple[list[pd.DataFrame], dict[str, Any]]:
    """Per attack of one algorithm: its metrics and summary rows, and its ROC curves. An
    attack without negatives of its own is scored with all of the algorithm's negatives."""
    tables, curves = [], {}
    negatives = group[group["kind"] != POSITIVE]
    for attack, sub in group.groupby("attack_id", sort=False):
        if (sub["kind"] == POSITIVE).all():  # no negative made with this attack
            sub = pd.concat([sub, negatives])
        a_table, a_summary, a_curve = _scores(sub, grid)
        tables.append(a_table.assign(algorithm=label, attack=attack))
        tables.append(pd.DataFrame([{"task": "summary", "algorithm": label,
                                     "attack": attack, **a_summary}]))
        curves[str(attack)] = _curve(a_curve)
    return tables, curves


def _image_tables(label: str, group: pd.DataFrame, db: pd.DataFrame, grid: np.ndarray
                  ) -> tuple[list[pd.DataFrame], list[pd.DataFrame]]:
    """Per threshold and database image of one algorithm: copies detected and identified
    (``images_pos``), negatives matched to it (``images_neg``)."""
    copies, detected, identified, false = per_image_counts(
        group["distance"].to_numpy(), group["correct"].to_numpy(bool),
        (group["kind"] == POSITIVE).to_numpy(), group["source_index"].to_numpy(),
        group["nearest_index"].to_numpy(), len(db), grid)
    pos_rows, neg_rows = [], []
    for k, t in enumerate(grid):
        pos_rows.append(pd.DataFrame({
            "algorithm": label, "threshold": t, "image_id": db["image_id"],
            "path": db["path"], "copies": copies, "detected": detected[k],
            "identified": identified[k]}))
        neg_rows.append(pd.DataFrame({
            "algorithm": label, "threshold": t, "image_id": db["image_id"],
            "path": db["path"], "false_matches": false[k]}))
    return pos_rows, neg_rows


def _summary_frame(rows: list[dict[str, Any]], general: pd.DataFrame,
                   at_threshold: dict[str, float], result: BenchmarkResult) -> pd.DataFrame:
    """The one-row-per-algorithm summary: its scores, detection and identification at its
    summary threshold, and the seconds per image."""
    at = general[general["threshold"] == general["algorithm"].map(at_threshold)]
    summary = pd.DataFrame(rows)
    for task in ("detection", "identification"):
        part = at[at["task"] == task].set_index("algorithm")
        for col in ("recall", "fpr", "precision", "accuracy"):
            summary[f"{task}_{col}"] = summary["algorithm"].map(part[col])
    summary["db_seconds_per_image"] = summary["algorithm"].map(
        result.db_time.set_index("algorithm")["seconds_per_image"])
    summary["match_seconds_per_image"] = summary["algorithm"].map(
        result.match_time.set_index("algorithm")["seconds_per_image"])
    return summary


def compute_digest(
    result: BenchmarkResult,
    thresholds: dict[str, Sequence[float]] | None = None,
    summary_threshold: float = 0.2,
) -> dict[str, Any]:
    """Every digest table from a benchmark result (nothing is matched again).

    Parameters
    ----------
    result : BenchmarkResult
    thresholds : dict, optional
        Thresholds per algorithm label; missing ones get `auto_thresholds`. The summary
        threshold is always added.
    summary_threshold : float
        Threshold of the one-line-per-algorithm summary, for algorithms whose distances are
        on a common scale (bit error rates, cosine and Jensen-Shannon distances). Those in
        `UNSCALED_METRICS` (``result.metrics``) are summarised at their threshold at
        `REPORT_FPR` instead; the summary's ``threshold`` and ``threshold_rule`` columns say
        which. Thresholds and rates at a false positive rate follow
        `hashing.evaluation.operating_points` (``threshold_at_fpr_*`` is the largest distance
        accepted, ``-inf`` when nothing can be).
    """
    thresholds = thresholds or {}
    general, attacks, pos_rows, neg_rows, summary_rows = [], [], [], [], []
    curves: dict[str, Any] = {}
    attack_curves: dict[str, Any] = {}
    at_threshold: dict[str, float] = {}
    for label, group in result.matches.groupby("algorithm", sort=False):
        points = sweep(group["distance"].to_numpy(), (group["kind"] == POSITIVE).to_numpy())
        at_threshold[label], rule = _summary_threshold(points, result.metrics.get(label),
                                                       summary_threshold)
        grid = threshold_grid(thresholds.get(label, auto_thresholds(group["distance"])),
                              at_threshold[label])
        table, summary, curve = _scores(group, grid, points)
        general.append(table.assign(algorithm=label))
        curves[label] = _curve(curve)
        summary_rows.append({"algorithm": label, **summary, "threshold": at_threshold[label],
                             "threshold_rule": rule})
        tables, attack_curves[label] = _attack_tables(label, group, grid)
        attacks.extend(tables)
        pos, neg = _image_tables(label, group, result.database, grid)
        pos_rows.extend(pos)
        neg_rows.extend(neg)
    general_df = pd.concat(general, ignore_index=True)
    summary = _summary_frame(summary_rows, general_df, at_threshold, result)
    attacks_df = pd.concat(attacks, ignore_index=True)
    return {
        "general": {"metrics": _table(general_df), "summary": _table(summary),
                    "roc": curves},
        "attacks": {"metrics": _table(attacks_df[attacks_df["task"] != "summary"]
                                      .dropna(axis=1, how="all")),
                    "summary": _table(attacks_df[attacks_df["task"] == "summary"]
                                      .dropna(axis=1, how="all").drop(columns="task")),
                    "roc": attack_curves},
        "images_pos": {"table": _table(pd.concat(pos_rows, ignore_index=True))},
        "images_neg": {"table": _table(pd.concat(neg_rows, ignore_index=True))},
        "match_time": {"table": _table(result.match_time),
                       "wall_seconds": result.wall_seconds},
        "db_time": {"table": _table(result.db_time)},
        "summary": summary,
    }


def write_digest(result: BenchmarkResult, folder: str | os.PathLike,
                 thresholds: dict[str, Sequence[float]] | None = None,
                 summary_threshold: float = 0.2) -> dict[str, Any]:
    """Compute and write the digest files into ``folder`` (each atomically).

    The per-query arrays (``matches.csv``) and the bad inputs are written first: the
    matching work is on disk before anything that could fail.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _write_csv(result.matches, folder / "matches.csv")
    if result.bad:
        _write_csv(pd.DataFrame(result.bad, columns=["path", "reason"]),
                   folder / "bad_images.csv")
    digest = compute_digest(result, thresholds, summary_threshold)
    for key, name in TABLE_FILES.items():
        write_json(folder / name, digest[key])
    _write_csv(digest["summary"], folder / "summary.csv")
    return digest


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    write_csv(frame, path)  # non-UTF-8 names as their bytes, formula-like text quoted


@dataclass
class Digest:
    """A digest loaded back as DataFrames (several digests: rows of all, column ``digest``)."""

    metrics: pd.DataFrame
    summary: pd.DataFrame
    attack_metrics: pd.DataFrame
    attack_summary: pd.DataFrame
    images_pos: pd.DataFrame
    images_neg: pd.DataFrame
    match_time: pd.DataFrame
    db_time: pd.DataFrame
    roc: pd.DataFrame
    attack_roc: pd.DataFrame


def _roc_frame(curves: dict[str, Any], **keys: str) -> pd.DataFrame:
    """A stored ROC curve as a frame, its thresholds as the sweep made them: JSON has no
    infinity, so the file holds null where the curve holds -inf (its first point: nothing
    accepted) or +inf (a later point: infinite distances accepted too)."""
    thresholds = [(-np.inf if i == 0 else np.inf) if t is None else t
                  for i, t in enumerate(curves["thresholds"])]
    return pd.DataFrame({"fpr": curves["fpr"], "tpr": curves["tpr"],
                         "threshold": np.asarray(thresholds, dtype=np.float64), **keys})


def _tags(paths: list[Path]) -> list[str]:
    """One distinct tag per digest folder: its name, else its path, else a number."""
    names = [p.name for p in paths]
    tags = [n if names.count(n) == 1 else str(p) for n, p in zip(names, paths, strict=True)]
    return [t if tags.count(t) == 1 else f"{t}#{i + 1}" for i, t in enumerate(tags)]


def load_digest(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> Digest:
    """Read one digest folder, or several merged (their rows concatenated, each tagged with
    its folder name in column ``digest``).

    Raises
    ------
    FileNotFoundError
        A folder without the digest files (the message names the missing file).
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    parts: dict[str, list[pd.DataFrame]] = {f: [] for f in Digest.__dataclass_fields__}
    tags = _tags([Path(p) for p in paths])
    for path, tag in zip(paths, tags, strict=True):
        path = Path(path)
        for name in TABLE_FILES.values():
            if not (path / name).is_file():
                raise FileNotFoundError(f"{path} is not a benchmark digest: {name} is missing")
        general, attacks = read_json(path / "general.json"), read_json(path / "attacks.json")
        found = {
            "metrics": _frame(general["metrics"]), "summary": _frame(general["summary"]),
            "attack_metrics": _frame(attacks["metrics"]),
            "attack_summary": _frame(attacks["summary"]),
            "images_pos": _frame(read_json(path / "images_pos.json")["table"]),
            "images_neg": _frame(read_json(path / "images_neg.json")["table"]),
            "match_time": _frame(read_json(path / "match_time.json")["table"]),
            "db_time": _frame(read_json(path / "db_time.json")["table"]),
            "roc": pd.concat([_roc_frame(c, algorithm=a) for a, c in general["roc"].items()],
                             ignore_index=True),
            "attack_roc": pd.concat([_roc_frame(c, algorithm=a, attack=k)
                                     for a, per in attacks["roc"].items()
                                     for k, c in per.items()], ignore_index=True),
        }
        for key, frame in found.items():
            parts[key].append(frame.assign(digest=tag))
    return Digest(**{k: pd.concat(v, ignore_index=True) for k, v in parts.items()})
