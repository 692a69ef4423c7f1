"""What a person sees of `clustering.find_duplicates`'s groups: a page to act on, a figure and a
notebook table.

- `write_report`: the result folder's ``index.html`` (with ``thumbnails/``): the counts as
  ``duplicates.csv`` gives them (groups of two or more; images without a duplicate counted
  apart), every shown group under its number in ``duplicates.csv``, each image's thumbnail with
  its file name, distance, size and whether it is the one to keep, the threshold and what it
  means, the keeper rule, and every file skipped with the reason.
- `plot_duplicates`: the groups as rows of thumbnails (a matplotlib ``Figure``, saved only
  when given a path).
- `duplicates_html`: a compact table of the largest groups with small inline thumbnails
  (base64 PNG), bounded in size, for a notebook (``Duplicates._repr_html_``).
"""

from __future__ import annotations

import base64
import html
import io
import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd
from PIL import Image, ImageOps

from helpers import DEFAULT_MAX_PIXELS, atomic_write, figure_style, new_figure, printable, to_rgb
from helpers.io import atomic_path

if TYPE_CHECKING:
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

#: Groups and images per group the notebook table shows at most (the rest counted, not shown).
NOTEBOOK_GROUPS = 10
NOTEBOOK_MEMBERS = 6

#: Groups ``index.html`` shows with thumbnails by default (every group is in duplicates.csv).
PAGE_GROUPS = 200

#: Skipped files listed one by one on the page at most (all are in clusters.json).
PAGE_SKIPPED = 500


class Duplicates(Protocol):
    """What these pages read of `clustering.duplicates.Duplicates` (which imports this
    module, so it is described here rather than imported)."""

    groups: pd.DataFrame
    files: list[str]
    method: str | None
    threshold: float
    points: Any
    skipped: list[tuple[str, str, str]]
    not_images: list[tuple[str, str, str]]
    folder: Path | None
    keeper_rule: str

    @property
    def n_groups(self) -> int: ...

    def __len__(self) -> int: ...

    def keepers(self) -> pd.DataFrame: ...

    def file_facts(self, path: str) -> Any: ...


def metric_words(metric: str) -> str:
    """What a distance of ``metric`` is, in a few words (`hashing.distances`' conventions)."""
    if metric == "hamming":
        return "Hamming distance (the fraction of the code's bits that differ; 0 is identical)"
    if metric == "cosine":
        return ("cosine distance ((1 - cosine similarity) / 2: 0 for identical descriptors, "
                "about 0.5 for unrelated photos)")
    return f"{metric} distance (0 is identical)"


def threshold_sentence(found: Duplicates) -> str:
    """The threshold and what it means, in one sentence."""
    method = found.method or "the descriptors"
    return (f"Two images share a group when a chain of images joins them whose every step is "
            f"within {found.threshold:g} in {method}'s {metric_words(found.points.metric)}; "
            "the distance under each image is to its group's first image.")


def thumbnail(path: str | os.PathLike | None, size: int) -> Image.Image | None:
    """An RGB thumbnail of at most ``size`` x ``size`` pixels (EXIF orientation applied; a
    JPEG decoded at a reduced scale), or ``None`` when the file cannot be shown."""
    if not path:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                if image.width * image.height > DEFAULT_MAX_PIXELS:
                    return None
                image.draft("RGB", (2 * size, 2 * size))  # JPEG: decode at 1/2 .. 1/8 scale
                small = to_rgb(ImageOps.exif_transpose(image))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        logger.warning("no thumbnail of %s (%s)", path, error)
        return None
    small.thumbnail((size, size))
    return small


def _png_data(image: Image.Image) -> str:
    """A data URI of a small PNG (128 colours: about 4 kB for 80 pixels, half of RGB's)."""
    buffer = io.BytesIO()
    image.quantize(128).save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _bytes_text(value: float | None) -> str:
    if value is None or not np.isfinite(value):
        return "size unknown"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if value >= scale:
            return f"{value / scale:.1f} {unit}"
    return f"{int(value)} B"


def _members(found: Duplicates) -> tuple[list[tuple[int, pd.DataFrame]], pd.DataFrame]:
    """Each group's rows (in ``duplicates.csv``'s order) and the keepers table by group."""
    keepers = found.keepers().set_index("group")
    return list(found.groups.groupby("group", sort=True)), keepers


def _name(text: Any, limit: int) -> str:
    text = printable(str(text))
    return text if len(text) <= limit else "..." + text[-(limit - 3):]


