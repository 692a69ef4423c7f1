"""The library in a notebook: one-line reprs, bounded HTML tables and ``to_frame`` of the
results a notebook shows, progress bars without ``TqdmWarning``, no dependency INFO lines at
the default log level, and figures returned (written only when given a folder)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageFilter
from sklearn.metrics import f1_score, precision_score, roc_auc_score

import fast_search as fs
from clustering import cluster
from data_retrieval import ImageRecord
from fast_search.report import search_figures
from hashing import (
    BinaryCodes,
    FloatFeatures,
    LocalDescriptors,
    MultiCodes,
    describe,
    get_algorithm,
    load_digest,
    run_benchmark,
    save_descriptors,
    write_digest,
)
from hashing.evaluation.benchmark import BenchmarkResult
from hashing.evaluation.plots import plot_digest, plot_galleries, plot_roc, plot_times
from hashing.evaluation.verification import PairSet, VerificationProtocol, run_verification
from helpers.display import MAX_ROWS
from tests.conftest import REPO


def _one_line(text: str) -> str:
    assert "\n" not in text and len(text) < 200, text
    return text


def _table_rows(page: str) -> int:
    """Body rows of the one HTML table of a ``_repr_html_``."""
    assert page.count("<table") == 1, page
    return page.split("<tbody>", 1)[1].count("<tr")


# --- descriptor objects ---------------------------------------------------------------------

def test_descriptor_reprs_are_one_line_of_facts_never_arrays():
    codes = BinaryCodes.from_bits(np.ones((60, 64), bool)).with_identity(method="phash")
    assert repr(codes) == "BinaryCodes(60 images, phash, 64 bits)"
    assert repr(codes[0]) == "BinaryCodes(1 image, phash, 64 bits)"
    features = FloatFeatures(np.full((60, 1280), 0.5, np.float32), "cosine",
                             method="efficientnet_lite0",
                             bad=[("x", "x.jpg", "truncated")])
    assert repr(features) == ("FloatFeatures(60 images, efficientnet_lite0, 1280-d, cosine, "
                              "1 skipped)")
    multi = MultiCodes.from_bits([np.zeros((k, 64), bool) for k in (1, 2, 3)], cutoff=2)
    assert repr(multi) == "MultiCodes(3 images, no method, 6 codes of 64 bits, cutoff 2)"
    orb = LocalDescriptors.from_list([np.zeros((10, 32), np.uint8), None], "hamming")
    assert repr(orb.with_identity(method="orb")) == (
        "LocalDescriptors(2 images, orb, 10 descriptors of 256 bits, hamming, cutoff 1)")
    sift = LocalDescriptors.from_list([np.zeros((7, 128), np.float32)], "l2")
    assert repr(sift) == ("LocalDescriptors(1 image, no method, 7 descriptors of 128-d, l2, "
                          "cutoff 1)")
    for obj in (codes, features, multi, orb, sift):
        _one_line(repr(obj))
        assert "array" not in repr(obj) and str(obj) == repr(obj)


# --- benchmark ------------------------------------------------------------------------------

def _hand_result() -> BenchmarkResult:
    """Two algorithms; "a": positives at 0.1 (right), 0.2 (right), 0.3 (wrong image), 0.5
    (right), negatives at 0.25 and 0.6."""
    rows = []
    for label, shift in (("a", 0.0), ("b", 0.05)):
        for qid, kind, distance, correct in (
                ("q1", "positive", 0.1, True), ("q2", "positive", 0.2, True),
                ("q3", "positive", 0.3, False), ("q4", "positive", 0.5, True),
                ("n1", "negative", 0.25, False), ("n2", "negative", 0.6, False)):
            rows.append({"algorithm": label, "query_id": qid, "kind": kind,
                         "distance": distance + shift * (kind == "negative"),
                         "correct": correct})
    timing = pd.DataFrame({"algorithm": ["a", "b"], "seconds": [1.0, 2.0], "images": 4,
                           "seconds_per_image": [0.25, 0.5]})
    return BenchmarkResult(pd.DataFrame({"image_id": ["d1", "d2", "d3", "d4"], "path": ""}),
                           pd.DataFrame(rows), timing, timing, wall_seconds=3.0,
                           metrics={"a": "hamming", "b": "cosine"})


def test_benchmark_to_frame_counts_and_scores_by_hand():
    result = _hand_result()
    frame = result.to_frame()
    assert frame["algorithm"].tolist() == ["a", "b"]
    a = frame.iloc[0]
    assert (a["queries"], a["positives"], a["negatives"], a["identified"]) == (6, 4, 2, 3)
    assert a["top1_accuracy"] == pytest.approx(0.75)
    assert a["metric"] == "hamming" and a["db_ms_per_image"] == pytest.approx(250)
    # DISC21 micro-AP by hand: ranked 0.1 T, 0.2 T, 0.25 F, 0.3 F, 0.5 T, 0.6 F over 4 truths
    assert a["micro_ap"] == pytest.approx(1 * 0.25 + 1 * 0.25 + 3 / 5 * 0.25)
    for row, (_, group) in zip(frame.itertuples(), result.matches.groupby("algorithm"),
                               strict=True):
        assert row.auc == pytest.approx(roc_auc_score(group["kind"] == "positive",
                                                      -group["distance"]))
    text = _one_line(repr(result))
    assert text == ("BenchmarkResult(2 algorithms [a, b], 4 database images, 6 queries, "
                    "0 skipped, 3.0 s)")
    page = result._repr_html_()
    assert _table_rows(page) == 2 and "micro_ap" in page and text in page


def _tiny_benchmark(sample_paths) -> BenchmarkResult:
    """dhash on four photos: each blurred and shrunk (positives), two unrelated ones
    (negatives)."""
    def image(name: str) -> Image.Image:
        with Image.open(sample_paths[name]) as im:
            return im.convert("RGB").resize((128, 96))

    names = ["chelsea", "coffee", "rocket", "astronaut"]
    database = [(ImageRecord(n, sample_paths[n]), image(n)) for n in names]
    queries = [(ImageRecord(f"{n}_blur", None, source_id=n, attack_id="blur"),
                image(n).filter(ImageFilter.GaussianBlur(1)).resize((100, 75)))
               for n in names]
    queries += [(ImageRecord(n, None, attack_id="none"), image(n))
                for n in ("motorcycle", "china")]
    return run_benchmark([get_algorithm("dhash"), get_algorithm("ahash")], database, queries,
                         workers=1, device="cpu")


def test_benchmark_of_a_real_run_shows_its_summary(sample_paths):
    result = _tiny_benchmark(sample_paths)
    frame = result.to_frame()
    assert frame["algorithm"].tolist() == ["dhash", "ahash"]
    assert frame["positives"].tolist() == [4, 4] and frame["negatives"].tolist() == [2, 2]
    assert _one_line(repr(result)).startswith(
        "BenchmarkResult(2 algorithms [dhash, ahash], 4 database images, 6 queries")
    assert _table_rows(result._repr_html_()) == 2


# --- search ---------------------------------------------------------------------------------

def _search_set(n: int = 300, dim: int = 16):
    rng = np.random.default_rng(0)
    db = rng.random((n, dim)).astype(np.float32)
    sources = rng.choice(n, 40, replace=False)
    copies = db[sources] + 0.01 * rng.standard_normal((40, dim)).astype(np.float32)
    records = tuple(ImageRecord(f"q{i}", None, source_id=f"d{s}", attack_id="noise")
                    for i, s in enumerate(sources))
    database = FloatFeatures(db, "l2", ids=tuple(f"d{i}" for i in range(n)), method="m")
    queries = FloatFeatures(copies, "l2", ids=tuple(r.image_id for r in records),
                            records=records, method="m")
    return database, queries, db, copies, sources


def test_search_result_frame_repr_and_bounded_html(tmp_path):
    database, queries, db, copies, sources = _search_set()
    result = fs.run_search(fs.load_search_set(database, queries), ["Flat", "IVF8,Flat"],
                           ks=[1, 5], params={"nprobe": [1, 2, 4, 8]}, repeats=1,
                           cache_dir=tmp_path / "idx")
    frame = result.to_frame()
    assert len(frame) == len(result.runs) == 5  # Flat, then IVF8 at four nprobe
    # the exact index's recall@1, against a brute-force oracle
    nearest = ((copies[:, None, :] - db[None]) ** 2).sum(-1).argmin(axis=1)
    assert frame.loc[frame["index"] == "Flat", "recall@1"].item() == pytest.approx(
        np.mean(nearest == sources))
    text = _one_line(repr(result))
    assert text.startswith("SearchResult(5 runs of 2 indexes [Flat, IVF8,Flat], m, "
                           "300 database rows, 40 queries, best recall@1")
    assert _table_rows(result._repr_html_()) == 5
    # many runs: the first MAX_ROWS shown, and said so
    many = fs.SearchResult(result.runs * 10, result.search_set, result.pareto)
    page = many._repr_html_()
    assert _table_rows(page) == MAX_ROWS and f"first {MAX_ROWS} of 50 rows" in page
    assert len(many.to_frame()) == 50


# --- clustering -----------------------------------------------------------------------------

def test_clustering_counts_per_setting_and_bounded_html():
    rng = np.random.default_rng(0)
    centres = rng.random((4, 8)) * 10
    values = np.vstack([c + 0.01 * rng.standard_normal((5, 8)) for c in centres])
    features = FloatFeatures(values.astype(np.float32), "l2", method="toy",
                             ids=tuple(f"i{k}" for k in range(20)))
    result = cluster(features, "hierarchical", linkage="single", n_clusters=[2, 4, 20])
    frame = result.to_frame()
    assert frame["setting"].tolist() == ["n_clusters=2", "n_clusters=4", "n_clusters=20"]
    assert frame["n_clusters"].tolist() == [len(np.unique(lab)) for lab in result.labels] \
        == [2, 4, 20]
    assert frame["param_n_clusters"].tolist() == [2, 4, 20]
    assert frame["singletons"].tolist()[-1] == 20 and frame["largest"].tolist()[1] == 5
    text = _one_line(repr(result))
    assert text.startswith("Clustering(hierarchical, 20 images, toy, l2, 3 settings, "
                           "clusters n_clusters=2: 2; n_clusters=4: 4; n_clusters=20: 20")
    many = cluster(features, "hierarchical", linkage="single",
                   distance_threshold=list(np.linspace(0.01, 20, 45)))
    page = many._repr_html_()
    assert _table_rows(page) == MAX_ROWS and f"first {MAX_ROWS} of 45 rows" in page
    assert len(many.to_frame()) == 45 and "42 more" in repr(many)



def test_clustering_figures_are_returned_unwritten_and_show_the_measures(tmp_path, monkeypatch,
                                                                         sample_paths):
    from matplotlib.figure import Figure  # matplotlib: only this test draws
    from sklearn.metrics import v_measure_score

    from clustering import as_points
    from clustering.report import evaluate, plot_clustering
    from clustering.report import plot_galleries as cluster_galleries
    from data_retrieval import load_dataset

    records = load_dataset("sample").records[:6]
    codes = describe(records, "dhash")
    points = as_points(codes)
    result = cluster(points, "hierarchical", linkage="average", n_clusters=[2, 3, 6])
    truth = np.array([0, 0, 0, 1, 1, 1])  # a hand-made truth: two groups of three
    evaluation = evaluate(result, points, truth=truth)
    monkeypatch.chdir(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    figures = plot_clustering(result, evaluation=evaluation)
    assert sorted(figures) == ["cluster_sizes", "dendrogram", "diameter_vs_size",
                               "measures_vs_n_clusters"]
    assert all(isinstance(f, Figure) for f in figures.values())
    # the V-measure line holds scikit-learn's V-measure of each cut, in setting order
    line = next(ln for ln in figures["measures_vs_n_clusters"].axes[0].lines
                if ln.get_label() == "v_measure")
    assert list(line.get_xdata()) == [2, 3, 6]
    assert np.allclose(line.get_ydata(), [v_measure_score(truth, lab) for lab in result.labels])
    shown = cluster_galleries(result, evaluation[0], points=points)
    assert shown and all(isinstance(f, Figure) for f in shown.values())
    assert sorted(tmp_path.rglob("*")) == before  # nothing written anywhere
    written = plot_clustering(result, tmp_path / "figs", evaluation)
    assert {p.name for p in written} >= {"dendrogram.pdf", "cluster_sizes.png"}
    assert [p.name for p in cluster_galleries(result, evaluation[0], tmp_path / "g")] == [
        f"{name}.png" for name in shown]

# --- verification ---------------------------------------------------------------------------

def test_verification_scores_frame_against_sklearn(sample_paths):
    images = {}
    for name in ("chelsea", "coffee", "rocket", "astronaut", "motorcycle", "china"):
        with Image.open(sample_paths[name]) as im:
            images[name] = im.convert("RGB").resize((96, 72))
    names = list(images)
    a, b, same = [], [], []
    for i, name in enumerate(names):
        a += [images[name], images[name]]
        b += [images[name].filter(ImageFilter.GaussianBlur(1)), images[names[i - 1]]]
        same += [True, False]
    pairs = PairSet(a, b, np.array(same), ["positive", "negative"] * 6,
                    [n for n in names for _ in range(2)])
    result = run_verification(pairs, ["dhash"], VerificationProtocol(threshold=0.2),
                              show_progress=False)
    frame = result.to_frame()
    assert frame[["method", "split"]].values.tolist() == [["dhash", "all"]]
    decided = result.frame["distance:dhash"].to_numpy() <= 0.2
    assert frame["f1"].item() == pytest.approx(f1_score(same, decided))
    assert frame["precision"].item() == pytest.approx(precision_score(same, decided,
                                                                      zero_division=1))
    assert frame["unread"].item() == 0
    text = _one_line(repr(result))
    assert text.startswith("VerificationResult(12 pairs (6 positive), all: dhash: F1 ")
    assert _table_rows(result._repr_html_()) == 1


# --- progress bars in a notebook ------------------------------------------------------------

NOTEBOOK = textwrap.dedent("""
    import sys, types, warnings
    warnings.simplefilter("always")
    # a Jupyter kernel without ipywidgets, as tqdm.autonotebook detects one
    class ZMQInteractiveShell:
        config = {"IPKernelApp": {}}
    ipython = types.ModuleType("IPython")
    ipython.get_ipython = ZMQInteractiveShell
    sys.modules["IPython"] = ipython
    sys.modules["ipykernel.zmqshell"] = types.ModuleType("ipykernel.zmqshell")
    sys.modules["ipywidgets"] = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import numpy as np
        from PIL import Image
        import hashing
        from helpers.progress import in_notebook, progress
        assert in_notebook()
        images = [Image.fromarray(np.full((32, 32, 3), v, np.uint8)) for v in (0, 90, 200)]
        codes = hashing.describe(images, "dhash", show_progress=True)
        for _ in progress(range(3), disable=False):
            pass
    print("ours:", [f"{w.category.__name__}: {w.message}" for w in caught])
    with warnings.catch_warnings(record=True) as control:
        warnings.simplefilter("always")
        import tqdm.autonotebook  # what tqdm.auto does in this kernel
    print("tqdm.auto:", [w.category.__name__ for w in control])
