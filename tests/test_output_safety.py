"""Output safety: names, ids and result folders can never delete or write outside the output.

The destructive cases run against `fake_repo`, a stand-in for the repository that the library
takes for its root: a regression deletes that copy, never the real tree.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from PIL import Image

import helpers.outputs
from data_retrieval import read_manifest
from helpers import (
    FolderLock,
    OutputError,
    check_name,
    check_relative_id,
    output_dir,
    safe_child,
    write_experiment_json,
    write_json,
)
from tests.conftest import load_script, tree

# --- names and ids ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", ".", "..", "../x", "/abs", "a/b", "a\\b", ".hidden",
                                  " x", "x ", "x\x00y", "a\nb", "a" * 300])
def test_check_name_refuses_anything_but_one_plain_component(name):
    with pytest.raises(OutputError, match="not a plain name"):
        check_name(name, "--name")


@pytest.mark.parametrize("name", ["demo", "run-1_b.2", "café", "hashing_benchmark"])
def test_check_name_accepts_plain_names(name):
    assert check_name(name) == name


@pytest.mark.parametrize("image_id", ["../../x", "/etc/x", "a//b", "a/./b", "a/..", "a\\b",
                                      "x\x01", "", "/"])
def test_check_relative_id_refuses_ids_that_leave_the_folder(image_id):
    with pytest.raises(OutputError):
        check_relative_id(image_id)


@pytest.mark.parametrize("image_id", ["train/100007", "chelsea", "caf\udce9", "a b"])
def test_check_relative_id_accepts_relative_ids(image_id):
    assert check_relative_id(image_id) == image_id


def test_safe_child_refuses_a_link_that_leads_outside(tmp_path):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "sub").symlink_to(elsewhere)
    assert safe_child(out, "a/b.png") == out / "a" / "b.png"
    for relative in ("sub/x.png", "../x.png", "/tmp/x.png"):
        with pytest.raises(OutputError, match="outside the output folder"):
            safe_child(out, relative)


def test_manifest_ids_are_checked_when_read(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("image_id,path,source_id,attack_id,group\n"
                        "ok,a.png,ok,,\n../../x,b.png,ok,,\n")
    with pytest.raises(ValueError, match=r"line 3.*'\.\./\.\./x'"):
        read_manifest(manifest)
    manifest.write_text("image_id,path\n/tmp/evil,a.png\n")
    with pytest.raises(ValueError, match="absolute"):
        read_manifest(manifest)


# --- result folders -----------------------------------------------------------------------------


def _refused(folder, match, script="bench", **kwargs) -> str:
    """The message of `output_dir`'s refusal (the test fails if it does not refuse)."""
    with pytest.raises(OutputError, match=match) as info, output_dir(folder, script, **kwargs):
        pass
    return str(info.value)


def _result_of(folder, script):
    folder.mkdir(parents=True, exist_ok=True)
    write_experiment_json(folder, {"x": 1}, script=script)
    (folder / "summary.csv").write_text("a\n1\n")


def test_output_dir_refuses_a_used_folder_and_suggests_only_the_scripts_flags(tmp_path):
    out = tmp_path / "res"
    _result_of(out, "bench")
    assert "--resume" not in _refused(out, "--overwrite", flags=("--overwrite",))
    with output_dir(out, "bench", resume=True):
        pass
    assert (out / "summary.csv").exists()
    with output_dir(out, "bench", overwrite=True) as folder:
        # the earlier result waits aside until this run succeeds
        assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(
            ".previous-")) == [".lock"]
    assert not any(out.iterdir())  # the lock and the earlier result are gone with the block


def test_overwrite_only_removes_a_result_of_the_same_script(tmp_path):
    mine, theirs, plain = tmp_path / "mine", tmp_path / "theirs", tmp_path / "plain"
    _result_of(theirs, "generate_attacks")
    plain.mkdir()
    (plain / "photo.jpg").write_bytes(b"precious")
    for folder, why in ((theirs, "made by 'generate_attacks'"), (plain, "no experiment.json")):
        before = tree(folder)
        for flag in ("overwrite", "resume"):
            _refused(folder, why, "evaluate_copy_detection", **{flag: True})
        assert tree(folder) == before
    _result_of(mine, "evaluate_copy_detection")
    with output_dir(mine, "evaluate_copy_detection", overwrite=True):
        pass
    assert not (mine / "summary.csv").exists()


