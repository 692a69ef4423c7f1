"""The scripts end to end on the embedded `sample` dataset."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from tests.conftest import REPO


def run(*args: str, cwd=REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600)


def test_generate_attacks_end_to_end(tmp_path):
    out = tmp_path / "attacks"
    done = run("scripts/generate_attacks.py", "sample", str(out), "--limit", "2",
               "--attacks", "jpg_compression:10,50", "text_length_20", "--workers", "2")
    assert done.returncode == 0, done.stderr
    assert "wrote 6 images" in done.stdout
    manifest = pd.read_csv(out / "manifest.csv")
    assert len(manifest) == 6
    assert set(manifest["attack_id"]) == {"jpg_compression_10", "jpg_compression_50",
                                          "text_length_20"}
    assert all((out / p).is_file() for p in manifest["path"])
    record = json.loads((out / "experiment.json").read_text())
    assert record["config"]["seed"] == 0 and record["counts"]["written"] == 6
    assert record["versions"]["numpy"]

    again = run("scripts/generate_attacks.py", "sample", str(out), "--limit", "2",
                "--attacks", "jpg_compression:10,50", "text_length_20")
    assert again.returncode == 2 and "--resume" in again.stderr
    resumed = run("scripts/generate_attacks.py", "sample", str(out), "--limit", "2",
                  "--attacks", "jpg_compression:10,50", "text_length_20", "--resume")
    assert resumed.returncode == 0 and "wrote 0 images, kept 6" in resumed.stdout
    changed = run("scripts/generate_attacks.py", "sample", str(out), "--limit", "2",
                  "--seed", "3", "--resume")
    assert changed.returncode == 2 and "other settings" in changed.stderr


def test_generate_attacks_reports_bad_names(tmp_path):
    done = run("scripts/generate_attacks.py", "sample", str(tmp_path / "o"),
               "--attacks", "blur:3")
    assert done.returncode == 2 and "unknown attack family" in done.stderr
    done = run("scripts/generate_attacks.py", "nodataset", str(tmp_path / "o"))
    assert done.returncode == 2 and "neither a dataset name" in done.stderr
    assert not (tmp_path / "o").exists()


def test_create_groups_end_to_end(tmp_path):
    out = tmp_path / "groups.csv"
    done = run("scripts/create_groups.py", "sample", "--output", str(out),
               "--n-experimental", "6", "--seed", "4")
    assert done.returncode == 0, done.stderr
    frame = pd.read_csv(out)
    assert (frame["group"] == "experimental").sum() == 6
    assert (frame["group"] == "control").sum() == len(frame) - 6
    attacked = tmp_path / "ctl"
    done = run("scripts/generate_attacks.py", str(out), str(attacked), "--group", "control",
               "--attacks", "horizontal_flip", "--workers", "0")
    assert done.returncode == 0, done.stderr
    manifest = pd.read_csv(attacked / "manifest.csv")
    assert set(manifest["group"]) == {"control"}
    assert set(manifest["source_id"]) == set(frame.loc[frame["group"] == "control", "image_id"])
    refused = run("scripts/create_groups.py", "sample", "--output", str(out))
    assert refused.returncode == 2 and "--overwrite" in refused.stderr


@pytest.mark.parametrize("script", ["generate_attacks.py", "create_groups.py",
                                    "split_kaggle_memes.py", "download_datasets.py",
                                    "benchmark_generator.py", "evaluate_copy_detection.py",
                                    "process_results.py", "benchmark_hashing.py"])
def test_help(script):
    done = run(f"scripts/{script}", "--help")
    assert done.returncode == 0 and "usage" in done.stdout


def test_benchmark_generator_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    done = run("scripts/benchmark_generator.py", "--dataset", "sample", "--n-images", "2",
               "--workers", "2", "--output", str(out))
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["n_attacks"] == 58 and result["in_memory"]["images"] == 116
    assert result["to_disk_png"]["images"] == 116
    assert result["per_family_one_process"]["rotation"]["speedup_vs_study"] > 0
    assert run("scripts/benchmark_generator.py", "--dataset", "sample",
               "--output", str(out)).returncode == 2  # never overwritten silently


def test_hashing_benchmark_and_process_results_end_to_end(tmp_path):
    out = tmp_path / "bench"
    args = ["scripts/evaluate_copy_detection.py", "--dataset", "sample", "--n-experimental", "4",
            "--n-control", "3", "--n-attacked", "3", "--attacks", "jpg_compression_50",
            "rotation_20_and_rescaling", "--algorithms", "phash", "crop_resistant:cutoff=2",
            "--output", str(out)]
    done = run(*args)
    assert done.returncode == 0, done.stderr
    assert "phash" in done.stdout and "crop_resistant" in done.stdout
    for name in ("general.json", "attacks.json", "images_pos.json", "images_neg.json",
                 "match_time.json", "db_time.json", "experiment.json", "summary.csv",
                 "figures/roc.pdf", "figures/roc.png", "figures/auc_heatmap.png"):
        assert (out / name).is_file(), name
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary.algorithm) == ["phash", "crop_resistant_cutoff=2"]
    experiment = json.loads((out / "experiment.json").read_text())
    assert experiment["counts"]["queries"] == 12
    assert run(*args).returncode == 2  # an existing result is never overwritten silently
    (out / "figures" / "roc.png").unlink()
    redo = run("scripts/process_results.py", str(out))
    assert redo.returncode == 0, redo.stderr
    assert (out / "figures" / "roc.png").is_file()
    # two digests that share algorithm names (here: the same one twice) merge into one figure
    merged = run("scripts/process_results.py", str(out), str(out), "--output",
                 str(tmp_path / "merged"))
    assert merged.returncode == 0, merged.stderr
    assert (tmp_path / "merged" / "roc.png").is_file()


@pytest.mark.parametrize("bad, message", [
    (["--algorithms", "phsh"], "unknown algorithm 'phsh' (closest: 'phash')"),
    (["--dataset", "nope"], "nope"),
    (["--attacks", "rotation_banana"], "unknown attack"),
    (["--algorithms", "phash:hash_size=1"], "hash_size"),
    (["--n-attacked", "0"], "no query"),
])
def test_hashing_benchmark_clear_errors(tmp_path, bad, message):
    out = tmp_path / "bench"
    done = run("scripts/evaluate_copy_detection.py", "--dataset", "sample", "--n-experimental", "4",
               "--n-control", "3", "--n-attacked", "2", "--output", str(out), *bad)
    assert done.returncode == 2
    assert message in done.stderr
    assert not out.exists() or not any(out.iterdir())  # nothing half-written


def test_hashing_benchmark_reads_query_manifest(tmp_path):
    attacked = tmp_path / "attacked"
    assert run("scripts/generate_attacks.py", "sample", str(attacked), "--attacks",
               "jpg_compression_50").returncode == 0
    manifest = pd.read_csv(attacked / "manifest.csv")
    broken = attacked / "broken.png"
    broken.write_bytes(b"not an image")
    manifest.loc[len(manifest)] = ["broken", "broken.png", manifest.source_id[0],
                                   "jpg_compression_50", None]
    manifest.to_csv(attacked / "manifest.csv", index=False)
    out = tmp_path / "bench"
    done = run("scripts/evaluate_copy_detection.py", "--dataset", "sample", "--n-experimental", "5",
               "--n-control", "6", "--queries", str(attacked / "manifest.csv"),
               "--algorithms", "dhash", "--no-figures", "--output", str(out))
    assert done.returncode == 0, done.stderr
    assert "skipped 1 bad input" in done.stdout
    assert len(pd.read_csv(out / "matches.csv")) == 11
    counts = json.loads((out / "experiment.json").read_text())["counts"]
    assert counts["queries"] == 11 and counts["queries_planned"] == 12  # what was matched
    assert "11 queries" in done.stdout
    assert list(pd.read_csv(out / "bad_images.csv")["path"]) == [str(broken)]


# --- the one output mechanism (issue 25): benchmarks write one JSON each ------------------------


def _in_process(script: str, argv: list[str]) -> tuple[int, str]:
    """(exit status, last stderr line) of a script's main run here; argparse exits count."""
    from tests.conftest import run_main

    code, err = run_main(script, argv)
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    return code, lines[-1] if lines else ""


