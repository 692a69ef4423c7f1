"""Distractor views: many distinct images made from the real photos at hand, that still look
like photos to a model, for search experiments where no large collection (the study's 500k
Flickr photos) is available.

A view is a random crop of 10-40% of a photo's area at a random aspect ratio, or a mosaic of
crops of several photos, then maybe flipped and colour-changed. Every view is drawn from its
own generator, seeded by (seed, view number), and made only when loaded: a store of 100k views
is described on the fly, without writing images, and the same views can be remade anywhere.

Make views from photos that are not the originals of the experiment (a view of an original is
a partial copy of it): e.g. ``imagenet_samples`` views beside ``bsds500`` originals.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from data_retrieval import ImageRecord
from data_retrieval.items import load_item, loadable

#: The recipe's defaults (the issue's: crops of 10-40% of the area).
DEFAULT_RECIPE = {
    "min_area": 0.10,
    "max_area": 0.40,
    "max_aspect": 2.0,  # crops between 1:2 and 2:1, log-uniform
    "mosaic": 0.15,  # share of views that are 2x2 mosaics of four photos
    "flip": 0.5,
    "colour": 0.8,  # share of views whose brightness, contrast and saturation change
    "colour_strength": 0.4,  # factors drawn in [1 - s, 1 + s]
    "max_side": 512,  # sources are reduced to this longest side once (memory, speed)
}


@functools.lru_cache(maxsize=128)
def _source(path: str, max_side: int) -> Image.Image:
    image = load_item(path)
    if max(image.size) > max_side:
        image = ImageOps.contain(image, (max_side, max_side), Image.Resampling.BILINEAR)
    return image


def _crop(image: Image.Image, rng: np.random.Generator, recipe: dict[str, Any]) -> Image.Image:
    w, h = image.size
    for _ in range(10):
        area = w * h * rng.uniform(recipe["min_area"], recipe["max_area"])
        log_ratio = math.log(recipe["max_aspect"])
        ratio = math.exp(rng.uniform(-log_ratio, log_ratio))
        cw, ch = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
        if 0 < cw <= w and 0 < ch <= h:
            x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            return image.crop((x, y, x + cw, y + ch))
    side = max(1, round(math.sqrt(w * h * recipe["min_area"])))  # a square that fits
    side = min(side, w, h)
    return image.crop((0, 0, side, side))


@dataclass(frozen=True)
class View:
    """One distractor view, made when loaded (picklable: DataLoader workers make their own).

    Attributes
    ----------
    record : ImageRecord
        ``view_<number>``, its own source, group ``distractor``.
    sources : tuple of str
        The photos it is drawn from.
    number, seed : int
    recipe : tuple of (str, value)
    """

    record: ImageRecord
    sources: tuple[str, ...]
    number: int
    seed: int
    recipe: tuple[tuple[str, Any], ...]

    def load(self) -> Image.Image:
        """The view's pixels (the same for the same seed and number, anywhere)."""
        recipe = dict(self.recipe)
        rng = np.random.default_rng([self.seed, self.number])
        photos = [_source(p, recipe["max_side"]) for p in self.sources]
        if len(photos) == 4:  # a mosaic
            tiles = [_crop(p, rng, recipe) for p in photos]
            cell = max(16, min(min(t.size) for t in tiles))
            image = Image.new("RGB", (2 * cell, 2 * cell))
            for k, tile in enumerate(tiles):
                image.paste(ImageOps.fit(tile, (cell, cell)), ((k % 2) * cell, (k // 2) * cell))
        else:
            image = _crop(photos[0], rng, recipe)
        if rng.random() < recipe["flip"]:
            image = ImageOps.mirror(image)
        if rng.random() < recipe["colour"]:
            s = recipe["colour_strength"]
            for enhance in (ImageEnhance.Brightness, ImageEnhance.Contrast,
                            ImageEnhance.Color):
                image = enhance(image).enhance(float(rng.uniform(1 - s, 1 + s)))
        return image


def distractor_views(photos: Sequence[Any], count: int, seed: int = 0,
                     **recipe: Any) -> list[View]:
    """``count`` seeded views of ``photos``.

    Parameters
    ----------
    photos : sequence
        Paths or `ImageRecord` objects of real photos (files: views are remade from them).
    count : int
    seed : int
    **recipe
        Overrides of `DEFAULT_RECIPE` (``min_area``, ``max_area``, ``max_aspect``, ``mosaic``,
        ``flip``, ``colour``, ``colour_strength``, ``max_side``).

    Returns
    -------
    list of View
        Records ``view_0000000``... in order; view ``i`` starts from photo ``i mod len(photos)``
        (consecutive views share no photo; a photo's decoded pixels are cached).

    Raises
    ------
    ValueError
        No photos, a negative count, or a recipe value out of range.
    """
    unknown = set(recipe) - set(DEFAULT_RECIPE)
    if unknown:
        raise ValueError(f"unknown view option(s) {sorted(unknown)}; options: "
                         f"{', '.join(DEFAULT_RECIPE)}")
    merged = {**DEFAULT_RECIPE, **recipe}
    for key, value in merged.items():
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or not math.isfinite(value):
            raise ValueError(f"view option {key} must be a finite number, got {value!r}")
    if not (isinstance(merged["max_side"], int) and 16 <= merged["max_side"] <= 4096):
        raise ValueError(f"max_side must be a whole number in [16, 4096], got "
                         f"{merged['max_side']!r}")
    if not 0 <= merged["colour_strength"] < 1:
        raise ValueError(f"colour_strength must be in [0, 1) (factors 1 - s to 1 + s), got "
                         f"{merged['colour_strength']}")
    if not 0 < merged["min_area"] <= merged["max_area"] <= 1:
        raise ValueError("view areas need 0 < min_area <= max_area <= 1, got "
                         f"{merged['min_area']} and {merged['max_area']}")
    if merged["max_aspect"] < 1:
        raise ValueError(f"max_aspect must be >= 1, got {merged['max_aspect']}")
    for key in ("mosaic", "flip", "colour"):
        if not 0 <= merged[key] <= 1:
            raise ValueError(f"{key} is a probability in [0, 1], got {merged[key]}")
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    paths = []
    for i, photo in enumerate(photos):
        _, source = loadable(photo, i)
        if source is None or isinstance(source, Image.Image) or hasattr(source, "load"):
            raise ValueError("distractor views are made from image files (paths or records "
                             "with a path)")
        paths.append(str(source))
    if not paths:
        raise ValueError("no photos to make distractor views from")
    frozen = tuple(sorted(merged.items()))
    width = max(7, len(str(count - 1)))
    views = []
    for number in range(count):
        rng = np.random.default_rng([seed, number, 1])  # which photos (apart from the pixels)
        first = paths[number % len(paths)]
        if rng.random() < merged["mosaic"] and len(paths) >= 4:
            others = rng.choice(len(paths), 3, replace=False)
            sources = (first, *(paths[k] for k in others))
        else:
            sources = (first,)
        image_id = f"view_{number:0{width}d}"
        views.append(View(ImageRecord(image_id, None, group="distractor"), sources, number,
                          seed, frozen))
    return views
