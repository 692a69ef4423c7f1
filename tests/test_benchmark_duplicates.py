"""`scripts/benchmark_duplicates.py`: the folder experiment of issue 28 on the ``sample`` photos
(3 originals x 6 common edits, 8 distinct photos), checked against hand-computed values."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import load_script, run_main


@pytest.fixture(scope="module")
def result(tmp_path_factory) -> dict:
    output = tmp_path_factory.mktemp("bench") / "duplicates.json"
    code, err = run_main("benchmark_duplicates", [
        "--dataset", "sample", "--subset", "", "--count", "3", "--distinct-dataset", "sample",
        "--distinct-count", "8", "--methods", "dhash", "--hamming-grid", "0", "1",
        "--dedup-bits", "64", "--rules", "pairs_fpr:0.5", "--scale-count", "30",
        "--scale-datasets", "sample", "--output", str(output)])
    assert code == 0, err
    return json.loads(output.read_text())


def test_the_folder_holds_each_original_and_its_six_copies(result):
    folder = result["folder"]
    assert folder["originals"] == 3 and folder["images"] == 3 * 7
    timing = folder["methods"]["dhash"]["timing"]
    assert timing["images"] == 21 and timing["skipped"] == 0
    assert result["distinct"]["images"] == 8 and result["machine"]["cpus"] >= 1


def test_a_threshold_accepting_every_pair_makes_one_group(result):
    """A bit error rate of 1 joins every image: one group, homogeneity 0 (three sources in
    one cluster), completeness 1, V-measure 0; on the distinct photos one false group."""
    top = result["folder"]["methods"]["dhash"]["grid"][-1]
    assert top["threshold"] == 1.0 and top["groups"] == top["clusters"] == 1
    assert (top["homogeneity"], top["completeness"], top["v_measure"]) == pytest.approx(
        (0.0, 1.0, 0.0))
    assert set(top["copies_apart_from_original"].values()) == {0}
    false = result["distinct"]["methods"]["dhash"]["grid"][-1]
    assert false["false_groups"] == 1 and false["images_in_false_groups"] == 8
    dedup = result["folder"]["imagededup"]
    if "skipped" not in dedup:
        assert {r["groups"] for h in dedup.values() for r in h["grid"]} == {1}
        assert {r["v_measure"] for h in dedup.values() for r in h["grid"]} == {0.0}


def test_groups_agree_with_connected_components_of_the_distances(result):
    for part in ("folder", "distinct"):
        for row in result[part]["methods"]["dhash"]["grid"]:
            groups = row["groups"] if part == "folder" else row["false_groups"]
            assert groups == row["scipy_groups"]


def test_calibration_rules_by_hand():
    """Four images, six pairs at 0.1 ... 0.6."""
    script = load_script("benchmark_duplicates")
    d = np.full((4, 4), np.inf)
    for (i, j), value in zip([(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)],
                             [0.1, 0.2, 0.3, 0.4, 0.5, 0.6], strict=True):
        d[i, j] = d[j, i] = value
    rule = script.calibrated_threshold
    assert rule("pairs_fpr:0.2", d) == pytest.approx(0.1)  # one pair of six accepted
    assert rule("pairs_fpr:0.5", d) == pytest.approx(0.3)
    assert rule("pairs_fpr:0", d) == 0.0  # nothing may be accepted: identical images only
    # nearest-neighbour distances 0.1, 0.1, 0.2, 0.3
    assert rule("nn_quantile:0.5", d) == pytest.approx(0.15)
    assert rule("pairs_fraction:0.5", d) == pytest.approx(0.175)
    with pytest.raises(ValueError, match="unknown rule"):
        rule("median:0.5", d)


def test_recommendation_takes_the_middle_of_what_reaches_both_targets():
    script = load_script("benchmark_duplicates")
    args = script.parse_args(["--max-false-groups", "2"])
    v = [0.90, 0.97, 0.98, 0.99, 0.95]
    false = [0, 0, 0, 2, 9]
    copies = [{"threshold": t, "v_measure": x} for t, x in zip([.1, .2, .3, .4, .5], v,
                                                                strict=True)]
    distinct = [{"false_groups": f, "images_in_false_groups": 2 * f} for f in false]
    both = script.recommend(args, copies, distinct, 2)
    assert both["both_targets_at"] == [.2, .3, .4] and both["threshold"] == .3
    assert script.recommend(args, copies, distinct, 0)["both_targets_at"] == [.2, .3]
    assert script.recommend(args, copies, distinct, 0)["threshold"] == .2  # lower middle
    low = [{**c, "v_measure": c["v_measure"] - 0.1} for c in copies]
    best = script.recommend(args, low, distinct, 2)  # none reaches 0.97: the best V allowed
    assert best["both_targets_at"] == [] and best["threshold"] == .4


def test_the_scale_folder_holds_the_count_and_is_grouped_end_to_end(result):
    """11 sample originals and their copies until 30 images, each copy of one source: grouped
    at dhash's default and by imagededup, with time and V-measure for each."""
    scale = result["scale"]
    assert scale["images"] == 30 and scale["datasets"] == ["sample"]
    assert scale["dhash"]["images"] == 30 and scale["dhash"]["end_to_end_s"] > 0
    assert 0 <= scale["dhash"]["v_measure"] <= 1
    if "imagededup_PHash" in scale:
        assert scale["imagededup_PHash"]["images"] == 30
