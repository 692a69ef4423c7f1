"""Keypoint methods: ORB, SIFT, FAST + DAISY and FAST + LATCH as algorithms of the registry.

The original study's four local-feature methods (``get_algorithm("orb", n_features=20)``), so
the benchmark, digests, figures and `hashing.neighbours` take them like any hash. OpenCV (its
contrib build, for DAISY and LATCH) detects and describes; each image gives up to about
``n_features`` descriptors, kept as one padded array plus a count per image
(`LocalDescriptors`). How two images' descriptors are compared (the study's matching rule) is
the distance engine's: `hashing.distances.local`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from hashing.methods.gray import GrayBatch
from hashing.methods.registry import register_algorithm
from helpers.descriptors import LocalDescriptors

logger = logging.getLogger(__name__)

#: Descriptor length of each method: bytes of a binary descriptor, floats of a float one.
DESCRIPTOR_SIZE = {"orb": 32, "latch": 32, "sift": 128, "daisy": 200}
#: The study's matcher norm of each method.
DEFAULT_NORM = {"orb": "hamming", "latch": "hamming", "sift": "l2", "daisy": "l2"}


def _check(name: str, n_features: int, cutoff: int, norm: str) -> None:
    if n_features < 1:
        raise ValueError(f"{name}: n_features must be >= 1, got {n_features}")
    if cutoff < 1:
        raise ValueError(f"{name}: cutoff must be >= 1, got {cutoff}")
    if cutoff > n_features:
        logger.warning("%s: cutoff %d > n_features %d: a query with fewer descriptors than "
                       "the cutoff is infinitely far from every image", name, cutoff,
                       n_features)
    binary = DEFAULT_NORM[name] == "hamming"
    allowed = ("hamming",) if binary else ("l2", "l1")
    if norm not in allowed:
        kind = "binary (compared with hamming only)" if binary else "float vectors (l2 or l1)"
        raise ValueError(f"{name} descriptors are {kind}: norm {norm!r} does not apply")


def _describe(batch: GrayBatch, name: str, compute: Callable[[np.ndarray], np.ndarray | None],
              norm: str, cutoff: int) -> LocalDescriptors:
    """Descriptors of every gray image of the batch (full resolution, Pillow's ``L``
    conversion, as the study read them)."""
    found = [_safely(compute, name, np.ascontiguousarray(array)) for array in batch.arrays]
    return LocalDescriptors.from_list(found, norm, cutoff, DESCRIPTOR_SIZE[name])


def _safely(compute: Callable[[np.ndarray], np.ndarray | None], name: str,
            array: np.ndarray) -> np.ndarray | None:
    """Descriptors of one image; ``None`` (no keypoint) where OpenCV cannot look at it at all
    (ORB's pyramid fails on an image one pixel wide or high), logged with its size."""
    import cv2  # OpenCV: only for keypoints

    try:
        return compute(array)
    except cv2.error as exc:
        logger.warning("%s: no keypoint in a %dx%d image (OpenCV: %s)", name, array.shape[1],
                       array.shape[0], str(exc).strip().splitlines()[-1])
        return None


def _own_keypoints(name: str, batch: GrayBatch, n_features: int, cutoff: int, norm: str,
                   make_detector: Callable[..., object]) -> LocalDescriptors:
    """Keypoints and descriptors from one OpenCV feature (``detectAndCompute``)."""
    _check(name, n_features, cutoff, norm)
    detector = make_detector(nfeatures=n_features)
    return _describe(batch, name, lambda a: detector.detectAndCompute(a, None)[1], norm,
                     cutoff)


def _fast_then(name: str, batch: GrayBatch, n_features: int, cutoff: int, norm: str,
               make_extractor: Callable[[], object]) -> LocalDescriptors:
    """FAST keypoints as ORB's detector ranks them, described by another extractor."""
    import cv2  # OpenCV: only for keypoints

    _check(name, n_features, cutoff, norm)
    detector, extractor = cv2.ORB_create(nfeatures=n_features), make_extractor()

    def compute(array: np.ndarray) -> np.ndarray | None:
        keypoints = detector.detect(array, None)
        if not keypoints:
            return None
        return extractor.compute(array, keypoints)[1]

    return _describe(batch, name, compute, norm, cutoff)


@register_algorithm("orb")
def orb(batch: GrayBatch, n_features: int = 20, cutoff: int = 1,
        norm: str = "hamming") -> LocalDescriptors:
    """ORB (oriented FAST and rotated BRIEF): up to ``n_features`` 256-bit descriptors per
    image (OpenCV's ``ORB_create(nfeatures=n_features).detectAndCompute``).

    ``cutoff`` is the matching rule (see `LocalDescriptors`); ``norm`` is ``hamming``."""
    import cv2  # OpenCV: only for keypoints

    return _own_keypoints("orb", batch, n_features, cutoff, norm, cv2.ORB_create)


@register_algorithm("sift")
def sift(batch: GrayBatch, n_features: int = 20, cutoff: int = 1,
         norm: str = "l2") -> LocalDescriptors:
    """SIFT: up to ``n_features`` keypoints (a keypoint with several orientations gives
    several descriptors), 128-d descriptors (OpenCV's ``SIFT_create``); ``norm`` ``l2``
    (the study's) or ``l1``."""
    import cv2  # OpenCV: only for keypoints

    return _own_keypoints("sift", batch, n_features, cutoff, norm, cv2.SIFT_create)


@register_algorithm("daisy")
def daisy(batch: GrayBatch, n_features: int = 20, cutoff: int = 1,
          norm: str = "l2") -> LocalDescriptors:
    """FAST + DAISY: ORB's FAST keypoints (up to ``n_features``), 200-d DAISY descriptors
    (OpenCV contrib's ``xfeatures2d.DAISY_create``); ``norm`` ``l2`` (the study's) or
    ``l1``."""
    import cv2  # OpenCV: only for keypoints

    return _fast_then("daisy", batch, n_features, cutoff, norm, cv2.xfeatures2d.DAISY_create)


@register_algorithm("latch")
def latch(batch: GrayBatch, n_features: int = 20, cutoff: int = 1,
          norm: str = "hamming") -> LocalDescriptors:
    """FAST + LATCH: ORB's FAST keypoints (up to ``n_features``; LATCH drops those too close
    to the border), 256-bit LATCH descriptors (OpenCV contrib's ``xfeatures2d.LATCH_create``);
    ``norm`` is ``hamming``."""
    import cv2  # OpenCV: only for keypoints

    return _fast_then("latch", batch, n_features, cutoff, norm, cv2.xfeatures2d.LATCH_create)
