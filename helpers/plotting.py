"""One matplotlib style for every figure: readable, vector-friendly, no LaTeX needed."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

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
    import matplotlib

    with matplotlib.rc_context({**STYLE, "text.usetex": bool(usetex)}):
        yield
