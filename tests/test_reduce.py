"""Reducers (PCA, whitening, random projection, autoencoders, byte quantisers) against
scikit-learn, Faiss and hand-computed examples; composing them with models and algorithms."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from scipy.linalg import subspace_angles
from sklearn.decomposition import PCA
from sklearn.random_projection import GaussianRandomProjection

from extractor.reduce import (
    explained_variance,
    fit_reducer,
    load_reducer,
    parse_reducer,
    resolve_reducer,
)
from tests.conftest import REPO


def data(n=400, dim=12, seed=0) -> np.ndarray:
    """Anisotropic Gaussian data off the origin: a clear, well separated spectrum."""
    rng = np.random.default_rng(seed)
    rotation = np.linalg.qr(rng.standard_normal((dim, dim)))[0]
    return ((rng.standard_normal((n, dim)) * np.geomspace(6, 0.2, dim)) @ rotation + 2.5
            ).astype(np.float32)


@pytest.mark.parametrize("whiten", [False, True])
def test_pca_equals_scikit_learn_up_to_sign(whiten):
    x = data()
    ours = fit_reducer(x, f"{'pcaw' if whiten else 'pca'}:5", show_progress=False)
    x64 = x.astype(np.float64)  # scikit-learn computes in the input's precision
    theirs = PCA(5, whiten=whiten).fit(x64)
    a, b = ours.transform(x), theirs.transform(x).astype(np.float32)
    signs = np.sign(np.sum(a * b, axis=0))
    np.testing.assert_allclose(a * signs, b, atol=2e-4 * np.abs(b).max())
    np.testing.assert_allclose(ours.info["explained_variance"], theirs.explained_variance_,
                               rtol=1e-5)
    np.testing.assert_allclose(ours.info["explained_variance_ratio"],
                               theirs.explained_variance_ratio_, rtol=1e-5)
    np.testing.assert_allclose(explained_variance(x), PCA().fit(x64).explained_variance_,
                               rtol=1e-5, atol=1e-9)


def test_pca_fits_a_memory_mapped_store_block_by_block(tmp_path, monkeypatch):
    import extractor.reduce as reduce

    x = data(n=300, dim=8, seed=3)
    np.save(tmp_path / "x.npy", x)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    monkeypatch.setattr(reduce, "BLOCK_ROWS", 64)  # several blocks, one partial
    ours = fit_reducer(mapped, "pca:3")
    theirs = PCA(3).fit(x)
    a, b = ours.transform(mapped), theirs.transform(x)
    np.testing.assert_allclose(np.abs(a), np.abs(b), atol=1e-4)


def test_random_projection_is_scikit_learns_and_seeded():
    x = data(dim=20)
    ours = fit_reducer(x, "rp:6", seed=7)
    theirs = GaussianRandomProjection(6, random_state=7).fit(x)
    np.testing.assert_allclose(ours.transform(x), theirs.transform(x), rtol=1e-4, atol=1e-4)
    assert not np.allclose(fit_reducer(x, "rp:6", seed=8).transform(x), ours.transform(x))


def test_linear_autoencoder_loss_falls_and_spans_the_principal_subspace():
    x = data(n=600, dim=10, seed=1)
    ae = fit_reducer(x, "ae:3", epochs=150, batch_size=100, lr=1e-2, show_progress=False)
    losses = ae.info["losses"]
    assert losses[-1] < 0.5 * losses[0]
    weight = ae.network().weight.detach().numpy()  # (3, 10): the codes' directions
    angles = np.degrees(subspace_angles(weight.T, PCA(3).fit(x).components_.T))
    assert angles.max() < 5, angles
    # the fourth component is not in the span (the test can fail)
    assert np.degrees(subspace_angles(weight.T, PCA(4).fit(x).components_[3:].T)).min() > 45


@pytest.mark.parametrize("spec", ["ae:4:sigmoid", "ae:4:relu", "ae:8-4"])
def test_other_autoencoders_train_and_reload(tmp_path, spec):
    x = data(n=200, dim=10, seed=2)
    ae = fit_reducer(x, spec, epochs=25, batch_size=50, lr=5e-3, show_progress=False)
    assert ae.info["losses"][-1] < ae.info["losses"][0]
    codes = ae.transform(x)
    assert codes.shape == (200, 4) and codes.dtype == np.float32
    if spec.endswith("sigmoid"):
        assert codes.min() >= 0 and codes.max() <= 1
    again = load_reducer(ae.save(tmp_path / "ae.pt"))
    np.testing.assert_array_equal(again.transform(x), codes)
    assert again.spec == parse_reducer(spec)


def test_uint8_quantiser_by_hand():
    x = np.array([[0.0, 10.0], [1.0, 30.0], [2.0, 20.0], [3.0, 25.0]], np.float32)
    r = fit_reducer(x, "rp:2", seed=0, quantize="uint8")
    reduced = r.reduce(x)
    low, high = reduced.min(0), reduced.max(0)
    codes = r.encode(reduced)
    assert codes.dtype == np.uint8
    np.testing.assert_array_equal(codes[reduced.argmin(0), [0, 1]], [0, 0])
    np.testing.assert_array_equal(codes[reduced.argmax(0), [0, 1]], [255, 255])
    expected = np.rint((reduced - low) / (high - low) * 255)
    np.testing.assert_array_equal(codes, expected)
    assert np.abs(r.transform(x) - reduced).max() <= (high - low).max() / 510 + 1e-6
    assert r.bytes_per_descriptor == 2 and r.name == "rp:2+uint8"


def test_faiss_scalar_quantiser():
    import faiss

    x = data(n=300, dim=16, seed=4)
    r = fit_reducer(x, "pca:8", quantize="sq8")
    reduced = r.reduce(x)
    sq = faiss.ScalarQuantizer(8, faiss.ScalarQuantizer.QT_8bit)
    sq.train(reduced)
    np.testing.assert_array_equal(r.encode(reduced), sq.compute_codes(reduced))
    np.testing.assert_allclose(r.transform(x), sq.decode(sq.compute_codes(reduced)))


def test_save_load_round_trip_and_bad_files(tmp_path):
    x = data()
    r = fit_reducer(x, "pcaw:4", method="m", quantize="uint8")
    again = load_reducer(r.save(tmp_path / "r.pt"))
    np.testing.assert_array_equal(again.transform(x), r.transform(x))
    assert again.method == "m" and again.info["fitted_on"]["count"] == len(x)
    with pytest.raises(FileNotFoundError, match="not found"):
        load_reducer(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="not a reducer file"):
        load_reducer(tmp_path / "junk.pt")
    with pytest.raises(ValueError, match="fitted on m features, not other"):
        r.transform(x, method="other")
    with pytest.raises(ValueError, match=r"takes \(N, 12\)"):
        r.transform(x[:, :5])


@pytest.mark.parametrize("spec, message", [
    ("pca", "kind:dim"), ("pca:0", ">= 1"), ("pca:1.5", "positive integers"),
    ("svd:8", "unknown reducer kind"), ("pca:8-4", "only ae and head"),
    ("ae:8:tanh", "unknown autoencoder activation"), ("pca:8:relu", "ae only"),
])
def test_bad_specs(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_reducer(spec)


def test_fit_refuses_what_cannot_be_fitted():
    x = data(n=5, dim=12)
    with pytest.raises(ValueError, match="at least 9 rows"):
        fit_reducer(x, "pca:8")
    with pytest.raises(ValueError, match="20 outputs from 12-d"):
        fit_reducer(data(), "rp:20")
    bad = data()
    bad[7, 3] = np.nan
    with pytest.raises(ValueError, match="row 7"):
        fit_reducer(bad, "pca:2")


def test_models_and_algorithms_take_a_reducer(tmp_path, monkeypatch):
    import hashing
    from extractor import get_model

    monkeypatch.setenv("RESULTS_DIR", str(tmp_path / "Results"))
    raw = hashing.describe("sample", "efficientnet_lite0")
    with pytest.raises(FileNotFoundError, match="fit_reducer.py --store <dataset>/"
                                                "efficientnet_lite0 --reducer pca:4"):
        hashing.get_algorithm("efficientnet_lite0", reduce="pca:4")
    reducer = fit_reducer(raw, "pca:4")
    assert reducer.method == "efficientnet_lite0"
    file = reducer.save(resolve_reducer.__globals__["reducers_dir"]() / "efficientnet_lite0"
                        / "pca_4.pt")
    algorithm = hashing.get_algorithm("efficientnet_lite0", reduce="pca:4")
    assert algorithm.label.startswith("efficientnet_lite0_reduce=pca-4.pt-")
    assert algorithm.label == hashing.get_algorithm("efficientnet_lite0",
                                                    reduce=str(file)).label
    reduced = hashing.describe("sample", algorithm)
    assert reduced.method == algorithm.label and reduced.metric == "cosine"
    np.testing.assert_allclose(reduced.values, reducer.transform(raw.values), atol=1e-6)
    model = get_model("efficientnet_lite0", reduce="pca:4", device="cpu")
    assert model.dim == 4 and model.name == algorithm.label
    from data_retrieval import load_dataset
    from extractor import extract

    records = load_dataset("sample").records
    np.testing.assert_allclose(extract(model, records).values, reduced.values, atol=1e-5)
    # a reducer of the 224-pixel model does not apply to the 256-pixel one
    with pytest.raises(ValueError, match="fitted on efficientnet_lite0 features"):
        hashing.describe("sample", hashing.get_algorithm(
            "efficientnet_lite0", image_size=256, reduce=str(file)))
    with pytest.raises(ValueError, match="fitted on efficientnet_lite0"):
        get_model("efficientnet_lite0", image_size=256, reduce=str(file))


def test_fit_reducer_script(tmp_path):
    from data_retrieval import ImageRecord
    from extractor import save_store

    x = data(n=50, dim=16)
    records = [ImageRecord(f"im{i}", None) for i in range(50)]
    features = tmp_path / "features"
    save_store(x, records, "toy", "feat", root=features)
    env = {**os.environ, "RESULTS_DIR": str(tmp_path / "Results")}
    cmd = [sys.executable, "scripts/fit_reducer.py", "--store", "toy/feat", "--features-dir",
           str(features), "--reducer", "pca:4", "ae:4", "--epochs", "3", "--sample", "40"]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "Results" / "reducers" / "feat"
    pca = load_reducer(folder / "pca_4.pt")
    rows = np.sort(np.random.default_rng(0).choice(50, 40, replace=False))
    np.testing.assert_allclose(np.abs(pca.transform(x)),
                               np.abs(PCA(4).fit(x[rows]).transform(x)), atol=1e-4)
    summary = json.loads((folder / "ae_4.json").read_text())
    assert summary["fitted_on"]["store"] == "toy/feat" and len(summary["losses"]) == 3
    assert (folder / "figures" / "explained_variance_toy.png").is_file()
    again = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "--overwrite" in again.stderr


def test_wrong_reducers_fail_when_the_algorithm_is_made(tmp_path, monkeypatch):
    import hashing

    monkeypatch.setenv("RESULTS_DIR", str(tmp_path / "Results"))
    x = np.random.default_rng(0).standard_normal((40, 1280)).astype(np.float32)
    other = fit_reducer(x, "pca:4", method="sscd_distilled").save(tmp_path / "other.pt")
    mine = fit_reducer(x, "pca:4", method="efficientnet_lite0")
    mine.save(tmp_path / "Results" / "reducers" / "efficientnet_lite0" / "pca_4.pt")
    with pytest.raises(ValueError, match="fitted on sscd_distilled features"):
        hashing.get_algorithm("efficientnet_lite0", reduce=str(other))
    with pytest.raises(ValueError, match="compare them with distance 'cosine'"):
        hashing.get_algorithm("efficientnet_lite0", reduce="pca:4", distance="jensenshannon")
    with pytest.raises(ValueError, match="reducer file or name"):
        hashing.get_algorithm("efficientnet_lite0", reduce=12)
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a reducer file"):
        hashing.get_algorithm("efficientnet_lite0", reduce=str(tmp_path / "junk.pt"))
    # a quantised reducer by name, and the algorithm's own parameters do not change the model
    with_q = fit_reducer(x, "pca:4", method="efficientnet_lite0", quantize="uint8")
    with_q.save(tmp_path / "Results" / "reducers" / "efficientnet_lite0" / "pca_4_uint8.pt")
    label = hashing.get_algorithm("efficientnet_lite0", reduce="pca:4+uint8",
                                  distance="l2").label
    assert "reduce=pca-4-uint8.pt-" in label and "distance=l2" in label
    with pytest.raises(FileNotFoundError, match="--quantize sq8"):
        hashing.get_algorithm("efficientnet_lite0", reduce="pca:4+sq8")
    with pytest.raises(FileNotFoundError, match="train_verifier.py"):
        hashing.get_algorithm("efficientnet_lite0", reduce="head:8")


def test_more_fitting_checks():
    with pytest.raises(ValueError, match="one-layer ae only"):
        parse_reducer("ae:16-8:relu")
    x = data()
    x[3, 1] = np.nan
    with pytest.raises(ValueError, match="row 3"):
        fit_reducer(x, "rp:4", quantize="uint8")
    # quantising does not refit: the reduction is the unquantised reducer's
    from extractor.reduce import with_quantizer

    ae = fit_reducer(data(), "ae:3", epochs=3, show_progress=False)
    q = with_quantizer(ae, data(), "uint8")
    np.testing.assert_array_equal(q.reduce(data()), ae.reduce(data()))
    assert q.name == "ae:3+uint8" and ae.quantizer is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_linear_autoencoder_trains_on_cuda_and_is_used_on_cpu(tmp_path):
    """The GPU path of fit_reducer: the same subspace as PCA, a file that loads and runs on
    a CPU machine."""
    x = data(n=600, dim=10, seed=1)
    ae = fit_reducer(x, "ae:3", epochs=150, batch_size=100, lr=1e-2, device="cuda",
                     show_progress=False)
    assert ae.info["losses"][-1] < 0.5 * ae.info["losses"][0]
    weight = ae.network().weight.detach().cpu().numpy()
    angles = np.degrees(subspace_angles(weight.T, PCA(3).fit(x).components_.T))
    assert angles.max() < 5, angles
    again = load_reducer(ae.save(tmp_path / "ae.pt"))
    assert next(again.network().parameters()).device.type == "cpu"
    np.testing.assert_allclose(again.transform(x), ae.transform(x), rtol=1e-5, atol=1e-5)


# --- scripts/fit_reducer.py: one run per folder, and what it may replace ------------------------


def _toy_store(tmp_path, x=None):
    from data_retrieval import ImageRecord
    from extractor import save_store

    x = data(n=50, dim=16) if x is None else x
    features = tmp_path / "features"
    save_store(x, [ImageRecord(f"im{i}", None) for i in range(len(x))], "toy", "feat",
               root=features, meta={"kind": "float", "metric": "cosine"})
    return features


def test_fit_reducer_takes_the_folder_lock_and_refuses_what_is_not_its_own(tmp_path, capsys):
    from helpers import FolderLock
    from tests.conftest import load_script, tree

    main = load_script("fit_reducer").main
    features = _toy_store(tmp_path)
    out = tmp_path / "reducers"
    out.mkdir()
    base = ["--store", "toy/feat", "--features-dir", str(features), "--reducer", "pca:4",
            "--output-dir", str(out)]
    with FolderLock(out):  # another run writes the folder: this one waits its turn
        assert main(base) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "in use" in err, err
        assert sorted(p.name for p in out.iterdir()) == [".lock"]
    assert main(base) == 0 and (out / "pca_4.pt").is_file()
    assert not (out / ".lock").exists()
    (out / "rp_4.pt").write_bytes(b"my own file")
    before = tree(out)
    assert main([*base[:-3], "rp:4", "--output-dir", str(out), "--overwrite"]) == 2
    assert "not a reducer file" in capsys.readouterr().err and tree(out) == before
    # the flag's type: a file is no folder
    with pytest.raises(SystemExit) as exit_:
        main([*base[:-1], str(out / "pca_4.pt")])
    assert exit_.value.code == 2 and "--output-dir" in capsys.readouterr().err
    assert tree(out) == before


def test_fit_reducer_refuses_a_store_of_binary_codes(tmp_path, capsys):
    from extractor.store import save_descriptors
    from hashing import describe
    from tests.conftest import load_script

    features = tmp_path / "features"
    save_descriptors(describe("sample", "dhash"), "sample", root=features)
    code = load_script("fit_reducer").main(
        ["--store", "sample/dhash", "--features-dir", str(features), "--reducer", "pca:4",
         "--output-dir", str(tmp_path / "never")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "binary" in err and "float features" in err, err
    assert not (tmp_path / "never").exists()


def test_whitening_rank_deficient_data_warns_of_the_flat_components(caplog):
    """pcaw on 3-rank data in 12 dimensions: the components past the third have zero variance,
    and whitening divides them by ~0. The log names how many."""
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((60, 3)) @ rng.standard_normal((3, 12))).astype(np.float32)
    with caplog.at_level("WARNING", logger="extractor.reduce"):
        reducer = fit_reducer(x, "pcaw:6")
    assert reducer.info["near_zero_variance_components"] == 3
    assert "3 of the 6 components have (near-)zero variance" in caplog.text
    assert "pcaw:3" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="extractor.reduce"):
        fit_reducer(x, "pcaw:3")
        fit_reducer(data(), "pcaw:6")
    assert "zero variance" not in caplog.text


def test_fit_reducer_checks_every_reducer_before_writing_and_takes_a_npy(tmp_path, capsys):
    """Review of issue 25: `--reducer pca:2 pcaw:40` wrote pca_2 before refusing pcaw:40;
    `--store <path>.npy` said "store name '' is not a plain name"."""
    from tests.conftest import load_script

    main = load_script("fit_reducer").main
    features = _toy_store(tmp_path)
    out = tmp_path / "reducers"
    code = main(["--store", "toy/feat", "--features-dir", str(features), "--reducer", "pca:2",
                 "pcaw:400", "--output-dir", str(out)])
    assert code == 2 and "pcaw:400: more outputs than" in capsys.readouterr().err
    assert not list(out.glob("*.pt")) if out.exists() else True
    npy = next(features.rglob("feat.npy"))
    assert main(["--store", str(npy), "--reducer", "pca:2", "--output-dir", str(out)]) == 0
    assert (out / "pca_2.pt").is_file()
