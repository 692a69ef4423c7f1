"""Descriptor containers: packed binary codes (more kinds come with the benchmark)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BinaryCodes:
    """Binary codes of N images, packed 8 bits a byte (``np.packbits`` order).

    Attributes
    ----------
    packed : numpy.ndarray, shape (N, ceil(n_bits / 8)), uint8
    n_bits : int
        Bits per code.
    """

    packed: np.ndarray
    n_bits: int

    @classmethod
    def from_bits(cls, bits: np.ndarray) -> BinaryCodes:
        """Pack a boolean array of shape (N, ...) (flattened row-major per image)."""
        flat = np.asarray(bits, dtype=bool).reshape(len(bits), -1)
        return cls(np.packbits(flat, axis=1), flat.shape[1])

    def to_bits(self) -> np.ndarray:
        """Boolean array (N, n_bits): for a hash, ``imagehash.<fn>(im).hash.flatten()``."""
        return np.unpackbits(self.packed, axis=1, count=self.n_bits).astype(bool)

    def __len__(self) -> int:
        return len(self.packed)

    @property
    def metric(self) -> str:
        """Distance used to compare these codes."""
        return "hamming"