""")


def test_progress_in_a_notebook_without_ipywidgets_warns_nothing():
    env = {k: v for k, v in os.environ.items() if k != "QT_API" and not k.startswith("SPYDER")}
    done = subprocess.run([sys.executable, "-c", NOTEBOOK], capture_output=True, text=True,
                          cwd=REPO, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    ours = re.search(r"^ours: (.*)$", done.stdout, re.M).group(1)
    assert "TqdmWarning" not in ours and "IProgress" not in done.stderr
    assert ours == "[]", ours
    # the simulated kernel is one tqdm.auto warns in: the check above can fail
    assert "TqdmWarning" in re.search(r"^tqdm.auto: (.*)$", done.stdout, re.M).group(1)


# --- quiet by default -----------------------------------------------------------------------

def test_faiss_loader_is_quiet_at_the_default_log_level(tmp_path):
    rng = np.random.default_rng(0)
    codes = BinaryCodes.from_bits(rng.random((50, 64)) < 0.5)
    save_descriptors(codes.with_identity(ids=[f"d{i}" for i in range(50)], method="m"), "db",
                     root=tmp_path / "features")
    records = [ImageRecord(f"q{i}", None, source_id=f"d{i}", attack_id="none")
               for i in range(10)]
    save_descriptors(codes[:10].with_identity(ids=[r.image_id for r in records],
                                              records=records, method="m"),
                     "queries", root=tmp_path / "features")

    def run(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(REPO / "scripts" / "search_experiment.py"),
             "--features-dir", str(tmp_path / "features"), "--database", "db/m",
             "--queries", "queries/m", "--index", "BFlat", "--k", "1", "--repeats", "1",
             "--no-figures", "--index-cache", str(tmp_path / "cache"), *extra],
            capture_output=True, text=True, cwd=tmp_path, timeout=300,
            env={**os.environ, "RESULTS_DIR": str(tmp_path / "Results")})

    # --param nprobe on a flat index: the library says at INFO that it is not swept
    quiet = run("--name", "quiet", "--param", "nprobe=1")
    assert quiet.returncode == 0, quiet.stderr
    assert "faiss.loader" not in quiet.stderr and "swigfaiss" not in quiet.stderr
    assert "Could not load library" not in quiet.stderr
    assert "INFO fast_search.experiment: BFlat has no parameter nprobe" in quiet.stderr
    loud = run("--name", "loud", "--log-level", "DEBUG")
    assert loud.returncode == 0, loud.stderr
    assert "faiss.loader" in loud.stderr  # the line exists: the quiet run hid it


# --- figures --------------------------------------------------------------------------------

def test_plot_functions_return_figures_and_write_only_with_a_folder(tmp_path, monkeypatch,
                                                                    sample_paths):
    from matplotlib.figure import Figure  # matplotlib: only this test draws

    digest_dir = tmp_path / "digest"
    write_digest(_tiny_benchmark(sample_paths), digest_dir)
    digest = load_digest(digest_dir)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    before = sorted(tmp_path.rglob("*"))
    figure = plot_roc(digest)
    assert isinstance(figure, Figure) and figure.axes[0].get_title() == "ROC (detection)"
    assert len(figure.axes[0].lines) == 3  # two algorithms and the diagonal
    assert isinstance(plot_times(digest), Figure)
    galleries = plot_galleries(digest)
    assert sorted(galleries) == sorted(f"gallery_{kind}_{a}" for a in ("dhash", "ahash")
                                       for kind in ("least_recognised", "false_matches"))
    assert all(isinstance(f, Figure) for f in galleries.values())
    figures = search_figures(fs.SearchResult([], {}))
    assert figures == {}
    assert sorted(tmp_path.rglob("*")) == before  # nothing written anywhere
    # given a folder, the figure is written there, and still returned
    assert isinstance(plot_roc(digest, tmp_path / "figs"), Figure)
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == ["roc.pdf", "roc.png"]
    written = plot_digest(digest, tmp_path / "all")
    assert {p.name for p in written} >= {"roc.png", "times.pdf", "auc_heatmap.png",
                                         "gallery_false_matches_dhash.png"}
    assert all(p.stat().st_size > 0 for p in written)


def test_search_figures_are_returned_unwritten(tmp_path, monkeypatch):
    from matplotlib.figure import Figure  # matplotlib: only this test draws

    database, queries, *_ = _search_set(n=100)
    result = fs.run_search(fs.load_search_set(database, queries), ["Flat"], ks=[1, 5],
                           repeats=1, cache_dir=tmp_path / "idx")
    monkeypatch.chdir(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    figures = search_figures(result)
    assert sorted(figures) == ["recall_at_1_vs_qps", "recall_at_5_vs_qps",
                               "recall_vs_index_size"]
    assert all(isinstance(f, Figure) for f in figures.values())
    assert sorted(tmp_path.rglob("*")) == before


def test_separation_and_verification_figures_return_a_figure_without_a_folder(tmp_path,
                                                                              monkeypatch):
    """Without a folder each gives its Figure and writes nothing; with one it writes the PDF
    and PNG it wrote before."""
    from matplotlib.figure import Figure

    from hashing.evaluation.separation_analysis import (
        plot_explained_variance,
        plot_separation,
        plot_shares,
        separation_thresholds,
    )
    from hashing.evaluation.verification import plot_f1_curve

    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    unrelated, copies = rng.uniform(0.3, 0.6, 200), rng.uniform(0.0, 0.3, 40)
    result = {"method": "m", "unrelated": unrelated, "copies": copies,
              "attack": np.array(["a", "b"] * 20),
              "thresholds": separation_thresholds(unrelated, [1e-3])}
    frame = pd.DataFrame({"method": ["m", "m", "m"], "attack": ["a", "b", "all"],
                          "above_t1": [0.1, 0.2, 0.15]})
    curve = pd.DataFrame({"threshold": [0.1, 0.2, 0.3], "f1": [0.5, 0.8, 0.6]})
    figures = [plot_separation(result), plot_shares(frame),
               plot_explained_variance({"m": np.array([0.5, 0.3, 0.2])}),
               plot_f1_curve({"m": curve}, {"m": 0.2})]
    assert all(isinstance(f, Figure) for f in figures)
    assert list(tmp_path.iterdir()) == []
    written = plot_f1_curve({"m": curve}, {"m": 0.2}, tmp_path / "figures")
    assert sorted(p.name for p in written) == ["f1_curve.pdf", "f1_curve.png"]


def test_the_separation_figure_shows_the_hardest_attacks_when_they_do_not_all_fit():
    """58 attacks do not fit 30 panels: the figure keeps `all` and the 29 attacks with the
    most copies above T1 (counted here by hand), not the first 29 by name."""
    from hashing.evaluation.separation_analysis import plot_separation, separation_thresholds

    rng = np.random.default_rng(0)
    unrelated = rng.uniform(0.3, 0.6, 500)
    thresholds = separation_thresholds(unrelated, [1e-3])
    names = [f"attack_{i:02d}" for i in range(58)]
    # attack i: 60 copies, i of them far (above any threshold), the rest near 0
    copies = np.concatenate([np.r_[np.full(i, 0.9), np.full(60 - i, 0.01)]
                             for i in range(58)])
    attack = np.repeat(names, 60)
    figure = plot_separation({"method": "m", "unrelated": unrelated, "copies": copies,
                              "attack": attack, "thresholds": thresholds})
    shown = [ax.get_title().split("\n")[0] for ax in figure.axes if ax.get_visible()]
    share = {n: np.mean(copies[attack == n] > thresholds.t1) for n in names}
    hardest = sorted(names, key=lambda n: -share[n])[:29]
    assert shown[0] == "all" and sorted(shown[1:]) == sorted(hardest)
    assert "attack_57" in shown and "attack_00" not in shown
    assert "29 of 58 attacks" in figure._suptitle.get_text()
