"""Separation analysis: how far the distances of attacked copies stand from those of unrelated
images.

For one method, the distances between random pairs of unrelated originals give a histogram with
mean mu and standard deviation sigma. The related work's thresholds are T1 = mu - 2 sigma and
T2 = mu - sigma: a copy is missed at a threshold when its distance to its original is above it,
so the share of copies above T1 (and above T2) measures a method, closer to 0 being better.
mu - 2 sigma still accepts about 2% of unrelated pairs when the distances are normal (thousands
of false matches per query against 500k distractors), so thresholds at target false positive
rates (1e-3, 1e-4, 1e-5) are also taken from the unrelated distances (the largest distance
whose share at or below it is within the rate, as `hashing.evaluation.operating_points` chooses
every threshold; ``-inf`` when not even one unrelated pair may be accepted), each marked
reliable only when at least ``min_tail`` unrelated pairs lie at or below it (fewer pairs than
``min_tail / fpr`` cannot estimate it).

Everything here takes descriptor objects (`hashing.describe`'s output) and works for any method:
hashes, features, reduced features, keypoints.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from data_retrieval import source_rows
from hashing.distances import pairwise
from hashing.evaluation.operating_points import sweep
from hashing.methods.describing import concat_descriptors, describe_all
from helpers import figure_style, new_figure, save_figure
from helpers.descriptors import FloatFeatures

log = logging.getLogger(__name__)

#: The target false positive rates of the report.
DEFAULT_FPRS = (1e-3, 1e-4, 1e-5)
#: Unrelated pairs at or below a threshold needed to call its estimate reliable.
MIN_TAIL = 10
#: All pairs of the originals are used up to this many; beyond, a seeded sample of this size.
DEFAULT_MAX_PAIRS = 2_000_000


def pair_distances(a: Any, b: Any, device: str = "auto", block: int = 256) -> np.ndarray:
    """Distance of each pair ``(a[i], b[i])`` (descriptor objects of one method, same length),
    float32: the diagonal of `pairwise`, computed block by block so that it is the same number
    `pairwise` gives, for every kind of descriptor.

    Raises
    ------
    ValueError
        ``a`` and ``b`` differ in length.
    """
    if len(a) != len(b):
        raise ValueError(f"pairs need as many rows on both sides, got {len(a)} and {len(b)}")
    out = np.empty(len(a), np.float32)
    for start in range(0, len(a), block):
        rows = slice(start, min(start + block, len(a)))
        out[rows] = np.diagonal(pairwise(a[rows], b[rows], device=device))
    return out


def unrelated_pairs(n: int, max_pairs: int = DEFAULT_MAX_PAIRS, seed: int = 0
                    ) -> tuple[np.ndarray, np.ndarray, bool]:
    """Pairs ``(i, j)``, ``i < j``, of ``n`` items: all of them when there are at most
    ``max_pairs``, else ``max_pairs`` distinct pairs drawn with ``seed``.

    Returns
    -------
    i, j : numpy.ndarray of int64
    complete : bool
        True when every pair is there.
    """
    total = n * (n - 1) // 2
    if n < 2:
        raise ValueError(f"unrelated pairs need at least 2 originals, got {n}")
    if total <= max_pairs:
        i, j = np.triu_indices(n, k=1)
        return i.astype(np.int64), j.astype(np.int64), True
    rng = np.random.default_rng(seed)
    chosen = np.unique(rng.integers(0, total, size=int(max_pairs * 1.1)))
    while len(chosen) < max_pairs:
        chosen = np.unique(np.concatenate([chosen, rng.integers(0, total, size=max_pairs)]))
    chosen = rng.permutation(chosen)[:max_pairs]
    chosen.sort()
    # Index k of the upper triangle (row-major, i < j) back to (i, j).
    i = (n - 2 - np.floor(np.sqrt(-8.0 * chosen + 4.0 * n * (n - 1) - 7) / 2.0 - 0.5)).astype(
        np.int64)
    j = (chosen + i + 1 - n * (n - 1) // 2 + (n - i) * ((n - i) - 1) // 2).astype(np.int64)
    return i, j, False


def unrelated_distances(originals: Any, max_pairs: int = DEFAULT_MAX_PAIRS, seed: int = 0,
                        device: str = "auto") -> tuple[np.ndarray, bool]:
    """Distances of pairs of distinct originals (see `unrelated_pairs`): all pairs from
    `pairwise` in blocks of rows when they fit ``max_pairs``, else a seeded sample.

    Returns
    -------
    distances : numpy.ndarray, float32
    complete : bool
    """
    n = len(originals)
    i, j, complete = unrelated_pairs(n, max_pairs, seed)
    if not complete:
        return pair_distances(originals[i], originals[j], device), False
    out = np.empty(len(i), np.float32)
    rows = max(1, (1 << 22) // max(n, 1))
    filled = 0
    for start in range(0, n - 1, rows):
        stop = min(n, start + rows)
        block = pairwise(originals[start:stop], originals, device=device)
        for r in range(start, stop):
            values = block[r - start, r + 1:]
            out[filled:filled + len(values)] = values
            filled += len(values)
    return out, True


def unrelated_threshold_at_fpr(unrelated: np.ndarray, fpr: float) -> float:
    """The threshold at false positive rate ``fpr`` of unrelated distances (every pair a
    negative): the largest unrelated distance t with share(unrelated <= t) <= ``fpr``, a tie
    never split (`hashing.evaluation.operating_points.Sweep.at_fpr`). ``-inf`` when even one
    pair is too many (nothing may be accepted).

    Raises
    ------
    ValueError
        No unrelated distance, or a NaN one.
    """
    u = np.asarray(unrelated, np.float64).ravel()
    return sweep(u, np.zeros(len(u), bool)).at_fpr(fpr).threshold


@dataclass
class Thresholds:
    """Thresholds of one method from its unrelated distances.

    Attributes
    ----------
    mu, sigma : float
        Mean and standard deviation (ddof 0) of the unrelated distances.
    t1, t2 : float
        mu - 2 sigma and mu - sigma.
    fpr_t1, fpr_t2 : float
        Share of unrelated pairs at or below T1 and T2 (what they let through).
    at_fpr : dict
        ``{fpr: threshold}`` (`unrelated_threshold_at_fpr`; ``-inf`` where no pair may be accepted).
    reliable : dict
        ``{fpr: bool}``: at least `MIN_TAIL` unrelated pairs at or below the threshold's
        target count (``fpr x pairs >= MIN_TAIL``).
    pairs : int
    complete : bool
        Every pair of originals was used (else a sample).
    """

    mu: float
    sigma: float
    t1: float
    t2: float
    fpr_t1: float
    fpr_t2: float
    at_fpr: dict[float, float] = field(default_factory=dict)
    reliable: dict[float, bool] = field(default_factory=dict)
    pairs: int = 0
    complete: bool = True

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["at_fpr"] = {f"{k:g}": v for k, v in self.at_fpr.items()}
        out["reliable"] = {f"{k:g}": v for k, v in self.reliable.items()}
        return out


def separation_thresholds(unrelated: np.ndarray, fprs: Sequence[float] = DEFAULT_FPRS,
                          complete: bool = True, min_tail: int = MIN_TAIL) -> Thresholds:
    """T1, T2 and the thresholds at target false positive rates of unrelated distances.

    Raises
    ------
    ValueError
        No finite unrelated distance, or a rate outside (0, 1).
    """
    u = np.asarray(unrelated, np.float64)
    u = u[np.isfinite(u)]
    if not len(u):
        raise ValueError("no finite unrelated distance")
    for f in fprs:
        if not 0 < f < 1:
            raise ValueError(f"false positive rates must be in (0, 1), got {f}")
    mu, sigma = float(u.mean()), float(u.std())
    t1, t2 = mu - 2 * sigma, mu - sigma
    at = {float(f): unrelated_threshold_at_fpr(u, f) for f in fprs}
    reliable = {float(f): bool(f * len(u) >= min_tail) for f in fprs}
    unreliable = [f for f, ok in reliable.items() if not ok]
    if unreliable:
        log.warning("%d unrelated pairs cannot estimate the thresholds at FPR %s (fewer than "
                    "%d pairs would fall below them; FPR %g needs %d pairs)", len(u),
                    ", ".join(f"{f:g}" for f in unreliable), min_tail, min(unreliable),
                    int(np.ceil(min_tail / min(unreliable))))
    return Thresholds(mu, sigma, t1, t2, float((u <= t1).mean()), float((u <= t2).mean()),
                      at, reliable, len(u), complete)


def copy_distances(originals: Any, copies: Any, device: str = "auto"
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Distance of every copy to its own original (the join on ``source_id``).

    Returns
    -------
    distances : numpy.ndarray, float32, one per copy whose source is among the originals
    rows : numpy.ndarray of int
        Which copies those are (copies of other images are left out).

    Raises
    ------
    ValueError
        Descriptors without records, or no copy of any original.
    """
    if copies.records is None or originals.ids is None:
        raise ValueError("copies need records (source_id) and originals ids: describe records "
                         "or attacked images, not bare PIL images")
    source = source_rows(copies.records, list(originals.ids))
    rows = np.flatnonzero(source >= 0)
    if not len(rows):
        raise ValueError("no copy has its source among the originals")
    return pair_distances(copies[rows], originals[source[rows]], device), rows


