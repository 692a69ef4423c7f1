"""The study's figures, in its layouts, drawn from the steps' result files alone: ROC per
method and time per image (the three method families' digests merged), AUC per attack family
(a heat map), recall against database size (the searches at each number of distractors).
One style for all (`helpers.figure_style`), PDF and PNG each."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from generator import families
from hashing.evaluation.digest import load_digest
from helpers import figure_style, new_figure, read_json, save_figure

logger = logging.getLogger(__name__)


def attack_family(attack_id: str) -> str:
    """The family of an attack id (``jpg_compression_50`` -> ``jpg_compression``): the
    longest registered family its id starts with (the id itself when none does)."""
    known = sorted((f for f in families() if attack_id == f or attack_id.startswith(f + "_")),
                   key=len)
    return known[-1] if known else attack_id


def plot_family_heatmap(attack_summary: pd.DataFrame, folder: Path, name: str) -> list[Path]:
    """Mean AUC of each attack family (rows) for each method (columns), values written in."""
    table = attack_summary.assign(family=attack_summary["attack"].map(attack_family))
    table = table.pivot_table(index="family", columns="algorithm", values="auc",
                              aggfunc="mean", sort=False)
    with figure_style():
        fig, ax = new_figure(figsize=(1.6 + 0.75 * table.shape[1], 0.9 + 0.3 * table.shape[0]))
        values = table.to_numpy(dtype=float)
        low = min(0.5, float(np.nanmin(values))) if np.isfinite(values).any() else 0.5
        image = ax.imshow(values, vmin=low, vmax=1, cmap="viridis", aspect="auto")
        for (row, col), value in pd.DataFrame(table.to_numpy()).stack().items():
            ax.text(col, row, f"{value:.2f}", ha="center", va="center", fontsize=6,
                    color="white" if value < 0.8 else "black")
        ax.set_xticks(range(table.shape[1]), [short_label(c) for c in table.columns],
                      rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(table.shape[0]), table.index, fontsize=7)
        ax.set_title("AUC per attack family")
        fig.colorbar(image, ax=ax, label="AUC")
        return save_figure(fig, folder, name)


def short_label(label: str) -> str:
    """A method's label short enough for an axis (``efficientnet_lite0_distance=
    jensenshannon`` -> ``efficientnet_lite0 (jensenshannon)``)."""
    name, sep, rest = label.partition("_distance=")
    return f"{name} ({rest})" if sep else label


def plot_roc_families(digest, folder: Path, name: str) -> list[Path]:
    """ROC of detection, one panel per method family (each digest), AUC in the legends."""
    families = list(dict.fromkeys(digest.summary["digest"]))
    auc = dict(zip(digest.summary["algorithm"], digest.summary["auc"], strict=False))
    with figure_style():
        fig, axes = new_figure(1, len(families), figsize=(3.3 * len(families), 3.4),
                               squeeze=False, sharey=True)
        for ax, family in zip(axes.flat, families, strict=True):
            rows = digest.roc[digest.roc["digest"] == family]
            for method, curve in rows.groupby("algorithm", sort=False):
                ax.plot(curve["fpr"], curve["tpr"], drawstyle="steps-post", lw=1.2,
                        label=f"{short_label(method)} ({auc.get(method, float('nan')):.3f})")
            ax.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls="--")
            ax.set_title(family)
            ax.set_xlabel("false positive rate")
            ax.legend(fontsize=6.5, loc="lower right", title="AUC", title_fontsize=7)
        axes.flat[0].set_ylabel("true positive rate")
        return save_figure(fig, folder, name)


def plot_time_per_image(digest, folder: Path, name: str) -> list[Path]:
    """Milliseconds per image to describe a database image and to describe and match a
    query, per method, on a log scale (hashes and networks differ by 100x)."""
    db = digest.db_time.groupby("algorithm", sort=False)["seconds_per_image"].mean() * 1e3
    match = digest.match_time.groupby("algorithm", sort=False)["seconds_per_image"].mean()
    match = match.reindex(db.index) * 1e3
    with figure_style():
        fig, ax = new_figure(figsize=(5.2, 0.9 + 0.32 * len(db)))
        y = range(len(db))
        ax.barh([i - 0.2 for i in y], db.to_numpy(), 0.4, label="database image (describe)")
        ax.barh([i + 0.2 for i in y], match.to_numpy(), 0.4,
                label="query (describe + match)")
        ax.set_yticks(list(y), [short_label(m) for m in db.index], fontsize=7)
        ax.invert_yaxis()
        ax.set_xscale("log")
        _plain_log_ticks(ax.xaxis)
        ax.set_xlabel("milliseconds per image (log scale)")
        ax.legend(fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2,
                  frameon=False)
        return save_figure(fig, folder, name)


def _plain_log_ticks(axis) -> None:
    """Log-scale ticks labelled 1, 10, 100 (no minor labels to collide)."""
    from matplotlib.ticker import (  # matplotlib: only when drawing
        FuncFormatter,
        LogLocator,
        NullFormatter,
    )

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(NullFormatter())


def method_figures(digests: list[Path], folder: Path) -> dict[str, list[Path]]:
    """ROC per method, AUC per attack family and time per image of the merged digests."""
    found = [d for d in digests if (d / "general.json").is_file()]
    if not found:
        return {}
    digest = load_digest(found)
    return {"roc": plot_roc_families(digest, folder, "roc"),
            "auc_families": plot_family_heatmap(digest.attack_summary, folder,
                                                "auc_families"),
            "times": plot_time_per_image(digest, folder, "times")}


def search_points(searches: list[Path]) -> pd.DataFrame:
    """Recall@1 of the exact index against the database's size, one row per search."""
    rows = []
    for folder in searches:
        try:
            result = read_json(folder / "search.json")
        except (OSError, ValueError):
            continue
        info = result["search_set"]
        exact = [r for r in result["runs"] if r["index"] in ("Flat", "BFlat")]
        for run in exact[:1]:
            rows.append({"method": info["method"], "database": info["database"],
                         "distractors": info["distractors"],
                         "recall@1": run["recall"].get("1"),
                         "queries_per_s": run["queries_per_s"]})
    return pd.DataFrame(rows)


def plot_recall_size(points: pd.DataFrame, folder: Path, name: str) -> list[Path]:
    """Recall@1 of exact search against the number of database images, a line per method."""
    with figure_style():
        fig, ax = new_figure(figsize=(4.5, 3.2))
        for method, rows in points.sort_values("database").groupby("method", sort=False):
            ax.plot(rows["database"], rows["recall@1"], marker="o", label=method)
        ax.set_xscale("log")
        sizes = sorted(points["database"].unique())
        ax.minorticks_off()
        ax.set_xticks(sizes, [f"{n:,}" for n in sizes], fontsize=7)
        ax.set_xlabel("database images (originals + distractors)")
        ax.set_ylabel("recall@1 (exact search)")
        ax.set_title("Recall against database size")
        ax.legend(fontsize=8)
        return save_figure(fig, folder, name)


def study_figures(digests: list[Path], searches: list[Path], folder: Path
                  ) -> dict[str, list[Path]]:
    """Every figure of the study's layouts that the finished steps allow, into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    written = method_figures(digests, folder)
    points = search_points(searches)
    if not points.empty:
        written["recall_size"] = plot_recall_size(points, folder, "recall_size")
    logger.info("drew %d study figures into %s", len(written), folder)
    return written