def test_overwrite_never_touches_the_repository_home_cwd_or_their_parents(fake_repo,
                                                                         monkeypatch):
    monkeypatch.setenv("HOME", str(fake_repo / "Results"))
    monkeypatch.chdir(fake_repo / "Results" / "other")
    for folder in (fake_repo, fake_repo.parent, fake_repo / "Results",
                   fake_repo / "Results" / "other"):
        write_experiment_json(folder, {}, script="bench")  # even when it looks like ours
        before = tree(folder)
        _refused(folder, "refusing to overwrite", overwrite=True)
        assert tree(folder) == before
        (folder / "experiment.json").unlink()


def test_overwrite_never_follows_a_symlink_or_touches_an_input(tmp_path):
    target = tmp_path / "real"
    _result_of(target, "bench")
    link = tmp_path / "link"
    link.symlink_to(target)
    _refused(link, "symbolic link", overwrite=True)
    assert (target / "summary.csv").exists()
    inputs = tmp_path / "data" / "photos"
    inputs.mkdir(parents=True)
    for out, why in ((inputs, "is the input"), (tmp_path / "data", "holds the input"),
                     (inputs / "attacks", "inside the input")):
        _result_of(out, "bench")
        _refused(out, why, overwrite=True, inputs=[inputs])
        assert (out / "summary.csv").exists()


def test_output_under_a_file_or_not_writable_is_refused(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    for out in (tmp_path / "file", tmp_path / "file" / "sub" / "out"):
        _refused(out, "file, not a folder")
    # root ignores permission bits, so the read-only folder is what os.access reports
    monkeypatch.setattr(helpers.outputs.os, "access", lambda *a: False)
    _refused(tmp_path / "ro" / "out", "not writable")
    assert not (tmp_path / "ro").exists()


def test_lock_refuses_a_second_run_and_takes_over_a_stale_one(tmp_path):
    out = tmp_path / "res"
    out.mkdir()
    busy = f"in use by process {os.getpid()}"
    with FolderLock(out), pytest.raises(OutputError, match=busy), output_dir(out, "bench"):
        pass
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    import socket

    (out / ".lock").write_text(json.dumps({"pid": int(dead), "host": socket.gethostname()}))
    with output_dir(out, "bench") as folder:  # the stale lock of a finished process
        owner = json.loads((folder / ".lock").read_text())
        assert owner["pid"] == os.getpid()
    (out / ".lock").write_text(json.dumps({"pid": 1, "host": "another-host"}))
    _refused(out, "another-host")


def test_files_get_the_permissions_of_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_json(tmp_path / "a.json", {"a": 1})
        assert path.stat().st_mode & 0o777 == 0o644
        os.umask(0o077)
        path = write_json(tmp_path / "b.json", {"a": 1})
        assert path.stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)


# --- the scripts, on the stand-in repository ----------------------------------------------------


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, colour in enumerate(("red", "green", "blue", "white")):
        image = Image.new("RGB", (48, 32), colour)
        image.putpixel((i, i), (0, 0, 0))
        image.save(folder / f"p{i}.png")
    (folder / "notes.txt").write_text("not an image, kept")
    return folder


def _bench_args(photos, *extra):
    return ["--dataset", f"folder:{photos}", "--n-experimental", "2", "--n-control", "2",
            "--n-attacked", "1", "--attacks", "jpg_compression_50", "--algorithms", "ahash",
            "--no-figures", *extra]


