"""Faiss experiments over feature stores (to come).

Index factory strings (Flat, IVF, PCA, PQ, HNSW, binary), metrics (L2, inner product for cosine,
L1, Jensen-Shannon, Hamming), GPU when present, recall@k, build and search time, memory, sweeps
over k and nprobe, and galleries of nearest neighbours.
"""

__all__: list[str] = []
