"""Figures of a benchmark digest; they need the digest alone.

Every ``plot_*`` function returns its `matplotlib.figure.Figure` (a notebook shows it inline)
and writes it, as PDF and PNG, only when given a folder; `plot_galleries` returns a dict of
figures by file name. `plot_digest` writes them all and returns the files. Figures are
drawn in the library's style on objects pyplot does not manage (`helpers.plotting`): drawing
them changes no backend, opens no window and leaves a notebook's settings as they were.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from PIL import Image

from hashing.evaluation.digest import Digest
from helpers import figure_style, printable
from helpers.plotting import new_figure, save_figure

if TYPE_CHECKING:  # matplotlib is imported when drawing, not by `import hashing`
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

Folder = str | os.PathLike | None


def _done(fig: Figure, folder: Folder, name: str) -> Figure:
    """Save ``fig`` as ``<folder>/<name>.pdf`` and ``.png`` when a folder is given; the
    figure either way."""
    if folder is not None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        save_figure(fig, Path(folder), name)
    return fig


def _styled(plot: Callable[..., Any]) -> Callable[..., Any]:
    """Draw (and save) in the library's style, algorithms of merged digests told apart."""
    @functools.wraps(plot)
    def draw(digest: Digest, *args: Any, **kwargs: Any) -> Any:
        with figure_style():
            return plot(_distinct_algorithms(digest), *args, **kwargs)
    return draw


