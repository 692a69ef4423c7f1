"""fast_search: search sets from stores, Faiss indexes in our metrics, measures, the script.

Oracles: NumPy brute force and SciPy for distances, `hashing.nearest` (tested against SciPy and
imagehash elsewhere), hand-made examples for recall@k, micro-AP and range precision / recall.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from scipy.spatial.distance import cdist, jensenshannon

import fast_search as fs
from data_retrieval import ImageRecord
from hashing import BinaryCodes, FloatFeatures, nearest, save_descriptors
from tests.conftest import REPO

RNG = np.random.default_rng(0)


def _features(n=400, dim=24, seed=0, nonneg=True):
    x = np.random.default_rng(seed).random((n, dim)).astype(np.float32)
    return x if nonneg else x - 0.5


def _set(metric="cosine", n=400, dim=24, n_queries=60, n_controls=20, method="m"):
    """A database, attacked copies of some of its rows, and controls, as descriptor objects."""
    rng = np.random.default_rng(1)
    db = _features(n, dim)
    sources = rng.choice(n, n_queries, replace=False)
    copies = np.abs(db[sources] + 0.02 * rng.standard_normal((n_queries, dim))).astype(np.float32)
    controls = rng.random((n_controls, dim)).astype(np.float32)
    records = ([ImageRecord(f"q{i}", None, source_id=f"d{s}", attack_id="noise")
                for i, s in enumerate(sources)]
               + [ImageRecord(f"c{i}", None) for i in range(n_controls)])
    database = FloatFeatures(db, metric, ids=tuple(f"d{i}" for i in range(n)), method=method)
    queries = FloatFeatures(np.vstack([copies, controls]), metric,
                            ids=tuple(r.image_id for r in records), records=tuple(records),
                            method=method)
    return database, queries, sources


@pytest.mark.parametrize("metric", ["cosine", "l2", "l1", "jensenshannon"])
def test_flat_equals_brute_force_and_nearest(metric):
    database, queries, _ = _set(metric)
    search_set = fs.load_search_set(database, queries)
    index, info = fs.prepare_index(search_set, "Flat")
    d, i = index.search(search_set.queries, 5)
    ours_d, ours_i = nearest(queries, database, k=5)
    np.testing.assert_array_equal(i, ours_i)
    np.testing.assert_allclose(d, ours_d, atol=2e-6)
    # an independent brute force on the first queries
    q, x = queries.values[:8].astype(np.float64), database.values.astype(np.float64)
    if metric == "jensenshannon":
        brute = np.array([[jensenshannon(a, b, base=2) for b in x] for a in q])
    elif metric == "cosine":
        brute = cdist(q, x, "cosine") / 2
    else:
        brute = cdist(q, x, {"l2": "euclidean", "l1": "cityblock"}[metric])
    np.testing.assert_array_equal(i[:8], np.argsort(brute, axis=1, kind="stable")[:, :5])
    np.testing.assert_allclose(d[:8], np.sort(brute, axis=1)[:, :5], atol=2e-6)
    assert info["index_bytes"] > database.values.nbytes


def test_jensenshannon_with_zeros_finds_neighbours():
    """Faiss's METRIC_JensenShannon gives NaN (no result at all) for rows holding a zero, as
    ReLU features do; the index floors them and agrees with SciPy."""
    x = _features(50, 8)
    x[:, :3] = 0
    q = x[:4].copy()
    q[:, 5] = 0
    index = fs.build_index("Flat", "jensenshannon", 8)
    index.train(x)
    index.add([x])
    d, i = index.search(q, 3)
    brute = np.array([[jensenshannon(a, b, base=2) for b in x] for a in q.astype(np.float64)])
    assert (i >= 0).all()
    np.testing.assert_allclose(d, np.sort(brute, axis=1)[:, :3], atol=1e-6)


@pytest.mark.parametrize("n_bits", [64, 42])
def test_binary_flat_equals_nearest_in_bit_error_rate(n_bits):
    rng = np.random.default_rng(3)
    bits = rng.random((300, n_bits)) < 0.5
    db = BinaryCodes.from_bits(bits).with_identity(ids=tuple(f"d{i}" for i in range(300)),
                                                   method="h")
    flipped = bits[:40].copy()
    flipped[:, :3] ^= True
    records = tuple(ImageRecord(f"q{i}", None, source_id=f"d{i}", attack_id="a")
                    for i in range(40))
    queries = BinaryCodes.from_bits(flipped).with_identity(
        ids=tuple(r.image_id for r in records), records=records, method="h")
    search_set = fs.load_search_set(db, queries)
    assert search_set.binary and search_set.n_bits == n_bits
    index, _ = fs.prepare_index(search_set, "BFlat")
    d, i = index.search(search_set.queries, 3)
    ours_d, ours_i = nearest(queries, db, k=3)
    np.testing.assert_array_equal(d, ours_d)  # bits / n_bits, never / the padded width
    assert set(np.unique(d[:, 0])) <= {3 / n_bits} | set(np.unique(ours_d[:, 0]))
    np.testing.assert_array_equal(i[:, 0], ours_i[:, 0])
    assert fs.recall_at_k(i, search_set.truth, [1])[1] == 1.0
    # a hash cannot go through a float index, nor features through a binary one
    with pytest.raises(ValueError, match="does not fit binary codes"):
        fs.prepare_index(search_set, "Flat", metric="l2")


def test_ivf_with_every_list_probed_equals_flat():
    database, queries, _ = _set("l2", n=600)
    search_set = fs.load_search_set(database, queries)
    flat, _ = fs.prepare_index(search_set, "Flat")
    ivf, info = fs.prepare_index(search_set, "IVF16,Flat")
    ivf.set_params({"nprobe": 16})
    d1, i1 = flat.search(search_set.queries, 10)
    d2, i2 = ivf.search(search_set.queries, 10)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_allclose(d1, d2, rtol=1e-5)
    assert info["train_points"] == 600
    ivf.set_params({"nprobe": 1})  # fewer lists: a subset of the work, never better
    assert fs.knn_intersection(ivf.search(search_set.queries, 10)[1], i1, 10) <= 1.0


def test_cosine_normalises_after_every_transform():
    database, queries, _ = _set("cosine", dim=32)
    search_set = fs.load_search_set(database, queries)
    index, info = fs.prepare_index(search_set, "PCAW16,Flat")
    assert index.factory == "PCAW16,L2norm,Flat"
    d, _ = index.search(search_set.queries, 5)
    assert (d >= 0).all() and (d <= 1).all()  # unit vectors: (1 - cos) / 2
    assert fs.prepare_index(search_set, "PCA16,L2norm,Flat")[0].factory == "PCA16,L2norm,Flat"


def test_measures_on_hand_made_examples():
    truth = np.array([0, 1, 2, -1])
    indices = np.array([[0, 5, 6], [7, 1, 8], [9, 9, 9], [3, 4, 5]])
    assert fs.source_ranks(indices, truth).tolist() == [1, 2, 0, -1]
    assert fs.recall_at_k(indices, truth, [1, 2, 3]) == {1: 1 / 3, 2: 2 / 3, 3: 2 / 3}
    # micro-AP: predictions sorted by distance: q0 correct (0.1), control wrong (0.2),
    # q1 wrong (0.3), q2 wrong (0.4); 3 queries with a source -> AP = 1 * 1/3
    distances = np.array([[0.1], [0.3], [0.4], [0.2]])
    ap = fs.knn_micro_ap(distances, indices[:, :1], truth)
    assert ap["micro_ap"] == pytest.approx(1 / 3)
    # knn intersection: half the neighbours shared
    assert fs.knn_intersection(np.array([[1, 2], [3, 4]]), np.array([[2, 9], [4, 3]]), 2) == 0.75
    # range precision / recall: q0 finds its source and one other within 0.5; q1 its source
    # at 0.7; the control finds one image at 0.2
    lims = np.array([0, 2, 3, 3, 4])
    dist = np.array([0.1, 0.4, 0.7, 0.2], np.float32)
    ids = np.array([0, 5, 1, 3])
    pr = fs.range_pr(lims, dist, ids, truth, [0.15, 0.5, 0.7])
    assert pr["precision"] == pytest.approx([1.0, 1 / 3, 2 / 4])
    assert pr["recall"] == pytest.approx([1 / 3, 1 / 3, 2 / 3])
    # an index without range search: its k-NN results in the same layout (misses dropped)
    knn_d = np.array([[0.1, 0.4], [0.7, np.inf]], np.float32)
    knn_i = np.array([[0, 5], [1, -1]])
    lims, dist, ids = fs.metrics.knn_as_range(knn_d, knn_i)
    assert lims.tolist() == [0, 2, 3] and ids.tolist() == [0, 5, 1]


def test_range_search_agrees_with_brute_force():
    database, queries, _ = _set("l2", n=300)
    search_set = fs.load_search_set(database, queries)
    index, _ = fs.prepare_index(search_set, "Flat")
    brute = cdist(queries.values.astype(np.float64), database.values.astype(np.float64))
    t = float(np.quantile(brute, 0.01))
    lims, d, i = index.range_search(search_set.queries, t)
    assert lims[-1] == int((brute <= t).sum())
    for q in range(0, len(brute), 13):
        assert set(i[lims[q]:lims[q + 1]]) == set(np.flatnonzero(brute[q] <= t))


def test_search_set_from_stores_on_disk(tmp_path):
    database, queries, sources = _set("cosine")
    distractors = FloatFeatures(_features(200, 24, seed=9), "cosine",
                                ids=tuple(f"x{i}" for i in range(200)), method="m")
    root = tmp_path / "features"
    for name, d in (("db", database), ("queries", queries), ("views", distractors)):
        save_descriptors(d, name, root=root)
    search_set = fs.load_search_set("db/m", "queries/m", ["views/m"], root=root)
    assert search_set.n_database == 600 and search_set.originals == 400
    assert search_set.truth[:60].tolist() == sources.tolist()  # from the records' source_id
    assert (search_set.truth[60:] == -1).all()  # controls
    # parts are read from the files block by block, never gathered or memory-mapped whole
    assert all(p._file is not None for p in search_set.parts)
    np.testing.assert_array_equal(search_set.to_array()[:400], database.values)
    np.testing.assert_array_equal(search_set.sample(600), search_set.to_array())
    # a .npy path works as a store too
    again = fs.load_search_set(root / "db" / "m.npy", root / "queries" / "m.npy", root=root)
    np.testing.assert_array_equal(again.truth, fs.load_search_set(database, queries).truth)


def test_bad_inputs_fail_before_long_work(tmp_path):
    database, queries, _ = _set("cosine")
    other = FloatFeatures(database.values, "cosine", ids=database.ids, method="other_model")
    with pytest.raises(ValueError, match="made by 'other_model', the queries by 'm'"):
        fs.load_search_set(other, queries)
    narrow = FloatFeatures(database.values[:, :10], "cosine", ids=database.ids, method="m")
    with pytest.raises(ValueError, match="10-d features .* 24-d features"):
        fs.load_search_set(narrow, queries)
    with pytest.raises(ValueError, match="is empty"):
        fs.load_search_set(database[[]], queries)
    with pytest.raises(ValueError, match="among the distractors"):
        fs.load_search_set(database[:100], queries, database[100:])
    with pytest.raises(ValueError, match="'d0' is in both"):
        fs.load_search_set(database, queries, database[:1].with_identity(method="m"))
    with pytest.raises(ValueError, match="neither a store"):
        fs.load_search_set("no-such-store", queries)
    with pytest.raises(FileNotFoundError, match="no finished feature store"):
        fs.load_search_set("db/m", queries, root=tmp_path)
    search_set = fs.load_search_set(database, queries)
    with pytest.raises(ValueError, match="cannot use metric 'l1'.*flat storage"):
        fs.prepare_index(search_set, "IVF4,PQ4", metric="l1")
    with pytest.raises(ValueError, match="Jensen-Shannon compares distributions"):
        fs.prepare_index(search_set, "PCA8,Flat", metric="jensenshannon")
    with pytest.raises(ValueError, match="Faiss cannot make it"):
        fs.prepare_index(search_set, "IVF16,Nonsense")
    with pytest.raises(ValueError, match="unknown metric 'manhattan'"):
        fs.build_index("Flat", "manhattan", 4)
    if not _faiss_gpus():
        with pytest.raises(ValueError, match="sees no GPU"):
            fs.build_index("Flat", "l2", 4, device="cuda")
    index, _ = fs.prepare_index(search_set, "Flat")
    with pytest.raises(ValueError, match="rows of 3 values for an index of dimension 24"):
        index.search(np.zeros((2, 3), np.float32), 1)


def _faiss_gpus() -> int:
    import faiss

    return faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0


def test_synthetic_distractors_are_labelled_and_reproducible():
    database, queries, _ = _set("cosine")
    part = fs.synthetic_part(database, 20000, seed=5)
    again = fs.synthetic_part(database, 20000, seed=5)
    whole = part.read(0, 20000)
    np.testing.assert_array_equal(whole[8000:12000], again.read(8000, 12000))  # any blocks
    assert (whole >= 0).all()  # the store's rows are non-negative, so are these
    search_set = fs.load_search_set(database, queries, [part])
    described = search_set.describe()
    assert described["synthetic_distractors"] == 20000 and described["originals"] == 400
    result = fs.run_search(search_set, ["Flat"], ks=[1], repeats=1)
    assert result.runs[0]["synthetic_distractors"] == 20000


def test_run_search_sweeps_measures_and_reuses_trained_indexes(tmp_path):
    database, queries, _ = _set("l2", n=800)
    search_set = fs.load_search_set(database, queries)
    result = fs.run_search(search_set, ["IVF{nlist},Flat", "Flat", "HNSW8"], ks=[1, 10],
                           params={"nprobe": [1, 4, 10000], "efSearch": [8, 64]},
                           repeats=2, thresholds=[0.1, 0.3], cache_dir=tmp_path / "idx")
    frame = result.frame()
    nlist = fs.default_nlist(800)
    assert frame["index"].tolist() == ["Flat"] + [f"IVF{nlist},Flat"] * 2 + ["HNSW8"] * 2
    assert frame["params"].tolist()[1:] == ["nprobe=1", "nprobe=4", "efSearch=8",
                                           "efSearch=64"]  # nprobe > nlist left out
    flat = result.runs[0]
    assert flat["recall"][1] == 1.0 and flat["intersection"][10] == 1.0
    assert flat["range"]["from"] == "range_search"
    assert all(r["search_s"] > 0 and len(r["search_runs"]) == 2 for r in result.runs)
    assert result.pareto and all(0 <= p < len(result.runs) for p in result.pareto)
    # a second run with the same inputs and strings loads the trained IVF index
    again = fs.run_search(search_set, ["IVF{nlist},Flat"], ks=[1], params={"nprobe": [4]},
                          repeats=1, cache_dir=tmp_path / "idx")
    assert again.runs[0]["cached_index"] and again.runs[0]["recall"][1] == \
        result.runs[2]["recall"][1]


def test_search_experiment_script(tmp_path, monkeypatch):
    monkeypatch.setenv("RESULTS_DIR", str(tmp_path / "Results"))
    database, queries, _ = _set("cosine")
    root = tmp_path / "features"
    save_descriptors(database, "db", root=root)
    save_descriptors(queries, "queries", root=root)
    command = [sys.executable, str(REPO / "scripts" / "search_experiment.py"),
               "--features-dir", str(root), "--database", "db/m", "--queries", "queries/m",
               "--index", "Flat", "IVF8,Flat", "--param", "nprobe=1,8", "--k", "1", "5",
               "--synthetic", "500", "--repeats", "1", "--name", "s"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "Results" / "s"
    data = json.loads((out / "search.json").read_text())
    assert [r["index"] for r in data["runs"]] == ["Flat", "IVF8,Flat", "IVF8,Flat"]
    assert data["search_set"]["synthetic_distractors"] == 500 and "synthetic" in data["warning"]
    assert data["runs"][0]["recall"]["1"] == 1.0
    experiment = json.loads((out / "experiment.json").read_text())
    assert experiment["script"] == "search_experiment" and "ended_at" in experiment
    assert (out / "search.csv").read_text().count("\n") == 4
    assert (out / "figures" / "recall_at_1_vs_qps.png").stat().st_size > 0
    assert "synthetic" in done.stdout
    # an existing result is never overwritten silently
    again = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert again.returncode != 0 and "--overwrite" in again.stderr
    bad = subprocess.run(command[:-2] + ["--param", "nprobe=x", "--name", "t"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert bad.returncode != 0 and "values must be numbers" in bad.stderr
    assert not (tmp_path / "Results" / "t").exists()


def test_search_set_memory_stays_near_the_database_size(tmp_path):
    """A Flat index over a 96 MiB store: peak memory grows by the index (the database's size)
    and a block or two (2 MiB here), not by a gathered copy of the database nor by the doubling
    of a growing index (libraries imported first: their memory is not the search set's)."""
    rows, dim = 24576, 1024
    store = FloatFeatures(np.ones((rows, dim), np.float32), "l2",
                          ids=tuple(f"d{i}" for i in range(rows)), method="m")
    queries = FloatFeatures(np.ones((4, dim), np.float32), "l2",
                            ids=("q0", "q1", "q2", "q3"), method="m")
    save_descriptors(store, "db", root=tmp_path)
    save_descriptors(queries, "q", root=tmp_path)
    del store
    code = textwrap.dedent(f"""
        import faiss, extractor, fast_search as fs
        import fast_search.data
        from fast_search.experiment import peak_rss_bytes
        fast_search.data.DEFAULT_BLOCK_BYTES = 2 << 20
        before = peak_rss_bytes()
        s = fs.load_search_set("db/m", "q/m", root={str(tmp_path)!r})
        index, _ = fs.prepare_index(s, "Flat", show_progress=False)
        index.search(s.queries, 1)
        print((peak_rss_bytes() - before) / ({rows} * {dim} * 4))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert float(done.stdout) <= 1.3


def test_distractor_views_are_seeded_photo_crops(sample_paths, tmp_path):
    import pickle

    from fast_search.distractors import distractor_views

    photos = list(sample_paths.values())[:6]
    views = distractor_views(photos, 40, seed=3, mosaic=0.0, colour=0.0, flip=0.0)
    again = distractor_views(photos, 40, seed=3, mosaic=0.0, colour=0.0, flip=0.0)
    assert [v.record.image_id for v in views][:2] == ["view_0000000", "view_0000001"]
    for view, twin in zip(views[:5], again[:5], strict=True):
        a, b = np.asarray(view.load()), np.asarray(twin.load())
        np.testing.assert_array_equal(a, b)  # the same pixels for the same seed
    # a crop keeps 10-40% of its (reduced) photo's area, found back in the photo's pixels
    from fast_search.distractors import _source

    for view in views[:10]:
        photo = _source(view.sources[0], 512)
        image = view.load()
        share = image.size[0] * image.size[1] / (photo.size[0] * photo.size[1])
        assert 0.09 <= share <= 0.41
    other = distractor_views(photos, 40, seed=4, mosaic=0.0, colour=0.0, flip=0.0)
    assert not np.array_equal(np.asarray(views[0].load()), np.asarray(other[0].load()))
    # mosaics take four photos; views pickle for DataLoader workers
    mosaics = distractor_views(photos, 20, seed=0, mosaic=1.0)
    assert all(len(v.sources) == 4 for v in mosaics)
    assert pickle.loads(pickle.dumps(mosaics[0])).load().size == mosaics[0].load().size
    with pytest.raises(ValueError, match="min_area"):
        distractor_views(photos, 5, min_area=0.5, max_area=0.2)
    with pytest.raises(ValueError, match="unknown view option"):
        distractor_views(photos, 5, zoom=2)


def test_make_distractors_resumes_and_feeds_a_search(tmp_path, sample_paths, monkeypatch):
    """Views hashed chunk by chunk into a store; a killed run keeps its finished chunks; the
    store serves as distractors of a search."""
    from tests.conftest import load_script

    script = load_script("make_distractors")
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in list(sample_paths)[:5]:
        (folder / f"{name}{sample_paths[name].suffix}").write_bytes(
            sample_paths[name].read_bytes())
    args = ["--photos", f"folder:{folder}", "--count", "50", "--method", "dhash",
            "--chunk-size", "16", "--features-dir", str(tmp_path / "features"),
            "--store-name", "views"]
    import hashing

    real = hashing.describe
    calls = []

    def dying(*a, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(hashing, "describe", dying)
    with pytest.raises(KeyboardInterrupt):
        script.main(args)
    monkeypatch.setattr(hashing, "describe", lambda *a, **kw: (calls.append(1), real(*a, **kw))[1])
    calls.clear()
    assert script.main(args) == 0
    assert len(calls) == 2  # chunks 3 and 4 only
    views = hashing.load_descriptors("views", "dhash", root=tmp_path / "features")
    assert len(views) == 50 and views.records[0].group == "distractor"
    # the finished store equals views hashed in one go
    from fast_search.distractors import distractor_views

    direct = real(distractor_views(sorted(folder.iterdir()), 50), "dhash")
    np.testing.assert_array_equal(views.packed, direct.packed)
    originals = hashing.describe(f"folder:{folder}", "dhash")
    records = tuple(ImageRecord(f"q_{i}", None, source_id=i, attack_id="same")
                    for i in originals.ids)
    queries = originals.with_identity(ids=tuple(r.image_id for r in records), records=records)
    search_set = fs.load_search_set(originals, queries, views)
    assert search_set.n_database == 55
    result = fs.run_search(search_set, ["BFlat"], ks=[1], repeats=1)
    assert result.runs[0]["recall"][1] == 1.0
    assert script.main(args) != 0  # a finished store is not replaced silently


def test_protocol_stores_search_and_galleries(tmp_path, monkeypatch):
    """The study's protocol as stores (search_stores.py), searched (search_experiment.py),
    redrawn (process_results.py) and looked at (explore_neighbors.py), on the sample photos."""
    from tests.conftest import load_script

    monkeypatch.setenv("RESULTS_DIR", str(tmp_path / "Results"))
    features = str(tmp_path / "features")
    stores = load_script("search_stores")
    assert stores.main(["--dataset", "sample", "--n-experimental", "6", "--n-control", "5",
                        "--n-attacked", "3", "--attacks", "jpg_compression:50",
                        "horizontal_flip", "--method", "dhash", "--features-dir", features,
                        "--log-level", "WARNING"]) == 0
    search = load_script("search_experiment")
    assert search.main(["--database", "sample_database/dhash", "--queries",
                        "sample_queries/dhash", "--features-dir", features, "--index", "BFlat",
                        "--k", "1", "3", "--repeats", "1", "--name", "s"]) == 0
    result = json.loads((tmp_path / "Results" / "s" / "search.json").read_text())
    assert result["search_set"]["queries"] == 12 and result["search_set"]["positive_queries"] == 6
    # the recall of exact search equals a brute force over hashing.nearest
    from hashing import load_descriptors

    db = load_descriptors("sample_database", "dhash", root=features)
    q = load_descriptors("sample_queries", "dhash", root=features)
    _, rows = nearest(q, db, k=1)
    truth = np.array([db.ids.index(r.source_id) if r.source_id in db.ids else -1
                      for r in q.records])
    assert result["runs"][0]["recall"]["1"] == pytest.approx(
        (rows[truth >= 0, 0] == truth[truth >= 0]).mean())
    process = load_script("process_results")
    assert process.main([str(tmp_path / "Results" / "s"), "--output",
                         str(tmp_path / "figs")]) == 0
    assert (tmp_path / "figs" / "recall_at_3_vs_qps.pdf").exists()
    assert process.main([str(tmp_path / "Results" / "s")] * 2) != 0  # one search at a time
    explore = load_script("explore_neighbors")
    assert explore.main(["--database", "sample_database/dhash", "--queries",
                         "sample_queries/dhash", "--features-dir", features, "--images",
                         "sample", "--worst", "3", "--k", "2", "--name", "g"]) == 0
    assert (tmp_path / "Results" / "g" / "neighbours.png").stat().st_size > 10000


def test_hashing_benchmark_through_an_index_equals_exact(tmp_path, monkeypatch):
    """--index with every list probed gives the exact run's distances and decisions."""
    from tests.conftest import load_script

    monkeypatch.setenv("RESULTS_DIR", str(tmp_path))
    bench = load_script("evaluate_copy_detection")
    common = ["--dataset", "sample", "--n-experimental", "6", "--n-control", "4",
              "--n-attacked", "3", "--attacks", "jpg_compression:50", "rotation:10",
              "--algorithms", "dhash", "phash", "--no-figures", "--log-level", "WARNING"]
    assert bench.main(common + ["--name", "exact"]) == 0
    assert bench.main(common + ["--name", "ivf", "--index", "IVF2,Flat", "--index-param",
                                "nprobe=2"]) == 0
    import pandas as pd

    exact = pd.read_csv(tmp_path / "exact" / "matches.csv")
    ivf = pd.read_csv(tmp_path / "ivf" / "matches.csv")
    for column in ("distance", "source_distance", "correct"):
        pd.testing.assert_series_equal(exact[column], ivf[column])
    # equal distances may be broken differently (rows in list order); others agree
    same = exact["nearest_id"] == ivf["nearest_id"]
    assert same.mean() > 0.8
    assert bench.main(common + ["--name", "bad", "--index", "IVF2,Nonsense"]) != 0
    assert not (tmp_path / "bad").exists()


def test_recommend_picks_the_best_recall_within_the_budgets():
    runs = [
        {"index": "Flat", "params": {}, "recall": {1: 1.0}, "ms_per_query": 10.0,
         "index_bytes": 1000},
        {"index": "IVF8,Flat", "params": {"nprobe": 1}, "recall": {1: 0.8},
         "ms_per_query": 1.0, "index_bytes": 1100},
        {"index": "IVF8,Flat", "params": {"nprobe": 4}, "recall": {1: 0.95},
         "ms_per_query": 3.0, "index_bytes": 1100},
        {"index": "IVF8,PQ4", "params": {"nprobe": 4}, "recall": {1: 0.95},
         "ms_per_query": 2.0, "index_bytes": 100},
    ]
    result = fs.SearchResult(runs, {})
    assert fs.experiment.recommend(result)["index"] == "Flat"
    assert fs.experiment.recommend(result, max_ms_per_query=5)["index"] == "IVF8,PQ4"  # faster
    assert fs.experiment.recommend(result, max_bytes=1050, max_ms_per_query=5)["index"] == \
        "IVF8,PQ4"
    assert fs.experiment.recommend(result, max_bytes=50) is None
    assert "HNSW32" in fs.experiment.candidate_indexes(512, False)
    assert fs.experiment.candidate_indexes(8, True)[0] == "BFlat"
    from tests.conftest import load_script

    script = load_script("search_experiment")
    assert script.parse_size("2GB") == 2e9 and script.parse_size("1.5MiB") == 1.5 * 2**20
    with pytest.raises(ValueError, match="expected a size"):
        script.parse_size("lots")


def test_strings_and_values_faiss_would_choke_on_fail_in_one_line():
    """Faiss aborts the process (HNSW0), asserts (nprobe=0) or silently drops parts (BIVF4,PQ8);
    each is refused first, with a message naming the string or value."""
    database, queries, _ = _set("cosine", n=60)
    search_set = fs.load_search_set(database, queries)
    for factory, message in (("HNSW0", "HNSW0 is not a valid size"),
                             ("IVF0,Flat", "IVF0 is not a valid size"),
                             ("IVF100,Flat", "needs at least 100 training points"),
                             ("IVF4,PQ8", "needs at least 256 training points")):
        with pytest.raises(ValueError, match=message):
            fs.experiment.check_indexes([factory], search_set)
    assert fs.resolve_factory("IVF{nlist},Flat", 60) == "IVF60,Flat"  # 10 sqrt(N) capped at N
    with pytest.raises(ValueError, match="binary codes take BFlat"):
        fs.build_index("BIVF4,PQ8", "hamming", 8)
    with pytest.raises(ValueError, match="changes the rows"):
        fs.build_index("L2norm,Flat", "jensenshannon", 8)
    index, _ = fs.prepare_index(search_set, "IVF4,Flat")
    with pytest.raises(ValueError, match="nprobe must be a whole number >= 1"):
        index.set_params({"nprobe": 0})
    with pytest.raises(ValueError, match="whole number"):
        index.set_params("nprobe=2.5")
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        index.search(search_set.queries, 1, batch_size=-1)
    lims, d, i = index.range_search(search_set.queries, -0.5)  # no distance is negative
    assert lims[-1] == 0 and len(i) == 0
    js = fs.build_index("Flat", "jensenshannon", 4)
    with pytest.raises(ValueError, match="row 0 sums to 0"):
        js.prepare(np.zeros((1, 4), np.float32))
    assert fs.experiment.parse_search_params(["nprobe=1e3,4"]) == {"nprobe": [1000, 4]}
    with pytest.raises(ValueError, match="--param 'nprobe=0': nprobe takes whole numbers"):
        fs.experiment.parse_search_params(["nprobe=0"])


def test_queries_that_are_database_rows_or_repeat_are_refused():
    database, queries, _ = _set("cosine")
    with pytest.raises(ValueError, match="are database rows .* each would find itself"):
        fs.load_search_set(database, database)
    twice = FloatFeatures(queries.values[:2], "cosine", ids=("q0", "q0"), method="m")
    with pytest.raises(ValueError, match="query id 'q0' repeats"):
        fs.load_search_set(database, twice)
    nan = queries.values.copy()
    nan[3, 2] = np.nan
    with pytest.raises(ValueError, match="query 'q3' holds NaN"):
        fs.load_search_set(database, FloatFeatures(nan, "cosine", ids=queries.ids,
                                                   records=queries.records, method="m"))
    with pytest.raises(TypeError, match="expected a store"):
        fs.load_search_set(5, queries)
    with pytest.raises(ValueError, match="at least 2 rows"):
        fs.synthetic_part(database[:1], 10)
    with pytest.raises(ValueError, match=">= 0"):
        fs.synthetic_part(database, -5)


def test_a_cached_index_is_reused_only_for_the_same_database(tmp_path):
    database, queries, _ = _set("l2", n=500)
    cache = tmp_path / "cache"
    one = fs.load_search_set(database, queries, [fs.synthetic_part(database, 300, seed=0)])
    _, info = fs.prepare_index(one, "IVF8,Flat", cache_dir=cache)
    assert not info["cached"]
    assert fs.prepare_index(one, "IVF8,Flat", cache_dir=cache)[1]["cached"]
    other_seed = fs.load_search_set(database, queries, [fs.synthetic_part(database, 300, seed=7)])
    assert not fs.prepare_index(other_seed, "IVF8,Flat", cache_dir=cache)[1]["cached"]
    changed = FloatFeatures(database.values[::-1].copy(), "l2", ids=database.ids, method="m")
    assert not fs.prepare_index(fs.load_search_set(changed, queries), "IVF8,Flat",
                                cache_dir=cache)[1]["cached"]


def test_an_index_that_misses_the_source_is_not_correct():
    """The benchmark's decision through an index: a farther image returned while the source
    is nearer is a miss, not a hit (the source's exact distance is below the found one)."""
    from PIL import Image

    from hashing import get_algorithm, run_benchmark

    images = [(ImageRecord(f"d{i}", None), Image.new("RGB", (40, 30), colour))
              for i, colour in enumerate(("red", "blue", "green"))]
    queries = [(ImageRecord("q0", None, source_id="d0", attack_id="a"),
                Image.new("RGB", (40, 30), "red"))]

    def wrong_matcher(label, database):
        return lambda q: (np.array([2]), np.array([0.5]))  # the green image, far away

    result = run_benchmark([get_algorithm("ahash")], images, queries, device="cpu",
                           matcher=wrong_matcher)
    row = result.matches.iloc[0]
    assert row["nearest_id"] == "d2" and row["source_distance"] == 0.0
    assert not row["correct"]


def test_make_distractors_refuses_to_resume_other_views(tmp_path, small_photos):
    from tests.conftest import load_script

    script = load_script("make_distractors")
    folder = small_photos
    args = ["--photos", f"folder:{folder}", "--method", "dhash", "--chunk-size", "8",
            "--features-dir", str(tmp_path / "features"), "--store-name", "v"]
    partial = tmp_path / "features" / "v" / "dhash.partial"
    partial.mkdir(parents=True)
    (partial / "views.json").write_text(json.dumps({"seed": 0, "count": 20}))
    assert script.main(args + ["--count", "16", "--seed", "1"]) != 0
    assert script.main(args + ["--count", "16", "--seed", "1", "--overwrite"]) == 0
    assert script.main(["--photos", f"folder:{folder}", "--count", "4", "--method",
                        "dhash", "--view", "mosaic=nan", "--features-dir",
                        str(tmp_path / "features"), "--store-name", "w"]) != 0
    assert script.main(["--photos", f"folder:{folder}", "--count", "4", "--method",
                        "crop_resistant", "--features-dir", str(tmp_path / "features"),
                        "--store-name", "w"]) != 0
    assert not (tmp_path / "features" / "w").exists()


def test_benchmark_search_quality_part(tmp_path):
    """The quality part on small stores: exact search, a refined fast-scan IVF swept with
    nprobe and k_factor_rf, and the target's verdict computed from the runs."""
    database, queries, _ = _set("cosine")
    root = tmp_path / "features"
    save_descriptors(database, "db", root=root)
    save_descriptors(queries, "queries", root=root)
    out = tmp_path / "quality.json"
    command = [sys.executable, str(REPO / "scripts" / "benchmark_search.py"), "--parts",
               "quality", "--features-dir", str(root), "--database", "db/m", "--query-store",
               "queries/m", "--quality-indexes", "Flat", "IVF8,PQ8x4fs,RFlat",
               "--quality-params", "nprobe=1,8", "k_factor_rf=4", "--output", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    quality = json.loads(out.read_text())["quality"]
    runs = quality["runs"]
    assert [(r["index"], r["params"]) for r in runs] == [
        ("Flat", {}), ("IVF8,PQ8x4fs,RFlat", {"nprobe": 1, "k_factor_rf": 4}),
        ("IVF8,PQ8x4fs,RFlat", {"nprobe": 8, "k_factor_rf": 4})]
    assert quality["exact"]["recall"]["1"] == 1.0 and quality["threads"] == 1
    exact = quality["exact"]
    meets = [r for r in runs[1:] if r["recall"]["1"] >= 0.95 * exact["recall"]["1"]
             and r["queries_per_s"] >= 10 * exact["queries_per_s"]]
    assert quality["target_met"] == bool(meets)


@pytest.mark.skipif(not _faiss_gpus(), reason="needs faiss-gpu and a GPU")
@pytest.mark.parametrize("factory", ["Flat", "IVF16,Flat"])
def test_gpu_index_equals_the_cpu_one(factory):
    database, queries, _ = _set("cosine", n=600)
    search_set = fs.load_search_set(database, queries)
    cpu, _ = fs.prepare_index(search_set, factory, device="cpu")
    gpu, _ = fs.prepare_index(search_set, factory, device="cuda")
    if "IVF" in factory:  # every list probed: exact, whatever each device's k-means found
        for index in (cpu, gpu):
            index.set_params({"nprobe": 16})
    d1, i1 = cpu.search(search_set.queries, 10)
    d2, i2 = gpu.search(search_set.queries, 10)
    assert fs.knn_intersection(i2, i1, 10) > 0.999
    np.testing.assert_allclose(d1, d2, atol=1e-4)


# --- the scripts through the output mechanism (issue 25): defects each with its test -----------


def _one_error_line(capsys, *words):
    """The run's stderr holds one ``error:`` line naming ``words``, and no traceback."""
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    assert all(w in errors[0] for w in words), errors[0]
    return errors[0]


def test_search_experiment_read_only_index_cache_is_one_error_line(tmp_path, monkeypatch,
                                                                   capsys):
    """A cache folder this run cannot write is refused before any index is trained; a write
    that fails later (refused by the file system, or Faiss's own write error) is one line
    too, and the result's experiment.json keeps it."""
    import errno
    import os
    from pathlib import Path

    from tests.conftest import load_script

    monkeypatch.setenv("RESULTS_DIR", str(tmp_path / "Results"))
    database, queries, _ = _set("cosine", n=200)
    root = tmp_path / "features"
    save_descriptors(database, "db", root=root)
    save_descriptors(queries, "queries", root=root)
    cache = tmp_path / "cache"
    cache.mkdir()
    cache.chmod(0o555)
    script = load_script("search_experiment")
    common = ["--features-dir", str(root), "--database", "db/m", "--queries", "queries/m",
              "--index", "IVF4,Flat", "--k", "1", "--repeats", "1", "--no-figures",
              "--index-cache", str(cache)]
    if os.access(cache, os.W_OK):  # root writes anywhere: the check is what is tested
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == cache
                            else real_access(p, mode, **kw))
    assert script.main(common + ["--name", "a"]) == 2
    _one_error_line(capsys, "--index-cache", str(cache), "not writable")
    assert not (tmp_path / "Results" / "a").exists() and not list(cache.iterdir())
    monkeypatch.undo()
    monkeypatch.setenv("RESULTS_DIR", str(tmp_path / "Results"))
    cache.chmod(0o755)

    # the write itself refused (what os.open raises in a read-only folder), or Faiss's error
    from fast_search.index import SearchIndex

    for name, error in (("b", PermissionError(errno.EACCES, "Permission denied",
                                              str(cache / "x.faiss"))),
                        ("c", RuntimeError("Error: 'f' failed: could not open x for writing"))):
        def refused(self, path, error=error):
            raise error

        monkeypatch.setattr(SearchIndex, "save", refused)
        assert script.main(common + ["--name", name]) == 2
        line = _one_error_line(capsys)
        assert ("permission denied" in line.lower()) if name == "b" else (
            "cannot write the index cache" in line)
        record = json.loads((tmp_path / "Results" / name / "experiment.json").read_text())
        assert "error" in record and "ended_at" in record
    assert not list(cache.iterdir())


def test_search_stores_refuses_negative_counts_and_an_empty_prefix(tmp_path, capsys):
    """``--n-attacked -1`` once sliced [:-1] (all but one); ``--prefix ''`` meant the default.
    Both are refused when parsed, before any store is written."""
    from tests.conftest import load_script

    script = load_script("search_stores")
    features = tmp_path / "features"
    common = ["--dataset", "sample", "--method", "dhash", "--attacks", "horizontal_flip",
              "--features-dir", str(features)]
    for flag, value in (("--n-attacked", "-1"), ("--n-attacked", "0"),
                        ("--n-experimental", "-1"), ("--n-control", "-1"),
                        ("--prefix", ""), ("--prefix", "a/b")):
        with pytest.raises(SystemExit) as exit_:
            script.main([*common, flag, value])
        assert exit_.value.code == 2
        last = capsys.readouterr().err.strip().splitlines()[-1]
        assert flag in last, last
    # more than a group holds: one line, nothing written
    assert script.main([*common, "--n-experimental", "3", "--n-control", "3",
                        "--n-attacked", "4"]) == 2
    _one_error_line(capsys, "--n-attacked 4")
    # a method whose codes cannot be stored is refused before any image is made
    assert script.main(["--dataset", "sample", "--method", "crop_resistant", "--attacks",
                        "horizontal_flip", "--features-dir", str(features)]) == 2
    _one_error_line(capsys, "crop_resistant")
    assert not features.exists() or not any(features.rglob("*.npy"))


def test_make_distractors_says_what_it_stored_and_refuses_an_empty_store_name(
        tmp_path, sample_paths, capsys):
    """Views of a photo that cannot be read are skipped: the message gives the views stored
    and skipped (the store's own count), not the count asked for."""
    from PIL import Image

    from tests.conftest import load_script

    script = load_script("make_distractors")
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("chelsea", "coffee"):
        with Image.open(sample_paths[name]) as image:
            image.convert("RGB").resize((160, 120)).save(folder / f"{name}.png")
    with Image.open(sample_paths["rocket"]) as image:
        image.convert("RGB").resize((160, 120)).save(tmp_path / "rocket.png")
    # a PNG whose header reads but whose pixels are cut: listed, then unreadable
    whole = (tmp_path / "rocket.png").read_bytes()
    (folder / "cut.png").write_bytes(whole[: len(whole) // 2])
    features = tmp_path / "features"
    args = ["--photos", f"folder:{folder}", "--count", "12", "--method", "dhash",
            "--features-dir", str(features), "--log-level", "ERROR"]
    assert script.main([*args, "--store-name", "v"]) == 0
    out = capsys.readouterr().out
    stored = len(np.load(features / "v" / "dhash.npy"))
    assert 0 < stored < 12
    assert f"{stored} of the 12 views" in out and f"{12 - stored} skipped" in out
    assert "cut.png" in out and "(12 views" not in out
    sidecar = json.loads((features / "v" / "dhash.json").read_text())
    assert len(sidecar["bad"]) == 12 - stored
    # an empty --store-name is refused (it once meant the default), as is a path
    for bad in ("", "../x", "a/b"):
        with pytest.raises(SystemExit) as exit_:
            script.main([*args, "--store-name", bad])
        assert exit_.value.code == 2
        assert "--store-name" in capsys.readouterr().err.strip().splitlines()[-1]
    assert sorted(p.name for p in features.iterdir()) == ["v"]
    # --features-dir that is a file: refused when parsed, the file untouched
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit):
        script.main([*args[:-4], "--features-dir", str(tmp_path / "notes.txt"),
                     "--store-name", "w"])
    assert "--features-dir" in capsys.readouterr().err
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_explore_neighbors_clamps_k_to_the_rows(tmp_path, monkeypatch, capsys):
    """``--k`` more than the database's rows drew empty panels (for minutes at 1000): it is
    clamped to the rows with a note, and a k past what one figure can show is refused."""
    from tests.conftest import load_script

    monkeypatch.setenv("RESULTS_DIR", str(tmp_path / "Results"))
    database, queries, _ = _set("cosine", n=10, n_queries=4, n_controls=1)
    root = tmp_path / "features"
    save_descriptors(database, "db", root=root)
    save_descriptors(queries, "queries", root=root)
    script = load_script("explore_neighbors")
    common = ["--features-dir", str(root), "--database", "db/m", "--queries", "queries/m",
              "--worst", "2"]
    with pytest.raises(SystemExit) as exit_:
        script.main([*common, "--k", "1000", "--name", "big"])
    assert exit_.value.code == 2 and "--k" in capsys.readouterr().err.splitlines()[-1]
    assert script.main([*common, "--k", "50", "--name", "g"]) == 0
    out = capsys.readouterr().out
    assert "--k 50 is more than the 10 database rows: showing 10" in out
    record = json.loads((tmp_path / "Results" / "g" / "experiment.json").read_text())
    assert record["config"]["k_shown"] == 10 and "ended_at" in record
    assert (tmp_path / "Results" / "g" / "neighbours.png").stat().st_size > 0
