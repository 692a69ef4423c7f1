"""The study's figures, in its layouts, drawn from the steps' result files alone: ROC per
method and time per image (the three method families' digests merged), AUC per attack family
(a heat map), recall against database size (the searches at each number of distractors).
One style for all (`helpers.figure_style`), PDF and PNG each."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from generator import families
from hashing.evaluation.digest import load_digest
from hashing.evaluation.plots import plot_roc, plot_times
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
        image = ax.imshow(table.to_numpy(dtype=float), vmin=0.5, vmax=1, cmap="viridis",
                          aspect="auto")
        for (row, col), value in pd.DataFrame(table.to_numpy()).stack().items():
            ax.text(col, row, f"{value:.2f}", ha="center", va="center", fontsize=6,
                    color="white" if value < 0.8 else "black")
        ax.set_xticks(range(table.shape[1]), table.columns, rotation=45, ha="right",
                      fontsize=7)
        ax.set_yticks(range(table.shape[0]), table.index, fontsize=7)
        ax.set_title("AUC per attack family")
        fig.colorbar(image, ax=ax, label="AUC")
        return save_figure(fig, folder, name)


def method_figures(digests: list[Path], folder: Path) -> dict[str, list[Path]]:
    """ROC per method, AUC per attack family and time per image of the merged digests."""
    found = [d for d in digests if (d / "general.json").is_file()]
    if not found:
        return {}
    digest = load_digest(found)
    written = {"roc": _saved(plot_roc(digest), folder, "roc"),
               "auc_families": plot_family_heatmap(digest.attack_summary, folder,
                                                   "auc_families"),
               "times": _saved(plot_times(digest), folder, "times")}
    return written


def _saved(fig, folder: Path, name: str) -> list[Path]:
    with figure_style():
        return save_figure(fig, folder, name)


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
