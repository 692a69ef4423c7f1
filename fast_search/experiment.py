"""The search experiment: indexes x search parameters over one search set, each setting
timed after a warm-up (median of repeats) and measured (recall@k, source ranks, overlap with
exact search, micro-AP, range precision / recall), and the Pareto front of recall against
time per query (Faiss's ``OperatingPoints``)."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import resource
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fast_search.data import SearchSet
from fast_search.index import (
    _COUNT_PARAMS,
    MAX_POINTS_PER_CENTROID,
    SearchIndex,
    _faiss,
    build_index,
    describe_index,
    load_index,
    min_training_points,
    nlist_of,
    resolve_factory,
)
from fast_search.metrics import (
    knn_as_range,
    knn_intersection,
    knn_micro_ap,
    range_pr,
    recall_at_k,
    source_ranks,
)
from helpers import (
    Timer,
    Timing,
    get_logger,
    read_json,
    results_root,
    time_repeated,
    write_json,
)
from helpers.descriptors import BinaryCodes, FloatFeatures
from helpers.display import html_table, plural

logger = get_logger(__name__)

#: The study's defaults.
DEFAULT_INDEXES = ("Flat", "IVF{nlist},Flat")
DEFAULT_PARAMS = {"nprobe": [1, 2, 4, 8, 16, 32, 64, 80]}
DEFAULT_KS = (1, 10, 100)


def _status_bytes(field: str) -> int | None:
    """A memory line of /proc/self/status in bytes (None where there is no /proc)."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def peak_rss_bytes() -> int:
    """This process's peak resident memory so far (``VmHWM`` on Linux: unlike
    ``ru_maxrss``, it does not inherit the peak of the process that started this one)."""
    peak = _status_bytes("VmHWM")
    if peak is not None:
        return peak
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def rss_bytes() -> int:
    """This process's resident memory now (0 where /proc is not there)."""
    return _status_bytes("VmRSS") or 0


@dataclass
class SearchResult:
    """Every run of an experiment, and what it ran on.

    Attributes
    ----------
    runs : list of dict
        One per (index, search parameters): the measures and timings.
    search_set : dict
        `SearchSet.describe`.
    pareto : list of int
        Positions in ``runs`` on the front of recall@1 against seconds per query.
    """

    runs: list[dict[str, Any]]
    search_set: dict[str, Any]
    pareto: list[int] = field(default_factory=list)

    def frame(self):
        """The runs as a pandas DataFrame (one row per run, lists flattened)."""
        rows = []
        for position, run in enumerate(self.runs):
            row = {k: v for k, v in run.items() if not isinstance(v, dict | list)}
            row["params"] = _param_text(run["params"])
            for k, v in run["recall"].items():
                row[f"recall@{k}"] = v
            for k, v in run.get("intersection", {}).items():
                row[f"intersection@{k}"] = v
            row["pareto"] = position in self.pareto
            rows.append(row)
        return pd.DataFrame(rows)


    def to_frame(self) -> pd.DataFrame:
        """The runs, one row each (`frame`): index, metric, parameters, recall@k,
        intersection@k, timings, memory, ``pareto``."""
        return self.frame()

    def __repr__(self) -> str:
        """One line: runs, indexes, the search set, and the best recall at the smallest k."""
        indexes = list(dict.fromkeys(run["index"] for run in self.runs))
        shown = ", ".join(indexes[:4]) + (f" and {len(indexes) - 4} more"
                                          if len(indexes) > 4 else "")
        facts = [f"{plural(len(self.runs), 'run')} of "
                 f"{plural(len(indexes), 'index', 'indexes')} [{shown}]",
                 f"{self.search_set.get('method')}",
                 f"{self.search_set.get('database')} database rows",
                 f"{self.search_set.get('queries')} queries"]
        best = _best_run(self.runs)
        if best is not None:
            k = min(best["recall"])
            setting = " ".join(filter(None, (best["index"], _param_text(best["params"]))))
            facts.append(f"best recall@{k} {best['recall'][k]:.3f} ({setting}, "
                         f"{best['ms_per_query']:.3g} ms/query)")
        return f"SearchResult({', '.join(facts)})"

    def _repr_html_(self) -> str:
        frame = self.frame()
        columns = [c for c in frame.columns if c in _SHOWN or c.startswith("recall@")]
        return html_table(frame[columns], repr(self))