@pytest.mark.parametrize("script", ["benchmark_generator", "benchmark_hashing",
                                    "benchmark_extraction"])
def test_benchmarks_never_replace_a_file_they_did_not_make(tmp_path, script):
    base = ["--dataset", "sample", "--n-images", "1"]
    if script == "benchmark_hashing":
        base += ["--parts", "hamming_1nn", "--hamming", "2", "3", "64"]
    made = {"search.json": json.dumps({"experiment": {"script": "benchmark_search"}}),
            "plain.json": "{}", "README.md": "# results\n", "store.npy": "not yours"}
    for name, content in made.items():
        (tmp_path / name).write_text(content)
        code, line = _in_process(script, [*base, "--output", str(tmp_path / name),
                                          "--overwrite"])
        assert code == 2 and line.count("error") == 1, (name, line)
        assert ("made by 'benchmark_search'" in line if name == "search.json" else
                "not a result of" in line if name == "plain.json" else
                "must end with .json" in line), (name, line)
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == made


@pytest.mark.parametrize(("script", "extra", "message"), [
    ("benchmark_generator", ["--n-images", "0"], "argument --n-images"),
    ("benchmark_generator", ["--workers", "-1"], "argument --workers"),
    ("benchmark_extraction", ["--batch-size", "0"], "argument --batch-size"),
    ("benchmark_extraction", ["--repeats", "nan"], "argument --repeats"),
    ("benchmark_hashing", ["--hamming", "2", "3", "12"], "multiple of 8"),
    ("benchmark_hashing", ["--js", "2", "3"], "expected 3 numbers"),
    ("benchmark_hashing", ["--js", "1000000", "1000000", "65536"], "GB of memory may be used"),
    ("benchmark_hashing", ["--keypoints", "nan", "3", "20"], "argument --keypoints"),
])
def test_benchmark_values_are_refused_before_any_output(tmp_path, script, extra, message):
    out = tmp_path / "b" / "bench.json"
    code, line = _in_process(script, ["--dataset", "sample", *extra, "--output", str(out)])
    assert code == 2 and message in line, line
    assert not (tmp_path / "b").exists()


