"""One matplotlib style for every figure (readable, vector-friendly, no LaTeX needed), and how
figures are made and saved.

Figures are `matplotlib.figure.Figure` objects saved to files, never pyplot figures: drawing
them changes no backend, opens no window and leaves a notebook's settings as they were.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from helpers.io import atomic_path
from helpers.outputs import file_name, safe_child

# the PDF backend's font subsetting logs every table at INFO
logging.getLogger("fontTools").setLevel(logging.WARNING)

STYLE = {
    "text.usetex": False,
    "font.family": "DejaVu Sans",
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 9,
    "figure.dpi": 100,
    "savefig.dpi": 200,
    "savefig.bbox": "tight",
    "axes.grid": True,
    "grid.alpha": 0.3,
    "pdf.fonttype": 42,  # embed TrueType fonts: text stays editable in the PDF
    "ps.fonttype": 42,
}


@contextlib.contextmanager
def figure_style(usetex: bool = False) -> Iterator[None]:
    """The library's figure style inside the block (no LaTeX unless ``usetex``); matplotlib's
    settings, and its backend, are as they were afterwards."""
    import matplotlib  # matplotlib: only when drawing

    with matplotlib.rc_context({**STYLE, "text.usetex": bool(usetex)}):
        yield


def new_figure(*grid: int, figsize: tuple[float, float], **kwargs: Any):
    """``(figure, axes)`` like ``pyplot.subplots``, on a figure pyplot does not manage."""
    from matplotlib.figure import Figure  # matplotlib: only when drawing

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*grid, **kwargs)


def save_figure(fig, folder: str | Path, name: str, formats: tuple[str, ...] = ("pdf", "png")
                ) -> list[Path]:
    """Save ``fig`` as ``<folder>/<name>.pdf`` and ``.png``, atomically; ``name`` (which may
    hold a method's label) is made a safe file name inside ``folder``.

    Returns
    -------
    list of Path
    """
    name = file_name(name)
    out = []
    for ext in formats:
        path = safe_child(Path(folder), f"{name}.{ext}")
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=ext, dpi=120, bbox_inches="tight")
        out.append(path)
    return out
