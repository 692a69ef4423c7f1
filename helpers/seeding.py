"""Seeds: stable per-item random generators.

Per-item generators are derived from a hash of their keys, so an item's randomness does not
depend on the order in which items are processed, nor on the process that handles them.
"""

from __future__ import annotations

import hashlib

import numpy as np


def derive_seed(*keys: object) -> int:
    """A 64-bit seed that depends only on ``keys`` (stable across runs, processes and machines).

    Parameters
    ----------
    *keys
        Anything with a stable ``str()`` (ints, strings, ``None``).

    Returns
    -------
    int
        In ``[0, 2**64)``.
    """
    text = "\x1f".join(f"{type(key).__name__}:{key}" for key in keys)
    # surrogatepass: ids from file names that are not UTF-8 (lone surrogates) hash too
    data = text.encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.sha256(data).digest()[:8], "little")


def rng_for(*keys: object) -> np.random.Generator:
    """A NumPy generator seeded by ``keys``, e.g. ``rng_for(seed, image_id, attack_id)``."""
    return np.random.default_rng(derive_seed(*keys))