def plot_duplicates(found: Duplicates, path: str | os.PathLike | None = None,
                    groups: int = 8, members: int = 6, size: int = 200) -> Figure:
    """The largest groups as rows of thumbnails, each titled with its file name and distance
    (the image to keep framed in green and marked ``keep``).

    Parameters
    ----------
    found : Duplicates
    path : path, optional
        Where to save the figure (its suffix chooses the format); nothing is written without.
    groups : int
        Groups drawn (the largest; numbered as in ``duplicates.csv``).
    members : int
        Images drawn per group (a group with more says how many are left out).
    size : int
        Thumbnail size in pixels.

    Returns
    -------
    matplotlib.figure.Figure
    """
    shown, keepers = _members(found)
    shown = shown[:groups]
    with figure_style():
        if not shown:
            fig, ax = new_figure(figsize=(5, 1))
            ax.axis("off")
            ax.text(0.5, 0.5, f"no duplicates ({len(found)} images, threshold "
                    f"{found.threshold:g})", ha="center", va="center")
        else:
            columns = min(members, max(len(rows) for _, rows in shown))
            fig, axes = new_figure(len(shown), columns, squeeze=False,
                                   figsize=(2.3 * columns + 0.6, 2.5 * len(shown) + 0.5))
            for r, (number, rows) in enumerate(shown):
                keeper = keepers.loc[number, "image_id"]
                for c in range(columns):
                    ax = axes[r, c]
                    ax.set_xticks([])
                    ax.set_yticks([])
                    ax.grid(False)
                    if c >= len(rows):
                        ax.axis("off")
                        continue
                    row = rows.iloc[c]
                    image = thumbnail(row["image"], size)
                    if image is not None:
                        ax.imshow(np.asarray(image))
                    else:
                        ax.text(0.5, 0.5, "not shown", ha="center", va="center", fontsize=7)
                    kept = row["image_id"] == keeper
                    facts = found.file_facts(row["image"])
                    size_text = (f"{facts.width}x{facts.height}, " if facts.width is not None
                                 else "")
                    for spine in ax.spines.values():
                        spine.set_edgecolor("#1a9641" if kept else "#bbbbbb")
                        spine.set_linewidth(3 if kept else 0.8)
                    ax.set_title(f"{_name(row['file'], 26)}\nd = {row['distance']:.3f}"
                                 f"{'   KEEP' if kept else ''}\n{size_text}"
                                 f"{_bytes_text(facts.bytes)}", fontsize=7,
                                 color="#1a9641" if kept else "black")
                more = f", {len(rows) - columns} not drawn" if len(rows) > columns else ""
                axes[r, 0].set_ylabel(f"group {number}\n{len(rows)} images{more}", fontsize=8)
            left = found.n_groups - len(shown)
            fig.suptitle(f"{found.n_groups} groups of near-duplicates in {len(found)} images "
                         f"({found.method}, threshold {found.threshold:g})"
                         f"{f'; the {left} smaller groups not drawn' if left else ''}",
                         fontsize=9)
        if path is not None:
            path = Path(path)
            with atomic_path(path) as tmp:
                fig.savefig(tmp, format=path.suffix.lstrip(".").lower() or "png", dpi=120,
                            bbox_inches="tight")
    return fig


def _counts(found: Duplicates) -> dict[str, int]:
    """The numbers both pages and the script state: as ``duplicates.csv`` gives them."""
    in_groups = len(found.groups)
    return {"images": len(found), "groups": found.n_groups, "images_in_groups": in_groups,
            "singletons": len(found) - in_groups, "removable": in_groups - found.n_groups,
            "skipped": len(found.skipped) + len(found.not_images),
            "not_images": len(found.not_images), "unreadable": len(found.skipped)}


def summary_sentence(found: Duplicates) -> str:
    """The counts in one sentence (groups of two or more; images without a duplicate apart)."""
    n = _counts(found)
    return (f"{n['images']} images: {n['groups']} groups of two or more near-duplicates "
            f"holding {n['images_in_groups']} images ({n['removable']} removable if one per "
            f"group is kept), {n['singletons']} images without a duplicate; "
            f"{n['skipped']} files skipped ({n['not_images']} not images by their extension, "
            f"{n['unreadable']} unreadable images)")