@pytest.mark.parametrize("name", ["..", "", "../x", "/tmp/isl_evil", ".", "a/b"])
def test_benchmark_name_is_one_plain_component(fake_repo, photos, capsys, name):
    before = tree(fake_repo.parent)
    with pytest.raises(SystemExit) as exit_:  # refused when the flags are parsed
        load_script("evaluate_copy_detection").main(_bench_args(photos, "--name", name,
                                                         "--overwrite"))
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and "argument --name" in err[-1] and "plain name" in err[-1]
    assert tree(fake_repo.parent) == before
    assert not os.path.exists("/tmp/isl_evil")


def test_benchmark_overwrites_its_own_result_only(fake_repo, photos, capsys):
    bench = load_script("evaluate_copy_detection")
    assert bench.main(_bench_args(photos, "--name", "run")) == 0
    out = fake_repo / "Results" / "run"
    assert json.loads((out / "experiment.json").read_text())["script"] == "evaluate_copy_detection"
    assert bench.main(_bench_args(photos, "--name", "run")) == 2
    err = capsys.readouterr().err
    assert "--overwrite" in err and "--resume" not in err  # only the flags it has
    assert bench.main(_bench_args(photos, "--name", "run", "--overwrite")) == 0
    assert (fake_repo / "Results" / "README.md").exists()
    assert (fake_repo / "Results" / "other" / "summary.csv").exists()


def test_generate_attacks_never_overwrites_its_input(tmp_path, photos, capsys):
    gen = load_script("generate_attacks")
    before = tree(photos)
    for out in (photos, tmp_path, photos / "attacks"):
        write_experiment_json(out, {}, script="generate_attacks")  # looks like a result
        code = gen.main([f"folder:{photos}", str(out), "--overwrite", "--attacks",
                         "jpg_compression_50", "--workers", "0"])
        assert code == 2 and "input" in capsys.readouterr().err
        (out / "experiment.json").unlink()
    assert tree(photos) == before


def test_manifest_ids_cannot_write_outside_the_output(tmp_path, photos, capsys):
    for bad_id in ("../../escaped", str(tmp_path / "abs")):
        manifest = tmp_path / "m.csv"
        manifest.write_text(f"image_id,path\n{bad_id},{photos / 'p0.png'}\n")
        out = tmp_path / "out"
        code = load_script("generate_attacks").main([str(manifest), str(out), "--attacks",
                                                     "jpg_compression_50", "--workers", "0"])
        assert code == 2 and "line 2" in capsys.readouterr().err
        assert not out.exists()
    assert not list(tmp_path.rglob("*escaped*")) and not list(tmp_path.glob("abs*"))


def test_store_name_is_one_plain_component(tmp_path, photos, capsys):
    for name in ("../x", "/tmp/isl_evil_store", ".."):
        code = load_script("extract_features").main([
            "--model", "efficientnet_lite0", "--dataset", f"folder:{photos}",
            "--features-dir", str(tmp_path / "features"), "--store-name", name])
        assert code == 2 and "not a plain name" in capsys.readouterr().err
    assert not (tmp_path / "features").exists() and not os.path.exists("/tmp/isl_evil_store")


def test_overwrite_never_deletes_a_result_nested_inside(tmp_path):
    """`generate_attacks.py sample Results/demo/attacks`, then the demo with --overwrite:
    the attacks are another run's finished work."""
    demo = tmp_path / "demo"
    _result_of(demo, "evaluate_copy_detection")
    _result_of(demo / "attacks", "generate_attacks")
    before = tree(demo)
    assert "holds other results" in _refused(demo, "attacks", "evaluate_copy_detection",
                                             overwrite=True)
    assert tree(demo) == before


def test_figure_names_from_a_digest_stay_inside_the_figure_folder(tmp_path):
    """Algorithm labels (a weights path, a hostile digest) become file names: made safe."""
    from helpers import save_figure

    fig = __import__("matplotlib.figure", fromlist=["Figure"]).Figure()
    written = save_figure(fig, tmp_path / "figures",
                    "gallery_x/../../../../evil_weights=/tmp/a b.pth")
    assert all(p.parent == tmp_path / "figures" for p in written)
    assert [p.name for p in written] == ["gallery_x_.._.._.._.._evil_weights=_tmp_a_b.pth.pdf",
                                        "gallery_x_.._.._.._.._evil_weights=_tmp_a_b.pth.png"]