#: Columns of a search result's HTML table (with every recall@k).
_SHOWN = ("index", "metric", "params", "ms_per_query", "queries_per_s", "index_bytes",
          "pareto")


def _best_run(runs: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The run with the best recall at the smallest k measured (ties: the faster); None
    when there is none or recall is undefined."""
    measured = [r for r in runs if r.get("recall")
                and not math.isnan(r["recall"][min(r["recall"])])]
    if not measured:
        return None
    return max(measured, key=lambda r: (r["recall"][min(r["recall"])], -r["ms_per_query"]))


def _param_text(params: dict[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in params.items())


def _grid(index: SearchIndex, params: dict[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """The settings of ``params`` this index takes (others are left out, logged once)."""
    usable = {}
    for name, values in params.items():
        try:
            index.set_params({name: values[0]})
        except ValueError:
            logger.info("%s has no parameter %s: not swept", index.factory, name)
            continue
        if name == "nprobe" and (nlist := nlist_of(index.factory)):
            kept = [v for v in values if int(v) <= nlist]
            if len(kept) < len(values):
                logger.info("%s: nprobe above nlist=%d left out", index.factory, nlist)
            values = kept or [nlist]
        usable[name] = list(values)
    if not usable:
        return [{}]
    names = list(usable)
    return [dict(zip(names, combo, strict=True))
            for combo in itertools.product(*(usable[n] for n in names))]


def _train_size(index: SearchIndex, n: int, train_size: int | None) -> int:
    if train_size is not None:
        return min(n, train_size)
    nlist = nlist_of(index.factory)
    return min(n, max(MAX_POINTS_PER_CENTROID * nlist, 50000) if nlist else 100000)


def prepare_index(search_set: SearchSet, factory: str, metric: str | None = None,
                  device: str = "cpu", train_size: int | None = None, seed: int = 0,
                  cache_dir: str | Path | None = None, show_progress: bool | None = None
                  ) -> tuple[SearchIndex, dict[str, Any]]:
    """Build (train, add) an index over a search set, or load the one a previous run with the
    same inputs saved in ``cache_dir``.

    Returns
    -------
    index : SearchIndex
    info : dict
        ``factory``, ``train_s``, ``add_s``, ``train_points``, ``index_bytes``, ``cached``.
    """
    metric = metric or search_set.metric
    _check_metric_fits(search_set, metric)
    factory = resolve_factory(factory, search_set.n_database)
    index = build_index(factory, metric, search_set.dim, search_set.n_bits, device)
    key = path = None
    if cache_dir is not None:  # the fingerprint reads ids (and in-memory rows): only for a cache
        key = {"factory": factory, "metric": metric,
               "database": search_set.database_fingerprint(), "train_size": train_size,
               "seed": seed}
        path = Path(cache_dir) / f"{_cache_name(key)}.faiss"
        cached = _cached(path, key, index)
        if cached is not None:
            return cached, {"factory": factory, "train_s": 0.0, "add_s": 0.0,
                            "train_points": 0, "index_bytes": path.stat().st_size,
                            "cached": True}
    points = 0
    with Timer() as train:
        if not index.is_trained:
            points = _train_size(index, search_set.n_database, train_size)
            index.train(search_set.sample(points, seed), owned=True)
    with Timer() as add:
        index.add(search_set.blocks(), total=search_set.n_database,
                  show_progress=show_progress, owned=True)
    if path is not None and (points or factory not in ("Flat", "BFlat")):
        _save_cache(path, key, index)
        size = path.stat().st_size  # written once: its size is the index's
    else:
        size = index.nbytes()
    return index, {"factory": factory, "train_s": train.elapsed, "add_s": add.elapsed,
                   "train_points": points, "index_bytes": size, "cached": False}


def _cache_name(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def _cached(path: Path, key: dict[str, Any], index: SearchIndex) -> SearchIndex | None:
    """The cached index of ``key``, or None (to build it again) when there is none or the file
    is not what was saved: its SHA-256, type, rows and lists are checked, since a replaced
    ``.faiss`` of the same dimension would otherwise be searched silently."""
    meta_file = path.with_suffix(".json")
    if not (path.exists() and meta_file.exists()):
        return None
    if not (path.is_file() and meta_file.is_file()):  # a FIFO would block the reader
        logger.warning("not reusing the cached index %s: not a regular file; building it "
                       "again", path)
        return None
    try:
        meta = read_json(meta_file)
    except ValueError:
        meta = {}
    if meta.get("key") != key:
        return None
    why = None
    if "sha256" not in meta or "index" not in meta:
        why = "it was saved without a description (an older cache)"
    elif _file_digest(path) != meta["sha256"]:
        why = "the file changed since it was saved"
    else:
        try:
            found = load_index(path, index.factory, index.metric, index.dim, index.n_bits,
                               index.device, expect=meta["index"])
        except ValueError as exc:
            why = str(exc)
    if why:
        logger.warning("not reusing the cached index %s: %s; building it again", path, why)
        return None
    logger.info("reusing the trained index %s (%s)", path, key["factory"])
    return found


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def default_index_cache() -> Path:
    """``Results/indexes``: where scripts keep trained indexes by default."""
    return results_root() / "indexes"


def _save_cache(path: Path, key: dict[str, Any], index: SearchIndex) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        index.save(path)
    except RuntimeError as exc:  # Faiss's own write error (a full disk): an OSError to callers
        raise OSError(f"cannot write the index cache {path}: "
                      f"{str(exc).strip().splitlines()[-1][:200]}") from exc
    write_json(path.with_suffix(".json"), {  # written last: marks it finished
        "key": key, "index": describe_index(index.cpu_index()), "sha256": _file_digest(path)})


def _check_metric_fits(search_set: SearchSet, metric: str) -> None:
    if search_set.binary != (metric == "hamming"):
        fits = "hamming" if search_set.binary else "l2, cosine, inner_product, l1, jensenshannon"
        kind = "binary codes" if search_set.binary else "float features"
        raise ValueError(f"metric {metric!r} does not fit {kind}: use {fits}")


def exact_neighbours(search_set: SearchSet, k: int, metric: str | None = None,
                     batch_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours (a Flat index), the reference of approximate ones."""
    index, _ = prepare_index(search_set, "Flat", metric, show_progress=False)
    return index.search(search_set.queries, k, batch_size)


def run_search(
    search_set: SearchSet, indexes: Sequence[str] = DEFAULT_INDEXES, metric: str | None = None,
    ks: Sequence[int] = DEFAULT_KS, params: dict[str, Sequence[Any]] | None = None,
    device: str = "cpu", batch_size: int | None = None, repeats: int = 3,
    train_size: int | None = None, seed: int = 0, thresholds: Sequence[float] | None = None,
    cache_dir: str | Path | None = None, show_progress: bool | None = None, warmup: int = 1,
) -> SearchResult:
    """Search the queries of a search set with every index and search setting.

    Parameters
    ----------
    search_set : SearchSet
        From `load_search_set`.
    indexes : sequence of str
        Faiss factory strings; ``{nlist}`` becomes the study's ``10 sqrt(N)``.
    metric : str, optional
        Default: the stores' metric.
    ks : sequence of int
        recall@k for each; the search asks for ``max(ks)`` neighbours.
    params : dict of name -> list, optional
        Search parameters by Faiss's names, swept as a grid over the indexes that take them
        (default: nprobe 1..80 as the study swept it).
    device : str
        ``cpu``, ``cuda`` or ``auto``.
    batch_size : int, optional
        Queries per search call (default: all at once; 1 is one query at a time).
    repeats : int
        Timed searches per setting after ``warmup`` untimed ones; the median is kept.
    train_size : int, optional
        Training points sampled from the database (default: 256 per inverted list, at least
        50,000, at most the database).
    thresholds : sequence of float, optional
        Distances at which to measure range-search precision and recall.
    cache_dir : str or Path, optional
        Trained indexes are saved there and reused by a run with the same inputs and string.
    warmup : int
        Untimed searches before the timed ones (caches, thread pools; 0 for long exact
        searches whose first run is as good as any).

    Returns
    -------
    SearchResult
    """
    metric = metric or search_set.metric
    ks, kmax = _check_search(search_set, ks, repeats, warmup)
    params = DEFAULT_PARAMS if params is None else params
    reference: np.ndarray | None = None
    runs: list[dict[str, Any]] = []
    # exact strings first: their neighbours are the reference of the approximate ones
    for factory in sorted(indexes, key=lambda f: f not in ("Flat", "BFlat")):
        index, info = prepare_index(search_set, factory, metric, device, train_size, seed,
                                    cache_dir, show_progress)
        for setting in _grid(index, params):
            index.set_params(setting)
            timing = time_repeated(lambda i=index: i.search(search_set.queries, kmax,
                                                            batch_size),
                                   repeats=repeats, warmup=warmup)
            if reference is None:  # this exact index's neighbours, or a Flat index's
                reference = (timing.result[1] if info["factory"] in ("Flat", "BFlat")
                             else exact_neighbours(search_set, kmax, metric, batch_size)[1])
            runs.append(_search_run(index, info, setting, search_set, metric, ks, kmax,
                                    timing, batch_size, reference, thresholds))
        del index
    return SearchResult(runs, search_set.describe(), _pareto(runs))


def _check_search(search_set: SearchSet, ks: Sequence[int], repeats: int, warmup: int
                  ) -> tuple[list[int], int]:
    """The recall@k cut-offs (sorted, none above the database) and the neighbours to ask for.

    Raises
    ------
    ValueError
        A k below 1, repeats below 1 or warmup below 0, no queries.
    """
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise ValueError(f"k must be >= 1, got {ks}")
    kmax = min(ks[-1], search_set.n_database)
    if kmax < ks[-1]:
        logger.warning("k=%d is above the %d database rows: recall@k uses %d", ks[-1],
                       search_set.n_database, kmax)
        ks = [min(k, kmax) for k in ks]
        ks = sorted(set(ks))
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {repeats}, {warmup}")
    if len(search_set.queries) == 0:
        raise ValueError("no queries")
    return ks, kmax


def _search_run(index: SearchIndex, info: dict[str, Any], setting: dict[str, Any],
                search_set: SearchSet, metric: str, ks: list[int], kmax: int,
                timing: Timing, batch_size: int | None, reference: np.ndarray,
                thresholds: Sequence[float] | None) -> dict[str, Any]:
    """One run of `SearchResult.runs`: an index at one setting, its timed search of ``kmax``
    neighbours (``timing.result``) and what it found, measured."""
    distances, indices = timing.result
    nq = len(search_set.queries)
    run = {
        "index": info["factory"], "metric": metric, "params": dict(setting),
        "device": index.device, "threads": _faiss().omp_get_max_threads(),
        "batch_size": batch_size or nq,
        "mode": "one query at a time" if batch_size == 1 else "batch",
        "queries": nq, "k": kmax,
        "search_s": timing.median, "search_runs": timing.runs,
        "queries_per_s": nq / timing.median if timing.median > 0 else math.inf,
        "ms_per_query": 1000 * timing.median / nq,
        "train_s": info["train_s"], "add_s": info["add_s"],
        "train_points": info["train_points"], "index_bytes": info["index_bytes"],
        "cached_index": info["cached"],
        # the process's peak so far (it only grows: earlier, larger indexes count) and
        # its memory now, with this index built
        "peak_rss_bytes": peak_rss_bytes(), "rss_bytes": rss_bytes(),
        "recall": recall_at_k(indices, search_set.truth, ks),
        "intersection": {k: knn_intersection(indices, reference, k) for k in ks},
        "mean_source_rank": _mean_rank(indices, search_set.truth),
        **knn_micro_ap(distances, indices, search_set.truth),
        "micro_ap_candidates": int(indices.shape[1]),
        # the nearest alone: what the hashing benchmark's digests score
        "micro_ap_nearest": knn_micro_ap(distances[:, :1], indices[:, :1],
                                         search_set.truth)["micro_ap"],
        "synthetic_distractors": search_set.synthetic_rows,
    }
    if thresholds:
        run["range"] = _range(index, search_set, distances, indices, thresholds)
    return run


def _pareto(runs: Sequence[dict[str, Any]]) -> list[int]:
    """Positions of the runs on the front of recall (at the smallest k measured) against
    milliseconds per query (Faiss's ``OperatingPoints``)."""
    from faiss.contrib.evaluation import OperatingPoints  # lazy: no Faiss on `import fast_search`

    points = OperatingPoints()
    for position, run in enumerate(runs):
        points.add_operating_point(position, run["recall"][min(run["recall"])],
                                   run["ms_per_query"])
    return sorted(p[0] for p in points.operating_points)


def _mean_rank(indices: np.ndarray, truth: np.ndarray) -> float:
    ranks = source_ranks(indices, truth)
    found = ranks[ranks > 0]
    return float(found.mean()) if len(found) else float("nan")


def _range(index: SearchIndex, search_set: SearchSet, distances, indices,
           thresholds: Sequence[float]) -> dict[str, Any]:
    try:
        lims, d, i = index.range_search(search_set.queries, max(thresholds))
        source = "range_search"
    except ValueError:
        lims, d, i = knn_as_range(distances, indices)
        source = f"knn (k={indices.shape[1]}; this index has no range search)"
    out = range_pr(lims, d, i, search_set.truth, thresholds)
    out["from"] = source
    return out


def index_matcher(factory: str, params: dict[str, Any] | None = None, device: str = "cpu",
                  train_size: int | None = None, seed: int = 0):
    """A ``matcher`` for `hashing.run_benchmark`: each method's database goes into a Faiss
    index built from ``factory`` (``{nlist}`` filled from the database size; a binary string
    for hashes, ``BIVF...`` made from ``IVF...``), and queries get their nearest row and its
    distance from it. Multi-codes (crop_resistant) stay exact.

    Returns
    -------
    callable
        ``matcher(label, database_descriptors)`` -> ``search(query_descriptors)`` or ``None``.
    """
    def matcher(label: str, database: Any):
        if not isinstance(database, BinaryCodes | FloatFeatures):
            logger.info("%s: %s cannot go in a Faiss index; matched exactly", label,
                        type(database).__name__)
            return None
        binary = isinstance(database, BinaryCodes)
        values = database.packed if binary else database.values
        spec = _matcher_spec(factory, binary, len(values))
        index = build_index(spec, database.metric, values.shape[1],
                            database.n_bits if binary else None, device)
        if not index.is_trained:
            n = _train_size(index, len(values), train_size)
            rows = np.sort(np.random.default_rng(seed).choice(len(values), n, replace=False))
            index.train(np.asarray(values[rows]), owned=True)
        index.add([np.asarray(values)], total=len(values), show_progress=False)
        index.set_params(params)
        logger.info("%s: matching through %s (%d rows)", label, spec, index.ntotal)

        def search(queries: Any) -> tuple[np.ndarray, np.ndarray]:
            q = queries.packed if binary else queries.values
            distances, rows = index.search(q, 1)
            return rows[:, 0], distances[:, 0].astype(np.float64)

        return search

    return matcher


def candidate_indexes(dim: int, binary: bool) -> list[str]:
    """Index strings `recommend` tries when none are given: exact, inverted lists, graphs and
    compressed codes."""
    if binary:
        return ["BFlat", "BIVF{nlist}", "BHNSW32"]
    out = ["Flat", "IVF{nlist},Flat", "HNSW32", "IVF{nlist},SQ8"]
    m = next((m for m in (dim // 8, dim // 4, dim // 2) if m and dim % m == 0), None)
    if m:
        out.append(f"IVF{{nlist}},PQ{m}")
    return out


def recommend(result: SearchResult, max_bytes: float | None = None,
              max_ms_per_query: float | None = None, k: int | None = None
              ) -> dict[str, Any] | None:
    """The run with the best recall@k (k: the smallest measured) among those within a memory
    budget (index bytes) and a time per query; ties go to the faster. ``None`` when no run
    fits, or recall is undefined (no query has its source in the database)."""
    fitting = [r for r in result.runs
               if (max_bytes is None or r["index_bytes"] <= max_bytes)
               and (max_ms_per_query is None or r["ms_per_query"] <= max_ms_per_query)]
    k = k or (min(fitting[0]["recall"]) if fitting else None)
    fitting = [r for r in fitting if not math.isnan(r["recall"][k])]
    if not fitting:
        return None
    return max(fitting, key=lambda r: (r["recall"][k], -r["ms_per_query"]))


def merge_results(results: Sequence[SearchResult]) -> SearchResult:
    """Runs of several experiments on one search set (e.g. one per metric) as one result, the
    Pareto front taken again over all of them."""
    runs = [run for result in results for run in result.runs]
    return SearchResult(runs, results[0].search_set if results else {}, _pareto(runs))


def parse_search_params(items: Sequence[str], flag: str = "--param"
                        ) -> dict[str, list[int | float]] | None:
    """Search parameter values from the command line: ``["nprobe=1,4", "efSearch=16"]`` ->
    ``{"nprobe": [1, 4], "efSearch": [16]}``; counts (nprobe, efSearch...) must be whole
    numbers >= 1 (``1e3`` is 1000).

    Raises
    ------
    ValueError
        Naming the flag and the value.
    """
    if not items:
        return None
    out: dict[str, list[int | float]] = {}
    for item in items:
        name, sep, values = item.partition("=")
        if not sep or not name or not values:
            raise ValueError(f"{flag} {item!r}: expected NAME=V1,V2,...")
        try:
            numbers = [float(v) for v in values.split(",")]
        except ValueError:
            raise ValueError(f"{flag} {item!r}: values must be numbers") from None
        if any(not math.isfinite(v) or v < 0 for v in numbers):
            raise ValueError(f"{flag} {item!r}: values must be finite and >= 0")
        if name in _COUNT_PARAMS and any(v < 1 or v != int(v) for v in numbers):
            raise ValueError(f"{flag} {item!r}: {name} takes whole numbers >= 1")
        out[name] = [int(v) if v == int(v) else v for v in numbers]
    return out


def check_indexes(factories: Sequence[str], search_set: SearchSet, metric: str | None = None,
                  train_size: int | None = None) -> list[str]:
    """Refuse, before any long work, index strings that Faiss cannot make for this search
    set, or that its database is too small to train. Returns the strings with ``{nlist}``
    filled."""
    metric = metric or search_set.metric
    _check_metric_fits(search_set, metric)
    out = []
    for factory in factories:
        spec = resolve_factory(factory, search_set.n_database)
        index = build_index(spec, metric, search_set.dim, search_set.n_bits, "cpu")
        _check_trainable(index, spec, search_set.n_database, train_size)
        out.append(spec)
    return out


def _matcher_spec(factory: str, binary: bool, n: int) -> str:
    spec = resolve_factory(factory, n)
    if binary and not spec.startswith("B"):
        spec = "B" + spec.replace(",Flat", "")
    return spec


def check_index_matcher(descriptors: Any, factory: str, params: dict[str, Any] | None,
                        n_database: int, train_size: int | None = None) -> None:
    """Refuse now, before a benchmark describes its database, an `index_matcher` string or
    parameter that will not work for descriptors like ``descriptors`` (one image's is enough)
    over ``n_database`` images. Multi-codes are matched exactly and pass."""
    if not isinstance(descriptors, BinaryCodes | FloatFeatures):
        return
    binary = isinstance(descriptors, BinaryCodes)
    values = descriptors.packed if binary else descriptors.values
    spec = _matcher_spec(factory, binary, n_database)
    index = build_index(spec, descriptors.metric, values.shape[1],
                        descriptors.n_bits if binary else None, "cpu")
    _check_trainable(index, spec, n_database, train_size)
    for name, value in (params or {}).items():
        index.set_params({name: value})


def _check_trainable(index: SearchIndex, spec: str, n_database: int,
                     train_size: int | None) -> None:
    """Refuse an index the database is too small to train (one point per list, 2^bits per
    codebook), before any work."""
    if index.is_trained:
        return
    points = _train_size(index, n_database, train_size)
    need = min_training_points(index.factory)
    if points < need:
        raise ValueError(f"index {spec!r} needs at least {need} training points; the database "
                         f"has {n_database}" + (f" and the training size is {train_size}"
                                                if train_size else "")
                         + ": use fewer lists or smaller codebooks")
