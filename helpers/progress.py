"""Progress bars: tqdm's notebook widget where it can be drawn, its text bar elsewhere.

``tqdm.auto`` warns ``TqdmWarning: IProgress not found`` on import inside a Jupyter kernel
without ipywidgets (and falls back to the text bar). The bar is chosen here instead: the
widget (``tqdm.notebook``) only in a kernel that can import ipywidgets, the plain text bar
(``tqdm.std``) everywhere else, and no warning either way.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import warnings
from collections.abc import Iterable
from typing import TypeVar

from tqdm.std import tqdm as text_tqdm

T = TypeVar("T")


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel, by tqdm's own test: ipykernel's shell (or
    JupyterLite's) is loaded, and it is no Qt console or Spyder. Nothing is imported to ask."""
    if "ipykernel.zmqshell" in sys.modules:
        return not any(k == "QT_API" or k.startswith("SPYDER") for k in os.environ)
    return "IPython.utils._process_emscripten" in sys.modules


def _has_widgets() -> bool:
    try:
        return importlib.util.find_spec("ipywidgets") is not None
    except (ImportError, ValueError):  # a broken or stubbed ipywidgets
        return False


def bar_class() -> type:
    """The tqdm class `progress` draws with: ``tqdm.notebook.tqdm`` in a Jupyter kernel that
    has ipywidgets, ``tqdm.std.tqdm`` otherwise."""
    if in_notebook() and _has_widgets():
        with warnings.catch_warnings():  # "IProgress not found", should the import still fail
            warnings.simplefilter("ignore")
            import tqdm.notebook  # ipywidgets: imported in a Jupyter kernel only
        if tqdm.notebook.IProgress is not None:
            return tqdm.notebook.tqdm
    return text_tqdm


def progress(
    iterable: Iterable[T] | None = None,
    desc: str | None = None,
    total: int | None = None,
    disable: bool | None = None,
    unit: str = "it",
) -> text_tqdm:
    """A tqdm progress bar on stderr (a widget in a Jupyter notebook that has ipywidgets).

    Parameters
    ----------
    iterable : iterable, optional
        What to iterate; omit it to update the bar by hand.
    desc : str, optional
        Label.
    total : int, optional
        Expected number of items (taken from ``len(iterable)`` when possible).
    disable : bool or None
        ``None`` hides the bar when stderr is not a terminal (CI logs stay readable; a
        notebook's output is no terminal either, so a notebook shows bars when asked:
        ``show_progress=True``). ``True`` hides it, ``False`` shows it.
    unit : str
        Unit name shown in the rate.

    Returns
    -------
    tqdm.std.tqdm
        The bar (a ``tqdm.notebook.tqdm``, its subclass, in a notebook).
    """
    return bar_class()(iterable, desc=desc, total=total, disable=disable, unit=unit,
               dynamic_ncols=True)