def test_overwrite_never_removes_the_targets_of_linked_inputs(tmp_path, photos, capsys):
    """Inputs that are symbolic links into the output folder: emptying it would delete them
    before they are read."""
    out = tmp_path / "out"
    assert load_script("generate_attacks").main(
        [f"folder:{photos}", str(out), "--attacks", "grayscale", "--workers", "0"]) == 0
    curated = tmp_path / "curated"
    curated.mkdir()
    for made in sorted(out.glob("*.png"))[:2]:
        (curated / made.name).symlink_to(made)
    before = tree(out)
    code = load_script("generate_attacks").main(
        [f"folder:{curated}", str(out), "--attacks", "grayscale", "--workers", "0",
         "--overwrite"])
    assert code == 2 and "input" in capsys.readouterr().err
    assert tree(out) == before


# --- the one output mechanism (helpers.runs) ----------------------------------------------------


def _namespace(**values):
    import argparse

    base = {"name": None, "output": None, "overwrite": False}
    return argparse.Namespace(**{**base, **values})


def test_path_inputs_finds_paths_specs_and_stores_in_any_flag(tmp_path):
    from helpers import path_inputs

    store = tmp_path / "features" / "bsds500" / "dhash.npy"
    store.parent.mkdir(parents=True)
    store.write_bytes(b"x")
    photos = tmp_path / "photos"
    photos.mkdir()
    args = _namespace(features=["bsds500/dhash", "sample:dhash"], data=f"folder:{photos}",
                      features_dir=str(tmp_path / "features"), missing=str(tmp_path / "none"),
                      output=str(tmp_path / "out"), number=3)
    found = path_inputs(args)
    assert store in found and photos in found and tmp_path / "features" in found
    assert tmp_path / "none" not in found and tmp_path / "out" not in found
    assert path_inputs(_namespace(features=["bsds500/dhash"]), roots=[tmp_path / "features"]) \
        == [store]


def test_experiment_run_never_empties_a_folder_holding_an_input_any_flag_names(tmp_path):
    """The issue's repro, at the mechanism: a store, a folder: spec and a features root that
    lie inside the output are inputs, whichever flag names them."""
    from helpers import experiment_run

    out = tmp_path / "R"
    with experiment_run(_namespace(output=str(out)), "cluster") as run:
        run.finish()
    (out / "mystore").mkdir()
    (out / "mystore" / "dhash.npy").write_bytes(b"precious")
    (out / "photos").mkdir()
    before = tree(out)
    for flags in ({"features": [str(out / "mystore" / "dhash.npy")]},
                  {"dataset": f"folder:{out / 'photos'}"},
                  {"store": "mystore/dhash", "features_dir": str(out)}):
        with pytest.raises(OutputError, match="refusing to overwrite.*input"), \
                experiment_run(_namespace(output=str(out), overwrite=True, **flags),
                               "cluster"):
            pass
        assert tree(out) == before


def test_experiment_run_records_the_error_of_a_failed_run(tmp_path):
    from helpers import experiment_run

    out = tmp_path / "R"
    with pytest.raises(ValueError, match="boom"), \
            experiment_run(_namespace(output=str(out)), "bench") as run:
        run.record()
        raise ValueError("boom")
    record = json.loads((out / "experiment.json").read_text())
    assert record["script"] == "bench" and "boom" in record["error"] and record["ended_at"]
    assert not (out / ".lock").exists()


