"""Separation analysis: thresholds and shares by hand, pair distances against SciPy, and the
report script against imagehash."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import cdist, pdist

from data_retrieval import ImageRecord
from hashing import BinaryCodes, FloatFeatures
from hashing.evaluation.separation_analysis import (
    copy_distances,
    pair_distances,
    separation,
    separation_thresholds,
    share_table,
    unrelated_distances,
    unrelated_pairs,
    unrelated_threshold_at_fpr,
)
from tests.conftest import REPO


def test_threshold_at_fpr_by_hand():
    u = np.array([1, 2, 2, 2, 3, 4, 5, 6, 7, 8.0])
    # 10 pairs: FPR 0.1 accepts one pair (distance <= 1); 0.2 would accept two, but the next
    # value is a triple tie, so it stays at 1; 0.4 accepts the four up to 2; 0.5 five.
    assert unrelated_threshold_at_fpr(u, 0.1) == 1.0
    assert unrelated_threshold_at_fpr(u, 0.2) == 1.0
    assert unrelated_threshold_at_fpr(u, 0.4) == 2.0
    assert unrelated_threshold_at_fpr(u, 0.5) == 3.0
    below = unrelated_threshold_at_fpr(u, 0.05)  # not even one pair allowed
    assert below < 1.0 and np.mean(u <= below) == 0


def test_t1_t2_and_shares_by_hand(caplog):
    u = np.array([0.2, 0.4, 0.6, 0.8, 1.0])
    th = separation_thresholds(u, fprs=(0.2, 0.01), min_tail=1)
    sigma = np.sqrt(0.08)  # deviations -0.4 -0.2 0 0.2 0.4: mean square 0.4 / 5
    assert th.mu == pytest.approx(0.6) and th.sigma == pytest.approx(sigma)
    assert th.t1 == pytest.approx(0.6 - 2 * sigma) and th.t2 == pytest.approx(0.6 - sigma)
    assert th.fpr_t1 == 0 and th.fpr_t2 == pytest.approx(0.2)  # only 0.2 <= 0.317
    assert th.at_fpr[0.2] == 0.2 and th.reliable == {0.2: True, 0.01: False}
    assert "cannot estimate the thresholds at FPR 0.01" in caplog.text
    d = np.array([0.0, 0.1, 0.5, 0.3])
    table = share_table(d, np.array(["a", "a", "b", "b"], dtype=object), th).set_index("attack")
    # T1 = 0.034: a has 0.1 above (1 of 2), b both; T2 = 0.317: only b's 0.5
    assert table.loc["a", "above_t1"] == 0.5 and table.loc["b", "above_t1"] == 1.0
    assert table.loc["a", "above_t2"] == 0.0 and table.loc["b", "above_t2"] == 0.5
    assert table.loc["all", "above_t1"] == 0.75 and table.loc["all", "copies"] == 4
    assert table.loc["b", "above_fpr_0.2"] == 1.0 and table.loc["a", "above_fpr_0.2"] == 0.0


def test_unrelated_pairs_all_or_a_distinct_sample():
    i, j, complete = unrelated_pairs(6, max_pairs=100)
    assert complete and len(i) == 15
    np.testing.assert_array_equal(np.stack([i, j]), np.stack(np.triu_indices(6, 1)))
    i, j, complete = unrelated_pairs(300, max_pairs=5000, seed=3)
    assert not complete and len(i) == 5000
    assert (i < j).all() and (j < 300).all() and (i >= 0).all()
    assert len(set(zip(i.tolist(), j.tolist(), strict=True))) == 5000
    again = unrelated_pairs(300, max_pairs=5000, seed=3)
    np.testing.assert_array_equal(again[0], i)


def test_unrelated_and_pair_distances_equal_scipy():
    rng = np.random.default_rng(0)
    x = rng.random((40, 9)).astype(np.float32)
    feats = FloatFeatures(x, "l2")
    full, complete = unrelated_distances(feats)
    assert complete
    np.testing.assert_allclose(full, pdist(x.astype(np.float64)), rtol=1e-5)
    sampled, complete = unrelated_distances(feats, max_pairs=100, seed=1)
    i, j, _ = unrelated_pairs(40, 100, seed=1)
    assert not complete
    np.testing.assert_allclose(sampled, np.linalg.norm(x[i] - x[j], axis=1), rtol=1e-5)
    bits = rng.random((30, 42)) > 0.5  # 42-bit codes: padding must not count
    codes = BinaryCodes.from_bits(bits)
    np.testing.assert_allclose(unrelated_distances(codes)[0], pdist(bits, "hamming"),
                               atol=1e-7)
    cos = FloatFeatures(x, "cosine")
    expected = np.diagonal(cdist(x[:20].astype(np.float64), x[20:], "cosine")) / 2
    np.testing.assert_allclose(pair_distances(cos[:20], cos[20:], block=7), expected,
                               atol=1e-6)
    with pytest.raises(ValueError, match="as many rows"):
        pair_distances(cos[:3], cos[:4])


def _records(ids, sources=None, attacks=None):
    return tuple(ImageRecord(i, None, source_id=s, attack_id=a) for i, s, a in
                 zip(ids, sources or [None] * len(ids), attacks or [None] * len(ids),
                     strict=True))


def test_copies_meet_their_own_originals_through_source_id():
    x = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]], np.float32)
    originals = FloatFeatures(x, "l2", ids=("a", "b", "c"), records=_records(["a", "b", "c"]))
    y = np.array([[10.0, 1.0], [0.0, 0.5], [5.0, 5.0], [0.0, 12.0]], np.float32)
    copies = FloatFeatures(y, "l2", ids=("b1", "a1", "z1", "c1"), records=_records(
        ["b1", "a1", "z1", "c1"], ["b", "a", "zzz", "c"], ["jpg", "jpg", "jpg", "crop"]))
    d, rows = copy_distances(originals, copies)
    np.testing.assert_array_equal(rows, [0, 1, 3])  # z1's source is not an original
    np.testing.assert_allclose(d, [1.0, 0.5, 2.0])
    result = separation(originals, copies, fprs=(0.5,))
    # unrelated: |a-b| = |a-c| = 10, |b-c| = sqrt(200)
    assert result["thresholds"].mu == pytest.approx((20 + np.sqrt(200)) / 3, rel=1e-6)
    table = result["table"].set_index("attack")
    assert table.loc["all", "copies"] == 3 and table.loc["crop", "mean_distance"] == 2.0
    with pytest.raises(ValueError, match="no copy has its source"):
        copy_distances(originals, copies[[2]])


def test_separation_report_script_against_imagehash(tmp_path):
    import imagehash
    from PIL import Image

    from data_retrieval import load_dataset
    from generator import attacked_images, get_attack

    out = tmp_path / "sep"
    done = subprocess.run(
        [sys.executable, "scripts/separation_report.py", "--dataset", "sample",
         "--methods", "dhash", "phash", "--reducers", "pca:4", "--attacks",
         "jpg_compression:50", "rotation:10", "--output", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    frame = pd.read_csv(out / "separation.csv")
    assert set(frame["method"]) == {"dhash", "phash"}  # no reducer applies to hashes
    assert "dhash does not give float features" in done.stderr
    thresholds = json.loads((out / "thresholds.json").read_text())
    # dhash by imagehash: every pair of originals, then each copy against its original
    records = load_dataset("sample").records
    hashes = [imagehash.dhash(Image.open(r.path)) for r in records]
    unrelated = np.array([(hashes[i] - hashes[j]) / 64 for i in range(len(hashes))
                          for j in range(i + 1, len(hashes))])
    th = thresholds["dhash"]
    assert th["pairs"] == len(unrelated) and th["complete"]
    assert th["t1"] == pytest.approx(unrelated.mean() - 2 * unrelated.std(), abs=1e-6)
    attacks = [get_attack("jpg_compression", quality=50), get_attack("rotation", angle=10)]
    copies = attacked_images(records, attacks, seed=0)
    source = {r.image_id: h for r, h in zip(records, hashes, strict=True)}
    dist = np.array([(imagehash.dhash(c.load()) - source[c.record.source_id]) / 64
                     for c in copies])
    attack = np.array([c.record.attack_id for c in copies])
    rows = frame[frame["method"] == "dhash"].set_index("attack")
    for name in set(attack):
        assert rows.loc[name, "above_t1"] == pytest.approx(
            np.mean(dist[attack == name] > th["t1"])), name
    assert rows.loc["all", "above_t2"] == pytest.approx(np.mean(dist > th["t2"]))
    shares = pd.read_csv(out / "shares_above_t1.csv", index_col=0)
    assert list(shares.index)[-1] == "all" and list(shares.columns) == ["dhash", "phash"]
    for figure in ("shares_above_t1", "shares_above_fpr_0.001", "separation_dhash"):
        assert (out / "figures" / f"{figure}.png").is_file()
    record = json.loads((out / "experiment.json").read_text())
    assert record["config"]["attacks"] == ["jpg_compression_50", "rotation_10_and_rescaling"]


def test_reducers_of_a_method_with_algorithm_parameters_load_back(tmp_path):
    import hashing
    from extractor.reduce import load_reducer

    out = tmp_path / "sep"
    done = subprocess.run(
        [sys.executable, "scripts/separation_report.py", "--dataset", "sample", "--methods",
         "efficientnet_lite0:distance='jensenshannon'", "dhash", "dhash", "--reducers", "pca:4",
         "rp:4", "--quantize", "uint8", "--attacks", "jpg_compression:50", "--output",
         str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "reported once" in done.stderr and "compared with cosine" in done.stderr
    thresholds = json.loads((out / "thresholds.json").read_text())
    js = "efficientnet_lite0_distance=jensenshannon"
    assert set(thresholds) == {"dhash", js, *(f"{js}+{r}" for r in
                                             ("pca:4", "pca:4+uint8", "rp:4", "rp:4+uint8"))}
    assert (out / "figures" / "explained_variance.png").is_file()
    # quantised: the same reduction, decoded from bytes
    base = load_reducer(thresholds[f"{js}+pca:4"]["reducer"]["file"])
    quantised = load_reducer(thresholds[f"{js}+pca:4+uint8"]["reducer"]["file"])
    np.testing.assert_array_equal(base.state["components"], quantised.state["components"])
    assert quantised.quantizer["kind"] == "uint8"
    reducer = thresholds[f"{js}+pca:4"]["reducer"]
    assert load_reducer(reducer["file"]).method == "efficientnet_lite0"
    algorithm = hashing.get_algorithm("efficientnet_lite0", reduce=reducer["file"])
    assert algorithm.label == reducer["identity"]
    assert hashing.describe("sample", algorithm).values.shape == (11, 4)


@pytest.mark.parametrize("flag, value", [("--ae-lr", "nan"), ("--ae-batch-size", "0"),
                                         ("--workers", "-1"), ("--ae-epochs", "0"),
                                         ("--max-pairs", "1e30"), ("--fprs", "0"),
                                         ("--name", "../x")])
def test_separation_report_refuses_bad_flags_in_one_line(flag, value, tmp_path, capsys):
    """Once tracebacks (NaN learning rate, empty batches, negative workers): refused when the
    flags are parsed, before any image is described."""
    from tests.conftest import load_script

    with pytest.raises(SystemExit) as exit_:
        load_script("separation_report").main(["--dataset", "sample", flag, value,
                                               "--output", str(tmp_path / "never")])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and flag in err[-1] and value in err[-1]
    assert not (tmp_path / "never").exists()