def test_benchmark_hashing_replaces_its_own_result_with_overwrite(tmp_path):
    out = tmp_path / "bench.json"
    argv = ["--dataset", "sample", "--n-images", "1", "--parts", "hamming_1nn", "--hamming",
            "4", "16", "64", "--output", str(out)]
    assert _in_process("benchmark_hashing", argv)[0] == 0
    first = json.loads(out.read_text())
    assert first["experiment"]["script"] == "benchmark_hashing"
    assert first["hamming_1nn"]["distances_equal"]
    code, line = _in_process("benchmark_hashing", argv)
    assert code == 2 and "--overwrite" in line
    assert _in_process("benchmark_hashing", argv + ["--overwrite"])[0] == 0


def test_the_former_name_of_the_study_script_still_runs_and_says_so(tmp_path):
    """hashing_benchmark.py (renamed evaluate_copy_detection.py, so that the study cannot be
    confused with benchmark_hashing.py, the speed benchmark) works for one release with a
    deprecation message, and a result made under the old name is the new script's: its
    --overwrite replaces it."""
    args = ["--dataset", "sample", "--n-experimental", "3", "--n-control", "2",
            "--n-attacked", "2", "--attacks", "jpg_compression_50", "--algorithms", "dhash",
            "--output", str(tmp_path / "run")]
    old = run("scripts/hashing_benchmark.py", *args)
    assert old.returncode == 0, old.stderr
    assert "DeprecationWarning: scripts/hashing_benchmark.py is now " \
           "scripts/evaluate_copy_detection.py" in old.stderr
    record = json.loads((tmp_path / "run" / "experiment.json").read_text())
    assert record["script"] == "evaluate_copy_detection"
    record["script"] = "hashing_benchmark"  # as a result from before the rename says
    (tmp_path / "run" / "experiment.json").write_text(json.dumps(record))
    new = run("scripts/evaluate_copy_detection.py", *args, "--overwrite")
    assert new.returncode == 0, new.stderr
    assert "DeprecationWarning" not in new.stderr


def test_process_results_names_the_script_that_draws_a_clustering_result(tmp_path):
    (tmp_path / "clusters.json").write_text("{}")
    done = run("scripts/process_results.py", str(tmp_path))
    assert done.returncode == 2
    assert "is a clustering result" in done.stderr and "scripts/cluster.py" in done.stderr
    assert not (tmp_path / "figures").exists()
