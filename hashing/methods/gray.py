"""A batch of decoded images with their gray versions and shared, cached resizes: what every
classical hash starts from (one decode, one gray conversion, each size resized once)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from hashing.methods.resize import MATRIX_MAX_SIDE, resize_stack

# imagehash resizes with Pillow's LANCZOS filter (its "ANTIALIAS").
_LANCZOS = Image.Resampling.LANCZOS


class GrayBatch:
    """A batch of images with their gray versions, resized stacks cached by size.

    One decode and one gray conversion serve every algorithm; each resized size is computed
    once. Small sizes (hash sizes) are computed for all same-shape images at once by exact
    matrix products (`hashing.methods.resize`), larger ones by Pillow.
    """

    def __init__(self, images: Sequence[Image.Image]) -> None:
        self.images = list(images)
        self.gray = [im if im.mode == "L" else im.convert("L") for im in self.images]
        self._stacks: dict[tuple[int, int], np.ndarray] = {}
        self._arrays: list[np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.gray)

    def resized(self, width: int, height: int, index: Sequence[int] | None = None) -> np.ndarray:
        """uint8 stack (n, height, width) of the gray images resized as Pillow's LANCZOS."""
        key = (width, height)
        if key not in self._stacks:
            self._stacks[key] = self._resize(width, height)
        stack = self._stacks[key]
        return stack if index is None else stack[list(index)]

    def _resize(self, width: int, height: int) -> np.ndarray:
        out = np.zeros((len(self.gray), height, width), np.uint8)
        if max(width, height) > MATRIX_MAX_SIDE:
            for i, g in enumerate(self.gray):
                out[i] = np.asarray(g.resize((width, height), _LANCZOS))
            return out
        by_shape: dict[tuple[int, int], list[int]] = {}
        for i, g in enumerate(self.gray):
            by_shape.setdefault(g.size, []).append(i)
        for index in by_shape.values():
            stack = np.stack([self.arrays[i] for i in index])
            out[index] = resize_stack(stack, (width, height))
        return out

    @property
    def arrays(self) -> list[np.ndarray]:
        """The gray images as (H, W) uint8 arrays."""
        if self._arrays is None:
            self._arrays = [np.asarray(g) for g in self.gray]
        return self._arrays
