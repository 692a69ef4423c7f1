"""Issue 25's library-level defects: what a script passes on must not crash the process,
search a stale index, or lose a finished store."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import fast_search as fs
from helpers.descriptors import FloatFeatures
from tests.conftest import REPO


def _features(n: int, dim: int = 16, seed: int = 0, prefix: str = "i") -> FloatFeatures:
    rng = np.random.default_rng(seed)
    return FloatFeatures(rng.standard_normal((n, dim)).astype(np.float32), "l2",
                         ids=[f"{prefix}{k}" for k in range(n)], method="m")


@pytest.mark.parametrize("factory", ["RR0,Flat", "PCAR0,Flat", "PQ2x0", "PCA0,Flat", "HNSW1",
                                     "HNSW0", "IVF16_HNSW1,Flat", "OPQ4_0,Flat", "RQ1x0",
                                     "PQ4x17", "RR99999999,Flat", "IDMap,Flat", "SQ0"])
def test_factory_strings_that_crash_or_mislead_faiss_are_refused(factory):
    """Each of these aborted the process (SIGSEGV, SIGFPE, a Faiss assertion), allocated
    without bound, or ran silently wrong (PCA0: every query found row 0)."""
    with pytest.raises(ValueError, match="index"):
        fs.build_index(factory, "l2", 16)


def test_refused_strings_never_reach_faiss_in_a_fresh_process():
    """The same through a subprocess: a native crash would show as a negative return code."""
    code = ("import fast_search as fs\n"
            "for s in ['RR0,Flat', 'PCAR0,Flat', 'PQ2x0', 'HNSW1']:\n"
            "    try:\n        fs.build_index(s, 'l2', 16)\n"
            "    except ValueError:\n        pass\nprint('ok')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-500:]


@pytest.mark.parametrize("factory", ["Flat", "IVF4,Flat", "HNSW32", "PCA8,Flat",
                                     "IVF4,PQ4x4fs,RFlat", "OPQ4_8,IVF4,PQ4"])
def test_valid_strings_still_build(factory):
    assert fs.build_index(factory, "l2", 16).factory


def test_a_replaced_cached_index_is_not_searched(tmp_path, caplog):
    """A cached .faiss replaced by another index of the same dimension (other rows, an empty
    one, another type) is built again, with a warning, instead of answering searches."""
    import faiss

    database, queries = _features(400), _features(20, seed=1, prefix="q")
    search_set = fs.load_search_set(database, queries)
    cache = tmp_path / "cache"
    index, info = fs.prepare_index(search_set, "IVF8,Flat", cache_dir=cache)
    assert not info["cached"]
    reference = index.search(queries.values, 3)[1]  # the same build again gives these
    saved = next(cache.glob("*.faiss"))
    assert fs.prepare_index(search_set, "IVF8,Flat", cache_dir=cache)[1]["cached"]

    empty = faiss.index_factory(16, "IVF8,Flat")
    empty.train(database.values)
    other = faiss.index_factory(16, "HNSW32")
    other.add(database.values)
    shuffled = faiss.index_factory(16, "IVF8,Flat")
    shuffled.train(database.values)
    shuffled.add(database.values[::-1].copy())
    for replacement in (empty, other, shuffled):
        faiss.write_index(replacement, str(saved))
        caplog.clear()
        again, info = fs.prepare_index(search_set, "IVF8,Flat", cache_dir=cache)
        assert not info["cached"] and "not reusing" in caplog.text
        assert again.ntotal == 400
        assert np.array_equal(again.search(queries.values, 3)[1], reference)
    assert fs.prepare_index(search_set, "IVF8,Flat", cache_dir=cache)[1]["cached"]


def test_describe_index_tells_the_kinds_apart():
    import faiss

    flat = faiss.index_factory(16, "Flat")
    ivf = faiss.index_factory(16, "IVF4,Flat")
    pre = faiss.index_factory(16, "PCA8,IVF4,Flat")
    described = [fs.describe_index(i) for i in (flat, ivf, pre)]
    assert described[0]["classes"] != described[1]["classes"] != described[2]["classes"]
    assert described[1]["nlist"] == 4 and described[0]["nlist"] == 0


# --- feature stores: replaced only when the new one is complete ---------------------------------


def _store(tmp_path, values, name="m"):
    from data_retrieval import ImageRecord
    from extractor.store import save_store

    records = [ImageRecord(f"i{k}", None) for k in range(len(values))]
    return save_store(np.asarray(values, np.float32), records, "d", name, root=tmp_path,
                      overwrite=True)


def test_a_store_being_replaced_stays_readable_until_the_new_one_is_complete(tmp_path,
                                                                            monkeypatch):
    """Issue 25: --overwrite deleted the old sidecar first; a full disk or a kill then left
    no readable store."""
    import errno

    import extractor.store as store_module
    from extractor.store import load_store

    old = np.arange(12, dtype=np.float32).reshape(4, 3)
    _store(tmp_path, old)

    def full_disk(records, path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(store_module, "write_manifest", full_disk)
    with pytest.raises(OSError, match="No space"):
        _store(tmp_path, old[:2] + 100)
    kept = load_store("d", "m", tmp_path)
    assert np.array_equal(kept.features, old) and kept.ids == ["i0", "i1", "i2", "i3"]
    assert not [p for p in (tmp_path / "d").iterdir() if p.name.endswith(".tmp")]
    monkeypatch.undo()
    _store(tmp_path, old[:2] + 100)
    assert np.array_equal(load_store("d", "m", tmp_path).features, old[:2] + 100)


def test_an_extraction_with_overwrite_keeps_the_old_store_until_it_finishes(tmp_path,
                                                                           monkeypatch,
                                                                           small_photos):
    """Killed mid-extraction (KeyboardInterrupt on the first batch): the old store loads."""
    import extractor.extraction
    from extractor import extract_to_store, get_model
    from extractor.store import load_store

    old = np.ones((2, 1280), np.float32)
    _store(tmp_path, old, name="efficientnet_lite0")
    model = get_model("efficientnet_lite0")

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(extractor.extraction, "extract", killed)
    with pytest.raises(KeyboardInterrupt):
        extract_to_store(model, sorted(small_photos.glob("*.png")), "d", root=tmp_path,
                         overwrite=True)
    assert np.array_equal(load_store("d", "efficientnet_lite0", tmp_path).features, old)


def test_broken_stores_fail_with_the_file_named(tmp_path):
    import json
    import os
    import threading

    from extractor.store import load_store

    npy = _store(tmp_path, np.zeros((3, 2)))
    sidecar = npy.with_suffix(".json")
    meta = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({k: v for k, v in meta.items() if k != "count"}))
    with pytest.raises(ValueError, match=rf"{sidecar.name}.*count"):
        load_store("d", "m", tmp_path)
    sidecar.write_text(json.dumps(meta))
    npy.write_bytes(npy.read_bytes()[:-8])  # truncated
    with pytest.raises(ValueError, match=rf"{npy.name} cannot be read"):
        load_store("d", "m", tmp_path)
    npy.unlink()
    os.mkfifo(npy)  # would block a reader forever
    outcome = []
    reader = threading.Thread(target=lambda: outcome.append(_raises(load_store, tmp_path)),
                              daemon=True)
    reader.start()
    reader.join(10)
    assert outcome and "not a regular file" in outcome[0]


def _raises(load_store, root) -> str:
    try:
        load_store("d", "m", root)
    except ValueError as exc:
        return str(exc)
    return "no error"


def test_an_all_zero_row_under_cosine_is_refused_by_search_as_by_clustering():
    database = _features(50)
    values = database.values.copy()
    values[7] = 0
    zero = FloatFeatures(values, "cosine", ids=database.ids, method="m")
    queries = FloatFeatures(_features(5, seed=1, prefix="q").values, "cosine",
                            ids=[f"q{k}" for k in range(5)], method="m")
    with pytest.raises(ValueError, match="all zero.*row 7"):
        fs.prepare_index(fs.load_search_set(zero, queries), "Flat")


def test_clustering_counts_the_rows_of_every_input_together(tmp_path, capsys):
    """A 1-row store beside a 30-row one is 31 rows, not 'got 1'."""
    from clustering import as_points
    from clustering.points import concat_points

    one = as_points(_features(1), "l2", min_rows=1)
    many = as_points(_features(30, seed=2, prefix="j"), "l2", min_rows=1)
    assert len(concat_points([one, many])) == 31
    with pytest.raises(ValueError, match="at least 2 rows"):
        concat_points([one])
    with pytest.raises(ValueError, match="at least 2 rows, got 1"):
        as_points(_features(1), "l2")


# --- CSV outputs: text a spreadsheet would run is quoted ----------------------------------------


def test_formula_like_ids_and_paths_are_quoted_in_csv_and_read_back(tmp_path):
    """Ids and paths such as ``=HYPERLINK(...)`` went into CSV outputs as they were: a
    spreadsheet opening the file runs them. They are written with a leading ``'`` (what
    spreadsheets show as text) and manifests read them back unchanged."""
    import pandas as pd

    from data_retrieval import ImageRecord, read_manifest, write_manifest
    from helpers import write_csv

    hostile = ['=HYPERLINK("http://x","y")', "+1", "-2", "@SUM(A1)", "'=quoted", "plain",
               "'kept"]
    records = [ImageRecord(v.replace('"', "").replace("/", "_").replace(":", ""),
                           tmp_path / f"{k}.png", source_id=v) for k, v in enumerate(hostile)]
    manifest = write_manifest(records, tmp_path / "m.csv")
    raw = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    assert raw["source_id"].tolist() == ["'" + v for v in hostile[:5]] + hostile[5:]
    assert not any(cell[:1] and cell[:1] in "=+-@" for cell in raw.to_numpy().ravel())
    back = read_manifest(manifest)
    assert [r.source_id for r in back] == hostile
    assert [r.image_id for r in back] == [r.image_id for r in records]
    out = write_csv(pd.DataFrame({"image": hostile, "distance": [0.5] * len(hostile)}),
                    tmp_path / "t.csv")
    cells = pd.read_csv(out, dtype=str)["image"].tolist()
    assert cells[0] == "'" + hostile[0] and cells[5] == "plain" and cells[6] == "'kept"


def test_folder_lock_is_reentrant_when_asked_and_exclusive_across(tmp_path):
    from helpers import FolderLock

    with FolderLock(tmp_path, ".s.lock"), FolderLock(tmp_path, ".s.lock", reenter=True):
        assert (tmp_path / ".s.lock").exists()
    assert not (tmp_path / ".s.lock").exists()
    with FolderLock(tmp_path, ".s.lock"), pytest.raises(ValueError, match="in use"):
        FolderLock(tmp_path, ".s.lock").acquire()  # not re-entered unless asked
    code = ("import sys; from helpers import FolderLock\n"
            "try:\n    FolderLock(sys.argv[1], '.s.lock').acquire()\n"
            "except ValueError as exc:\n    print(exc)\n")
    with FolderLock(tmp_path, ".s.lock"):
        done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                              text=True, cwd=REPO, timeout=60)
    assert "in use by process" in done.stdout


def test_a_second_make_distractors_cannot_replace_a_running_one(tmp_path, small_photos):
    """Review of issue 25: a second run with --overwrite deleted the first run's lock, plan
    and finished chunks, then the first silently replaced the second's store."""
    import time

    base = [sys.executable, str(REPO / "scripts" / "make_distractors.py"), "--photos",
            f"folder:{small_photos}", "--method", "dhash", "--store-name", "m",
            "--features-dir", str(tmp_path / "f")]
    first = subprocess.Popen([*base, "--count", "200000", "--chunk-size", "500"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        partial = tmp_path / "f" / "m" / "dhash.partial"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not list(partial.glob("chunk_*")):
            time.sleep(0.2)
        assert list(partial.glob("chunk_*")), "the first run wrote no chunk"
        second = subprocess.run([*base, "--count", "12", "--overwrite"], capture_output=True,
                                text=True, timeout=120)
        assert second.returncode == 2 and "in use by process" in second.stderr
        assert (partial / "views.json").exists() and list(partial.glob("chunk_*"))
    finally:
        first.kill()
        first.communicate()


def test_a_full_disk_while_saving_a_checkpoint_is_an_oserror_naming_the_file(tmp_path,
                                                                             monkeypatch):
    """torch.save on a full disk raised RuntimeError ('[enforce fail at inline_container.cc]
    unexpected pos'), a traceback in finetune.py and train_verifier.py; /dev/full stands in
    for the full disk."""
    import contextlib
    import errno

    import torch

    import helpers.io
    from helpers.cli import error_message

    @contextlib.contextmanager
    def full(path, mode="w", **kwargs):
        with open("/dev/full", mode) as handle:
            yield handle

    monkeypatch.setattr(helpers.io, "atomic_write", full)
    target = tmp_path / "checkpoints" / "last.pt"
    with pytest.raises(OSError) as info:
        helpers.io.save_torch({"w": torch.zeros(100_000)}, target)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert error_message(info.value).startswith(f"No space left on device: {target}")


def test_a_fifo_given_or_cached_never_blocks_a_script(tmp_path, capsys):
    """Review of issue 25: a FIFO as --partition hung cluster.py (and left its lock); a FIFO
    in place of a cached .faiss hung the search. Every script refuses a FIFO, socket or device
    named on its command line before any work; the index cache rebuilds past one."""
    import os

    from tests.conftest import load_script

    fifo = tmp_path / "part.txt"
    os.mkfifo(fifo)
    code = load_script("cluster").main(["--features", "sample:dhash", "--method", "duplicates",
                                        "--threshold", "0.1", "--partition", str(fifo),
                                        "--output", str(tmp_path / "c")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "is a FIFO" in err[-1] and not (tmp_path / "c").exists()
    search_set = fs.load_search_set(_features(300), _features(5, seed=1, prefix="q"))
    cache = tmp_path / "cache"
    fs.prepare_index(search_set, "IVF4,Flat", cache_dir=cache)
    saved = next(cache.glob("*.faiss"))
    saved.unlink()
    os.mkfifo(saved)
    index, info = fs.prepare_index(search_set, "IVF4,Flat", cache_dir=cache)
    assert not info["cached"] and index.ntotal == 300


def _take_lock(folder, start, results):
    from helpers import FolderLock, OutputError

    start.wait()
    try:
        lock = FolderLock(folder).acquire()
    except OutputError:
        results.put("refused")
        return
    results.put("won")
    import time

    time.sleep(0.3)
    lock.release()


def test_two_processes_never_both_take_over_a_stale_lock(tmp_path):
    """Review of issue 25: with a dead process's lock in place, two runs started together
    both acquired it in a third of the trials (check, then delete, then create). The kernel's
    flock now decides."""
    import json
    import multiprocessing
    import socket

    context = multiprocessing.get_context("fork")
    for trial in range(8):
        folder = tmp_path / f"t{trial}"
        folder.mkdir()
        (folder / ".lock").write_text(json.dumps({"pid": 999_999_999,
                                                   "host": socket.gethostname()}))
        start, results = context.Event(), context.Queue()
        workers = [context.Process(target=_take_lock, args=(folder, start, results))
                   for _ in range(2)]
        for worker in workers:
            worker.start()
        start.set()
        for worker in workers:
            worker.join(30)
        assert sorted(results.get(timeout=5) for _ in workers) == ["refused", "won"]
