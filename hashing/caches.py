"""`clear_caches`: free what the library keeps between calls for speed."""

from hashing.distances.local import clear_matchers
from hashing.methods.neural import clear_model_caches
from hashing.methods.resize import lanczos_matrix


def clear_caches() -> None:
    """Free every cache of `hashing`: the networks, reducers and last features of the neural
    methods (`hashing.methods.neural`, at most `CACHED_MODELS` networks) and the keypoint
    matchers' copies of databases (`hashing.distances.local`, at most `CACHED_MATCHERS`).
    In a notebook this gives back GPU memory; the next call builds what it needs again. The
    classical hashes' resize matrices (at most 256, a few kB each) go too."""
    clear_model_caches()
    clear_matchers()
    lanczos_matrix.cache_clear()
