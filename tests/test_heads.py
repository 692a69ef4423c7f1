"""Verification heads: the triplet loss by hand, batches, learning, exact resume, collapse, and
the head as a reducer of the registry."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from extractor.reduce import load_reducer
from finetuning.heads import (
    HeadConfig,
    _split,
    collapse_check,
    make_loss_and_miner,
    source_batches,
    train_head,
)
from tests.conftest import REPO


@pytest.mark.parametrize("cos_negative, expected", [(0.5, 0.0), (0.8, 0.0), (0.9, 0.1),
                                                    (1.0, 0.2)])
def test_triplet_loss_is_zero_when_positives_are_closer_by_the_margin(cos_negative, expected):
    loss, _ = make_loss_and_miner(HeadConfig(margin=0.2, miner="none"))
    angle = np.arccos(cos_negative)
    z = torch.tensor([[1.0, 0.0], [1.0, 0.0], [np.cos(angle), np.sin(angle)]])
    # two triplets (each of the two positives as anchor, the third row as negative), each
    # relu(cos(a, n) - cos(a, p) + margin) = relu(cos_negative - 1 + 0.2)
    value = float(loss(z, torch.tensor([0, 0, 1])))
    assert value == pytest.approx(expected, abs=1e-6)


def test_source_batches_take_every_source_once_per_epoch():
    labels = np.repeat(np.arange(10), [3, 3, 3, 3, 3, 3, 3, 3, 1, 5])
    batches = source_batches(labels, batch_size=8, per_source=2, seed=0, epoch=0)
    assert len(batches) == 2  # 9 sources with 2+ rows, 4 per batch
    seen = []
    for batch in batches:
        ids, counts = np.unique(labels[batch], return_counts=True)
        assert (counts == 2).all() and len(ids) == 4
        seen += ids.tolist()
    assert len(set(seen)) == 8 and 8 not in seen  # the one-row source never comes
    again = source_batches(labels, 8, 2, seed=0, epoch=0)
    assert all((a == b).all() for a, b in zip(batches, again, strict=True))
    other = source_batches(labels, 8, 2, seed=0, epoch=1)
    assert any((a != b).any() for a, b in zip(batches, other, strict=True))


def clustered(sources=80, per=5, dim=32, seed=0):
    """Sources with a few rows each; four nuisance dimensions dominate the raw distances."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((sources, dim))
    x = np.repeat(base, per, 0) + 0.8 * rng.standard_normal((sources * per, dim))
    x[:, :4] += 6 * rng.standard_normal((sources * per, 4))
    return x.astype(np.float32), np.repeat(np.arange(sources), per)


def nearest_accuracy(z, labels):
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    s = z @ z.T
    np.fill_diagonal(s, -np.inf)
    return float(np.mean(labels[s.argmax(1)] == labels))


def test_head_learns_to_bring_copies_together(tmp_path):
    x, labels = clustered()
    config = HeadConfig(dims=(8,), epochs=30, batch_size=40, lr=1e-2, val_fraction=0.2)
    result = train_head(x, labels, config, tmp_path, method="toy", show_progress=False)
    head = load_reducer(result["head"])
    assert head.method == "toy" and head.name == "head:8" and result["collapsed"] is None
    held = _split(labels, 0.2, 0)  # the held-out source images: never trained on
    raw = nearest_accuracy(x[held], labels[held])
    learned = nearest_accuracy(head.transform(x)[held], labels[held])
    assert learned > raw + 0.3, (raw, learned)
    log = pd.read_csv(tmp_path / "log.csv")
    assert (log["split"] == "val").sum() == 30 and log["step"].max() == result["steps"]


def test_resumed_head_ends_with_the_same_weights(tmp_path):
    x, labels = clustered(sources=30)
    config = HeadConfig(dims=(16, 8), epochs=4, batch_size=20, lr=5e-3, miner="batch_hard",
                        loss="contrastive")
    straight = train_head(x, labels, config, tmp_path / "a", show_progress=False)
    # a run killed after its second epoch: its folder as it was then
    import shutil

    shutil.copytree(tmp_path / "a", tmp_path / "b")
    for name in ("checkpoints/epoch_3.pt", "checkpoints/epoch_4.pt", "head.pt"):
        (tmp_path / "b" / name).unlink()
    resumed = train_head(x, labels, config, tmp_path / "b", resume=True, show_progress=False)
    assert resumed["steps"] == straight["steps"]
    a, b = load_reducer(straight["head"]), load_reducer(resumed["head"])
    for key in a.state:
        np.testing.assert_array_equal(a.state[key], b.state[key])
    other = HeadConfig(**{**config.__dict__, "lr": 1e-3})
    with pytest.raises(ValueError, match=r"other settings \(lr\)"):
        train_head(x, labels, other, tmp_path / "b", resume=True, show_progress=False)


