"""Search results on disk: ``search.json`` (the search set, every run, the Pareto front),
``search.csv`` (one row per run) and figures: recall@k against queries per second with the
Pareto front marked (as ANN benchmarks draw it), recall against each swept parameter, and
recall against index size. `search_figures` returns them as `matplotlib.figure.Figure`
objects (shown inline by a notebook) and writes nothing; `plot_search` writes them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fast_search.experiment import SearchResult
from helpers import (
    figure_style,
    get_logger,
    new_figure,
    read_json,
    save_figure,
    write_csv,
    write_json,
)

if TYPE_CHECKING:  # matplotlib is imported when drawing, not by `import fast_search`
    from matplotlib.figure import Figure

logger = get_logger(__name__)


def write_search(result: SearchResult, folder: str | Path, figures: bool = True) -> list[Path]:
    """Write ``search.csv``, then ``search.json`` and (unless ``figures`` is false) the figures
    into ``folder``.

    Returns
    -------
    list of Path
        Every file written.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    frame = result.frame()
    write_csv(frame, folder / "search.csv")
    payload = {"search_set": result.search_set, "runs": result.runs, "pareto": result.pareto}
    if result.search_set.get("synthetic_distractors"):
        payload["warning"] = (
            f"{result.search_set['synthetic_distractors']} distractors are synthetic vectors "
            "drawn from a Gaussian fitted to a real store: speed and memory only, not search "
            "quality or real IVF behaviour")
    write_json(folder / "search.json", payload, null_nonfinite=True)
    written = [folder / "search.csv", folder / "search.json"]
    if figures:
        written += plot_search(result, folder / "figures")
    return written


def load_search(folder: str | Path) -> SearchResult:
    """A result written by `write_search`."""
    data = read_json(Path(folder) / "search.json")
    runs = data["runs"]
    for run in runs:  # JSON keys are strings
        run["recall"] = {int(k): v for k, v in run["recall"].items()}
        run["intersection"] = {int(k): v for k, v in run.get("intersection", {}).items()}
    return SearchResult(runs, data["search_set"], data["pareto"])


def _label(run: dict[str, Any], metrics: int = 1) -> str:
    return run["index"] if metrics == 1 else f"{run['index']} ({run['metric']})"


def search_figures(result: SearchResult) -> dict[str, Figure]:
    """The figures of a search result, by file name (a notebook shows them; `plot_search`
    writes them): recall@k against queries per second for every k (the Pareto front on the
    first), recall against each swept parameter, best recall against the index size.

    Parameters
    ----------
    result : SearchResult

    Returns
    -------
    dict
        ``{file name: matplotlib.figure.Figure}``; empty without runs.
    """
    with figure_style():
        return dict(_figures(result))


def plot_search(result: SearchResult, folder: str | Path) -> list[Path]:
    """Write the figures of a search result (`search_figures`) into ``folder``, PDF and PNG
    each, one figure at a time.

    Returns
    -------
    list of Path
        The files written.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out: list[Path] = []
    with figure_style():
        for name, fig in _figures(result):
            out += save_figure(fig, folder, name)
    return out


def _figures(result: SearchResult) -> Iterator[tuple[str, Figure]]:
    """``(file name, figure)`` of each figure of a search result, drawn when asked for."""
    runs = result.runs
    if not runs:
        return
    ks = sorted(runs[0]["recall"])
    synthetic = result.search_set.get("synthetic_distractors", 0)
    note = (f"\n({synthetic} synthetic distractors: speed only)" if synthetic else "")
    title = (f"{result.search_set.get('method')}, {result.search_set.get('database')} "
             f"database images, {result.search_set.get('queries')} queries{note}")
    groups: dict[str, list[int]] = {}
    metrics = len({run["metric"] for run in runs})
    for i, run in enumerate(runs):
        groups.setdefault(_label(run, metrics), []).append(i)
    for k in ks:
        fig, ax = new_figure(figsize=(6, 4.5))
        for label, members in groups.items():
            x = [runs[i]["queries_per_s"] for i in members]
            y = [runs[i]["recall"][k] for i in members]
            ax.plot(x, y, "o", ms=4, alpha=0.8, label=label)
        front = sorted(result.pareto, key=lambda i: runs[i]["queries_per_s"])
        if k == ks[0] and front:
            ax.plot([runs[i]["queries_per_s"] for i in front],
                    [runs[i]["recall"][k] for i in front], "-", color="0.2", lw=1,
                    label="Pareto front")
        ax.set_xscale("log")
        ax.set_xlabel("queries per second")
        ax.set_ylabel(f"recall@{k}")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=8)
        yield f"recall_at_{k}_vs_qps", fig
    swept = sorted({name for run in runs for name in run["params"]})
    for name in swept:
        fig, ax = new_figure(figsize=(6, 4.5))
        for label, members in groups.items():
            pts = sorted((runs[i]["params"][name], runs[i]["recall"][ks[0]])
                         for i in members if name in runs[i]["params"])
            if pts:
                ax.plot(*zip(*pts, strict=True), "o-", ms=4, label=label)
        ax.set_xscale("log", base=2)
        ax.set_xlabel(name)
        ax.set_ylabel(f"recall@{ks[0]}")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=8)
        yield f"recall_vs_{name}", fig
    fig, ax = new_figure(figsize=(6, 4.5))
    for label, members in groups.items():
        best = max(runs[i]["recall"][ks[0]] for i in members)
        ax.plot([runs[members[0]]["index_bytes"] / 2**20], [best], "o", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("index size (MiB)")
    ax.set_ylabel(f"best recall@{ks[0]}")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    yield "recall_vs_index_size", fig
