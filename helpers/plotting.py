"""One matplotlib style for every figure: readable, vector-friendly, no LaTeX needed."""

from __future__ import annotations

import matplotlib

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


def use_style(usetex: bool = False) -> None:
    """Apply the library's figure style (headless backend, no LaTeX unless ``usetex``)."""
    matplotlib.use("Agg", force=False)
    matplotlib.rcParams.update(STYLE)
    matplotlib.rcParams["text.usetex"] = bool(usetex)