def test_collapse_is_reported(tmp_path):
    same = torch.ones(50, 4)
    assert "collapsed" in collapse_check(same, 0.1, HeadConfig())
    assert "stuck at the margin" in collapse_check(torch.randn(50, 4), 0.2, HeadConfig())
    assert collapse_check(torch.randn(50, 4), 0.05, HeadConfig()) is None
    # features that cannot be told apart give a collapsed head, reported, not an error
    x = np.ones((60, 6), np.float32)
    labels = np.repeat(np.arange(15), 4)
    result = train_head(x, labels, HeadConfig(dims=(4,), epochs=2, batch_size=20),
                        tmp_path, show_progress=False)
    assert result["collapsed"] and "collapsed" in result["collapsed"]


def test_bad_configs():
    with pytest.raises(ValueError, match="per_source must be >= 2"):
        HeadConfig(per_source=1).check()
    with pytest.raises(ValueError, match="needs negatives"):
        HeadConfig(batch_size=4, per_source=4).check()
    with pytest.raises(ValueError, match="unknown miner"):
        HeadConfig(miner="hardest").check()
    with pytest.raises(ValueError, match="do not fill one batch"):
        train_head(np.zeros((6, 3), np.float32), [0, 0, 1, 1, 2, 2], HeadConfig(),
                   "/nonexistent/never", show_progress=False)
    broken = np.zeros((6, 3), np.float32)
    broken[[3, 5], 1] = np.nan
    with pytest.raises(ValueError, match="2 feature rows are not finite, the first row 3 "
                                         r"\(source image 'b'\)"):
        train_head(broken, list("aabbcc"), HeadConfig(), "/nonexistent/never",
                   show_progress=False)


