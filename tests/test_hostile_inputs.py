"""Hostile but realistic inputs: bad values, undecodable file names, kills and resumes, two runs
at once. Every refusal is one line naming the value, before any output folder exists."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from data_retrieval import list_images, read_manifest
from extractor import extract_to_store, get_model, load_store
from hashing.evaluation.benchmark import NEGATIVE, POSITIVE, BenchmarkResult
from hashing.evaluation.digest import compute_digest, threshold_grid, write_digest
from helpers import FolderLock
from tests.conftest import REPO, run_main, tree

NON_UTF8 = os.fsdecode(b"caf\xe9")  # a file name that is not valid UTF-8


def _photos(folder: Path, n: int = 4, size=(48, 32)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        image = Image.new("RGB", size, ((60 * i) % 256, 100, 200 - 30 * i))
        image.putpixel((i, i), (0, 0, 0))
        image.save(folder / f"p{i}.png")
    return folder


@pytest.fixture
def photos(tmp_path) -> Path:
    return _photos(tmp_path / "photos")


_call = run_main


def _truncated_jpeg() -> bytes:
    """A JPEG cut in half: its header reads, its pixels do not decode."""
    data = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    Image.fromarray(noise).save(data, format="JPEG")
    return data.getvalue()[: len(data.getvalue()) // 2]


def _one_line_error(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    last = stderr.strip().splitlines()[-1]
    assert "error:" in last, stderr
    return last


# --- bad values: one line, nothing written ------------------------------------------------------

GEN = ["generate_attacks", "{photos}", "{out}", "--workers", "0"]
BENCH = ["evaluate_copy_detection", "--dataset", "folder:{photos}", "--n-experimental", "2",
         "--n-control", "2", "--n-attacked", "1", "--no-figures", "--output", "{out}"]
EXTRACT = ["extract_features", "--model", "efficientnet_lite0", "--dataset", "folder:{photos}",
           "--features-dir", "{out}"]

BAD_VALUES = [
    (GEN, ["--attacks", "gaussian_noise:nan"], "a finite number, got nan"),
    (GEN, ["--attacks", "rotation:inf"], "a finite number, got inf"),
    (GEN, ["--attacks", "scaling:1e9"], "ratio' must be in (0, 10]"),
    (GEN, ["--attacks", "text:1000000000"], "length' must be in [1, 1000]"),
    (GEN, ["--attacks", "padding:fraction=0.1;color=../../x"], "one word"),
    (GEN, ["--workers", "-1"], "argument --workers: '-1' is not an integer in [0, 1024]"),
    (GEN, ["--format", "xyz"], "cannot write images as 'xyz'"),
    (BENCH, ["--workers", "-1"], "argument --workers: '-1' is not an integer in [0, 1024]"),
    (BENCH, ["--device", "bogus"], "unknown device 'bogus'"),
    (BENCH, ["--algorithms", "phash", "phash"], "more than once"),
    (BENCH, ["--algorithms", "phash", "phash:hash_size=8"], "same method twice"),
    (BENCH, ["--algorithms", "phash:hash_size=100000"], "hash_size must be in [2, 64]"),
    (BENCH, ["--algorithms", "phash:hash_size=abc"], "must be an integer, got 'abc'"),
    (BENCH, ["--thresholds", "nan"], "argument --thresholds: 'nan' is not a number"),
    (BENCH, ["--summary-threshold", "-5"], "argument --summary-threshold: '-5' is not"),
    (BENCH, ["--attacks", "jpg_compression:1e9"], "quality"),
    (EXTRACT, ["--dataset", "no_such_dataset"], "unknown dataset 'no_such_dataset'"),
    (EXTRACT, ["--device", "bogus"], "unknown device 'bogus'"),
    (EXTRACT, ["--model-param", "image_size=-5"], "preprocessing fails"),
    (EXTRACT, ["--weights", "{notckpt}"], "could not be loaded"),
    (EXTRACT, ["--workers", "-1"], "argument --workers: '-1' is not an integer in [0, 1024]"),
]


@pytest.mark.parametrize(("base", "extra", "message"), BAD_VALUES,
                         ids=[" ".join(e) for _, e, _ in BAD_VALUES])
def test_bad_values_give_one_line_before_any_output(tmp_path, photos, base, extra, message):
    notckpt = tmp_path / "weights.pt"
    notckpt.write_text("not a checkpoint")
    out = tmp_path / "out"
    names = {"photos": str(photos), "out": str(out), "notckpt": str(notckpt)}
    argv = [a.format(**names) for a in base[1:]]
    if base is GEN:
        argv[0] = f"folder:{photos}"
    code, err = _call(base[0], argv + [a.format(**names) for a in extra])
    assert code == 2
    assert message in _one_line_error(err)
    assert not out.exists()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("base", [BENCH, EXTRACT], ids=["benchmark", "extract"])
def test_cuda_without_a_gpu_is_said(tmp_path, photos, base):
    argv = [a.format(photos=photos, out=tmp_path / "out") for a in base[1:]]
    code, err = _call(base[0], argv + ["--device", "cuda"])
    assert code == 2 and "CUDA is not available" in _one_line_error(err)


def test_output_under_a_file_is_refused(tmp_path, photos):
    (tmp_path / "file").write_text("x")
    code, err = _call("generate_attacks", [f"folder:{photos}", str(tmp_path / "file" / "out"),
                                           "--attacks", "grayscale"])
    assert code == 2 and "which is a file" in _one_line_error(err)


def test_nothing_processed_is_an_error(tmp_path):
    """A dataset whose every image fails to decode: no empty manifest, store or digest with
    exit 0."""
    broken = tmp_path / "broken"
    broken.mkdir()
    for i in range(2):
        (broken / f"b{i}.jpg").write_bytes(_truncated_jpeg())
    code, err = _call("generate_attacks", [f"folder:{broken}", str(tmp_path / "g"),
                                           "--attacks", "grayscale", "--workers", "0"])
    assert code == 2 and "no image was attacked" in _one_line_error(err)
    code, err = _call("extract_features", ["--model", "efficientnet_lite0", "--dataset",
                                           f"folder:{broken}", "--features-dir",
                                           str(tmp_path / "f"), "--workers", "0"])
    assert code == 2 and "no image could be processed (2 failed" in _one_line_error(err)
    assert not list((tmp_path / "f").rglob("*.npy"))
    code, err = _call("evaluate_copy_detection", [
        "--dataset", f"folder:{broken}", "--n-experimental", "1", "--n-control", "1",
        "--n-attacked", "1", "--attacks", "grayscale", "--algorithms", "ahash",
        "--no-figures", "--output", str(tmp_path / "b")])
    assert code == 2 and "database is empty" in _one_line_error(err)


# --- file names that are not UTF-8 --------------------------------------------------------------


@pytest.fixture
def non_utf8_photos(tmp_path) -> Path:
    folder = _photos(tmp_path / "mixed", n=3)
    os.rename(folder / "p0.png", os.path.join(folder, NON_UTF8 + ".png"))
    return folder


def test_non_utf8_names_work_through_attacks_benchmark_and_extraction(tmp_path,
                                                                       non_utf8_photos):
    out = tmp_path / "attacks"
    code, err = _call("generate_attacks", [f"folder:{non_utf8_photos}", str(out), "--attacks",
                                           "gaussian_noise_0.01", "--workers", "0"])
    assert code == 0, err
    records = read_manifest(out / "manifest.csv")  # the manifest round-trips the bytes
    assert NON_UTF8 in {r.source_id for r in records}
    assert all(r.path.is_file() for r in records)
    frame = pd.read_csv(out / "manifest.csv", encoding_errors="surrogateescape")
    assert len(frame) == 3
    code, err = _call("evaluate_copy_detection", [
        "--dataset", f"folder:{non_utf8_photos}", "--n-experimental", "2", "--n-control", "1",
        "--n-attacked", "1", "--attacks", "jpg_compression_50", "--algorithms", "dhash",
        "--output", str(tmp_path / "bench")])
    assert code == 0, err
    code, err = _call("extract_features", ["--model", "efficientnet_lite0", "--dataset",
                                           f"folder:{non_utf8_photos}", "--features-dir",
                                           str(tmp_path / "f"), "--workers", "0"])
    assert code == 0, err
    sidecar = next((tmp_path / "f").rglob("efficientnet_lite0.json"))
    store = load_store(sidecar.parent.name, "efficientnet_lite0", tmp_path / "f")
    assert NON_UTF8 in store.ids and store.features.shape == (3, 1280)


# --- the digest ---------------------------------------------------------------------------------


def test_threshold_grid_has_no_near_duplicates():
    grid = threshold_grid([0.0, 0.1, 0.19999999, 0.2000000001, 0.3], 0.2)
    assert list(grid) == [0.0, 0.1, 0.2, 0.3]
    assert np.all(~np.isclose(grid[1:], grid[:-1]))


def _result(distances) -> BenchmarkResult:
    n = len(distances)
    matches = pd.DataFrame({
        "algorithm": "hist_hash", "query_id": [f"q{i}" for i in range(n)],
        "source_id": ["a"] * n, "attack_id": "grayscale",
        "kind": [POSITIVE, NEGATIVE] * (n // 2), "nearest_id": "a", "nearest_index": 0,
        "source_index": [0, -1] * (n // 2), "distance": distances,
        "source_distance": distances, "correct": [True, False] * (n // 2)})
    timing = pd.DataFrame({"algorithm": ["hist_hash"], "seconds": [1.0], "images": [1],
                           "seconds_per_image": [1.0]})
    return BenchmarkResult(pd.DataFrame({"image_id": ["a"], "path": ["a.png"]}), matches,
                           timing, timing)


def test_digest_survives_thresholds_numpy_takes_for_one(tmp_path):
    """0.19999999 beside the summary threshold 0.2 crashed compute_digest after all the
    work; now the grid holds 0.2 once and the summary reads it."""
    result = _result([0.0, 0.19999999, 0.1, 0.5])
    digest = compute_digest(result, {"hist_hash": [0.0, 0.19999999, 0.2, 0.4]}, 0.2)
    assert len(digest["summary"]) == 1
    assert digest["summary"]["detection_recall"].notna().all()


def test_matches_are_on_disk_before_the_digest_is_computed(tmp_path, monkeypatch):
    import hashing.evaluation.digest

    def boom(*args, **kwargs):
        raise RuntimeError("a bug in the metrics")

    monkeypatch.setattr(hashing.evaluation.digest, "compute_digest", boom)
    with pytest.raises(RuntimeError):
        write_digest(_result([0.0, 0.3]), tmp_path)
    assert len(pd.read_csv(tmp_path / "matches.csv")) == 2


# --- resume, interruption, two runs at once -----------------------------------------------------


def test_resume_remakes_damaged_files_and_cleans_temporaries(tmp_path, photos):
    out = tmp_path / "out"
    argv = [f"folder:{photos}", str(out), "--attacks", "jpg_compression_50", "grayscale",
            "--workers", "0"]
    assert _call("generate_attacks", argv)[0] == 0
    first = sorted(out.glob("*.png"))
    good = {p.name: p.read_bytes() for p in first}
    first[0].write_bytes(b"")  # empty
    first[1].write_bytes(good[first[1].name][: len(good[first[1].name]) // 2])  # truncated
    (out / ".p0_grayscale.png.0123456789ab.tmp").write_bytes(b"")  # left by a kill
    code, err = _call("generate_attacks", argv + ["--resume"])
    assert code == 0, err
    assert {p.name: p.read_bytes() for p in out.glob("*.png")} == good
    assert not list(out.glob(".*.tmp"))
    record = json.loads((out / "experiment.json").read_text())
    assert record["counts"]["written"] == 2 and record["counts"]["already_there"] == 6


def test_a_second_run_on_the_same_output_refuses(tmp_path, photos):
    out = tmp_path / "out"
    argv = [f"folder:{photos}", str(out), "--attacks", "grayscale", "--workers", "0"]
    assert _call("generate_attacks", argv)[0] == 0
    with FolderLock(out):  # another run is writing it
        code, err = _call("generate_attacks", argv + ["--resume"])
        assert code == 2 and "in use by process" in _one_line_error(err)
        code, err = _call("generate_attacks", argv[:2] + ["--attacks", "vertical_flip",
                                                         "--overwrite"])
        assert code == 2 and "in use by process" in _one_line_error(err)
    assert len(list(out.glob("*.png"))) == 4


def _attacks_running(tmp_path, images: int):
    """(command, process, output) of generate_attacks on 24 large photos (about 15 s here, so
    that a slow poll cannot let it finish first), once it has written ``images`` images."""
    photos = _photos(tmp_path / "big", n=24, size=(640, 480))
    out = tmp_path / "out"
    command = [sys.executable, str(REPO / "scripts" / "generate_attacks.py"), str(photos),
               str(out), "--attacks", "default", "--workers", "2"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(out.glob("*.png"))) < images:
        time.sleep(0.1)
    written = len(list(out.glob("*.png")))
    assert process.poll() is None, f"the run ended ({written} images) before the signal"
    return command, process, out


def test_sigint_ends_with_one_line_and_resume_finishes(tmp_path):
    command, process, out = _attacks_running(tmp_path, 20)
    os.killpg(process.pid, signal.SIGINT)  # as Ctrl-C: the whole process group
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert err.strip().splitlines()[-1].startswith("interrupted: finished files are kept")
    assert not list(out.glob(".*.tmp"))
    done = subprocess.run(command + ["--resume"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert len(read_manifest(out / "manifest.csv")) == 24 * 58


def test_store_killed_between_npy_and_sidecar_is_finished_by_a_rerun(tmp_path, photos):
    model = get_model("efficientnet_lite0")
    records = list_images(photos)[0]
    npy = extract_to_store(model, records, "photos", root=tmp_path)
    expected = np.load(npy)
    npy.with_suffix(".json").unlink()  # as if killed right after the .npy was renamed
    with pytest.raises(FileNotFoundError, match="unfinished"):
        load_store("photos", "efficientnet_lite0", tmp_path)
    extract_to_store(model, records, "photos", root=tmp_path)  # not "already finished"
    np.testing.assert_array_equal(load_store("photos", "efficientnet_lite0", tmp_path).features,
                                  expected)


def test_damaged_chunk_is_extracted_again(tmp_path, photos, monkeypatch):
    import extractor.store

    model = get_model("efficientnet_lite0")
    records = list_images(photos)[0]
    expected = np.load(extract_to_store(model, records, "whole", root=tmp_path))

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # killed after the chunks, before the merge

    with monkeypatch.context() as patch:
        patch.setattr(extractor.store, "_merge", killed)
        with pytest.raises(KeyboardInterrupt):
            extract_to_store(model, records, "cut", root=tmp_path, batch_size=2, chunk_size=2)
    chunks = sorted((tmp_path / "cut" / "efficientnet_lite0.partial").glob("chunk_*.npz"))
    assert len(chunks) == 2
    chunks[1].write_bytes(chunks[1].read_bytes()[:100])  # a damaged file
    npy = extract_to_store(model, records, "cut", root=tmp_path, batch_size=2, chunk_size=2)
    np.testing.assert_allclose(np.load(npy), expected, rtol=1e-5, atol=1e-6)


# --- reporting ----------------------------------------------------------------------------------


def test_listing_reports_loops_unreadable_folders_and_broken_links(tmp_path, monkeypatch):
    folder = _photos(tmp_path / "d", n=2)
    _photos(folder / "sub", n=1)
    _photos(folder / "locked", n=1)
    (folder / "sub" / "loop").symlink_to(folder)
    (folder / "gone.png").symlink_to(tmp_path / "nowhere.png")
    real_scandir = os.scandir

    def scandir(path):  # root reads any folder: refuse this one as a user's system would
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    records, bad = list_images(folder)
    assert sorted(r.image_id for r in records) == ["p0", "p1", "sub/p0"]
    reasons = {p.name: r for p, r in ((b.path, b.reason) for b in bad)}
    assert "symbolic link loop" in reasons["loop"]
    assert "Permission denied" in reasons["locked"]
    assert reasons["gone.png"] == "broken symbolic link"


def test_bad_images_csv_lists_every_bad_input(tmp_path, photos):
    (photos / "empty.png").write_bytes(b"")
    (photos / "text.jpg").write_text("not pixels")
    (photos / "cut.jpg").write_bytes(_truncated_jpeg())
    out = tmp_path / "out"
    code, err = _call("generate_attacks", [f"folder:{photos}", str(out), "--attacks",
                                           "grayscale", "--workers", "0"])
    assert code == 0, err
    listed = pd.read_csv(out / "bad_images.csv")
    assert sorted(Path(p).name for p in listed["path"]) == ["cut.jpg", "empty.png", "text.jpg"]
    assert json.loads((out / "experiment.json").read_text())["counts"]["bad_inputs"] == 3


# --- property: hostile names, ids and values ----------------------------------------------------

HOSTILE_TEXT = st.one_of(
    st.sampled_from(["..", ".", "", "/", "../x", "a/../../b", "/tmp", "~", "-", "x\x00y",
                     "a\nb", " ", "nan", "inf", "-1", "1e9", "0", "a" * 300, "C:\\x",
                     NON_UTF8, "../" * 10 + "etc", "ok", "ok.name"]),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=12),
)


def _outside_changes(before: dict, after: dict, allowed: Path | None, root: Path) -> list[str]:
    changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    if allowed is None:
        return sorted(changed)
    prefix = str(allowed.relative_to(root)) + os.sep
    return sorted(k for k in changed if not k.startswith(prefix))


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(which=st.sampled_from(["name", "store", "attack", "id", "workers", "threshold"]),
       value=HOSTILE_TEXT)
def test_property_hostile_values_work_or_fail_cleanly(which, value):
    """Each hostile value either works, writing only inside its output folder, or fails with
    a one-line error and writes nothing at all."""
    root = Path(tempfile.mkdtemp(prefix="isl_prop_"))
    try:
        photos = _photos(root / "photos", n=2)
        results = root / "results"
        results.mkdir()
        (root / "sentinel.txt").write_text("must survive")
        old_env = os.environ.get("RESULTS_DIR")
        os.environ["RESULTS_DIR"] = str(results)
        allowed: Path | None = None
        if which == "name":
            script, argv = "evaluate_copy_detection", [
                "--dataset", f"folder:{photos}", "--n-experimental", "1", "--n-control", "1",
                "--n-attacked", "1", "--attacks", "grayscale", "--algorithms", "ahash",
                "--no-figures", "--name", value, "--overwrite"]
            allowed = results / value if value else None
        elif which == "threshold":
            script, argv = "evaluate_copy_detection", [
                "--dataset", f"folder:{photos}", "--n-experimental", "1", "--n-control", "1",
                "--n-attacked", "1", "--attacks", "grayscale", "--algorithms", "ahash",
                "--no-figures", "--name", "t", "--summary-threshold", value]
            allowed = results / "t"
        elif which == "store":
            script, argv = "extract_features", [
                "--model", "efficientnet_lite0", "--dataset", f"folder:{photos}",
                "--features-dir", str(results), "--store-name", value, "--workers", "0"]
            allowed = results  # the features folder ("" is refused, not the default)
        elif which == "attack":
            script, argv = "generate_attacks", [
                f"folder:{photos}", str(results / "a"), "--workers", "0",
                "--attacks", f"padding:fraction=0.1;color={value}"]
            allowed = results / "a"
        elif which == "workers":
            script, argv = "generate_attacks", [
                f"folder:{photos}", str(results / "w"), "--attacks", "grayscale",
                "--workers", value]
            allowed = results / "w"
        else:
            manifest = root / "m.csv"
            with open(manifest, "w", encoding="utf-8", errors="surrogateescape",
                      newline="") as handle:
                pd.DataFrame({"image_id": [value], "path": [str(photos / "p0.png")]}).to_csv(
                    handle, index=False)
            script, argv = "generate_attacks", [str(manifest), str(results / "m"),
                                                "--attacks", "grayscale", "--workers", "0"]
            allowed = results / "m"
        before = tree(root)
        code, err = _call(script, argv)
        after = tree(root)
        if code == 0:
            assert allowed is not None and allowed.resolve().is_relative_to(results.resolve())
            assert _outside_changes(before, after, allowed, root) == []
        else:
            assert code == 2, (code, err)
            _one_line_error(err)
            assert _outside_changes(before, after, None, root) == []
    finally:
        if old_env is None:
            os.environ.pop("RESULTS_DIR", None)
        else:
            os.environ["RESULTS_DIR"] = old_env
        shutil.rmtree(root, ignore_errors=True)


def test_a_file_name_that_cannot_name_an_output_is_reported_not_fatal(tmp_path):
    """A backslash or a very long name is legal on Linux: that image is skipped and listed,
    the others are attacked."""
    folder = _photos(tmp_path / "odd", n=2)
    (folder / "p0.png").rename(folder / "a\\b.png")
    (folder / "p1.png").rename(folder / ("x" * 200 + ".png"))
    _photos(folder, n=1)  # p0.png again: one ordinary image
    out = tmp_path / "out"
    code, err = _call("generate_attacks", [f"folder:{folder}", str(out), "--attacks",
                                           "grayscale", "--workers", "0"])
    assert code == 0, err
    assert [r.source_id for r in read_manifest(out / "manifest.csv")] == ["p0"]
    reasons = pd.read_csv(out / "bad_images.csv")["reason"]
    assert len(reasons) == 2 and reasons.str.contains("cannot name an output file").all()


@pytest.mark.parametrize("fmt", ["pdf", "im", "xyz"])
def test_only_image_formats_are_written(tmp_path, photos, fmt):
    code, err = _call("generate_attacks", [f"folder:{photos}", str(tmp_path / "o"),
                                           "--attacks", "grayscale", "--format", fmt])
    assert code == 2 and "formats: png" in _one_line_error(err)
    assert not (tmp_path / "o").exists()


CONFIGS = [
    ("seed.yaml", "attacks: [grayscale]\nseed: .inf\n", "'seed' must be an integer"),
    ("seed.toml", "attacks = ['grayscale']\nseed = inf\n", "'seed' must be an integer"),
    ("half.yaml", "attacks: [grayscale]\nseed: 1.5\n", "'seed' must be an integer"),
    ("list.yaml", "attacks: [grayscale]\nseed: [1]\n", "'seed' must be an integer"),
    ("opts.yaml", "attacks: [grayscale]\noptions: [1, 2]\n", "'options' must be a table"),
    ("font.yaml", "attacks: [text_length_10]\noptions: {font: 123}\n", "'options' must"),
    ("none.yaml", "attacks: []\n", "at least one attack"),
    ("laughs.yaml", "a: &a [x, x, x]\nb: &b [*a, *a, *a]\nc: [*b, *b, *b]\nattacks: [grayscale]\n",
     "aliases"),
    ("binary.yaml", "\udcff\udcfe", "cannot parse"),
]


@pytest.mark.parametrize(("name", "text", "message"), CONFIGS, ids=[c[0] for c in CONFIGS])
def test_hostile_attack_configs_give_one_line(tmp_path, photos, name, text, message):
    config = tmp_path / name
    config.write_bytes(text.encode("utf-8", "surrogateescape"))
    code, err = _call("generate_attacks", [f"folder:{photos}", str(tmp_path / "o"),
                                           "--attack-config", str(config)])
    line = _one_line_error(err)
    assert code == 2 and message in line and str(config) in line
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(("extra", "message"), [
    (["--font", "/nonexistent.ttf", "--attacks", "text:10"], "not a font"),
    (["--background", "{text}", "--attacks", "overlay_0.5"], "not an image"),
    (["--attacks", "rotation:1e16"], "in [-360, 360]"),
    (["--attacks", "gaussian_noise:1e9"], "in (0, 1]"),
    (["--attacks", "contrast_enhancement:1e9"], "in [0, 100]"),
    (["--attacks", "padding:10"], "in (0, 1]"),
])
def test_attack_files_and_bounds_are_checked_before_the_run(tmp_path, photos, extra, message):
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    code, err = _call("generate_attacks", [f"folder:{photos}", str(tmp_path / "o"),
                                           *[e.format(text=text) for e in extra]])
    assert code == 2 and message in _one_line_error(err)
    assert not (tmp_path / "o").exists()


def test_repeated_algorithm_parameters_are_refused():
    from hashing import parse_algorithm

    with pytest.raises(ValueError, match="'hash_size' is given twice"):
        parse_algorithm("phash:hash_size=8,hash_size=16")


def test_create_groups_never_replaces_an_input_or_a_folder(tmp_path, photos):
    before = (photos / "p0.png").read_bytes()
    for output, message in ((photos / "p0.png", "must end with .csv"),
                            (tmp_path, "must end with .csv"),
                            (tmp_path / "file" / "g.csv", "which is a file")):
        if output.name == "g.csv":
            (tmp_path / "file").write_text("x")
        code, err = _call("create_groups", [f"folder:{photos}", "--output", str(output),
                                            "--overwrite"])
        assert code == 2 and message in _one_line_error(err)
    assert (photos / "p0.png").read_bytes() == before


def test_sixteen_bit_and_float_images_in_memory_describe_like_their_files(tmp_path):
    """A 16-bit or float gray image given as a Pillow object is rescaled to 8 bits as the
    same image read from a file is, not clipped to white by Pillow's convert; the 8-bit
    gray image is the oracle."""
    from hashing import describe, pairwise

    rng = np.random.default_rng(3)
    gray = np.kron(rng.integers(0, 256, (12, 16)), np.ones((16, 16))).astype(np.uint8)
    eight = Image.fromarray(gray).convert("RGB")
    wide = Image.fromarray(gray.astype(np.uint16) * 257)
    floats = Image.fromarray(gray.astype(np.float32) / 255)
    floats_255 = Image.fromarray(gray.astype(np.float32))  # Image.fromarray(float array)
    assert (wide.mode, floats.mode, floats_255.mode) == ("I;16", "F", "F")
    wide.save(tmp_path / "wide.png")
    for method in ("phash", "orb"):
        found = describe([eight, wide, floats, floats_255, tmp_path / "wide.png"], method)
        assert np.array_equal(pairwise(found[:1], found), np.zeros((1, 5))), method


# --- the one output mechanism (issue 25), per converted script ----------------------------------


@pytest.mark.parametrize("name", ["..", "", "../x", "/tmp/isl_evil", ".", "a/b"])
def test_benchmark_name_is_refused_when_parsed(tmp_path, photos, monkeypatch, name):
    monkeypatch.setenv("RESULTS_DIR", str(tmp_path / "results"))
    code, err = _call("evaluate_copy_detection", [
        "--dataset", f"folder:{photos}", "--n-experimental", "2", "--n-control", "2",
        "--n-attacked", "1", "--algorithms", "ahash", "--no-figures", "--name", name,
        "--overwrite"])
    line = _one_line_error(err)
    assert code == 2 and "argument --name" in line and "plain name" in line
    assert not (tmp_path / "results").exists() and not os.path.exists("/tmp/isl_evil")


def test_generate_attacks_output_that_is_a_file_is_refused_when_parsed(tmp_path, photos):
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    code, err = _call("generate_attacks", [f"folder:{photos}", str(target), "--attacks",
                                           "grayscale", "--overwrite"])
    assert code == 2 and "it is a file" in _one_line_error(err)
    assert target.read_text() == "mine"


def test_generate_attacks_records_a_run_that_attacked_nothing(tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "b0.jpg").write_bytes(_truncated_jpeg())
    out = tmp_path / "g"
    code, err = _call("generate_attacks", [f"folder:{broken}", str(out), "--attacks",
                                           "grayscale", "--workers", "0"])
    assert code == 2 and "no image was attacked" in _one_line_error(err)
    record = json.loads((out / "experiment.json").read_text())
    assert "no image was attacked" in record["error"] and record["counts"]["written"] == 0
    assert record["script"] == "generate_attacks"


def test_create_groups_overwrites_only_its_own_manifest(tmp_path, photos):
    other = tmp_path / "attacks.csv"  # another script's manifest: --overwrite used to replace it
    other.write_text("image_id,path\nx,y.png\n")
    code, err = _call("create_groups", [f"folder:{photos}", "--output", str(other),
                                        "--overwrite"])
    assert code == 2 and "not a result of create_groups" in _one_line_error(err)
    assert other.read_text() == "image_id,path\nx,y.png\n"
    mine = tmp_path / "groups.csv"
    argv = [f"folder:{photos}", "--output", str(mine), "--n-experimental", "2"]
    assert _call("create_groups", argv)[0] == 0
    record = json.loads(mine.with_suffix(".experiment.json").read_text())
    assert record["script"] == "create_groups"
    code, err = _call("create_groups", argv)
    assert code == 2 and "--overwrite" in _one_line_error(err)
    assert _call("create_groups", argv + ["--overwrite"])[0] == 0
    code, err = _call("create_groups", argv + ["--n-control", "-1"])
    assert code == 2 and "argument --n-control" in _one_line_error(err)


def test_process_results_records_its_run_and_replaces_only_its_own(tmp_path):
    digest = tmp_path / "digest"
    write_digest(_result([0.0, 0.3, 0.1, 0.5]), digest)
    code, err = _call("process_results", [str(digest)])
    assert code == 0, err
    record = json.loads((digest / "figures" / "process_results.json").read_text())
    assert record["experiment"]["script"] == "process_results" and record["figures"]
    before = tree(digest)
    code, err = _call("process_results", [str(digest)])  # a redraw is asked for
    assert code == 2 and "--overwrite" in _one_line_error(err)
    assert tree(digest) == before
    assert _call("process_results", [str(digest), "--overwrite"])[0] == 0
    other = tmp_path / "other"  # a process_results.json that another script made
    other.mkdir()
    (other / "process_results.json").write_text(json.dumps({"experiment": {"script": "x"}}))
    code, err = _call("process_results", [str(digest), "--output", str(other), "--overwrite"])
    assert code == 2 and "made by 'x'" in _one_line_error(err)
    assert list(other.iterdir()) == [other / "process_results.json"]
    (tmp_path / "notes.txt").write_text("mine")
    for extra in (["--output", str(tmp_path / "notes.txt")], ["--threshold", "nan"]):
        code, err = _call("process_results", [str(digest), *extra])
        assert code == 2 and "argument" in _one_line_error(err)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_extract_features_refuses_an_empty_store_name_and_a_file_as_features_dir(tmp_path,
                                                                                 photos):
    features = tmp_path / "f"
    base = ["--model", "efficientnet_lite0", "--dataset", f"folder:{photos}", "--workers", "0"]
    code, err = _call("extract_features", base + ["--features-dir", str(features),
                                                  "--store-name", ""])
    assert code == 2 and "--store-name '' is not a plain name" in _one_line_error(err)
    assert not features.exists()  # not the default store under another name
    (tmp_path / "notes.txt").write_text("mine")
    code, err = _call("extract_features", base + ["--features-dir", str(tmp_path / "notes.txt")])
    assert code == 2 and "argument --features-dir" in _one_line_error(err)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_sigterm_unwinds_lists_what_was_written_and_overwrite_then_works(tmp_path):
    """A scheduler's SIGTERM ends a run like Ctrl-C (finally blocks run): the images written
    so far are listed as the run's own, so --overwrite may replace them afterwards, while a
    file put there by hand still blocks it."""
    _, process, out = _attacks_running(tmp_path, 10)
    os.killpg(process.pid, signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130 and "Traceback" not in err, err
    listed = set(json.loads((out / ".outputs.json").read_text())["files"])
    assert {p.name for p in out.glob("*.png")} <= listed and "experiment.json" in listed
    (out / "mine.txt").write_text("kept")
    small = [f"folder:{tmp_path / 'big'}", str(out), "--attacks", "grayscale", "--workers", "0",
             "--overwrite"]
    code, err = _call("generate_attacks", small)
    assert code == 2 and "did not make (mine.txt)" in err and (out / "mine.txt").exists()
    (out / "mine.txt").unlink()
    assert _call("generate_attacks", small)[0] == 0
    assert len(read_manifest(out / "manifest.csv")) == 24