def duplicates_html(found: Duplicates, groups: int = NOTEBOOK_GROUPS,
                    members: int = NOTEBOOK_MEMBERS, size: int = 80) -> str:
    """A compact HTML table for a notebook: the counts, the threshold, and the ``groups``
    largest groups with at most ``members`` inline thumbnails each (base64 PNG of at most
    ``size`` pixels), the image to keep marked; what is left out is said.

    Returns
    -------
    str
    """
    shown, keepers = _members(found)
    rows = []
    for number, group in shown[:groups]:
        keeper = keepers.loc[number, "image_id"]
        cells = []
        for _, row in group.head(members).iterrows():
            image = thumbnail(row["image"], size)
            picture = (f'<img src="{_png_data(image)}" style="max-width:{size}px;'
                       f'max-height:{size}px">' if image is not None else "(not shown)")
            kept = row["image_id"] == keeper
            border = "3px solid #1a9641" if kept else "1px solid #ccc"
            cells.append(f'<div style="display:inline-block;vertical-align:top;margin:2px;'
                         f'padding:2px;border:{border};width:{size + 6}px;font-size:10px;'
                         f'overflow-wrap:anywhere">{picture}<br>'
                         f'{html.escape(_name(row["file"], 40))}<br>'
                         f'd={row["distance"]:.3f}{" <b>keep</b>" if kept else ""}</div>')
        if len(group) > members:
            cells.append(f"<span>+{len(group) - members} more</span>")
        rows.append(f'<tr><td style="text-align:right;vertical-align:top">{number}</td>'
                    f'<td style="text-align:right;vertical-align:top">{len(group)}</td>'
                    f'<td style="text-align:left">{"".join(cells)}</td></tr>')
    left = len(shown) - min(groups, len(shown))
    note = (f"<p>The {min(groups, len(shown))} largest of {len(shown)} groups shown; "
            f"{left} more in <code>.groups</code> / <code>.to_frame()</code>.</p>"
            if left else "")
    table = ('<table><tr><th>group</th><th>images</th><th style="text-align:left">members '
             "(distance to the group's first image)</th></tr>" + "".join(rows) + "</table>"
             if rows else "")
    return (f"<div><p><b>Duplicates</b>: {html.escape(summary_sentence(found))}.</p>"
            f"<p>{html.escape(threshold_sentence(found))}</p>{note}{table}</div>")


PAGE_STYLE = """body{font-family:sans-serif;margin:1.5em;max-width:1400px}
.counts td,.counts th,.skipped td,.skipped th{border:1px solid #ccc;padding:2px 8px;
font-size:13px;text-align:left}table{border-collapse:collapse}
section.group{margin:1.2em 0;padding-top:.3em;border-top:1px solid #ddd}
section.group h3{margin:.2em 0;font-size:15px}
figure{display:inline-block;vertical-align:top;margin:4px;padding:4px;width:250px;
border:1px solid #ccc;font-size:12px;overflow-wrap:anywhere}
figure.keep{border:4px solid #1a9641;padding:1px}
figure img{max-width:240px;max-height:240px;display:block;margin:auto}
figcaption .file{font-weight:bold}.tag{color:#1a9641;font-weight:bold}
.remove{color:#a33}code{font-size:12px}"""


def _figure(row: pd.Series, keeper: pd.Series, facts: Any, thumb: str | None) -> str:
    kept = row["image_id"] == keeper["image_id"]
    picture = (f'<img src="{html.escape(thumb)}" loading="lazy" alt="">' if thumb
               else "<p>(not shown)</p>")
    link = Path(os.path.abspath(row["image"])).as_uri() if row["image"] else None
    if link:
        picture = f'<a href="{html.escape(link)}">{picture}</a>'
    size = (f"{facts.width}x{facts.height}" if facts.width is not None else "pixels unknown")
    tag = (f'<span class="tag">KEEP</span> ({html.escape(keeper["reason"])})' if kept
           else '<span class="remove">removable</span>')
    return (f'<figure class="{"keep" if kept else "dup"}" data-image-id='
            f'"{html.escape(printable(str(row["image_id"])))}">{picture}<figcaption>'
            f'<span class="file">{html.escape(printable(str(row["file"])))}</span><br>'
            f'distance {row["distance"]:.4f}<br>{size}, {_bytes_text(facts.bytes)}<br>'
            f"{tag}</figcaption></figure>")


def write_report(found: Duplicates, folder: str | os.PathLike, groups: int = PAGE_GROUPS,
                 size: int = 240, links: Sequence[str] = (), grids: Sequence[str] = ()
                 ) -> list[Path]:
    """Write ``index.html`` and its ``thumbnails/`` (JPEG) into ``folder``.

    Parameters
    ----------
    found : Duplicates
    folder : path
        The result folder (``duplicates.csv`` beside the page).
    groups : int
        Groups shown with thumbnails (the largest; the page says how many are not).
    size : int
        Thumbnail size in pixels.
    links : sequence of str
        Other files of the folder to link from the page (relative names).
    grids : sequence of str
        The clustering report's image grids of the largest groups (relative names), linked.

    Returns
    -------
    list of Path
        The page and the thumbnails.
    """
    folder = Path(folder)
    n = _counts(found)
    shown, keepers = _members(found)
    sections, written = _group_sections(found, shown[:groups], keepers, folder, size)
    left = len(shown) - len(sections)
    skipped, more_skipped = _skipped_rows(found)
    where = f" in {found.folder}" if found.folder is not None else ""
    rule = found.keeper_rule
    grid_links = ("<p>The largest groups as image grids (members nearest the group's medoid "
                  "first): " + " ".join(f'<a href="{html.escape(g)}">{html.escape(Path(g).stem)}'
                                        "</a>" for g in grids) + "</p>") if grids else ""
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Near-duplicates{html.escape(printable(where))}</title>
<style>{PAGE_STYLE}</style></head><body>
<h1>Near-duplicates{html.escape(printable(where))}</h1>
<table class="counts" id="counts" data-images="{n['images']}" data-groups="{n['groups']}"
 data-images-in-groups="{n['images_in_groups']}" data-singletons="{n['singletons']}"
 data-removable="{n['removable']}" data-skipped="{n['skipped']}"
 data-not-images="{n['not_images']}" data-unreadable="{n['unreadable']}">