def test_result_file_replaces_only_its_own_file_and_never_an_input(tmp_path):
    from helpers import result_file

    own = tmp_path / "search.json"
    with result_file(_namespace(output=str(own)), "benchmark_search") as out:
        out.write({"qps": 1})
    assert json.loads(own.read_text())["experiment"]["script"] == "benchmark_search"
    with pytest.raises(OutputError, match="--overwrite"), \
            result_file(_namespace(output=str(own)), "benchmark_search"):
        pass
    with result_file(_namespace(output=str(own), overwrite=True), "benchmark_search") as out:
        out.write({"qps": 2})
    assert json.loads(own.read_text())["qps"] == 2
    other = tmp_path / "other.json"
    other.write_text('{"a": 1}')
    readme = tmp_path / "README.md"
    readme.write_text("mine")
    for path, match in ((other, "not a result of benchmark_search"),
                        (readme, "must be a .json file")):
        with pytest.raises(OutputError, match=match), result_file(
                _namespace(output=str(path), overwrite=True), "benchmark_search"):
            pass
    assert other.read_text() == '{"a": 1}' and readme.read_text() == "mine"
    with pytest.raises(OutputError, match="input"), result_file(
            _namespace(output=str(own), overwrite=True, features=[str(own)]),
            "benchmark_search"):
        pass


def test_script_main_turns_machine_errors_into_one_line(capsys):
    import errno

    from helpers.cli import script_main

    @script_main
    def full_disk(argv=None) -> int:
        raise OSError(errno.ENOSPC, "No space left on device", "/data/out/x.npy")

    @script_main
    def defect(argv=None) -> int:
        raise TypeError("a bug")

    assert full_disk() == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "No space left on device: /data/out/x.npy" in err
    assert "free some space" in err
    with pytest.raises(TypeError):
        defect()


def test_cluster_overwrite_keeps_a_store_inside_the_output(tmp_path, capsys):
    """Issue 25's repro: a store copied into the result folder, then clustered from there
    with --overwrite: refused, the store kept."""
    import shutil

    from extractor.store import save_descriptors
    from hashing import describe

    features = tmp_path / "features"
    save_descriptors(describe("sample", "dhash"), "sample", root=features)
    out = tmp_path / "R"
    cluster = load_script("cluster")
    base = ["--method", "duplicates", "--threshold", "0.1", "--no-figures", "--galleries", "0",
            "--output", str(out)]
    assert cluster.main(["--features", "sample/dhash", "--features-dir", str(features),
                         *base]) == 0
    shutil.copytree(features / "sample", out / "mystore")
    before = tree(out)
    code = cluster.main(["--features", str(out / "mystore" / "dhash.npy"), *base,
                         "--overwrite"])
    assert code == 2 and "input" in capsys.readouterr().err
    assert tree(out) == before


def test_overwrite_keeps_files_the_earlier_run_did_not_make(tmp_path, capsys):
    """Photos or notes put into a result folder after its run (review of issue 25: photos a
    store's records point to, copied into the output, were deleted by --overwrite)."""
    from helpers import experiment_run

    out = tmp_path / "R"
    with experiment_run(_namespace(output=str(out)), "cluster") as run:
        (run.folder / "clusters.json").write_text("{}")
        run.finish()
    (out / "photos").mkdir()
    (out / "photos" / "a.jpg").write_bytes(b"photo")
    (out / "notes.txt").write_text("mine")
    before = tree(out)
    with pytest.raises(OutputError, match=r"2 file\(s\) the earlier cluster run did not make "
                                          r"\(notes.txt, photos/a.jpg\)"), \
            experiment_run(_namespace(output=str(out), overwrite=True), "cluster"):
        pass
    assert tree(out) == before
    (out / "notes.txt").unlink()
    (out / "photos" / "a.jpg").unlink()
    (out / "photos").rmdir()
    with experiment_run(_namespace(output=str(out), overwrite=True), "cluster") as run:
        run.finish()  # only its own files: replaced
    assert not (out / "clusters.json").exists()


