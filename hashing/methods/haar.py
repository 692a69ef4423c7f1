"""One level of the 2-D Haar transform on stacks of images, as PyWavelets computes it.

PyWavelets (mode "symmetric", even sizes) computes each coefficient as a sum of two products
with the filter taps; these functions do the same operations in the same order on whole stacks
(NumPy, no per-image calls), so results are bit-identical to ``pywt.wavedec2`` /
``pywt.waverec2`` with ``axes=(-2, -1)`` (rows first, then columns; inverse in reverse).
"""

from __future__ import annotations

import numpy as np
import pywt

_HAAR = pywt.Wavelet("haar")
_L0, _L1 = _HAAR.dec_lo
_D0, _D1 = _HAAR.dec_hi
_R0, _R1 = _HAAR.rec_lo
_S0, _S1 = _HAAR.rec_hi

Details = tuple[np.ndarray, np.ndarray, np.ndarray]


def _split(x: np.ndarray, axis: int, details: bool) -> tuple[np.ndarray, np.ndarray | None]:
    even = x[:, 0::2] if axis == 1 else x[:, :, 0::2]
    odd = x[:, 1::2] if axis == 1 else x[:, :, 1::2]
    low = odd * _L0 + even * _L1
    return low, (odd * _D0 + even * _D1) if details else None


def haar_dec2(x: np.ndarray, details: bool = True) -> tuple[np.ndarray, Details | None]:
    """One decomposition level of a (n, H, W) float64 stack, H and W even.

    Returns
    -------
    approximation : numpy.ndarray, shape (n, H/2, W/2)
    details : (horizontal, vertical, diagonal) as pywt orders them, or None if not asked.
    """
    low, high = _split(x, 1, details)
    ll, lh = _split(low, 2, details)
    if not details:
        return ll, None
    hl, hh = _split(high, 2, True)
    return ll, (hl, lh, hh)


def _merge(a: np.ndarray, d: np.ndarray, axis: int) -> np.ndarray:
    shape = list(a.shape)
    shape[axis] *= 2
    out = np.empty(shape, dtype=np.float64)
    even = (a * _R0 + d * _S0)
    odd = (a * _R1 + d * _S1)
    if axis == 1:
        out[:, 0::2], out[:, 1::2] = even, odd
    else:
        out[:, :, 0::2], out[:, :, 1::2] = even, odd
    return out


def haar_rec2(approximation: np.ndarray, details: Details) -> np.ndarray:
    """Inverse of :func:`haar_dec2`: one reconstruction level."""
    hl, lh, hh = details
    low = _merge(approximation, lh, 2)
    high = _merge(hl, hh, 2)
    return _merge(low, high, 1)