def separation(originals: Any, copies: Any, fprs: Sequence[float] = DEFAULT_FPRS,
               max_pairs: int = DEFAULT_MAX_PAIRS, seed: int = 0, device: str = "auto"
               ) -> dict[str, Any]:
    """The separation of one method: unrelated distances, thresholds, copy distances and, per
    attack, the share of copies above each threshold.

    Parameters
    ----------
    originals : descriptors of the originals (with ids)
    copies : descriptors of attacked copies (with records: ``source_id``, ``attack_id``)
    fprs : target false positive rates
    max_pairs, seed : see `unrelated_pairs`
    device : str

    Returns
    -------
    dict
        ``method``, ``thresholds`` (`Thresholds`), ``unrelated`` and ``copies`` (distances),
        ``attack`` (the attack of each copy distance) and ``table`` (a DataFrame: one row per
        attack and one ``all`` row: copies, mean and median distance, ``above_t1``,
        ``above_t2``, ``above_fpr_<f>``).
    """
    unrelated, complete = unrelated_distances(originals, max_pairs, seed, device)
    th = separation_thresholds(unrelated, fprs, complete)
    distances, rows = copy_distances(originals, copies, device)
    attack = np.array([copies.records[r].attack_id or "none" for r in rows], dtype=object)
    return {"method": copies.method or originals.method, "thresholds": th,
            "unrelated": unrelated, "copies": distances, "attack": attack,
            "table": share_table(distances, attack, th)}


