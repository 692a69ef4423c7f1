"""Faiss search experiments over feature stores.

`load_search_set` joins a database (originals, distractors) and queries by the records'
``source_id``; `build_index` makes any Faiss factory string answer in the metrics of
`hashing.distances` (l2, cosine, inner_product, l1, jensenshannon, hamming for binary codes);
`run_search` sweeps indexes and search parameters and measures recall@k, source ranks, overlap
with exact search, micro-AP, range precision / recall, time, memory and the Pareto front;
`write_search` writes ``search.json``, ``search.csv`` and the figures.
"""

from fast_search.data import (
    Part,
    SearchSet,
    load_search_set,
    open_described,
    open_descriptors,
    synthetic_part,
)
from fast_search.experiment import (
    DEFAULT_INDEXES,
    DEFAULT_KS,
    DEFAULT_PARAMS,
    SearchResult,
    exact_neighbours,
    index_matcher,
    prepare_index,
    run_search,
)
from fast_search.index import (
    SEARCH_METRICS,
    SearchIndex,
    build_index,
    default_nlist,
    describe_index,
    load_index,
    resolve_factory,
)
from fast_search.metrics import (
    knn_intersection,
    knn_micro_ap,
    range_pr,
    recall_at_k,
    source_ranks,
)

__all__ = [
    "DEFAULT_INDEXES",
    "DEFAULT_KS",
    "DEFAULT_PARAMS",
    "SEARCH_METRICS",
    "Part",
    "SearchIndex",
    "SearchResult",
    "SearchSet",
    "build_index",
    "default_nlist",
    "exact_neighbours",
    "index_matcher",
    "knn_intersection",
    "describe_index",
    "load_index",
    "load_search_set",
    "open_described",
    "open_descriptors",
    "knn_micro_ap",
    "prepare_index",
    "range_pr",
    "recall_at_k",
    "resolve_factory",
    "run_search",
    "source_ranks",
    "synthetic_part",
]
