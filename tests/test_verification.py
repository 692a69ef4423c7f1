"""Pair verification: thresholds and scores by hand and against scikit-learn, pair sets,
splits, and the script."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

from hashing.evaluation.verification import (
    PairSet,
    cross_validate,
    f1_curve,
    fit_threshold,
    make_pairs,
    pair_scores,
    parse_rule,
    read_pairs,
    split_pairs,
    verify,
    verify_pairs,
)
from tests.conftest import REPO

D = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
Y = np.array([True, True, False, True, False, False])


def test_f1_optimal_threshold_by_hand():
    # accepting the k smallest: F1 = 0.5, 0.8, 0.667, 0.857, 0.75, 0.667 -> k = 4: the
    # threshold is the largest distance accepted, 0.4 (operating_points' one convention)
    assert fit_threshold(D, Y) == pytest.approx(0.4)
    curve = f1_curve(D, Y)
    np.testing.assert_allclose(curve["f1"], [0, 0.5, 0.8, 4 / 6, 6 / 7, 0.75, 6 / 9])
    np.testing.assert_allclose(curve["threshold"][1:], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    assert curve["threshold"][0] < 0.1


def test_precision_and_fpr_rules_by_hand():
    assert fit_threshold(D, Y, "precision", 1.0) == pytest.approx(0.2)
    assert fit_threshold(D, Y, "precision", 0.75) == pytest.approx(0.4)  # 3 of 4
    assert fit_threshold(D, Y, "fpr", 1 / 3) == pytest.approx(0.4)
    assert fit_threshold(D, Y, "fpr", 0.0) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="needs a target"):
        fit_threshold(D, Y, "fpr")
    with pytest.raises(ValueError, match="positive and negative"):
        fit_threshold(D, np.ones(6, bool))
    with pytest.raises(ValueError, match="unknown threshold rule"):
        parse_rule("recall:0.9")
    assert parse_rule("fpr:0.01") == ("fpr", 0.01) and parse_rule("f1") == ("f1", None)


def test_f1_threshold_is_the_best_of_every_cut_by_scikit_learn():
    rng = np.random.default_rng(0)
    y = rng.random(300) < 0.4
    d = np.round(np.where(y, rng.normal(0.3, 0.1, 300), rng.normal(0.5, 0.1, 300)), 2)  # ties
    t = fit_threshold(d, y)
    values = np.unique(d)
    cuts = np.r_[values[0] - 1, (values[1:] + values[:-1]) / 2, values[-1]]
    best = max(f1_score(y, d <= c) for c in cuts)
    assert f1_score(y, d <= t) == pytest.approx(best)
    assert t in values  # the largest distance accepted, not a midpoint
    s = pair_scores(d, y, t)
    assert s["precision"] == pytest.approx(precision_score(y, d <= t))
    assert s["recall"] == pytest.approx(recall_score(y, d <= t))
    assert s["accuracy"] == pytest.approx(accuracy_score(y, d <= t))


def _pairs(n_groups=12, per=4, seed=0) -> tuple[PairSet, np.ndarray]:
    rng = np.random.default_rng(seed)
    groups = [f"g{g}" for g in range(n_groups) for _ in range(per)]
    same = rng.random(len(groups)) < 0.5
    d = np.where(same, rng.normal(0.2, 0.1, len(groups)), rng.normal(0.5, 0.1, len(groups)))
    ids = [f"p{i}" for i in range(len(groups))]
    return PairSet(ids, ids, same, ["x"] * len(ids), groups), d


def test_splits_and_folds_keep_each_source_image_on_one_side():
    pairs, d = _pairs()
    val, test = split_pairs(pairs, (0.5, 0.5), seed=1)
    assert not set(val.group) & set(test.group)
    assert len(val) + len(test) == len(pairs) and len(set(val.group)) == 6
    cv = cross_validate(d, pairs.same, pairs.group, folds=4, seed=2)
    assert len(cv) == 4 and cv["pairs"].sum() == len(pairs)
    # each fold's threshold is the one chosen on the other folds
    groups = np.array(pairs.group)
    unique = np.array(sorted(set(pairs.group)), dtype=object)
    order = unique[np.random.default_rng(2).permutation(len(unique))]
    fold_of = {g: k % 4 for k, g in enumerate(order)}
    for _, row in cv.iterrows():
        held = np.array([fold_of[g] == row["fold"] for g in groups])
        assert row["threshold"] == fit_threshold(d[~held], pairs.same[~held])
        assert row["f1"] == pytest.approx(f1_score(pairs.same[held], d[held] <= row["threshold"]))
    with pytest.raises(ValueError, match="folds must be in"):
        cross_validate(d, pairs.same, pairs.group, folds=13)


def test_read_pairs_from_a_csv(tmp_path, sample_paths):
    rows = pd.DataFrame({"img1": [str(sample_paths["chelsea"]), "rel/x.png"],
                         "img2": [str(sample_paths["coffee"]), "y.png"],
                         "is_match": ["Same", "0"]})
    rows.to_csv(tmp_path / "p.csv", index=False)
    pairs = read_pairs(tmp_path / "p.csv")
    assert pairs.same.tolist() == [True, False]
    assert pairs.a[1] == str(tmp_path / "rel" / "x.png") and pairs.b[1] == str(tmp_path / "y.png")
    rows["is_match"] = ["1", "maybe"]
    rows.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match="line 3: label 'maybe'"):
        read_pairs(tmp_path / "bad.csv")
    rows.drop(columns="img2").to_csv(tmp_path / "short.csv", index=False)
    with pytest.raises(ValueError, match="no second image column"):
        read_pairs(tmp_path / "short.csv")


def test_make_pairs_positives_random_and_hard_negatives():
    from data_retrieval import load_dataset
    from generator import get_attack
    from hashing import describe, pairwise

    records = load_dataset("sample").records
    attacks = [get_attack("jpg_compression", quality=50), get_attack("rotation", angle=10)]
    pairs = make_pairs(records, attacks, "dhash", negatives=2, hard=0.5, seed=3)
    kinds = pd.Series(pairs.kind).value_counts()
    n = len(records)
    assert kinds["positive"] == n and kinds["hard"] == n and kinds["negative"] == n
    for a, b, same in zip(pairs.a, pairs.b, pairs.same, strict=True):
        assert (b.record.source_id == a.image_id) == same  # a negative never meets its source
    # hard negatives are the nearest non-source originals by dhash (brute force)
    originals = describe(records, "dhash")
    hard = [i for i, k in enumerate(pairs.kind) if k == "hard"]
    copies = describe([pairs.b[i] for i in hard], "dhash")
    d = pairwise(copies, originals)
    ids = [r.image_id for r in records]
    for row, i in enumerate(hard):
        source = ids.index(pairs.b[i].record.source_id)
        d[row, source] = np.inf
        assert d[row, ids.index(pairs.a[i].image_id)] == d[row].min()
    with pytest.raises(ValueError, match="give method"):
        make_pairs(records, attacks, None)
    # twice as many hard negatives as copies: the nearest, then the second nearest, never a
    # pair twice
    more = make_pairs(records, attacks, "dhash", negatives=2, hard=1.0, seed=3)
    hard = [(p.image_id, c.image_id) for p, c, k in zip(more.a, more.b, more.kind, strict=True)
            if k == "hard"]
    assert len(hard) == 2 * n and len(set(hard)) == 2 * n


def test_verify_against_imagehash(sample_paths):
    import imagehash
    from PIL import Image

    a, b = sample_paths["chelsea"], sample_paths["coffee"]
    distance, same = verify(a, b, "phash", threshold=0.2)
    expected = (imagehash.phash(Image.open(a)) - imagehash.phash(Image.open(b))) / 64
    assert distance == pytest.approx(expected) and same == (expected <= 0.2)
    assert verify(a, a, "phash", 0.0) == (0.0, True)
    # PIL images: both are "image 0" of their side, and still two images
    pil_a, pil_b = Image.open(a).convert("RGB"), Image.open(b).convert("RGB")
    assert verify(pil_a, pil_b, "phash", 0.2)[0] == pytest.approx(expected)
    pairs = PairSet([a, a], [a, b], np.array([True, False]), ["x", "x"], ["a", "a"])
    frame = verify_pairs(pairs, "phash", 0.2)
    assert frame["distance"].tolist() == pytest.approx([0.0, expected])
    assert frame["decision"].tolist() == [True, expected <= 0.2]


def test_verify_pairs_script(tmp_path, sample_paths):
    out = tmp_path / "v"
    done = subprocess.run(
        [sys.executable, "scripts/verify_pairs.py", "--dataset", "sample", "--methods", "dhash",
         "phash", "--attacks", "jpg_compression:50", "rotation:10", "--negatives", "2",
         "--folds", "3", "--output", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    pairs = pd.read_csv(out / "pairs.csv")
    scores = pd.read_csv(out / "scores.csv").set_index(["method", "split"])
    assert len(pairs) == 33 and pairs["same"].sum() == 11
    val = pairs["split"] == "validation"
    assert not set(pairs[val]["group"]) & set(pairs[~val]["group"])
    for method in ("dhash", "phash"):
        d = pairs[f"distance:{method}"].to_numpy()
        threshold = fit_threshold(d[val], pairs["same"][val])
        assert scores.loc[(method, "test"), "threshold"] == pytest.approx(threshold)
        assert scores.loc[(method, "test"), "f1"] == pytest.approx(
            f1_score(pairs["same"][~val], d[~val] <= threshold))
    assert (out / "figures" / "f1_curve.png").is_file()
    assert len(pd.read_csv(out / "cross_validation.csv")) == 6
    record = json.loads((out / "experiment.json").read_text())
    assert record["config"]["pairs_made"] == {"positive": 11, "hard": 11, "negative": 11}

    csv = tmp_path / "pairs.csv"
    pd.DataFrame({"a": [str(sample_paths["chelsea"])] * 2,
                  "b": [str(sample_paths["chelsea"]), str(sample_paths["coffee"])],
                  "label": [1, 0]}).to_csv(csv, index=False)
    done = subprocess.run(
        [sys.executable, "scripts/verify_pairs.py", "--pairs", str(csv), "--methods", "phash",
         "--threshold", "0.1", "--output", str(tmp_path / "fixed")],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    fixed = pd.read_csv(tmp_path / "fixed" / "scores.csv")
    assert fixed.loc[0, "f1"] == 1.0 and fixed.loc[0, "split"] == "all"


def test_unreadable_images_are_reported_and_left_out(tmp_path, sample_paths, caplog):
    from hashing.evaluation.verification import pair_distances_of

    a, b = str(sample_paths["chelsea"]), str(sample_paths["coffee"])
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    pairs = PairSet([a, a, str(tmp_path / "gone.jpg"), a], [a, b, a, str(broken)],
                    np.array([True, False, True, False]), ["x"] * 4, ["g1", "g2", "g3", "g4"])
    d = pair_distances_of(pairs, "dhash")
    assert d[0] == 0 and d[1] > 0 and np.isnan(d[2]) and np.isnan(d[3])
    assert "2 of 4 pairs have an image that could not be read" in caplog.text
    s = pair_scores(d, pairs.same, 0.1)
    assert s["pairs"] == 2 and s["tp"] == 1 and s["tn"] == 1
    with pytest.raises(Exception, match="gone.jpg"):
        verify(str(tmp_path / "gone.jpg"), a, "dhash", 0.1)
    csv = tmp_path / "pairs.csv"
    pd.DataFrame({"a": [a, a, a, a], "b": [a, b, str(tmp_path / "gone.jpg"), b],
                  "label": [1, 0, 1, 0]}).to_csv(csv, index=False)
    done = subprocess.run(
        [sys.executable, "scripts/verify_pairs.py", "--pairs", str(csv), "--methods", "dhash",
         "--threshold", "0.1", "--output", str(tmp_path / "v")],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    record = json.loads((tmp_path / "v" / "experiment.json").read_text())
    assert record["pairs_not_read"] == {"dhash": 1}
    assert pd.read_csv(tmp_path / "v" / "scores.csv").loc[0, "pairs"] == 3


def test_bad_flags_fail_before_any_work(tmp_path):
    for flags, message in ((["--rule", "fpr:2"], "must be in [0, 1]"),
                           (["--folds", "1"], "--folds must be 0"),
                           (["--threshold", "nan"], "'nan' is not a number"),
                           (["--negatives", "0"], "needs negative pairs"),
                           (["--folds", "50"], "the pairs have 11 source images")):
        done = subprocess.run(
            [sys.executable, "scripts/verify_pairs.py", "--dataset", "sample", "--methods",
             "dhash", "--attacks", "jpg_compression:50", *flags, "--output",
             str(tmp_path / "never")], cwd=REPO, capture_output=True, text=True, timeout=600)
        assert done.returncode == 2 and message in done.stderr, (flags, done.stderr)
        assert not (tmp_path / "never").exists()


def test_random_negatives_never_repeat_a_pair():
    from data_retrieval import load_dataset
    from generator import get_attack

    records = load_dataset("sample").records
    pairs = make_pairs(records, [get_attack("jpg_compression", quality=50)], "dhash",
                       negatives=6, hard=0.3, seed=0)
    negatives = [(x.image_id, y.image_id) for x, y, s in
                 zip(pairs.a, pairs.b, pairs.same, strict=True) if not s]
    assert len(negatives) == 66 and len(set(negatives)) == 66
    with pytest.raises(ValueError, match="distinct ones"):
        make_pairs(records, [get_attack("jpg_compression", quality=50)], "dhash",
                   negatives=20, hard=0.0)


def test_several_methods_decode_each_image_once_and_share_the_network(sample_paths,
                                                                       monkeypatch):
    """verify_pairs's path: every method's distances equal the one-method call's, each file
    is decoded once for all methods, and two algorithms on one model run it once a batch."""
    import importlib

    from extractor.models import TorchFeatureModel
    from hashing import pair_distances_many, pair_distances_of, parse_algorithm

    names = ["chelsea", "coffee", "rocket", "astronaut"]
    paths = [str(sample_paths[n]) for n in names]
    pairs = PairSet(paths, paths[1:] + paths[:1], np.array([False] * 4), ["x"] * 4,
                    names)
    methods = ["dhash", "phash", "efficientnet_lite0",
               "efficientnet_lite0:distance='l2'"]
    alone = {m: pair_distances_of(pairs, m) for m in methods}
    loads, forwards = [], []
    module = importlib.import_module("hashing.methods.describing")
    load_item, forward = module.load_item, TorchFeatureModel.forward
    monkeypatch.setattr(module, "load_item",
                        lambda source: loads.append(source) or load_item(source))
    monkeypatch.setattr(TorchFeatureModel, "forward",
                        lambda self, batch: forwards.append(len(batch)) or forward(self, batch))
    together = pair_distances_many(pairs, methods, batch_size=64)
    labels = [parse_algorithm(m).label for m in methods]
    assert list(together) == labels
    for method, label in zip(methods, labels, strict=True):
        assert np.array_equal(together[label], alone[method]), method
    assert sorted(map(str, loads)) == sorted(paths)
    assert forwards == [4]
    with pytest.raises(ValueError, match="repeat"):
        pair_distances_many(pairs, ["dhash", "dhash"])


def test_verify_pairs_flags_and_names_are_refused_when_parsed(tmp_path, capsys):
    from tests.conftest import load_script

    main = load_script("verify_pairs").main
    for flag, value in (("--name", "../x"), ("--name", "a/b"), ("--count", "-1"),
                        ("--hard", "1.5"), ("--batch-size", "0"), ("--folds", "-1"),
                        ("--validation-fraction", "0")):
        with pytest.raises(SystemExit) as exit_:
            main(["--dataset", "sample", flag, value])
        last = capsys.readouterr().err.strip().splitlines()[-1]
        assert exit_.value.code == 2 and flag in last, (flag, last)
