"""Clustering results as files: ``assignments.csv``, ``clusters.json``, figures, galleries of
the clusters and an HTML page that shows them.

Layout of ``Results/<name>/``::

    assignments.csv   image_id, true_group (when known), one column of labels per setting
    clusters.json     method, metric, parameters, notes, and per setting: measures against
                      the truth, a summary of the cluster attributes, and every cluster's
                      attributes (column lists)
    figures/          measures against the setting, cluster sizes, diameter against size,
                      the dendrogram (hierarchical), galleries/ (image grids per cluster)
    index.html        the run at a glance: measures per setting and the galleries
"""

from __future__ import annotations

import html
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy.cluster.hierarchy import dendrogram

from clustering.graph import knn
from clustering.methods import Clustering
from clustering.metrics import (
    NEIGHBOURS,
    cluster_attributes,
    external_measures,
    summarize_attributes,
    truth_labels,
)
from clustering.points import Points
from hashing.distances import pairwise
from helpers import ImageLoadError, atomic_write, load_image, printable, write_csv, write_json
from helpers.plotting import figure_style, new_figure, save_figure

if TYPE_CHECKING:  # matplotlib loads only when a figure is drawn
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

#: Measures drawn against the setting.
PLOTTED = ("v_measure", "homogeneity", "completeness", "ari", "ami", "pair_f1", "mean_iou")


def evaluate(result: Clustering, points: Points | None = None,
             truth: np.ndarray | None = None, attributes: bool = True,
             device: str = "cpu") -> list[dict[str, Any]]:
    """Measures of every setting: against the truth (the records' ``source_id`` unless
    ``truth`` is given; skipped without either) and, with ``points``, the attributes of each
    cluster in the metric that was clustered with.

    Returns
    -------
    list of dict
        Per setting: ``name``, ``setting``, ``n_clusters``, ``n_noise``, ``measures``,
        ``attributes`` (summary) and ``clusters`` (a DataFrame).
    """
    if truth is None and result.records is not None:
        truth = truth_labels(result.records)
        if len(set(truth)) == len(truth):  # a folder: every image its own source, no truth
            truth = None
    neighbours = (knn(points, NEIGHBOURS, device=device, show_progress=False)
                  if attributes and points is not None else None)
    out = []
    for name, setting, labels in zip(result.names(), result.settings, result.labels,
                                     strict=True):
        entry: dict[str, Any] = {"name": name, "setting": setting,
                                 "n_clusters": int(len(np.unique(labels[labels >= 0]))),
                                 "n_noise": int((labels < 0).sum())}
        if truth is not None:
            entry["measures"] = external_measures(truth, labels)
        if neighbours is not None:
            table = cluster_attributes(points, labels, neighbours, device=device)
            entry["clusters"] = table
            entry["attributes"] = summarize_attributes(table)
        out.append(entry)
    return out