def test_a_failed_or_killed_overwrite_gives_the_earlier_result_back(tmp_path):
    """--overwrite with a bad argument used to empty the folder before the error (review of
    issue 25: head.pt and checkpoints gone): the earlier result now waits aside."""
    from helpers import experiment_run

    out = tmp_path / "R"
    with experiment_run(_namespace(output=str(out)), "train_verifier") as run:
        (run.folder / "head.pt").write_bytes(b"weights")
        run.finish()
    before = tree(out)
    with pytest.raises(ValueError, match="bad flag"), \
            experiment_run(_namespace(output=str(out), overwrite=True), "train_verifier") as run:
        (run.folder / "half.pt").write_bytes(b"half")
        run.record()
        raise ValueError("bad flag")
    assert tree(out) == before
    # killed mid-run (SIGKILL): the earlier result aside (with its marker), the run's listed
    # file and one it wrote after its last listing in place; then a note put in by hand
    aside = out / ".previous-0badc0de"
    aside.mkdir()
    (aside / ".set-aside.json").write_text("{}")
    for name in ("head.pt", "experiment.json", ".outputs.json"):
        (out / name).rename(aside / name)
    (out / "half.pt").write_bytes(b"half")
    (out / ".outputs.json").write_text('{"files": ["half.pt"]}')
    (out / "unlisted.pt").write_bytes(b"late")
    (out / "NOTES.txt").write_text("mine")
    with experiment_run(_namespace(output=str(out), resume=True), "train_verifier"):
        pass
    after = tree(out)
    assert after.pop("NOTES.txt") == b"mine" and after.pop("unlisted.pt") == b"late"
    assert after == before  # the earlier result is back; nothing unlisted was deleted
    with pytest.raises(OutputError, match="did not make"), \
            experiment_run(_namespace(output=str(out), overwrite=True), "train_verifier"):
        pass


def test_an_output_at_the_file_system_root_is_one_line(capsys):
    code = load_script("cluster").main(["--features", "sample:dhash", "--method", "duplicates",
                                        "--threshold", "0.1", "--output", "/"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("error:") and "Traceback" not in "\n".join(err)


def test_a_users_previous_folder_and_old_results_are_never_taken_for_ours(tmp_path):
    """Review of issue 25: a user's folder named .previous-mine was 'restored' over a result;
    a result from before file lists were kept lost a photo added later to --overwrite."""
    import os
    import time

    from helpers import experiment_run

    out = tmp_path / "c"
    with experiment_run(_namespace(output=str(out)), "cluster") as run:
        (run.folder / "clusters.json").write_text("{}")
        run.finish()
    (out / ".previous-mine").mkdir()
    (out / ".previous-mine" / "notes.txt").write_text("mine")
    before = tree(out)
    with pytest.raises(OutputError, match="already exists"), \
            experiment_run(_namespace(output=str(out)), "cluster"):
        pass
    assert tree(out) == before
    legacy = tmp_path / "legacy"  # made before .outputs.json existed
    legacy.mkdir()
    write_experiment_json(legacy, {}, script="cluster")
    (legacy / "clusters.json").write_text("{}")
    old = time.time() - 3600
    for name in ("experiment.json", "clusters.json"):
        os.utime(legacy / name, (old, old))
    (legacy / "photo.jpg").write_bytes(b"added later")
    with pytest.raises(OutputError, match=r"did not make \(photo.jpg\)"), \
            experiment_run(_namespace(output=str(legacy), overwrite=True), "cluster"):
        pass
    assert (legacy / "photo.jpg").read_bytes() == b"added later"


def test_cluster_overwrite_keeps_the_images_its_store_points_to(tmp_path, capsys):
    """Review of issue 25: a store described from the gallery images of a cluster.py result,
    clustered into that same result with --overwrite, replaced the images it points to."""
    from hashing import describe, save_descriptors

    out = tmp_path / "cg"
    cluster = load_script("cluster")
    assert cluster.main(["--features", "sample:dhash", "--method", "duplicates", "--threshold",
                         "0.3", "--galleries", "2", "--output", str(out)]) == 0
    figures = out / "figures"
    assert list(figures.glob("*.png"))
    save_descriptors(describe(f"folder:{figures}", "dhash"), "g", root=tmp_path / "f")
    before = tree(out)
    code = cluster.main(["--features", "g/dhash", "--features-dir", str(tmp_path / "f"),
                         "--method", "duplicates", "--threshold", "0.3", "--galleries", "2",
                         "--output", str(out), "--overwrite"])
    assert code == 2 and "input" in capsys.readouterr().err
    assert tree(out) == before
