"""Descriptors, distances and the benchmark engine (to come).

Classical perceptual hashes (aHash, pHash, dHash, wHash, colour hash, crop-resistant hash,
histogram hash, block mean hash) computed on batches, neural descriptors wrapping `extractor`
models, batched CPU/GPU distances (`hashing.distances`), and the benchmark that matches
attacked queries against a database and writes the study's JSON digests and figures.
"""

__all__: list[str] = []
