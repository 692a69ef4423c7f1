"""Clustering against independent oracles: SciPy's linkage and cuts, scikit-learn's DBSCAN,
HDBSCAN, k-means and measures on dense matrices, NumPy brute force, hand-made examples."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy.cluster.hierarchy import cut_tree, fcluster, linkage
from scipy.sparse.csgraph import connected_components
from scipy.spatial.distance import cdist, pdist, squareform
from sklearn.cluster import DBSCAN, HDBSCAN
from sklearn.metrics import adjusted_rand_score

import clustering as cl
from data_retrieval import ImageRecord
from hashing import BinaryCodes, FloatFeatures
from tests.conftest import compiled_or_fallback

REPO = Path(__file__).resolve().parents[1]


def _blobs(n=240, dim=12, groups=8, seed=0, spread=3.0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(groups, dim)) * spread
    truth = rng.integers(0, groups, n)
    return (centres[truth] + rng.normal(size=(n, dim))).astype(np.float32), truth


def _same_partition(a, b) -> bool:
    return adjusted_rand_score(a, b) == 1.0


def _naive_cut(tree, n, count):
    """The partition after the first n - count merges, with Python sets."""
    groups = {i: {i} for i in range(n)}
    for i in range(n - count):
        a, b = int(tree[i, 0]), int(tree[i, 1])
        groups[n + i] = groups.pop(a) | groups.pop(b)
    labels = np.empty(n, int)
    for j, members in enumerate(groups.values()):
        labels[list(members)] = j
    return labels


@pytest.mark.parametrize("method", cl.LINKAGES)
def test_hierarchical_equals_scipy_in_euclidean(method):
    x, _ = _blobs()
    counts = [2, 5, 8, 40]
    result = cl.cluster(x, "hierarchical", "l2", linkage=method, n_clusters=counts,
                        distance_threshold=[2.5, 4.0])
    tree = linkage(x.astype(np.float64), method=method, metric="euclidean")
    np.testing.assert_allclose(result.tree[:, 2], tree[:, 2], rtol=1e-4, atol=1e-4)
    assert result.n_clusters()[:4] == counts
    for count, labels in zip(counts, result.labels, strict=False):
        if method in ("centroid", "median"):  # inversions: cut_tree is wrong there (SciPy's docs)
            assert _same_partition(_naive_cut(tree, len(x), count), labels)
        else:
            assert _same_partition(cut_tree(tree, n_clusters=count)[:, 0], labels)
    for t, labels in zip([2.5, 4.0], result.labels[4:], strict=True):
        assert _same_partition(fcluster(tree, t, criterion="distance"), labels)


@pytest.mark.parametrize("method", ["single", "complete", "average", "weighted"])
def test_hierarchical_other_metrics_equal_scipy(method):
    x, _ = _blobs(n=150)
    result = cl.cluster(FloatFeatures(x, "cosine"), "hierarchical", linkage=method,
                        n_clusters=[3, 8])
    tree = linkage(pdist(x.astype(np.float64), "cosine") / 2, method=method)  # (1 - cos) / 2
    np.testing.assert_allclose(result.tree[:, 2], tree[:, 2], atol=1e-5)
    for labels, count in zip(result.labels, [3, 8], strict=True):
        assert _same_partition(cut_tree(tree, n_clusters=count)[:, 0], labels)
    bits = np.random.default_rng(1).random((120, 42)) > 0.5
    codes = BinaryCodes(np.packbits(bits, axis=1), 42)
    reference = pdist(bits, "hamming")  # divided by 42 bits, not the 48 packed
    if method == "single":  # computed on the vectors; its heights do not depend on ties
        result = cl.cluster(codes, "hierarchical", linkage=method, n_clusters=[4])
        np.testing.assert_allclose(result.tree[:, 2], linkage(reference, method)[:, 2],
                                   atol=1e-9)
    else:  # Hamming distances tie: trees differ by tie-breaking; the matrix must not
        np.testing.assert_allclose(cl.condensed_distances(cl.as_points(codes)), reference,
                                   atol=1e-7)
    l1 = cl.cluster(x, "hierarchical", "l1", linkage=method, n_clusters=[5])
    np.testing.assert_allclose(l1.tree[:, 2], linkage(pdist(x.astype(np.float64),
                                                            "cityblock"), method)[:, 2],
                               rtol=1e-5)


def test_hierarchical_refusals_and_memory_budget():
    x, _ = _blobs(n=100)
    with pytest.raises(ValueError, match="ward linkage is defined on Euclidean"):
        cl.cluster(FloatFeatures(x, "cosine"), "hierarchical", linkage="ward", n_clusters=[3])
    with pytest.raises(ValueError, match="unknown linkage 'wards'"):
        cl.cluster(x, "hierarchical", "l2", linkage="wards", n_clusters=[3])
    with pytest.raises(ValueError, match="hierarchical takes .*got eps"):
        cl.cluster(x, "hierarchical", "l2", eps=0.1)
    with pytest.raises(ValueError, match="unknown clustering method 'kmedoids'"):
        cl.cluster(x, "kmedoids", "l2")
    with pytest.raises(ValueError, match=r"n_clusters must be in \[1, 100\]"):
        cl.cluster(x, "hierarchical", "l2", linkage="single", n_clusters=[101])
    with pytest.raises(ValueError, match="needs n_clusters or distance_threshold"):
        cl.cluster(x, "hierarchical", "l2", linkage="single")
    need = cl.condensed_bytes(100)
    assert need == 8 * 4950  # 100 x 99 / 2 float64 distances
    # the matrix and one block of distances in the making (all 100 x 100 here, 32 bytes each)
    assert cl.linkage_bytes(100) == need + 32 * 100 * 100
    with pytest.raises(MemoryError, match=r"at most (\d+) rows fit") as info:
        cl.cluster(x, "hierarchical", "l2", linkage="average", n_clusters=[3],
                   max_memory=need / 2)
    fit = int(re.search(r"at most (\d+) rows fit", str(info.value)).group(1))
    assert cl.linkage_bytes(fit) <= need / 2 < cl.linkage_bytes(fit + 1)
    assert "connectivity" in str(info.value)
    with pytest.raises(MemoryError, match="distance lookup takes about"):
        cl.cluster(x, "hierarchical", "l2", linkage="average", n_clusters=[3],
                   connectivity=5, max_memory=need / 2)
    # single and ward linkage work on the vectors: no matrix, no refusal
    assert cl.cluster(x, "hierarchical", "l2", linkage="ward", n_clusters=[3],
                      max_memory=need / 2).n_clusters() == [3]


@pytest.mark.parametrize("linkage_name, metric", [("average", "l2"), ("complete", "l2"),
                                                  ("average", "cosine")])
def test_connectivity_linkage_equals_scikit_learn(linkage_name, metric):
    # ours hands scikit-learn the edge distances through a lookup; the reference lets it
    # gather the vectors of both ends of every edge, as it does by default
    from sklearn.cluster import AgglomerativeClustering

    x, _ = _blobs(n=200)
    result = cl.cluster(x, "hierarchical", metric, linkage=linkage_name, n_clusters=[8, 20],
                        connectivity=10)
    from clustering.graph import join_components, knn_graph

    graph = join_components(knn_graph(cl.as_points(x, metric), 10))[0]
    graph.data[:] = 1
    for count, labels in zip([8, 20], result.labels, strict=True):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its note on joining the graph's components
            model = AgglomerativeClustering(
                n_clusters=count, linkage=linkage_name, connectivity=graph,
                metric="cosine" if metric == "cosine" else "euclidean",
                compute_distances=True).fit(x)
        assert _same_partition(model.labels_, labels)
    assert any("connectivity graph" in note for note in result.notes)


@pytest.mark.parametrize("metric", ["l2", "l1", "cosine"])
def test_dbscan_on_the_graph_equals_dense_dbscan(metric):
    x, _ = _blobs(n=200, spread=2.0)
    x = np.concatenate([x, x[:6]])  # exact duplicates: explicit zeros in the graph
    ids = [f"i{i}" for i in range(len(x))]
    features = FloatFeatures(x, metric, ids=ids)
    dense = {"l2": cdist(x, x), "l1": cdist(x, x, "cityblock"),
             "cosine": cdist(x, x, "cosine") / 2}[metric]
    scale = np.median(dense)
    eps = [scale * f for f in (0.15, 0.3, 0.45)]
    result = cl.cluster(features, "dbscan", eps=eps, min_samples=[3, 6])
    assert len(result.labels) == 6
    for setting, labels in zip(result.settings, result.labels, strict=True):
        ref = DBSCAN(eps=setting["eps"], min_samples=setting["min_samples"],
                     metric="precomputed").fit(dense).labels_
        np.testing.assert_array_equal(cl.relabel(ref), labels)


def test_dbscan_on_hamming_codes_equals_dense_dbscan():
    rng = np.random.default_rng(3)
    base = rng.random((10, 24)) > 0.5
    bits = base[rng.integers(0, 10, 150)] ^ (rng.random((150, 24)) < 0.05)
    codes = BinaryCodes(np.packbits(bits, axis=1), 24)
    dense = squareform(pdist(bits, "hamming"))
    result = cl.cluster(codes, "dbscan", eps=[1 / 24, 3 / 24], min_samples=4)
    for setting, labels in zip(result.settings, result.labels, strict=True):
        ref = DBSCAN(eps=setting["eps"], min_samples=4, metric="precomputed").fit(dense)
        np.testing.assert_array_equal(cl.relabel(ref.labels_), labels)


def test_hdbscan_on_a_complete_graph_equals_dense_hdbscan():
    x, _ = _blobs(n=160, spread=2.5)
    dense = cdist(x, x)
    result = cl.cluster(x, "hdbscan", "l2", min_cluster_size=[5, 12], k=len(x) - 1)
    for setting, labels in zip(result.settings, result.labels, strict=True):
        ref = HDBSCAN(min_cluster_size=setting["min_cluster_size"], copy=True,
                      metric="precomputed").fit(dense).labels_
        np.testing.assert_array_equal(cl.relabel(ref), labels)
    # the default k-NN graph: far blobs fall apart into components, joined at the top
    far, truth = _blobs(n=160, spread=40.0, groups=4)
    sparse = cl.cluster(far, "hdbscan", "l2", min_cluster_size=5)
    assert any("components" in note for note in sparse.notes)
    assert _same_partition(truth, sparse.labels[0])
    with pytest.raises(ValueError, match="pca is for float features"):
        cl.cluster(BinaryCodes(np.zeros((10, 2), np.uint8), 16), "hdbscan", pca=2)
    projected = cl.cluster(far, "hdbscan", "l2", min_cluster_size=5, pca=3)
    assert any("PCA to 3 dimensions" in note for note in projected.notes)


def test_duplicates_are_components_of_the_threshold_graph():
    x, _ = _blobs(n=200, spread=1.5)
    dense = cdist(x, x)
    thresholds = [1.0, 2.0, 3.0]
    result = cl.cluster(x, "duplicates", "l2", threshold=thresholds)
    for t, labels in zip(thresholds, result.labels, strict=True):
        ref = connected_components(dense <= t, directed=False)[1]
        assert _same_partition(ref, labels)
        assert (labels >= 0).all()
    with pytest.raises(ValueError, match="needs a threshold"):
        cl.cluster(x, "duplicates", "l2")


def test_kmeans_finds_separated_blobs_like_scikit_learn():
    from sklearn.cluster import KMeans

    x, truth = _blobs(n=300, spread=30.0, groups=5)
    result = cl.cluster(x, "kmeans", "l2", n_clusters=[5], nredo=10)
    ref = KMeans(5, n_init=10, random_state=0).fit(x).labels_
    assert _same_partition(ref, result.labels[0]) and _same_partition(truth, result.labels[0])
    bits = np.packbits(np.repeat(np.eye(4, 32, 0, bool) | np.eye(4, 32, 8, bool), 20, 0), axis=1)
    codes = cl.cluster(BinaryCodes(bits, 32), "kmeans", n_clusters=[4])
    assert codes.n_clusters() == [4]
    with pytest.raises(ValueError, match="k-means minimises squared Euclidean"):
        cl.cluster(x, "kmeans", "l1", n_clusters=[3])


def _faiss_gpus() -> int:
    import faiss

    return faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0


@pytest.mark.skipif(not _faiss_gpus(), reason="needs faiss-gpu and a GPU")
def test_kmeans_on_the_gpu_finds_the_blobs_too():
    x, truth = _blobs(n=300, spread=30.0, groups=5)
    result = cl.cluster(x, "kmeans", "l2", n_clusters=[5], nredo=10, device="cuda")
    assert _same_partition(truth, result.labels[0])


def test_external_measures_against_scikit_learn_and_a_hand_count():
    from sklearn import metrics

    truth = np.array(["a", "a", "a", "b", "b", "c"])
    labels = np.array([0, 0, 1, 1, 1, -1])
    m = cl.external_measures(truth, labels)
    # pairs: same truth {a: 3 pairs, b: 1} = 4; same cluster {0: 1 pair, 1: 3} = 4;
    # in both: (a0, a1) and (b3, b4) = 2 -> precision 2/4, recall 2/4
    assert m["pair_precision"] == 0.5 and m["pair_recall"] == 0.5 and m["pair_f1"] == 0.5
    # best IoU: a -> cluster 0 (2 / 3), b -> cluster 1 (2 / 3), c -> its noise singleton (1)
    assert m["mean_iou"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
    singles = np.array([0, 0, 1, 1, 1, 2])  # noise counts as a cluster of one
    assert m["v_measure"] == pytest.approx(metrics.v_measure_score(truth, singles))
    assert m["ari"] == pytest.approx(metrics.adjusted_rand_score(truth, singles))
    assert m["ami"] == pytest.approx(metrics.adjusted_mutual_info_score(truth, singles))
    assert (m["n_clusters"], m["n_noise"], m["n_groups"]) == (2, 1, 3)


def test_cluster_attributes_equal_brute_force():
    x, _ = _blobs(n=180, spread=2.0)
    labels = cl.cluster(x, "hierarchical", "l2", linkage="average",
                        n_clusters=[6]).labels[0]
    labels[:5] = -1  # noise is no cluster
    points = cl.as_points(x, "l2")
    # few neighbours: most separations need the exact search
    table = cl.cluster_attributes(points, labels, neighbours=cl.knn(points, 3))
    dense = cdist(x.astype(np.float64), x.astype(np.float64))
    for _, row in table.iterrows():
        inside = np.flatnonzero(labels == row["cluster"])
        outside = np.flatnonzero((labels >= 0) & (labels != row["cluster"]))
        block = dense[np.ix_(inside, inside)]
        assert row["size"] == len(inside)
        assert row["diameter"] == pytest.approx(block.max(), rel=1e-4)
        medoid = inside[np.argmin(block.sum(axis=1))]
        assert row["medoid"] == str(medoid)
        assert row["dispersion"] == pytest.approx(block.sum(axis=1).min() / (len(inside) - 1),
                                                  rel=1e-4)
        sep = dense[np.ix_(inside, outside)]
        assert row["separation"] == pytest.approx(sep.min(), rel=1e-4)
        nearest_row = outside[np.unravel_index(sep.argmin(), sep.shape)[1]]
        assert row["nearest_cluster"] == labels[nearest_row]


def test_radius_graph_is_symmetric_with_explicit_zeros():
    x = np.array([[0, 0], [0, 0], [1, 0], [5, 5]], np.float32)
    graph = cl.radius_graph(cl.as_points(x, "l2"), 1.0)
    dense = graph.toarray()
    np.testing.assert_array_equal(dense, dense.T)
    rows = np.repeat(np.arange(4), np.diff(graph.indptr))
    pairs = set(zip(rows.tolist(), graph.indices.tolist(), strict=True))
    assert {(0, 1), (1, 0), (0, 0), (3, 3), (0, 2), (2, 1)} <= pairs and (0, 3) not in pairs
    stored = dict(zip(zip(rows.tolist(), graph.indices.tolist(), strict=True),
                      graph.data.tolist(), strict=True))
    assert stored[(0, 1)] == 0 and stored[(0, 2)] == 1  # the duplicate pair is stored, at 0


def test_inputs_are_checked():
    with pytest.raises(ValueError, match="needs a metric"):
        cl.as_points(np.zeros((3, 2), np.float32))
    with pytest.raises(ValueError, match="at least 2 rows"):
        cl.as_points(np.zeros((1, 2), np.float32), "l2")
    bad = np.zeros((3, 2), np.float32)
    bad[1, 0] = np.nan
    with pytest.raises(ValueError, match="features of b hold NaN"):
        cl.as_points(FloatFeatures(bad, "l2", ids=("a", "b", "c")))
    with pytest.raises(ValueError, match="hamming only"):
        cl.as_points(BinaryCodes(np.zeros((3, 1), np.uint8), 8), "cosine")
    with pytest.raises(ValueError, match="appears twice"):
        cl.as_points(FloatFeatures(np.zeros((2, 2), np.float32), "l2", ids=("a", "a")))


def _copies_store(root: Path) -> None:
    """Three originals with three near copies each, as a store with records."""
    from hashing import save_descriptors

    rng = np.random.default_rng(0)
    base = rng.normal(size=(3, 16))
    values, records = [], []
    for i in range(3):
        records.append(ImageRecord(f"o{i}", None))
        values.append(base[i])
        for j in range(3):
            records.append(ImageRecord(f"o{i}_c{j}", None, source_id=f"o{i}", attack_id="x"))
            values.append(base[i] + rng.normal(size=16) * 0.05)
    features = FloatFeatures(np.array(values, np.float32), "cosine",
                             ids=tuple(r.image_id for r in records), records=tuple(records),
                             method="m")
    save_descriptors(features, "copies", root=root)


def test_cluster_script_writes_results(tmp_path, monkeypatch):
    monkeypatch.setenv("RESULTS_DIR", str(tmp_path / "Results"))
    root = tmp_path / "features"
    _copies_store(root)
    command = [sys.executable, str(REPO / "scripts" / "cluster.py"), "--features", "copies/m",
               "--features-dir", str(root), "--method", "hierarchical", "--linkage",
               "average", "--n-clusters", "2", "3", "4", "--name", "c", "--log-level",
               "WARNING"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "Results" / "c"
    data = json.loads((out / "clusters.json").read_text())
    three = next(s for s in data["settings"] if s["setting"] == {"n_clusters": 3})
    assert three["measures"]["v_measure"] == 1.0 and three["measures"]["pair_f1"] == 1.0
    assert sorted(three["clusters"]["size"]) == [4, 4, 4]
    lines = (out / "assignments.csv").read_text().splitlines()
    assert lines[0] == "image_id,true_group,n_clusters=2,n_clusters=3,n_clusters=4"
    assert len(lines) == 13
    assert (out / "figures" / "measures_vs_n_clusters.png").stat().st_size > 0
    assert (out / "figures" / "dendrogram.png").stat().st_size > 0
    assert "index.html" in {p.name for p in out.iterdir()}
    assert "n_clusters=3" in (out / "index.html").read_text()
    assert json.loads((out / "experiment.json").read_text())["script"] == "cluster"
    again = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert again.returncode != 0 and "--overwrite" in again.stderr
    ward = subprocess.run(command[:8] + ["--linkage", "ward", "--name", "w"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert ward.returncode != 0 and "Euclidean" in ward.stderr
    # without --linkage, cosine features get average linkage (ward needs l2) and the cuts by
    # count and by distance both run and are drawn
    mixed = subprocess.run(command[:8] + ["--n-clusters", "3", "--distance-threshold", "0.2",
                                          "--name", "m"], capture_output=True, text=True,
                           cwd=tmp_path)
    assert mixed.returncode == 0, mixed.stderr
    settings = json.loads((tmp_path / "Results" / "m" / "clusters.json").read_text())
    assert settings["params"]["linkage"] == "average"
    figures = {p.name for p in (tmp_path / "Results" / "m" / "figures").iterdir()}
    assert {"measures_vs_n_clusters.png", "measures_vs_distance_threshold.png"} <= figures
    l1 = subprocess.run(command[:6] + ["--method", "dbscan", "--metric", "l1", "--name", "d"],
                        capture_output=True, text=True, cwd=tmp_path)
    assert l1.returncode != 0 and "--eps is required" in l1.stderr


def test_galleries_make_on_the_fly_copies_again(tmp_path):
    """A copies store of search_stores.py holds no file of its attacked images: galleries make
    each one again from its source with the store's seed, the pixels its features came from."""
    from clustering.points import made_from
    from clustering.report import image_loader
    from generator import AttackedImage, parse_attack_id
    from generator.text import default_font_path

    root = tmp_path / "features"
    command = [sys.executable, str(REPO / "scripts" / "search_stores.py"), "--dataset",
               "sample", "--method", "dhash", "--copies", "--attacks", "gaussian_noise_0.05",
               "rotation_10_and_rescaling", "text_length_10", "--seed", "7", "--features-dir",
               str(root), "--log-level", "WARNING"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    points = cl.as_points("sample_copies/dhash", root=root)
    # the default font recorded as resolved here (it depends on the machine)
    assert points.made == {"seed": 7, "options": {"font": default_font_path()},
                           "sources_are_originals": True}
    assert points.take([0, 1]).made == points.made
    sources = {r.image_id: r for r in points.records if r.attack_id is None}
    copies = list({r.attack_id: r for r in reversed(points.records)
                   if r.attack_id is not None}.values())  # one of each attack
    assert len(copies) == 3
    assert copies and all(r.path is None for r in copies)
    load = image_loader(points.records, points.made)
    wrong_seed = image_loader(points.records, {**points.made, "seed": 8})
    for record in copies:
        expected = AttackedImage(record, sources[record.source_id],
                                 parse_attack_id(record.attack_id), 7).load()
        expected.thumbnail((192, 192))
        np.testing.assert_array_equal(np.asarray(load(record)), np.asarray(expected))
        if record.attack_id.startswith("gaussian_noise"):  # random: the seed matters
            assert not np.array_equal(np.asarray(wrong_seed(record)), np.asarray(expected))
    # without the store's seed, or without the source among the records: nothing to show
    assert image_loader(points.records, None)(copies[0]) is None
    assert image_loader([copies[0]], points.made)(copies[0]) is None
    assert load(sources[copies[0].source_id]) is not None  # an original: its file

    # an id a+b is one composed attack only when every source was an original (else it can
    # be b made on a written copy a); text needs the recorded font
    from data_retrieval import ImageRecord
    from generator import compose

    source = sources[copies[0].source_id]
    composed = compose(parse_attack_id("gaussian_noise_0.05"), parse_attack_id("text_length_10"))
    record = ImageRecord(f"{source.image_id}_{composed.id}", None, source_id=source.image_id,
                         attack_id=composed.id)
    assert "+" in record.attack_id
    expected = AttackedImage(record, source, composed, 7).load()
    expected.thumbnail((192, 192))
    recorded = {"seed": 7, "options": {"font": default_font_path()},
                "sources_are_originals": True}
    np.testing.assert_array_equal(np.asarray(image_loader(points.records, recorded)(record)),
                                  np.asarray(expected))
    for unknown in ({**recorded, "sources_are_originals": None},  # a chain, perhaps
                    {**recorded, "options": None}):  # which font?
        assert image_loader(points.records, unknown)(record) is None
    assert made_from({"copies": {"seed": 3}}) == {  # a store from before options were kept
        "seed": 3, "options": None, "sources_are_originals": None}


def test_cluster_script_budget_defaults_to_the_memory_available(tmp_path, monkeypatch,
                                                                  capsys):
    from tests.conftest import load_script

    monkeypatch.setenv("RESULTS_DIR", str(tmp_path / "Results"))
    root = tmp_path / "features"
    _copies_store(root)
    script = load_script("cluster")
    # 12 rows: the condensed matrix and its block take 8 x 66 + 32 x 144 = 5,136 bytes
    monkeypatch.setattr(script, "available_memory", lambda: 5000)  # 80%: 4,000 bytes
    argv = ["--features", "copies/m", "--features-dir", str(root), "--method",
            "hierarchical", "--linkage", "average", "--n-clusters", "3", "--no-figures"]
    assert script.main([*argv, "--name", "a"]) != 0
    assert "over the budget of 0.00 GB; at most" in capsys.readouterr().err
    monkeypatch.setattr(script, "available_memory", lambda: 10_000)  # 8,000 bytes: fits
    assert script.main([*argv, "--name", "b"]) == 0
    monkeypatch.setattr(script, "available_memory", lambda: 5000)
    assert script.main([*argv, "--name", "c", "--max-memory", "1MB"]) == 0  # given: used


def test_threshold_from_a_digest_is_its_operating_point(tmp_path):
    import pandas as pd

    from hashing.evaluation.benchmark import NEGATIVE, POSITIVE, BenchmarkResult
    from hashing.evaluation.digest import write_digest

    positives = [0.05, 0.1, 0.15, 0.25]
    negatives = [0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75]
    distances = positives + negatives
    n = len(distances)
    matches = pd.DataFrame({
        "algorithm": "dhash", "query_id": [f"q{i}" for i in range(n)], "source_id": "a",
        "attack_id": "x", "kind": [POSITIVE] * 4 + [NEGATIVE] * 10, "nearest_id": "a",
        "nearest_index": 0, "source_index": [0] * 4 + [-1] * 10, "distance": distances,
        "source_distance": distances, "correct": [True] * 4 + [False] * 10})
    timing = pd.DataFrame({"algorithm": ["dhash"], "seconds": [1.0], "images": [1],
                           "seconds_per_image": [1.0]})
    write_digest(BenchmarkResult(pd.DataFrame({"image_id": ["a"], "path": ["a.png"]}),
                                 matches, timing, timing), tmp_path / "d")
    # no negative within 0.25: the last threshold with FPR 0 is the farthest positive;
    # one negative in ten (FPR 0.1) is allowed at 0.3
    assert cl.threshold_from_digest(tmp_path / "d") == pytest.approx(0.25)
    assert cl.threshold_from_digest(tmp_path / "d", "dhash", fpr=0.1) == pytest.approx(0.3)
    with pytest.raises(ValueError, match="has no algorithm 'phash'; it has dhash"):
        cl.threshold_from_digest(tmp_path / "d", "phash")


def test_find_duplicates_groups_a_folder(small_photos, tmp_path, monkeypatch):
    from PIL import Image

    monkeypatch.setenv("RESULTS_DIR", str(tmp_path / "Results"))
    with Image.open(small_photos / "chelsea.png") as image:
        image.resize((320, 240)).save(small_photos / "chelsea_big.jpg", quality=90)
    (small_photos / "broken.png").write_bytes(b"not an image")
    command = [sys.executable, str(REPO / "scripts" / "find_duplicates.py"), str(small_photos),
               "--method", "dhash", "--name", "dups", "--log-level", "WARNING"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "broken.png" in done.stderr  # reported, skipped
    out = tmp_path / "Results" / "dups"
    table = (out / "duplicates.csv").read_text().splitlines()
    assert table[0] == "group,image,image_id,distance"
    assert sorted(line.split(",")[2] for line in table[1:]) == ["chelsea", "chelsea_big"]
    assert (out / "index.html").is_file() and (out / "figures" / "galleries").is_dir()
    bad = subprocess.run(command[:3] + ["--method", "efficientnet_lite0:image_size=260",
                                        "--name", "x"], capture_output=True, text=True,
                         cwd=tmp_path)
    assert bad.returncode != 0 and "no default threshold" in bad.stderr


def test_benchmark_clustering_quality_and_scale_parts(tmp_path):
    root = tmp_path / "features"
    _copies_store(root)
    out = tmp_path / "bench.json"
    command = [sys.executable, str(REPO / "scripts" / "benchmark_clustering.py"), "--parts",
               "quality", "scale", "--features-dir", str(root), "--features", "copies/m",
               "--methods", "duplicates", "hierarchical_average", "--scale-rows", "600",
               "--scale-dim", "16", "--scale-methods", "duplicates", "hierarchical_ward",
               "--output", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    data = json.loads(out.read_text())
    methods = data["quality"]["copies/m"]["methods"]
    assert data["quality"]["copies/m"]["groups"] == 3
    # three tight groups of four: some threshold and the 3-cluster cut find them exactly
    assert methods["duplicates"]["best_pair_f1"]["pair_f1"] == 1.0
    assert methods["hierarchical_average"]["best_v_measure"]["setting"] == {"n_clusters": 3}
    runs = {r["method"]: r for r in data["scale"]["runs"]}
    assert set(runs) == {"duplicates", "hierarchical_ward"}
    assert all(r["peak_rss_bytes"] >= r["rss_before_bytes"] > 0 and r["within_4gb"]
               for r in runs.values())
    assert runs["hierarchical_ward"]["clusters"] == [6]  # rows / 100


def test_review_cases_exact_duplicates_padding_and_radius():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 6)).astype(np.float32) * 100  # long vectors: rounding is large
    xx = np.concatenate([x, x[:5]])
    for metric in ("cosine", "l2", "l1"):
        # threshold 0 joins exact duplicates, as a dense matrix of exact distances does
        assert cl.cluster(xx, "duplicates", metric, threshold=0).n_clusters() == [50]
        tiny = cl.cluster(xx, "dbscan", metric, eps=1e-9, min_samples=2)
        assert tiny.n_clusters() == [5]
    with pytest.raises(ValueError, match="features of row 3 are all zero"):
        cl.as_points(np.concatenate([x[:3], np.zeros((1, 6), np.float32)]), "cosine")
    # codes: padding bits never count, a radius past 1 takes every pair
    bits = rng.random((40, 42)) > 0.5
    packed = np.packbits(bits, axis=1)
    dirty = packed.copy()
    dirty[:, -1] |= 0b11
    clean = cl.cluster(BinaryCodes(packed, 42), "hierarchical", linkage="average",
                       n_clusters=[4])
    noisy = cl.cluster(BinaryCodes(dirty, 42), "hierarchical", linkage="average",
                       n_clusters=[4])
    np.testing.assert_array_equal(clean.tree, noisy.tree)
    assert cl.cluster(BinaryCodes(dirty, 42), "dbscan", eps=1e9,
                      min_samples=2).n_clusters() == [1]


@pytest.fixture(params=["compiled", "numpy"])
def edge_path(request, monkeypatch):
    """Run a test once with the compiled pair kernel (hashing/pairs.c), once with NumPy."""
    from hashing.distances import native

    yield from compiled_or_fallback(request, monkeypatch, native.pair_kernel, "pair")


@pytest.mark.parametrize("metric", ["cosine", "l2", "l1"])
def test_edge_distances_equal_scipy_pair_by_pair(edge_path, metric, monkeypatch):
    from clustering import graph

    monkeypatch.setattr(graph, "_KERNEL_BLOCK", 64)  # several blocks, run in threads
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(60, 37)) * 50).astype(np.float32)
    x[7] = x[3]  # an exact duplicate
    x[8] = x[3] * 4  # the same direction: cosine 0, l2 and l1 not
    rows = np.sort(rng.integers(0, 60, 500))
    cols = rng.integers(0, 60, 500)
    rows[:3], cols[:3] = [3, 7, 3], [7, 3, 8]
    points = cl.as_points(x, metric)
    got = graph.exact_edge_distances(points, rows, cols, np.zeros(500, np.float32))
    scipy_name = {"cosine": "cosine", "l2": "euclidean", "l1": "cityblock"}[metric]
    x64 = x.astype(np.float64)
    expected = np.array([cdist(x64[[r]], x64[[c]], scipy_name)[0, 0]
                         for r, c in zip(rows, cols, strict=True)])
    if metric == "cosine":
        expected /= 2  # hashing.distances' scale: (1 - cos) / 2
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-12)
    assert got[0] == got[1] == 0  # exactly, not Faiss's rounding
    assert (got[2] == 0) == (metric == "cosine")
    if edge_path == "compiled":
        with pytest.raises(IndexError, match="outside the 60 rows"):
            graph.exact_edge_distances(points, np.array([0]), np.array([60]),
                                       np.zeros(1, np.float32))


