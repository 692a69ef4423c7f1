"""Classical perceptual hashes on batches of images, bit-identical to ``imagehash``.

Each image is converted to gray once; each resized gray size is computed once per image and
shared by every algorithm that needs it (``GrayBatch``). The arithmetic then runs on stacks of
images at once.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pywt
import scipy.fftpack
from PIL import Image

from hashing.descriptors import BinaryCodes
from hashing.registry import register_algorithm

# imagehash resizes with Pillow's LANCZOS filter (its "ANTIALIAS").
_LANCZOS = Image.Resampling.LANCZOS


class GrayBatch:
    """Gray versions of a batch of images, with their resized stacks cached by size."""

    def __init__(self, images: Sequence[Image.Image]) -> None:
        self.gray = [im if im.mode == "L" else im.convert("L") for im in images]
        self._stacks: dict[tuple[int, int], np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.gray)

    def resized(self, width: int, height: int, index: Sequence[int] | None = None) -> np.ndarray:
        """uint8 stack (n, height, width) of the images resized with Lanczos."""
        key = (width, height)
        if key not in self._stacks:
            self._stacks[key] = np.stack(
                [np.asarray(g.resize(key, _LANCZOS)) for g in self.gray]
            ) if self.gray else np.zeros((0, height, width), np.uint8)
        stack = self._stacks[key]
        return stack if index is None else stack[list(index)]


def _check_size(hash_size: int) -> None:
    if hash_size < 2:
        raise ValueError(f"hash_size must be >= 2, got {hash_size}")


@register_algorithm("ahash")
def ahash(batch: GrayBatch, hash_size: int = 8) -> BinaryCodes:
    """Average hash (Krawetz, "Looks Like It", 2011): gray pixels above their mean."""
    _check_size(hash_size)
    pixels = batch.resized(hash_size, hash_size)
    mean = pixels.reshape(len(pixels), -1).mean(axis=1)
    return BinaryCodes.from_bits(pixels > mean[:, None, None])


@register_algorithm("dhash")
def dhash(batch: GrayBatch, hash_size: int = 8) -> BinaryCodes:
    """Difference hash (Krawetz, "Kind of Like That", 2013): is each pixel brighter than its
    left neighbour, on a (hash_size + 1) x hash_size image."""
    _check_size(hash_size)
    pixels = batch.resized(hash_size + 1, hash_size)
    return BinaryCodes.from_bits(pixels[:, :, 1:] > pixels[:, :, :-1])


@register_algorithm("phash")
def phash(batch: GrayBatch, hash_size: int = 8, highfreq_factor: int = 4) -> BinaryCodes:
    """Perceptual hash (Krawetz, "Looks Like It", 2011): low frequencies of the 2-D DCT of a
    (hash_size * highfreq_factor)^2 image, above their median."""
    _check_size(hash_size)
    size = hash_size * highfreq_factor
    pixels = batch.resized(size, size)
    dct = scipy.fftpack.dct(scipy.fftpack.dct(pixels, axis=1), axis=2)
    low = dct[:, :hash_size, :hash_size]
    median = np.median(low.reshape(len(low), -1), axis=1)
    return BinaryCodes.from_bits(low > median[:, None, None])


@register_algorithm("whash")
def whash(batch: GrayBatch, hash_size: int = 8) -> BinaryCodes:
    """Wavelet hash (Haar), as imagehash computes it: the image resized to the largest power of
    two that fits its short side, its lowest Haar LL band removed, then the LL band at
    hash_size x hash_size above its median."""
    _check_size(hash_size)
    if hash_size & (hash_size - 1):
        raise ValueError(f"whash: hash_size must be a power of 2, got {hash_size}")
    level = int(np.log2(hash_size))
    scales = [max(2 ** int(np.log2(min(g.size))), hash_size) for g in batch.gray]
    bits = np.empty((len(batch), hash_size, hash_size), dtype=bool)
    for scale in sorted(set(scales)):
        index = [i for i, s in enumerate(scales) if s == scale]
        pixels = batch.resized(scale, scale, index) / 255.0
        top = int(np.log2(scale))
        coeffs = list(pywt.wavedec2(pixels, "haar", level=top, axes=(-2, -1)))
        coeffs[0] = coeffs[0] * 0
        pixels = pywt.waverec2(coeffs, "haar", axes=(-2, -1))
        low = pywt.wavedec2(pixels, "haar", level=top - level, axes=(-2, -1))[0]
        median = np.median(low.reshape(len(low), -1), axis=1)
        bits[index] = low > median[:, None, None]
    return BinaryCodes.from_bits(bits)