<tr><th>images described</th><td>{n['images']}</td></tr>
<tr><th>groups of two or more near-duplicates (duplicates.csv)</th><td>{n['groups']}</td></tr>
<tr><th>images in those groups</th><td>{n['images_in_groups']}</td></tr>
<tr><th>images without a duplicate (in no group)</th><td>{n['singletons']}</td></tr>
<tr><th>removable (all but one image per group)</th><td>{n['removable']}</td></tr>
<tr><th>files skipped (listed below): not images by their extension</th>
<td>{n['not_images']}</td></tr>
<tr><th>files skipped (listed below): images that could not be read</th>
<td>{n['unreadable']}</td></tr>
</table>
<p><b>Threshold.</b> {html.escape(threshold_sentence(found))}</p>
<p><b>Which image to keep.</b> {html.escape(rule[0].upper() + rule[1:])}.
Nothing was deleted: the removable files are listed in <code>removable.txt</code>, one path a
line, for you to check and delete yourself.</p>
<p>Files: {' '.join(f'<a href="{html.escape(f)}">{html.escape(f)}</a>' for f in links)}</p>
{grid_links}
<h2>Groups</h2>
<p>Numbered as in <code>duplicates.csv</code>, largest first{
    f'; the {len(sections)} largest shown, the {left} others are in duplicates.csv'
    if left else ''}. Click a thumbnail to open the file.</p>
{''.join(sections) or '<p>No near-duplicates at this threshold.</p>'}
<h2 id="skipped">Files skipped ({n['skipped']})</h2>
<p>Files that are not images by their extension, empty, unreadable or not decodable are left
out of the groups; hidden files and folders (names starting with a dot) are not looked at.</p>
<table class="skipped"><tr><th>file</th><th>reason</th></tr>{skipped}</table>{more_skipped}
</body></html>
"""
    path = folder / "index.html"
    with atomic_write(path, "w") as handle:
        handle.write(page)
    logger.info("wrote %s (%d groups shown)", path, len(sections))
    return [path, *written]


def _group_sections(found: Duplicates, shown: list, keepers, folder: Path, size: int
                    ) -> tuple[list[str], list[Path]]:
    """The page's sections of the groups shown (thumbnails written to ``thumbnails/``)."""
    written: list[Path] = []
    sections = []
    for number, rows in shown:
        keeper = keepers.loc[number]
        figures = []
        for k, (_, row) in enumerate(rows.iterrows()):
            image = thumbnail(row["image"], size)
            thumb = None
            if image is not None:
                target = folder / "thumbnails" / f"g{number:05d}_{k:04d}.jpg"
                with atomic_write(target, "wb", fsync=False) as handle:
                    image.save(handle, format="JPEG", quality=85)
                written.append(target)
                thumb = target.relative_to(folder).as_posix()
            figures.append(_figure(row, keeper, found.file_facts(row["image"]), thumb))
        sections.append(
            f'<section class="group" id="group-{number}" data-group="{number}" '
            f'data-size="{len(rows)}"><h3>Group {number}: {len(rows)} images, keep '
            f'<code>{html.escape(printable(str(keeper["file"])))}</code></h3>'
            f'{"".join(figures)}</section>')
    return sections, written


def _skipped_rows(found: Duplicates) -> tuple[str, str]:
    """The skipped files' table rows (at most `PAGE_SKIPPED`) and a line for the rest."""
    every_skipped = [*found.not_images, *found.skipped]
    rows = "".join(f"<tr><td>{html.escape(printable(str(path)))}</td>"
                   f"<td>{html.escape(str(reason))}</td></tr>"
                   for _, path, reason in every_skipped[:PAGE_SKIPPED])
    more = (f"<p>{len(every_skipped) - PAGE_SKIPPED} more in clusters.json.</p>"
            if len(every_skipped) > PAGE_SKIPPED else "")
    return rows, more