def share_table(distances: np.ndarray, attack: np.ndarray, th: Thresholds) -> pd.DataFrame:
    """Per attack (and ``all``): copies, mean and median distance, and the share of copies
    whose distance is above T1, T2 and each FPR threshold (a missed copy; 0 is best)."""
    rows = []
    names = [*sorted(set(attack.tolist())), "all"]
    for name in names:
        d = distances if name == "all" else distances[attack == name]
        row = {"attack": name, "copies": len(d), "mean_distance": float(np.mean(d)),
               "median_distance": float(np.median(d)),
               "above_t1": float(np.mean(d > th.t1)), "above_t2": float(np.mean(d > th.t2))}
        for f, t in th.at_fpr.items():
            row[f"above_fpr_{f:g}"] = float(np.mean(d > t))
        rows.append(row)
    return pd.DataFrame(rows)


# --- several methods in one run -------------------------------------------------------------

def describe_originals_and_copies(records: Sequence[Any], attacks: Sequence[Any],
                                  algorithms: Sequence[Any], seed: int = 0,
                                  batch_size: int = 64, workers: int = 0,
                                  show_progress: bool | None = None
                                  ) -> tuple[dict[str, Any], dict[str, Any], list]:
    """Originals and their attacked copies (made on the fly, never written) described by
    every algorithm, each image decoded and attacked once for all of them.

    Returns
    -------
    originals, copies : dict
        ``{algorithm label: descriptors}`` with ids and records.
    bad : list
        Inputs skipped (`generator.BadImage`).
    """
    # reason: the attack generator loads only when copies are made, not with `import hashing`
    from generator import iter_attacks

    stream = iter_attacks(list(records), list(attacks), seed=seed, workers=workers,
                          include_originals=True, show_progress=show_progress)
    parts: dict[tuple[bool, str], list] = {}
    kept: dict[bool, list] = {True: [], False: []}

    def flush(batch: list) -> None:
        for is_original in (True, False):
            chosen = [(r, im) for r, im in batch if (r.attack_id is None) == is_original]
            if not chosen:
                continue
            described = describe_all(chosen, algorithms, batch_size=len(chosen), on_error="raise",
                                     show_progress=False)
            for label, desc in described.items():
                parts.setdefault((is_original, label), []).append(desc)
            kept[is_original].extend(r for r, _ in chosen)

    batch: list = []
    planned = len(records) * (len(attacks) + 1)
    step = max(batch_size, planned // 10)
    done = logged = 0
    for record, image in stream:
        batch.append((record, image))
        if len(batch) >= batch_size:
            flush(batch)
            done += len(batch)
            batch = []
            if done - logged >= step:  # a line per tenth: long runs show they progress
                logged = done
                log.info("described %d of %d images (originals and copies)", done, planned)
    if batch:
        flush(batch)
    out: dict[bool, dict[str, Any]] = {True: {}, False: {}}
    for (is_original, label), pieces in parts.items():
        records_kept = kept[is_original]
        out[is_original][label] = concat_descriptors(pieces).with_identity(
            ids=tuple(r.image_id for r in records_kept), records=tuple(records_kept),
            method=label)
    return out[True], out[False], list(stream.bad)


def reduce_descriptors(features: Any, reducer: Any, label: str, metric: str | None = None
                       ) -> Any:
    """`FloatFeatures` passed through a fitted reducer, named ``label``, compared with
    ``metric`` (default: the features' own)."""
    return FloatFeatures(reducer.transform(features.values), metric or features.metric,
                         ids=features.ids, records=features.records, method=label,
                         bad=features.bad)


def separation_frame(results: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Every method's share table stacked: one row per method and attack."""
    frames = []
    for res in results:
        table = res["table"].copy()
        table.insert(0, "method", res["method"])
        th = res["thresholds"]
        table["t1"], table["t2"] = th.t1, th.t2
        frames.append(table)
    return pd.concat(frames, ignore_index=True)


def plot_separation(result: dict[str, Any], folder: Any = None, bins: int = 60,
                    max_panels: int = 30) -> Any:
    """One figure per method: the copies' distance histogram of each attack (and of all of
    them) drawn over the unrelated pairs' one, with T1, T2 and the FPR 1e-3 threshold. With
    more attacks than ``max_panels - 1``, those with the most copies above T1 are shown (the
    title says how many of how many).

    Returns the `Figure` when ``folder`` is None (a notebook shows it); otherwise saves it
    there (PDF and PNG) and returns the files written.
    """
    th = result["thresholds"]
    attack = result["attack"]
    attacks = sorted(set(attack.tolist()))
    if len(attacks) + 1 > max_panels:  # the hardest attacks: most copies above T1 first
        above = {a: float(np.mean(result["copies"][attack == a] > th.t1)) for a in attacks}
        attacks = sorted(sorted(attacks, key=lambda a: -above[a])[:max_panels - 1])
    names = ["all", *attacks]
    shown = (f" ({len(attacks)} of {len(set(attack.tolist()))} attacks: those with the most "
             "copies above T1)" if len(attacks) < len(set(attack.tolist())) else "")
    cols = min(4, len(names))
    rows = int(np.ceil(len(names) / cols))
    unrelated = result["unrelated"][np.isfinite(result["unrelated"])]
    finite = result["copies"][np.isfinite(result["copies"])]
    top = max(float(unrelated.max()) if len(unrelated) else 1.0,
              float(finite.max()) if len(finite) else 0.0)
    edges = np.linspace(0, top if top > 0 else 1.0, bins + 1)
    with figure_style():
        fig, axes = new_figure(rows, cols, figsize=(3.2 * cols, 2.5 * rows), squeeze=False)
        fig.set_layout_engine("constrained")
        for ax, name in zip(axes.ravel(), names, strict=False):
            d = result["copies"] if name == "all" else result["copies"][attack == name]
            ax.hist(unrelated, bins=edges, density=True, alpha=0.5, color="0.5",
                    label="unrelated")
            ax.hist(d[np.isfinite(d)], bins=edges, density=True, alpha=0.6, color="C0",
                    label="copies")
            for value, style, text in ((th.t1, "--", "T1"), (th.t2, ":", "T2")):
                ax.axvline(value, color="C3", linestyle=style, linewidth=1, label=text)
            first = max(th.at_fpr) if th.at_fpr else None
            if first is not None and np.isfinite(th.at_fpr[first]):  # -inf: accepts none
                ax.axvline(th.at_fpr[first], color="C2", linewidth=1,
                           label=f"FPR {first:g}")
            ax.set_title(f"{name}\n{np.mean(d > th.t1):.1%} of copies > T1", fontsize=7)
            ax.tick_params(labelsize=7)
        for ax in axes.ravel()[len(names):]:
            ax.set_visible(False)
        axes[0, 0].legend(fontsize=6)
        fig.suptitle(f"{result['method']}: distances of copies to their originals{shown}",
                     fontsize=9)
        fig.supxlabel("distance", fontsize=8)
        fig.supylabel("density", fontsize=8)
        return fig if folder is None else save_figure(fig, folder,
                                                      f"separation_{result['method']}")


def share_pivot(frame: pd.DataFrame, column: str = "above_t1") -> pd.DataFrame:
    """Attacks x methods of one share column, methods in run order, ``all`` last."""
    table = frame.pivot(index="attack", columns="method", values=column)
    order = [*[a for a in table.index if a != "all"], "all"]
    return table.loc[order, list(dict.fromkeys(frame["method"]))]


def plot_shares(frame: pd.DataFrame, folder: Any = None, column: str = "above_t1") -> Any:
    """Heat map of attacks x methods: the share of copies above a threshold.

    Returns the `Figure` when ``folder`` is None (a notebook shows it); otherwise saves it
    there (PDF and PNG) and returns the files written.
    """
    table = share_pivot(frame, column)
    with figure_style():
        fig, ax = new_figure(figsize=(1.0 + 0.9 * table.shape[1], 1.0 + 0.28 * table.shape[0]))
        image = ax.imshow(table.to_numpy(float), aspect="auto", cmap="viridis_r", vmin=0,
                          vmax=1)
        ax.set_xticks(range(table.shape[1]), table.columns, rotation=60, ha="right",
                      fontsize=7)
        ax.set_yticks(range(table.shape[0]), table.index, fontsize=7)
        for (r, c), value in np.ndenumerate(table.to_numpy(float)):
            ax.text(c, r, f"{value:.2f}", ha="center", va="center", fontsize=5,
                    color="w" if value > 0.5 else "k")
        fig.colorbar(image, ax=ax, label=f"share of copies {column.replace('_', ' ')}")
        return fig if folder is None else save_figure(fig, folder, f"shares_{column}")


def plot_explained_variance(curves: dict[str, np.ndarray], folder: Any = None,
                            name: str = "explained_variance") -> Any:
    """Cumulative explained variance of each method's principal components.

    Returns the `Figure` when ``folder`` is None (a notebook shows it); otherwise saves it
    there (PDF and PNG) and returns the files written.
    """
    with figure_style():
        fig, ax = new_figure(figsize=(5, 3.5))
        for label, ratio in curves.items():
            ax.plot(np.arange(1, len(ratio) + 1), np.cumsum(ratio), label=label)
        ax.set_xscale("log")
        ax.set_xlabel("principal components")
        ax.set_ylabel("cumulative explained variance")
        ax.set_ylim(0, 1.01)
        ax.legend(fontsize=7)
        return fig if folder is None else save_figure(fig, folder, name)
