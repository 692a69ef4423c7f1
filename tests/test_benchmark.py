"""The benchmark engine and its metrics against hand counts, scikit-learn and brute force."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from data_retrieval import ImageRecord, load_dataset
from generator import get_attack
from generator.pipeline import iter_attacks
from hashing import MultiCodes, get_algorithm
from hashing.distances import multi_distances
from hashing.evaluation.benchmark import load_records, run_benchmark
from hashing.evaluation.digest import load_digest, write_digest
from hashing.evaluation.metrics import micro_average_precision, roc, threshold_metrics


def test_threshold_metrics_hand_example():
    # 4 positives (2 identified correctly), 3 negatives
    distances = np.array([0.1, 0.2, 0.3, 0.5, 0.15, 0.4, 0.6])
    correct = np.array([True, False, True, True, False, False, False])
    positive = np.array([True, True, True, True, False, False, False])
    table = threshold_metrics(distances, correct, positive, np.array([0.25]))
    det = table[table.task == "detection"].iloc[0]
    # flagged: positives 0.1, 0.2 -> TP 2; negatives 0.15 -> FP 1
    assert (det.tp, det.fp, det.tn, det.fn) == (2, 1, 2, 2)
    assert det.precision == pytest.approx(2 / 3) and det.recall == 0.5
    assert det.fpr == pytest.approx(1 / 3) and det.accuracy == pytest.approx(4 / 7)
    ident = table[table.task == "identification"].iloc[0]
    # only 0.1 is flagged and correct; 0.2 flagged but wrong image: FP with the negative
    assert (ident.tp, ident.fp, ident.tn, ident.fn) == (1, 2, 2, 3)
    assert ident.precision == pytest.approx(1 / 3) and ident.recall == 0.25


def test_roc_auc_equals_sklearn():
    rng = np.random.default_rng(0)
    distances = np.round(rng.random(300), 2)  # many ties
    positive = rng.random(300) < 0.4
    distances[positive] *= 0.7
    curve = roc(distances, positive)
    assert curve["auc"] == pytest.approx(roc_auc_score(positive, -distances), abs=1e-12)
    assert curve["fpr"][0] == 0 and curve["tpr"][-1] == 1


def test_micro_ap_equals_sklearn_when_every_query_has_a_source():
    rng = np.random.default_rng(1)
    distances = rng.random(200)
    correct = rng.random(200) < 0.6
    ap, r90 = micro_average_precision(distances, correct, 200)
    # with every query a ground-truth pair, micro-AP is sklearn's AP of correct vs -distance,
    # scaled by the recall reachable (fraction of correct predictions)
    expected = average_precision_score(correct, -distances) * correct.mean()
    assert ap == pytest.approx(expected, abs=1e-12)
    assert 0 <= r90 <= 1


def test_multi_distance_brute_force():
    rng = np.random.default_rng(2)
    q = [rng.random((k, 64)) < 0.5 for k in (1, 3, 2)]
    d = [rng.random((k, 64)) < 0.5 for k in (2, 1, 4, 3)]
    for cutoff in (1, 2):
        ours = multi_distances(MultiCodes.from_bits(q, cutoff), MultiCodes.from_bits(d),
                               max_block_elements=8)
        for i, qa in enumerate(q):
            for j, db in enumerate(d):
                per_segment = sorted(min((a != b).mean() for b in db) for a in qa)
                # fewer segments than the cutoff: no match at all (imagehash's region_cutoff)
                expected = per_segment[cutoff - 1] if len(qa) >= cutoff else np.inf
                assert ours[i, j] == pytest.approx(expected)


@pytest.fixture(scope="module")
def small_run():
    records = load_dataset("sample").records
    attacks = [get_attack(a) for a in ("jpg_compression_50", "cropping_20_and_rescaling")]
    algorithms = [get_algorithm(n) for n in ("phash", "crop_resistant")]
    bad: list = []
    result = run_benchmark(algorithms, load_records(records[:5], bad),
                           iter_attacks(records, attacks, seed=0), batch_size=4, workers=2)
    return records, result


def test_benchmark_arrays_against_brute_force(small_run):
    records, result = small_run
    matches = result.matches
    assert len(matches) == 2 * len(records) * 2
    phash = matches[matches.algorithm == "phash"]
    assert set(phash.kind[phash.source_id.isin([r.image_id for r in records[:5]])]) == {
        "positive"}
    # recompute the nearest database image by hand with imagehash
    import imagehash

    from helpers import load_image

    db = [imagehash.phash(load_image(r.path)) for r in records[:5]]
    by_id = {r.image_id: r for r in records}
    for row in phash.itertuples():
        query = get_attack(row.attack_id).apply(load_image(by_id[row.source_id].path), 0,
                                                row.source_id)
        dists = [(imagehash.phash(query) - h) / 64 for h in db]
        assert row.distance == pytest.approx(min(dists))
        if row.kind == "positive":
            assert row.source_distance == pytest.approx(dists[row.source_index])


def test_digest_round_trip_and_merge(small_run, tmp_path):
    _, result = small_run
    digest = write_digest(result, tmp_path / "a", summary_threshold=0.2)
    write_digest(result, tmp_path / "b", summary_threshold=0.2)
    loaded = load_digest(tmp_path / "a")
    pd.testing.assert_frame_equal(loaded.summary.drop(columns="digest"),
                                  digest["summary"], check_dtype=False)
    summary = pd.read_csv(tmp_path / "a" / "summary.csv")
    assert list(summary.algorithm) == ["phash", "crop_resistant"]
    merged = load_digest([tmp_path / "a", tmp_path / "b"])
    assert len(merged.metrics) == 2 * len(loaded.metrics)
    assert set(merged.metrics.digest) == {"a", "b"}
    with pytest.raises(FileNotFoundError, match="general.json is missing"):
        load_digest(tmp_path)


def test_corrupt_query_is_reported_and_skipped(tmp_path):
    records = load_dataset("sample").records[:3]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    queries = list(records) + [ImageRecord("broken", broken, records[0].image_id, "x")]
    bad: list = []
    result = run_benchmark([get_algorithm("ahash")], load_records(records, []),
                           load_records(queries, bad), batch_size=2)
    assert len(result.matches) == 3
    assert bad and bad[0][0] == str(broken)


def test_benchmark_errors():
    records = load_dataset("sample").records[:2]
    with pytest.raises(ValueError, match="no algorithm"):
        run_benchmark([], [], [])
    with pytest.raises(ValueError, match="database is empty"):
        run_benchmark([get_algorithm("ahash")], [], load_records(records, []))
    with pytest.raises(ValueError, match="no query"):
        run_benchmark([get_algorithm("ahash")], load_records(records, []), [])


def test_default_protocol_on_bsds_subset(bsds_root, tmp_path):
    from data_retrieval import split_groups
    from generator import default_attacks

    groups = split_groups(load_dataset("bsds500", bsds_root).records, 20, 20, seed=0)
    database = [r for r in groups if r.group == "experimental"]
    control = [r for r in groups if r.group == "control"]
    attacks = default_attacks()[::6]  # 10 of the 58, every family kind
    algorithms = [get_algorithm(n) for n in
                  ("ahash", "phash", "dhash", "whash", "crop_resistant")]
    result = run_benchmark(algorithms, load_records(database, []),
                           iter_attacks(database[:4] + control[:4], attacks, seed=0,
                                        workers=2), batch_size=32)
    assert len(result.matches) == 5 * 8 * len(attacks)
    digest = write_digest(result, tmp_path / "bsds")
    summary = digest["summary"].set_index("algorithm")
    assert (summary["auc"] > 0.6).all(), summary["auc"]
    assert (summary["positives"] == 4 * len(attacks)).all()


def test_threshold_at_fpr_is_the_operating_point_of_recall_at_fpr():
    """Hand-computed: negatives at 0.1, 0.3, 0.5, 0.7 (FPR 0.25 each), positives at 0.2, 0.4;
    at FPR <= 0.25 the largest threshold is 0.2 (0.1 and 0.2 in), recall 1/2."""
    from hashing.evaluation.metrics import recall_at_fpr, roc, threshold_at_fpr

    curve = roc(np.array([0.1, 0.3, 0.5, 0.7, 0.2, 0.4]),
                np.array([False] * 4 + [True] * 2))
    assert threshold_at_fpr(curve, 0.25) == pytest.approx(0.2)
    assert recall_at_fpr(curve, 0.25) == pytest.approx(0.5)
    assert threshold_at_fpr(curve, 0.0) == -np.inf  # even the smallest distance is a negative