def write_clustering(result: Clustering, folder: str | Path,
                     evaluation: list[dict[str, Any]] | None = None,
                     points: Points | None = None, figures: bool = True,
                     galleries: int = 12, members: int = 8, extra: dict | None = None
                     ) -> list[Path]:
    """Write a clustering run into ``folder``.

    Parameters
    ----------
    result : Clustering
    evaluation : list of dict, optional
        From `evaluate` (measures and attributes); without it only the labels are written.
    points : Points, optional
        The rows clustered: galleries then show the members nearest and farthest from the
        medoid.
    figures : bool
        Draw the figures, galleries and ``index.html``.
    galleries : int
        Clusters shown as image grids (the largest of the best setting).
    members : int
        Images per gallery row.
    extra : dict, optional
        More keys for ``clusters.json`` (the data it was run on...).

    Returns
    -------
    list of Path
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame({"image_id": result.ids})
    if result.records is not None:
        frame["true_group"] = truth_labels(result.records)
    for name, labels in zip(result.names(), result.labels, strict=True):
        frame[name] = labels
    # an id from a file name that is not UTF-8 is written as its own bytes, as manifests
    # write such names; formula-like ids are quoted (helpers.write_csv)
    write_csv(frame, folder / "assignments.csv")
    payload: dict[str, Any] = {
        "method": result.method, "metric": result.metric, "features": result.features,
        "params": result.params, "images": len(result), "seconds": result.seconds,
        "notes": result.notes, **(extra or {}), "settings": []}
    for i, (name, setting) in enumerate(zip(result.names(), result.settings, strict=True)):
        entry = dict(evaluation[i]) if evaluation else {
            "name": name, "setting": setting, "n_clusters": result.n_clusters()[i],
            "n_noise": int((result.labels[i] < 0).sum())}
        if isinstance(entry.get("clusters"), pd.DataFrame):
            entry["clusters"] = entry["clusters"].to_dict(orient="list")
        payload["settings"].append(entry)
    write_json(folder / "clusters.json", payload, null_nonfinite=True)
    written = [folder / "assignments.csv", folder / "clusters.json"]
    if figures:
        written += plot_clustering(result, folder / "figures", evaluation)
        if evaluation and galleries:
            best = best_setting(evaluation)
            shown = plot_galleries(result, evaluation[best], folder / "figures" / "galleries",
                                   galleries, members, points)
            written += shown
            written.append(write_html(result, evaluation, best, shown, folder))
    return written


def best_setting(evaluation: list[dict[str, Any]]) -> int:
    """The setting with the highest V-measure (the first when there is no truth)."""
    scores = [e.get("measures", {}).get("v_measure", -1.0) for e in evaluation]
    return int(np.argmax(scores))


def _axes(settings: list[dict[str, Any]]) -> list[tuple[str, list[int]]]:
    """Settings grouped by the parameter they vary (cuts by count apart from cuts by
    distance): ``(parameter, indices)`` for each group with one varying parameter."""
    groups: dict[tuple[str, ...], list[int]] = {}
    for i, setting in enumerate(settings):
        groups.setdefault(tuple(setting), []).append(i)
    out = []
    for keys, members in groups.items():
        varying = [k for k in keys if len({settings[i][k] for i in members}) > 1] or list(keys)
        if len(varying) == 1:
            out.append((varying[0], members))
    return out


def clustering_figures(result: Clustering, evaluation: list[dict[str, Any]] | None = None
                       ) -> dict[str, Figure]:
    """The figures of a clustering, by file name: measures against the setting (with the
    truth), cluster sizes, diameter against size (with `evaluate`'s cluster attributes), the
    dendrogram (hierarchical). A notebook shows each `Figure` as it is.

    Parameters
    ----------
    result : Clustering
    evaluation : list of dict, optional
        `evaluate`'s entries (measures and cluster attributes per setting).

    Returns
    -------
    dict of str to matplotlib.figure.Figure
    """
    with figure_style():
        return dict(_figures(result, evaluation))


def plot_clustering(result: Clustering, folder: str | Path | None = None,
                    evaluation: list[dict[str, Any]] | None = None
                    ) -> list[Path] | dict[str, Figure]:
    """`clustering_figures` written into ``folder`` (PDF and PNG each, one figure at a time),
    or returned as ``{file name: Figure}`` when ``folder`` is None.

    Returns
    -------
    list of Path or dict of str to Figure
        The files written, or the figures.
    """
    if folder is None:
        return clustering_figures(result, evaluation)
    written: list[Path] = []
    with figure_style():
        for name, fig in _figures(result, evaluation):
            written += save_figure(fig, folder, name)
    return written


def _figures(result: Clustering, evaluation: list[dict[str, Any]] | None
             ) -> Iterator[tuple[str, Figure]]:
    """``(file name, figure)`` of each figure of `clustering_figures`, drawn when asked for."""
    for key, members in (_axes(result.settings)
                         if evaluation and "measures" in evaluation[0] else []):
        values = np.array([float(result.settings[i][key]) for i in members])
        order = np.argsort(values, kind="stable")
        fig, ax = new_figure(figsize=(6, 4))
        for measure in PLOTTED:
            ys = [evaluation[members[i]]["measures"][measure] for i in order]
            ax.plot(values[order], ys, marker="o", label=measure)
        ax.set_xlabel(key)
        ax.set_ylabel("score")
        ax.set_ylim(-0.05, 1.05)
        ax.set_title(f"{result.method} ({result.features or 'features'}, {result.metric})")
        ax.legend(fontsize=7)
        yield f"measures_vs_{key}", fig
    sizes = [np.bincount(lab[lab >= 0]) for lab in result.labels]
    if any(len(s) for s in sizes):  # not all noise
        yield "cluster_sizes", _plot_sizes(result.names(), sizes)
    drawn = [e for e in (evaluation or []) if "clusters" in e
             and (e["clusters"]["size"] > 1).any()][:6]
    if drawn:  # clusters of one have no diameter
        fig, ax = new_figure(figsize=(6, 4))
        for entry in drawn:
            table = entry["clusters"]
            multi = table[table["size"] > 1]
            ax.scatter(multi["size"], multi["diameter"], s=6, alpha=0.5, label=entry["name"])
        ax.set_xscale("log")
        ax.set_xlabel("cluster size")
        ax.set_ylabel(f"diameter ({result.metric})")
        ax.legend(fontsize=6)
        yield "diameter_vs_size", fig
    if result.tree is not None:
        fig, ax = new_figure(figsize=(8, 4))
        dendrogram(result.tree, truncate_mode="lastp", p=40, ax=ax, no_labels=False,
                   leaf_font_size=6, show_contracted=True)
        ax.set_ylabel(f"merge distance ({result.params.get('linkage')}, {result.metric})")
        ax.set_title("last 40 merges (leaf labels: cluster sizes)")
        yield "dendrogram", fig


def _plot_sizes(names: list[str], sizes: list[np.ndarray]) -> Figure:
    """Histogram (log-log) and violins of the cluster sizes of every setting."""
    fig, (left, right) = new_figure(1, 2, figsize=(10, 4))
    for name, s in zip(names, sizes, strict=True):
        if len(s):
            left.hist(s, bins=np.unique(np.geomspace(1, s.max() + 1, 30).astype(int)),
                      histtype="step", label=name)
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("cluster size")
    left.set_ylabel("clusters")
    left.legend(fontsize=6)
    shown = [s for s in sizes if len(s)]
    if shown:
        right.violinplot([np.log10(s) for s in shown], showmedians=True)
        right.set_xticks(range(1, len(shown) + 1),
                         [n for n, s in zip(names, sizes, strict=True) if len(s)],
                         rotation=45, ha="right", fontsize=6)
    right.set_ylabel("log10 cluster size")
    return fig


def image_loader(records: Sequence[Any] | None, made: dict | None):
    """A function giving a record's image for a gallery (a thumbnail), or ``None``.

    An image on disk is read. An attacked copy made on the fly and never written (a store of
    ``search_stores.py``: no path, an ``attack_id`` and a ``source_id``) is made again: its
    attack, parsed from the id with the store's options, applied to its source's file with the
    store's seed, which gives the same pixels as when its features were extracted (randomness
    comes from the seed, the source and the attack). The source must be among ``records`` (a
    copies store holds its originals; a ``_queries`` store alone does not). Not made again,
    shown as missing: an id ``a+b`` unless the store says every source was an original (it
    could be ``b`` made on a written copy ``a``), and a text or overlay attack when the store
    did not record its font or background."""
    from generator import AttackedImage, parse_attack_id  # lazy: generator loads matplotlib

    sources = {r.image_id: r for r in records or () if r.path is not None and r.attack_id is None}
    reported: set[str] = set()

    def remade(record: Any):
        source = sources.get(getattr(record, "source_id", None))
        attack_id = getattr(record, "attack_id", None)
        if made is None or source is None or not attack_id:
            return None
        if "+" in attack_id and made.get("sources_are_originals") is not True:
            return None
        options = made.get("options")
        attack = parse_attack_id(attack_id, **(options or {}))
        if options is None and any(s.family in ("text", "overlay") for s in attack.steps):
            return None  # its font or background is unknown
        # as extraction made it (the source decoded once for its copies in a row); a copy,
        # as thumbnail() works in place and an attack may hand back the cached source
        return AttackedImage(record, source, attack, made["seed"]).load().copy()

    def load(record: Any):
        path = getattr(record, "path", None)
        try:
            if path is None:
                image = remade(record)
            elif Path(path).is_file():
                image = load_image(path)
            else:
                image = None
        except (OSError, ValueError, ImageLoadError) as error:
            if str(error) not in reported:
                reported.add(str(error))
                logger.warning("gallery: %s not shown (%s)", record.image_id, error)
            return None
        if image is not None:
            image.thumbnail((192, 192))
        return image

    return load


def plot_galleries(result: Clustering, entry: dict[str, Any], folder: str | Path | None = None,
                   count: int = 12, members: int = 8, points: Points | None = None,
                   seed: int = 0) -> list[Path] | dict[str, Figure]:
    """Image grids of the ``count`` largest clusters of one setting: random members and, with
    ``points``, the members nearest the medoid and those farthest from it (rows of
    ``members`` images).

    Returns
    -------
    list of Path or dict of str to Figure
        The PNG files written into ``folder``, or ``{file name: Figure}`` when ``folder`` is
        None (a notebook shows them); empty without records or cluster attributes.
    """
    figures = _gallery_figures(result, entry, count, members, points, seed)
    if folder is None:
        return dict(figures)
    written: list[Path] = []
    for name, fig in figures:
        written += save_figure(fig, folder, name, formats=("png",))
    return written


def _gallery_figures(result: Clustering, entry: dict[str, Any], count: int, members: int,
                     points: Points | None, seed: int) -> Iterator[tuple[str, Figure]]:
    """``(file name, figure)`` of each gallery of `plot_galleries`, drawn when asked for."""
    if result.records is None or "clusters" not in entry:
        return
    labels = result.labels[result.settings.index(entry["setting"])]
    table = entry["clusters"]
    if (table["size"] > 1).any():  # groups first: a singleton shows nothing grouped
        table = table[table["size"] > 1]
    table = table.sort_values("size", ascending=False, kind="stable").head(count)
    index = {image_id: i for i, image_id in enumerate(result.ids)}
    load = image_loader(result.records, points.made if points is not None else None)
    rng = np.random.default_rng(seed)
    for _, row in table.iterrows():
        rows_of = np.flatnonzero(labels == row["cluster"])
        if points is not None:
            medoid = index[row["medoid"]]
            d = pairwise(points.descriptors(rows_of), points.descriptors([medoid]))[:, 0]
            order = rows_of[np.argsort(d, kind="stable")]
        else:
            order = rows_of
        if len(rows_of) <= members:  # every member fits one row: nearest the medoid first
            picks = {"all members" if points is None else "all, nearest the medoid first":
                     order}
        else:
            picks = {"random": np.sort(rng.choice(rows_of, members, replace=False))}
            if points is not None:
                picks["nearest the medoid"] = order[:members]
                picks["farthest from the medoid"] = order[::-1][:members]
        columns = max(len(chosen) for chosen in picks.values())
        fig, axes = new_figure(len(picks), columns,
                               figsize=(max(1.7 * columns, 4.0), 1.9 * len(picks) + 0.4),
                               squeeze=False)
        for r, (title, chosen) in enumerate(picks.items()):
            for c in range(columns):
                ax = axes[r, c]
                ax.axis("off")
                if c < len(chosen):
                    image = load(result.records[int(chosen[c])])
                    if image is not None:
                        ax.imshow(np.asarray(image))
                    else:
                        ax.text(0.5, 0.5, "not on disk", ha="center", va="center", fontsize=6)
                    ax.set_title(printable(result.ids[int(chosen[c])])[:22], fontsize=5)
            axes[r, 0].text(-0.1, 0.5, title, transform=axes[r, 0].transAxes, rotation=90,
                            ha="right", va="center", fontsize=6)
        fig.suptitle(f"cluster {row['cluster']}: {row['size']} images, diameter "
                     f"{row['diameter']:.3g} ({result.metric})", fontsize=8)
        yield f"cluster_{int(row['cluster']):05d}", fig


def write_html(result: Clustering, evaluation: list[dict[str, Any]], best: int,
               galleries: list[Path], folder: Path) -> Path:
    """``index.html``: the measures of every setting and the galleries of the best one."""
    def cell(value: Any) -> str:
        return f"{value:.4f}" if isinstance(value, float) else html.escape(str(value))

    keys = list(evaluation[0].get("measures", {}))
    head = "".join(f"<th>{html.escape(k)}</th>" for k in ["setting", "clusters", "noise",
                                                          *keys])
    body = []
    for i, e in enumerate(evaluation):
        style = ' style="background:#eef"' if i == best else ""
        cells = [e["name"], e["n_clusters"], e["n_noise"],
                 *[e.get("measures", {}).get(k) for k in keys]]
        body.append(f"<tr{style}>" + "".join(f"<td>{cell(c)}</td>" for c in cells) + "</tr>")
    images = "\n".join(f'<figure><img src="{html.escape(p.relative_to(folder).as_posix())}" '
                       f'loading="lazy"><figcaption>{html.escape(p.stem)}</figcaption></figure>'
                       for p in galleries)
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in result.notes)
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(result.method)} clustering</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 6px;font-size:12px}}img{{max-width:100%}}
figure{{margin:1em 0}}</style></head><body>
<h1>{html.escape(result.method)} of {len(result)} images ({html.escape(str(result.features))},
{html.escape(result.metric)})</h1>
<p>{result.seconds:.1f} s. Parameters: {html.escape(str(result.params))}</p>
<ul>{notes}</ul>
<table><tr>{head}</tr>{''.join(body)}</table>
<h2>Largest clusters of {html.escape(evaluation[best]['name'])}</h2>
{images}
</body></html>
"""
    path = folder / "index.html"
    with atomic_write(path, "w") as handle:
        handle.write(page)
    return path
