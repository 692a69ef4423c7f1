"""What "an image" can be when a function takes images: a path, a record, a PIL image, an
``(id, image)`` or ``(record, image)`` pair, or an attacked image made on the fly. Each has a
record (who it is) and can be loaded (its pixels)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from PIL import Image

from data_retrieval.records import ImageRecord
from helpers import load_image
from helpers.images import WIDE_MODES, to_rgb


def as_record(item: Any, index: int) -> ImageRecord:
    """The record of an item: an `ImageRecord` as it is; an attacked image made on the fly
    (`generator.AttackedImage`, or a ``(record, PIL image)`` pair as `generator.iter_attacks`
    yields) with its record; a path (id: the file name without extension); an ``(id, PIL
    image)`` pair; a PIL image (id: its position).

    Raises
    ------
    TypeError
        Anything else.
    """
    if isinstance(item, ImageRecord):
        return item
    if hasattr(item, "record") and hasattr(item, "load"):
        return item.record
    if isinstance(item, tuple) and len(item) == 2:
        if isinstance(item[0], ImageRecord):
            return item[0]
        if isinstance(item[0], str):
            return ImageRecord(item[0], None)
    if isinstance(item, Image.Image):
        return ImageRecord(str(index), None)
    if isinstance(item, str | os.PathLike):
        return ImageRecord(Path(item).stem, Path(item))
    raise TypeError(f"cannot describe a {type(item).__name__} (item {index}): give paths, "
                    "records, PIL images or (id, image) pairs")


def loadable(item: Any, index: int) -> tuple[str, Any]:
    """``(image id, what to load)``: a path, a PIL image, or an object with ``load()``."""
    record = as_record(item, index)
    if isinstance(item, tuple) and len(item) == 2:
        return record.image_id, item[1]
    if isinstance(item, Image.Image) or hasattr(item, "load"):
        return record.image_id, item
    return record.image_id, record.path


def load_item(source: Any, draft: int | None = None) -> Image.Image:
    """The RGB pixels of what `loadable` returned.

    ``draft`` reaches `helpers.load_image` for a path (a JPEG file is decoded at a reduced
    scale whose short side stays >= ``draft``); an image in memory or made on the fly (an
    attacked image) is returned as it is, whatever ``draft`` says.

    Raises
    ------
    helpers.ImageLoadError
        A file that cannot be read (the message names it).
    """
    if isinstance(source, Image.Image):
        if source.mode in WIDE_MODES:  # 16-bit and float: rescaled as a file would be
            return to_rgb(source)
        return source if source.mode == "RGB" else source.convert("RGB")
    if hasattr(source, "load") and callable(source.load):
        return source.load()
    return load_image(source, draft=draft)
