"""The methods: classical perceptual hashes, keypoint methods and neural algorithms, the
algorithm registry, and `describe` / `describe_all`, the one way to describe images.

Importing this package registers the classical hashes and the keypoint methods; the neural
methods join through the extractor's model registry on first request (no torch on import).
"""

from hashing.methods import classical as _classical  # noqa: F401  (registers the hashes)
from hashing.methods import keypoints as _keypoints  # noqa: F401  (registers orb, sift, ...)
from hashing.methods import neural as _neural  # noqa: F401  (registers the model provider)
from hashing.methods.describing import (
    Algorithm,
    concat_descriptors,
    describe,
    describe_all,
    get_algorithm,
    load_descriptors,
    parse_algorithm,
    save_descriptors,
)
from hashing.methods.gray import GrayBatch
from hashing.methods.neural import FEATURE_DISTANCES, clear_model_caches, simhash
from hashing.methods.registry import list_algorithms, register_algorithm, register_provider

__all__ = [
    "FEATURE_DISTANCES",
    "Algorithm",
    "GrayBatch",
    "clear_model_caches",
    "concat_descriptors",
    "describe",
    "describe_all",
    "get_algorithm",
    "list_algorithms",
    "load_descriptors",
    "parse_algorithm",
    "register_algorithm",
    "register_provider",
    "save_descriptors",
    "simhash",
]