def test_train_verifier_then_verify_pairs_with_the_head(tmp_path):
    out = tmp_path / "head"
    attacks = ["--attacks", "jpg_compression:50", "rotation:10", "cropping:20",
               "gaussian_noise:0.05"]
    flags = ["--model", "efficientnet_lite0:distance='l2'", "--dataset", "sample", "--copies",
             "3", *attacks, "--batch-size", "8", "--per-source", "2", "--epochs", "3",
             "--val-fraction", "0.4", "--dims", "16", "--output", str(out)]
    done = subprocess.run([sys.executable, "scripts/train_verifier.py", *flags], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    record = json.loads((out / "experiment.json").read_text())
    assert record["rows"] == 44 and record["sources"] == 11 and len(record["val_losses"]) == 3
    assert (out / "figures" / "loss.png").is_file()
    # the head belongs to the model, not to the algorithm's distance
    assert load_reducer(out / "head.pt").method == "efficientnet_lite0"
    changed = list(flags)
    changed[changed.index("--copies") + 1] = "2"
    refused = subprocess.run([sys.executable, "scripts/train_verifier.py", *changed,
                              "--resume"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert refused.returncode == 2 and "copies" in refused.stderr, refused.stderr
    assert "differ" in refused.stderr
    not_a_model = subprocess.run(
        [sys.executable, "scripts/train_verifier.py", "--model", "dhash", "--dataset", "sample",
         "--output", str(tmp_path / "never")], cwd=REPO, capture_output=True, text=True,
        timeout=600)
    assert not_a_model.returncode == 2 and "is not a model" in not_a_model.stderr
    spec = f"efficientnet_lite0:reduce='{out / 'head.pt'}'"
    done = subprocess.run(
        [sys.executable, "scripts/verify_pairs.py", "--dataset", "sample", "--methods",
         "efficientnet_lite0", spec, *attacks, "--output", str(tmp_path / "v")],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    scores = pd.read_csv(tmp_path / "v" / "scores.csv")
    methods = set(scores["method"])
    assert "efficientnet_lite0" in methods and any("reduce=head.pt-" in m for m in methods)


def test_resumed_and_finished_runs_report_their_whole_history(tmp_path):
    import shutil

    x, labels = clustered(sources=30)
    config = HeadConfig(dims=(8,), epochs=3, batch_size=20, lr=5e-3)
    straight = train_head(x, labels, config, tmp_path / "a", show_progress=False)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    (tmp_path / "b" / "checkpoints" / "epoch_3.pt").unlink()
    resumed = train_head(x, labels, config, tmp_path / "b", resume=True, show_progress=False)
    assert resumed["train_losses"] == straight["train_losses"]
    assert resumed["val_losses"] == straight["val_losses"]
    again = train_head(x, labels, config, tmp_path / "a", resume=True, show_progress=False)
    assert again["train_losses"] == straight["train_losses"] and again["steps"] == \
        straight["steps"]
    with pytest.raises(ValueError, match="margin must be a finite number"):
        HeadConfig(margin=float("nan")).check()
    with pytest.raises(ValueError, match="warmup_epochs must be"):
        HeadConfig(warmup_epochs=-1).check()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_head_learns_on_cuda_and_is_used_on_cpu(tmp_path):
    x, labels = clustered()
    config = HeadConfig(dims=(8,), epochs=30, batch_size=40, lr=1e-2, val_fraction=0.2,
                        device="cuda")
    result = train_head(x, labels, config, tmp_path, method="toy", show_progress=False)
    head = load_reducer(result["head"])  # read on the CPU
    held = _split(labels, 0.2, 0)
    raw = nearest_accuracy(x[held], labels[held])
    learned = nearest_accuracy(head.transform(x)[held], labels[held])
    assert learned > raw + 0.3, (raw, learned)


# --- scripts/train_verifier.py: its output, inputs and flags ------------------------------------


def _verifier_result(folder, store_rows=None):
    """A folder holding a previous train_verifier result (and, optionally, its kept training
    rows as the store training/feat under features/)."""
    from data_retrieval import ImageRecord
    from extractor import save_store
    from helpers import write_experiment_json

    folder.mkdir(parents=True)
    write_experiment_json(folder, {}, script="train_verifier")
    if store_rows is not None:
        x, labels = store_rows
        records = [ImageRecord(f"im{i}", None, source_id=f"s{label}")
                   for i, label in enumerate(labels)]
        save_store(x, records, "training", "feat", root=folder / "features",
                   meta={"kind": "float", "metric": "cosine"})


def test_train_verifier_overwrite_keeps_inputs_inside_the_output(tmp_path, small_photos,
                                                                 capsys):
    """--dataset folder:<inside> and the README's --store training/<method> --features-dir
    <folder>/features, with --overwrite of that folder: refused, everything kept."""
    import shutil

    from tests.conftest import load_script, tree

    out = tmp_path / "verifier"
    _verifier_result(out, clustered(sources=10))
    shutil.copytree(small_photos, out / "photos")
    before = tree(out)
    main = load_script("train_verifier").main
    for flags in (["--model", "efficientnet_lite0", "--dataset", f"folder:{out / 'photos'}"],
                  ["--store", "training/feat", "--features-dir", str(out / "features")]):
        code = main([*flags, "--epochs", "1", "--output", str(out), "--overwrite"])
        err = capsys.readouterr().err.strip()
        assert code == 2 and err.count("\n") == 0 and "input" in err, (flags, err)
        assert tree(out) == before


def test_train_verifier_refuses_binary_stores_and_huge_heads(tmp_path, capsys, monkeypatch):
    from extractor.store import save_descriptors
    from hashing import describe
    from tests.conftest import load_script

    main = load_script("train_verifier").main
    features = tmp_path / "features"
    save_descriptors(describe("sample", "dhash"), "sample", root=features)
    code = main(["--store", "sample/dhash", "--features-dir", str(features), "--output",
                 str(tmp_path / "never")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "binary" in err and "float" in err, err
    assert not (tmp_path / "never").exists()
    # a width is bounded when parsed; a head whose training would not fit is refused before
    # anything is allocated
    for argv, flag in ((["--dims", "100000000"], "--dims"), (["--name", "a/b"], "--name"),
                       (["--lr", "nan"], "--lr"), (["--per-source", "1"], "--per-source")):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2 and flag in capsys.readouterr().err.splitlines()[-1]
    import helpers

    monkeypatch.setattr(helpers, "available_memory", lambda: 10**6)
    x, labels = clustered(sources=10)
    with pytest.raises(ValueError, match=r"GB.*--dims"):
        train_head(x, labels, HeadConfig(dims=(4096,), batch_size=8, per_source=2,
                                         device="cpu"), tmp_path / "huge", show_progress=False)
    assert not (tmp_path / "huge" / "head.pt").exists()
    _verifier_result(tmp_path / "store_out", (x, labels))
    code = main(["--store", "training/feat", "--features-dir",
                 str(tmp_path / "store_out" / "features"), "--dims", "4096", "--batch-size",
                 "8", "--per-source", "2", "--device", "cpu", "--output",
                 str(tmp_path / "small")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--dims" in err and "GB" in err, err
