"""How results show themselves in a notebook: a bounded HTML table under a one-line title.

Jupyter calls an object's ``_repr_html_``; a result of the library gives it a table of at most
`MAX_ROWS` rows (the first ones), saying how many were left out, so that a result of a million
rows never fills a notebook. ``to_frame()`` gives the whole table.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # helpers imports no pandas; the frames come from the caller
    import pandas as pd

#: Rows an HTML table shows at most.
MAX_ROWS = 30


def plural(count: int, word: str, many: str | None = None) -> str:
    """``"1 image"``, ``"2 images"``: a count and its noun (``many``, or the noun and an
    ``s``, when not one)."""
    return f"{count} {word if count == 1 else many or word + 's'}"


def html_table(frame: pd.DataFrame, title: str | None = None, max_rows: int = MAX_ROWS,
               notes: Sequence[str] = ()) -> str:
    """``frame`` as an HTML table of at most ``max_rows`` rows (the first), said so when cut.

    Parameters
    ----------
    frame : pandas.DataFrame
    title : str, optional
        One line above the table (escaped).
    max_rows : int
        Rows shown at most.
    notes : sequence of str
        Lines below the table (escaped).

    Returns
    -------
    str
        An HTML fragment: a ``<div>`` holding the title, the table and the notes.
    """
    shown = frame.head(max_rows)
    parts = ["<div>"]
    if title:
        parts.append(f"<p><b>{html.escape(title)}</b></p>")
    parts.append(shown.to_html(index=False, float_format=lambda x: f"{x:.4g}", border=0,
                               escape=True, na_rep=""))
    lines = list(notes)
    if len(frame) > len(shown):
        lines.insert(0, f"showing the first {len(shown)} of {len(frame)} rows "
                        "(to_frame() has them all)")
    parts += [f"<p><i>{html.escape(line)}</i></p>" for line in lines]
    parts.append("</div>")
    return "\n".join(parts)
