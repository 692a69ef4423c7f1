"""Pillow's Lanczos resize of 8-bit gray images, bit for bit, as matrix products.

Pillow resamples in two separable passes with fixed-point weights (22 fractional bits) and
rounds each pass back to 8 bits; which pass goes first depends on the Pillow version and the
sizes, so it is found once per shape by resizing a random probe image with Pillow itself (and
Pillow is used directly where the probe cannot tell). Writing each pass as a product with a
dense weight matrix gives exactly the same integers (every partial sum is an integer below
2**53, so float64 arithmetic is exact), and lets one BLAS call serve a whole stack of images and
several target sizes at once. For small targets (hash sizes) this is several times faster than
calling ``Image.resize`` per image and size; for large targets the dense matrix wastes work and
Pillow's own loop is used instead.

References
----------
Pillow, ``src/libImaging/Resample.c`` (``precompute_coeffs``, ``normalize_coeffs_8bpc``,
``ImagingResampleHorizontal_8bpc``).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from PIL import Image

_PRECISION_BITS = 32 - 8 - 2
_ONE = float(1 << _PRECISION_BITS)
_HALF = float(1 << (_PRECISION_BITS - 1))
_SUPPORT = 3.0  # Lanczos-3

#: Targets up to this many pixels a side go through the matrix products.
MATRIX_MAX_SIDE = 64


def _sinc(x: float) -> float:
    if x == 0.0:
        return 1.0
    x = x * math.pi
    return math.sin(x) / x


def _lanczos(x: float) -> float:
    if -_SUPPORT <= x < _SUPPORT:
        return _sinc(x) * _sinc(x / 3)
    return 0.0


@lru_cache(maxsize=256)
def lanczos_matrix(in_size: int, out_size: int) -> np.ndarray:
    """Pillow's fixed-point Lanczos weights as a dense (out_size, in_size) float64 matrix.

    Entries are integers (weights times 2**22); math.sin is the C library's, as in Pillow.
    """
    scale = float(in_size) / out_size
    filterscale = max(scale, 1.0)
    support = _SUPPORT * filterscale
    inv = 1.0 / filterscale
    out = np.zeros((out_size, in_size), dtype=np.float64)
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size) - xmin
        weights = [_lanczos((x + xmin - center + 0.5) * inv) for x in range(xmax)]
        total = 0.0
        for w in weights:
            total += w
        for x, w in enumerate(weights):
            if total != 0.0:
                w = w / total
            # C's (int) cast truncates towards zero
            out[xx, xmin + x] = math.trunc(w * _ONE - 0.5 if w < 0 else w * _ONE + 0.5)
    return out


def _round_pass(acc: np.ndarray) -> np.ndarray:
    """Pillow's clip8((acc + half) >> PRECISION_BITS), kept as float64 integers."""
    return np.clip(np.floor((acc + _HALF) / _ONE), 0, 255)


def _passes(stack: np.ndarray, size: tuple[int, int], vertical_first: bool) -> np.ndarray:
    """Both passes on float64 (n, H, W) pixels; a pass whose size does not change is skipped."""
    n, height, width = stack.shape
    w, h = size

    def horizontal(x: np.ndarray) -> np.ndarray:
        return x if w == x.shape[2] else _round_pass(x @ lanczos_matrix(x.shape[2], w).T)

    def vertical(x: np.ndarray) -> np.ndarray:
        return x if h == x.shape[1] else _round_pass(np.matmul(lanczos_matrix(x.shape[1], h), x))

    return horizontal(vertical(stack)) if vertical_first else vertical(horizontal(stack))


@lru_cache(maxsize=4096)
def pass_order(height: int, width: int, w: int, h: int) -> bool | None:
    """Whether Pillow resizes (height, width) to (w, h) vertical pass first; None if unknown.

    Decided on a random probe image: the order whose result equals Pillow's, if exactly one does.
    """
    rng = np.random.default_rng(height * 100003 + width)
    probe = rng.integers(0, 256, (height, width), dtype=np.uint8)
    expected = np.asarray(Image.fromarray(probe).resize((w, h), Image.Resampling.LANCZOS))
    matches = [np.array_equal(_passes(probe[None].astype(np.float64), (w, h), first)[0],
                              expected) for first in (False, True)]
    if matches[0] != matches[1]:
        return matches[1]
    return None if not matches[0] or (h != height and w != width) else False


def resize_stack(stack: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a stack of same-shape gray images exactly as Pillow's LANCZOS does.

    Parameters
    ----------
    stack : numpy.ndarray, shape (n, H, W), uint8
    size : (width, height)

    Returns
    -------
    numpy.ndarray, shape (n, height, width), uint8
    """
    n, height, width = stack.shape
    order = pass_order(height, width, *size)
    if order is None:
        return np.stack([np.asarray(Image.fromarray(im).resize(size, Image.Resampling.LANCZOS))
                         for im in stack]) if n else np.zeros((0, size[1], size[0]), np.uint8)
    return _passes(stack.astype(np.float64), size, order).astype(np.uint8)