@_styled
def plot_roc(digest: Digest, folder: Folder = None) -> Figure:
    """ROC of detection, one curve per algorithm, AUC in the legend.

    Parameters
    ----------
    digest : Digest
        A loaded digest (`hashing.evaluation.digest.load_digest`; several merged).
    folder : str or path-like, optional
        Where to write ``roc.pdf`` and ``roc.png``; nothing is written without it.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, ax = new_figure(figsize=(5, 5))
    auc = digest.summary.set_index("algorithm")["auc"]
    for algorithm, curve in digest.roc.groupby("algorithm", sort=False):
        ax.plot(curve["fpr"], curve["tpr"], label=f"{algorithm} (AUC {auc[algorithm]:.3f})")
    ax.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls="--")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (detection)")
    ax.legend(fontsize=8)
    return _done(fig, folder, "roc")


@_styled
def plot_roc_attacks(digest: Digest, folder: Folder = None) -> Figure:
    """ROC per attack: one panel per attack, one curve per algorithm.

    Parameters
    ----------
    digest : Digest
        A loaded digest (`hashing.evaluation.digest.load_digest`; several merged).
    folder : str or path-like, optional
        Where to write ``roc_attacks.pdf`` and ``roc_attacks.png``; nothing is written without it.

    Returns
    -------
    matplotlib.figure.Figure
    """
    attacks = list(dict.fromkeys(digest.attack_roc["attack"]))
    cols = min(8, len(attacks))
    rows = math.ceil(len(attacks) / cols)
    fig, axes = new_figure(rows, cols, figsize=(2.2 * cols, 2.2 * rows), squeeze=False,
                             sharex=True, sharey=True)
    for ax, attack in zip(axes.flat, attacks, strict=False):
        part = digest.attack_roc[digest.attack_roc["attack"] == attack]
        for algorithm, curve in part.groupby("algorithm", sort=False):
            ax.plot(curve["fpr"], curve["tpr"], lw=1, label=algorithm)
        ax.set_title(attack, fontsize=6)
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[len(attacks):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=5)
    return _done(fig, folder, "roc_attacks")


@_styled
def plot_metrics_threshold(digest: Digest, folder: Folder = None) -> Figure:
    """Accuracy, precision, recall and FPR against the threshold, per algorithm and task.

    Parameters
    ----------
    digest : Digest
        A loaded digest (`hashing.evaluation.digest.load_digest`; several merged).
    folder : str or path-like, optional
        Where to write ``metrics_threshold.pdf`` and ``metrics_threshold.png``; nothing is
        written without it.

    Returns
    -------
    matplotlib.figure.Figure
    """
    algorithms = list(dict.fromkeys(digest.metrics["algorithm"]))
    fig, axes = new_figure(2, len(algorithms), figsize=(3 * len(algorithms), 5.5),
                             squeeze=False, sharey=True)
    for j, algorithm in enumerate(algorithms):
        for i, task in enumerate(("detection", "identification")):
            part = digest.metrics[(digest.metrics["algorithm"] == algorithm)
                                  & (digest.metrics["task"] == task)]
            for col in ("accuracy", "precision", "recall", "fpr"):
                axes[i, j].plot(part["threshold"], part[col], label=col)
            axes[i, j].set_title(f"{algorithm}: {task}", fontsize=8)
            axes[i, j].set_xlabel("threshold")
    axes[0, 0].legend(fontsize=7)
    return _done(fig, folder, "metrics_threshold")


@_styled
def plot_auc_heatmap(digest: Digest, folder: Folder = None) -> Figure:
    """AUC of every attack (rows) and algorithm (columns).

    Parameters
    ----------
    digest : Digest
        A loaded digest (`hashing.evaluation.digest.load_digest`; several merged).
    folder : str or path-like, optional
        Where to write ``auc_heatmap.pdf`` and ``auc_heatmap.png``; nothing is written without it.

    Returns
    -------
    matplotlib.figure.Figure
    """
    table = digest.attack_summary.pivot_table(index="attack", columns="algorithm",
                                              values="auc", sort=False)
    fig, ax = new_figure(figsize=(1.0 + 0.9 * table.shape[1], 0.8 + 0.22 * table.shape[0]))
    image = ax.imshow(table.to_numpy(dtype=float), vmin=0.5, vmax=1, cmap="viridis",
                      aspect="auto")
    ax.set_xticks(range(table.shape[1]), table.columns, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(table.shape[0]), table.index, fontsize=6)
    fig.colorbar(image, ax=ax, label="AUC")
    return _done(fig, folder, "auc_heatmap")


@_styled
def plot_times(digest: Digest, folder: Folder = None) -> Figure:
    """Milliseconds per image to describe the database and to match a query.

    Parameters
    ----------
    digest : Digest
        A loaded digest (`hashing.evaluation.digest.load_digest`; several merged).
    folder : str or path-like, optional
        Where to write ``times.pdf`` and ``times.png``; nothing is written without it.

    Returns
    -------
    matplotlib.figure.Figure
    """
    db = digest.db_time.groupby("algorithm", sort=False)["seconds_per_image"].mean()
    match = digest.match_time.groupby("algorithm", sort=False)["seconds_per_image"].mean()
    x = np.arange(len(db))
    fig, ax = new_figure(figsize=(1.5 + 0.8 * len(db), 3.5))
    ax.bar(x - 0.2, db.to_numpy() * 1e3, 0.4, label="database (describe)")
    ax.bar(x + 0.2, match.reindex(db.index).to_numpy() * 1e3, 0.4,
           label="query (describe + match)")
    ax.set_xticks(x, db.index, rotation=45, ha="right")
    ax.set_ylabel("ms per image")
    ax.legend(fontsize=8)
    return _done(fig, folder, "times")


def _gallery(rows: pd.DataFrame, value: str, title: str) -> Figure:
    fig, axes = new_figure(1, max(len(rows), 1), figsize=(2.2 * max(len(rows), 1), 2.6),
                             squeeze=False)
    for ax, (_, row) in zip(axes.flat, rows.iterrows(), strict=False):
        path = row.get("path") or ""
        try:
            ax.imshow(Image.open(path).convert("RGB"))
        except (OSError, ValueError):
            ax.text(0.5, 0.5, "image not found", ha="center", va="center", fontsize=7)
        ax.set_title(f"{printable(row['image_id'])}\n{value}: {row[value]}", fontsize=6)
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    return fig


def _galleries(digest: Digest, threshold: float, count: int) -> Iterator[tuple[str, Figure]]:
    """``(file name, figure)`` of each gallery of `plot_galleries`, one at a time."""
    own: dict[str, float] = {}
    if "threshold_rule" in digest.summary:
        rows = digest.summary[digest.summary["threshold_rule"].fillna("fixed") != "fixed"]
        own = dict(zip(rows["algorithm"], rows["threshold"], strict=True))
    for algorithm, part in digest.images_pos.groupby("algorithm", sort=False):
        target = own.get(algorithm, threshold)
        t = part["threshold"].iloc[(part["threshold"] - target).abs().argmin()]
        at = part[part["threshold"] == t].copy()
        at = at[at["copies"] > 0]
        at["identified_fraction"] = (at["identified"] / at["copies"]).round(3)
        yield (f"gallery_least_recognised_{algorithm}",
               _gallery(at.nsmallest(count, "identified_fraction"), "identified_fraction",
                        f"{algorithm}: least recognised (threshold {t:.3g})"))
        neg = digest.images_neg[(digest.images_neg["algorithm"] == algorithm)
                                & (digest.images_neg["threshold"] == t)]
        yield (f"gallery_false_matches_{algorithm}",
               _gallery(neg.nlargest(count, "false_matches"), "false_matches",
                        f"{algorithm}: most falsely matched (threshold {t:.3g})"))


@_styled
def plot_galleries(digest: Digest, folder: Folder = None, threshold: float = 0.2,
                   count: int = 6) -> dict[str, Figure]:
    """Per algorithm: the database images whose copies were least often identified, and those
    most often matched by negatives, at the threshold nearest to ``threshold`` (for an
    algorithm the summary took at its own operating point, e.g. SIFT's L2: at that one).

    Parameters
    ----------
    digest : Digest
    folder : str or path-like, optional
        Where to write each gallery (PDF and PNG, named by the keys of the result); nothing
        is written without it.
    threshold : float
        The summary threshold (the digest's default is 0.2).
    count : int
        Images per gallery.

    Returns
    -------
    dict
        ``{file name: matplotlib.figure.Figure}``, two per algorithm.
    """
    return {name: _done(fig, folder, name) for name, fig in _galleries(digest, threshold, count)}




def _distinct_algorithms(digest: Digest) -> Digest:
    """Merged digests that share an algorithm name: each becomes ``name [digest]``, so that
    curves, legends and files stay one per run."""
    runs = digest.summary.get("digest")
    if runs is None or runs.nunique() < 2:
        return digest
    if not digest.summary.duplicated("algorithm").any():
        return digest
    frames = {}
    for key, frame in vars(digest).items():
        if {"algorithm", "digest"} <= set(frame.columns):
            frame = frame.assign(algorithm=frame["algorithm"].astype(str) + " ["
                                 + frame["digest"].astype(str) + "]")
        frames[key] = frame
    return Digest(**frames)


#: The single figures of a digest (`plot_digest` draws them and the galleries), by file name.
FIGURES: dict[str, Callable[[Digest], Figure]] = {
    "roc": plot_roc, "roc_attacks": plot_roc_attacks, "metrics_threshold": plot_metrics_threshold,
    "auc_heatmap": plot_auc_heatmap, "times": plot_times}


def plot_digest(digest: Digest, folder: str | os.PathLike, threshold: float = 0.2
                ) -> list[Path]:
    """Every figure of a digest into ``folder`` (PDF and PNG each), one figure at a time.

    Parameters
    ----------
    digest : Digest
    folder : str or path-like
    threshold : float
        The summary threshold, for the galleries (`plot_galleries`).

    Returns
    -------
    list of Path
        The files written.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    digest = _distinct_algorithms(digest)
    written: list[Path] = []
    with figure_style():
        for name, plot in FIGURES.items():
            written += save_figure(plot(digest), folder, name)
        for name, fig in _galleries(digest, threshold, 6):
            written += save_figure(fig, folder, name)
    logger.info("wrote %d figure files to %s", len(written), folder)
    return written