def test_benchmark_clustering_edges_part(tmp_path):
    out = tmp_path / "bench.json"
    command = [sys.executable, str(REPO / "scripts" / "benchmark_clustering.py"), "--parts",
               "edges", "--scale-rows", "300", "--scale-dim", "16", "--edge-count", "5000",
               "--output", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    data = json.loads(out.read_text())["edges"]
    if not data["kernel"]:
        pytest.skip("no C compiler here: the compiled pair kernel cannot be built")
    assert [r["metric"] for r in data["runs"]] == ["cosine", "l2"]
    assert all(r["max_abs_difference"] < 1e-5 and r["kernel_s"] > 0 for r in data["runs"])


@pytest.mark.parametrize("metric", ["cosine", "hamming"])
def test_connectivity_heights_are_in_our_metric(metric):
    """On a complete connectivity graph, connectivity-constrained single linkage is plain
    single linkage: its heights must be SciPy's, in our scale."""
    rng = np.random.default_rng(2)
    if metric == "cosine":
        x = rng.normal(size=(60, 8)).astype(np.float32)
        features, reference = x, pdist(x.astype(np.float64), "cosine") / 2
    else:
        bits = rng.random((60, 42)) > 0.5
        features, reference = BinaryCodes(np.packbits(bits, axis=1), 42), pdist(bits,
                                                                                 "hamming")
    result = cl.cluster(features, "hierarchical", metric if metric == "cosine" else None,
                        linkage="single", n_clusters=[5], connectivity=59)
    np.testing.assert_allclose(np.sort(result.tree[:, 2]),
                               np.sort(linkage(reference, "single")[:, 2]), atol=1e-6)


def test_reports_of_all_noise_and_of_singletons(tmp_path):
    from clustering.report import evaluate, write_clustering

    x, _ = _blobs(n=80, spread=3.0)
    records = tuple(ImageRecord(f"i{i}", None, source_id=f"g{i % 8}") for i in range(80))
    features = FloatFeatures(x, "l2", ids=tuple(r.image_id for r in records), records=records)
    points = cl.as_points(features)
    result = cl.cluster(points, "dbscan", eps=[0.01, 0.02], min_samples=3)  # all noise
    assert result.n_clusters() == [0, 0]
    written = write_clustering(result, tmp_path / "r", evaluate(result, points),
                               points=points)
    assert (tmp_path / "r" / "clusters.json").is_file() and written
    assert cl.external_measures(np.array(["a", "a", "b"]), [0, 0, 1])["v_measure"] == 1.0


# --- the scripts through the output mechanism (issue 25): defects each with its test -----------


def test_benchmark_clustering_never_writes_over_a_file_it_did_not_make(tmp_path):
    """--output once replaced any file (README.md, a store's .npy): a file of another kind or
    made by another script is refused in one line and left as it was; its own result file is
    replaced with --overwrite only."""
    (tmp_path / "README.md").write_text("mine")
    np.save(tmp_path / "store.npy", np.zeros(3))
    (tmp_path / "other.json").write_text('{"mine": 1}')
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    command = [sys.executable, str(REPO / "scripts" / "benchmark_clustering.py"), "--parts",
               "edges", "--scale-rows", "50", "--scale-dim", "4", "--edge-count", "100"]
    for target in ("README.md", "store.npy", "other.json"):
        done = subprocess.run([*command, "--output", str(tmp_path / target), "--overwrite"],
                              capture_output=True, text=True, cwd=tmp_path)
        errors = [line for line in done.stderr.splitlines() if "error:" in line]
        assert done.returncode == 2 and len(errors) == 1 and "Traceback" not in done.stderr
        assert target in errors[0]
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    out = tmp_path / "bench.json"
    done = subprocess.run([*command, "--output", str(out)], capture_output=True, text=True,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    data = json.loads(out.read_text())
    assert data["experiment"]["script"] == "benchmark_clustering" and "edges" in data
    again = subprocess.run([*command, "--output", str(out)], capture_output=True, text=True,
                           cwd=tmp_path)
    assert again.returncode == 2 and "--overwrite" in again.stderr
    again = subprocess.run([*command, "--output", str(out), "--overwrite"],
                           capture_output=True, text=True, cwd=tmp_path)
    assert again.returncode == 0, again.stderr


def test_find_duplicates_keeps_a_file_name_that_is_not_utf8(small_photos, tmp_path,
                                                            monkeypatch):
    """A file whose name holds the byte 0xff broke the CSV (UnicodeEncodeError) and left an
    experiment.json blocking the rerun: the table keeps the name's own bytes (as manifests
    do), so the path read back opens the file."""
    import os

    import pandas as pd
    from PIL import Image

    monkeypatch.setenv("RESULTS_DIR", str(tmp_path / "Results"))
    odd = os.fsencode(small_photos) + b"/copy\xff.png"
    with Image.open(small_photos / "chelsea.png") as image:
        image.resize((320, 240)).save(odd)
    command = [sys.executable, str(REPO / "scripts" / "find_duplicates.py"), str(small_photos),
               "--method", "dhash", "--name", "odd", "--log-level", "WARNING"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "Results" / "odd"
    table = pd.read_csv(out / "duplicates.csv", encoding_errors="surrogateescape")
    assert os.fsdecode(odd) in set(table["image"]) and "chelsea" in set(table["image_id"])
    assert all(Path(p).is_file() for p in table["image"])
    assignments = pd.read_csv(out / "assignments.csv", encoding_errors="surrogateescape")
    assert "copy\udcff" in set(assignments["image_id"])
    assert (out / "index.html").is_file()
    assert "ended_at" in json.loads((out / "experiment.json").read_text())


@pytest.mark.parametrize("method", ["orb", "crop_resistant"])
def test_find_duplicates_refuses_several_descriptors_per_image_first(small_photos, tmp_path,
                                                                     monkeypatch, method):
    """orb / crop_resistant failed with a TypeError after describing every image: refused
    before any work, in one line naming the method, with no result folder."""
    from tests.conftest import load_script

    monkeypatch.setenv("RESULTS_DIR", str(tmp_path / "Results"))
    import hashing

    def never(*args, **kwargs):
        raise AssertionError("an image was described")

    monkeypatch.setattr(hashing, "describe", never)
    script = load_script("find_duplicates")
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "find_duplicates.py"),
                           str(small_photos), "--method", method, "--threshold", "0.1",
                           "--name", "x"], capture_output=True, text=True, cwd=tmp_path)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2 and len(errors) == 1 and "Traceback" not in done.stderr
    assert f"--method {method}" in errors[0] and "per image" in errors[0]
    assert not (tmp_path / "Results").exists()
    # in the same process: refused before hashing.describe is ever called
    assert script.main([str(small_photos), "--method", method, "--threshold", "0.1",
                        "--name", "y"]) == 2
    assert not (tmp_path / "Results").exists()
