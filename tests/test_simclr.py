"""SimCLR models: parameter counts, checkpoint list, conversion round trip, downloader."""

from __future__ import annotations

import functools
import http.server
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from extractor import get_model
from SimCLRv2 import (
    ConversionError,
    convert_variables,
    count_parameters,
    download_checkpoint,
    find_checkpoint,
    get_resnet,
    list_checkpoints,
    load_converted,
)

ROOT = Path(__file__).resolve().parents[1]

# SimCLRv2 paper (Chen et al. 2020), Table 1: encoder parameters in millions, rounded; v1 4x
# from the SimCLR paper.
PUBLISHED = {"r50_1x_sk0": 24, "r50_1x_sk1": 35, "r50_2x_sk0": 94, "r50_2x_sk1": 140,
             "r101_1x_sk0": 43, "r101_1x_sk1": 65, "r101_2x_sk0": 170, "r101_2x_sk1": 257,
             "r152_1x_sk0": 58, "r152_1x_sk1": 89, "r152_2x_sk0": 233, "r152_2x_sk1": 354,
             "r152_3x_sk1": 795, "4x": 375}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_parameter_counts_match_the_papers(name):
    with torch.device("meta"):  # no memory for the 795M-parameter model
        encoder, _ = get_resnet(name)
    millions = count_parameters(encoder) / 1e6
    published = PUBLISHED[name]
    # within 2% of the published number, which is itself rounded to the million
    nearest = min(max(millions, published - 0.5), published + 0.5)
    assert abs(millions - nearest) <= 0.02 * published, (millions, published)


def test_checkpoint_list():
    v2 = list_checkpoints("v2")
    assert len({c.model for c in v2}) == 13 and len(v2) == 13 * 5
    assert {c.category for c in v2} == {"pretrained", "finetuned_100pct", "finetuned_10pct",
                                        "finetuned_1pct", "supervised"}
    c = find_checkpoint("v2", "r50_1x_sk1", "pretrained")
    assert c.url == ("https://storage.googleapis.com/simclr-checkpoints/simclrv2/pretrained/"
                     "r50_1x_sk1/")
    assert c.files[1] == "model.ckpt-250228.index"
    v1 = list_checkpoints("v1")
    assert {c.model for c in v1} == {"1x", "2x", "4x"} and "pretrain" in {c.category for c in v1}
    with pytest.raises(ValueError, match="r152_3x_sk1"):
        find_checkpoint("v2", "r50_3x_sk1", "pretrained")


def tf_like_variables(encoder: nn.Module, head: nn.Module | None, supervised: nn.Linear | None,
                      ema_too: bool = False) -> dict[str, np.ndarray]:
    """A checkpoint dictionary as TensorFlow writes it, derived independently of the converter:
    layers are numbered in the order the forward pass *calls* them (TensorFlow names layers
    in creation order, which is its forward order), kernels in HWIO / IO layout, plus the
    optimizer slots and step counter a real checkpoint has."""
    calls: dict[type, list[nn.Module]] = {nn.Conv2d: [], nn.BatchNorm2d: []}
    hooks = [m.register_forward_pre_hook(lambda m, _: calls[type(m)].append(m))
             for m in encoder.modules() if type(m) in calls]
    with torch.no_grad():
        encoder.eval()(torch.zeros(1, 3, 64, 64))
    for h in hooks:
        h.remove()
    out: dict[str, np.ndarray] = {"global_step": np.array(1000)}
    for i, conv in enumerate(calls[nn.Conv2d]):
        name = "base_model/conv2d" + (f"_{i}" if i else "")
        out[name + "/kernel"] = conv.weight.detach().numpy().transpose(2, 3, 1, 0)
        out[name + "/kernel/Momentum"] = np.zeros(1)
    for i, bn in enumerate(calls[nn.BatchNorm2d]):
        name = "base_model/batch_normalization" + (f"_{i}" if i else "")
        for tf_name, attr in (("gamma", "weight"), ("beta", "bias"),
                              ("moving_mean", "running_mean"),
                              ("moving_variance", "running_var")):
            out[f"{name}/{tf_name}"] = getattr(bn, attr).detach().numpy().copy()
    if head is not None:
        for j, (linear, bn) in enumerate(zip(head.linears, head.bns, strict=True)):
            out[f"head_contrastive/nl_{j}/dense/kernel"] = linear.weight.detach().numpy().T
            last = j == len(head.linears) - 1
            for tf_name, attr in (("gamma", "weight"), ("beta", "bias"),
                                  ("moving_mean", "running_mean"),
                                  ("moving_variance", "running_var")):
                if not (last and tf_name == "beta"):
                    out[f"head_contrastive/nl_{j}/batch_normalization/{tf_name}"] = \
                        getattr(bn, attr).detach().numpy().copy()
    if supervised is not None:
        out["head_supervised/linear_layer/dense/kernel"] = supervised.weight.detach().numpy().T
        out["head_supervised/linear_layer/dense/bias"] = supervised.bias.detach().numpy()
    if ema_too:
        for k in [k for k in out if k != "global_step" and not k.endswith("Momentum")]:
            out[k + "/ExponentialMovingAverage"] = out[k] + 1.0
    return out


def randomised(module: nn.Module) -> nn.Module:
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        # frozen parameters (the uncentred norm's zero bias) stay as TensorFlow has them
        trainable = [p for p in module.parameters() if p.requires_grad]
        for t in trainable + [b for n, b in module.named_buffers() if "running" in n]:
            t.copy_(torch.rand(t.shape, generator=gen) + 0.5)
    return module


@pytest.mark.parametrize("name", ["r50_1x_sk1", "r50_1x_sk0", "1x"])
def test_conversion_maps_back_exactly(name):
    encoder, head = get_resnet(name)
    randomised(encoder), randomised(head)
    supervised = randomised(nn.Linear(encoder.out_dim, 1000))
    variables = tf_like_variables(encoder, head, supervised, ema_too=True)
    version = "v1" if name == "1x" else "v2"
    state = convert_variables(variables, version=version)  # model inferred from the variables
    assert state["model"] == name
    for ours, original in ((state["encoder"], encoder.state_dict()),
                           (state["head"], head.state_dict()),
                           (state["supervised_head"], supervised.state_dict())):
        for key, value in original.items():
            if "num_batches_tracked" not in key:
                assert torch.equal(ours[key], value), key
    ema = convert_variables(variables, name, version, ema=True)
    key = "stages.0.0.conv1.weight"
    assert torch.equal(ema["encoder"][key], encoder.state_dict()[key] + 1)


def test_conversion_refuses_unmapped_or_missing_variables():
    encoder, head = get_resnet("r50_1x_sk0")
    variables = tf_like_variables(encoder, head, None)
    extra = dict(variables, **{"base_model/dense_9/kernel": np.zeros((3, 3))})
    with pytest.raises(ConversionError, match="map nowhere: base_model/dense_9/kernel"):
        convert_variables(extra, "r50_1x_sk0")
    missing = {k: v for k, v in variables.items() if k != "base_model/conv2d_7/kernel"}
    with pytest.raises(ConversionError, match="convolutions"):
        convert_variables(missing, "r50_1x_sk0")
    wrong = dict(variables)
    wrong["head_contrastive/nl_0/dense/kernel"] = np.zeros((5, 5))
    with pytest.raises(ConversionError, match="shape"):
        convert_variables(wrong, "r50_1x_sk0")


@pytest.fixture
def server(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield served, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


def test_downloader_against_a_local_server_resumes(server, tmp_path):
    served, url = server
    (served / "checkpoint").write_text('model_checkpoint_path: "model.ckpt-77"\n')
    data = np.random.default_rng(0).bytes(300_000)
    (served / "model.ckpt-77.index").write_bytes(b"index")
    (served / "model.ckpt-77.data-00000-of-00001").write_bytes(data)
    target = tmp_path / "tf"
    target.mkdir()
    (target / "model.ckpt-77.data-00000-of-00001.part").write_bytes(data[:1000])  # interrupted
    prefix = download_checkpoint(find_checkpoint("v2", "r50_1x_sk0", "pretrained"), target,
                                 base_url=url)
    assert prefix == target / "model.ckpt-77"
    assert (target / "model.ckpt-77.data-00000-of-00001").read_bytes() == data
    assert (target / "model.ckpt-77.index").read_bytes() == b"index"


def test_download_script_converts_and_the_extractor_loads_it(server, tmp_path, monkeypatch):
    """scripts/download_simclr.py end to end, TensorFlow's reader replaced by the checkpoint
    dictionary (TensorFlow is an optional extra)."""
    served, url = server
    encoder, head = get_resnet("r50_1x_sk0")
    randomised(encoder), randomised(head)
    variables = tf_like_variables(encoder, head, None)
    (served / "checkpoint").write_text('model_checkpoint_path: "model.ckpt-5"\n')
    for suffix in (".index", ".data-00000-of-00001"):
        (served / f"model.ckpt-5{suffix}").write_bytes(b"x")
    import SimCLRv2.convert

    monkeypatch.setattr(SimCLRv2.convert, "read_tf_checkpoint", lambda prefix: variables)
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import download_simclr
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    out = tmp_path / "weights"
    assert download_simclr.main(["--version", "v2", "--model", "r50_1x_sk0", "--base-url", url,
                                 "--output-dir", str(out), "--log-level", "WARNING"]) == 0
    path = out / "simclr_v2_r50_1x_sk0_pretrained.pth"
    loaded, _, state = load_converted(path)
    assert state["checkpoint"]["file"] == "model.ckpt-5"
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), encoder.eval()(x))
    model = get_model("simclr_v2_r50_1x_sk0", weights=path)
    assert model.dim == 2048
    assert model(
        [__import__("PIL.Image").Image.new("RGB", (300, 200), "red")]).shape == (1, 2048)
    assert download_simclr.main(["--version", "v2", "--model", "r9_1x_sk0", "--output-dir",
                                 str(out)]) == 2


def test_projection_head_converts_to_sync_batchnorm():
    """Multi-GPU training converts batch norms with SyncBatchNorm's own converter; the
    uncentred last norm keeps its frozen zero bias through it."""
    import copy

    from torch import nn

    from SimCLRv2.resnet import ContrastiveHead

    head = ContrastiveHead(16, layers=3, out_dim=8).eval()
    x = torch.randn(5, 16)
    sync = nn.SyncBatchNorm.convert_sync_batchnorm(copy.deepcopy(head)).eval()
    assert all(isinstance(bn, nn.SyncBatchNorm) for bn in sync.bns)
    torch.testing.assert_close(sync(x)[-1], head(x)[-1])
    trainable = {name for name, p in sync.named_parameters() if p.requires_grad}
    assert "bns.2.bias" not in trainable and "bns.1.bias" in trainable
    assert torch.count_nonzero(sync.bns[2].bias) == 0
    assert set(sync.state_dict()) == set(head.state_dict())  # one checkpoint format


def test_a_fine_tuned_encoder_loads_like_a_converted_release(tmp_path):
    """One checkpoint format: what fine-tuning saves, load_converted and the extractor read,
    and the model's identity names the file."""
    from PIL import Image

    from extractor import get_model
    from SimCLRv2 import load_converted, save_checkpoint

    encoder, head = get_resnet("r50_1x_sk0")  # its own random initialisation
    path = save_checkpoint(tmp_path / "tuned.pt", "r50_1x_sk0", encoder, head, epoch=3)
    again, again_head, state = load_converted(path)
    assert state["epoch"] == 3 and again_head is not None
    x = torch.rand(2, 3, 64, 64)
    torch.testing.assert_close(again(x), encoder.eval()(x))
    model = get_model("simclr_v2_r50_1x_sk0", weights=path)
    assert model.name.startswith("simclr_v2_r50_1x_sk0_weights=tuned.pt-")
    features = model([Image.new("RGB", (64, 64), "red")])
    assert features.shape == (1, 2048) and np.isfinite(features).all()


def test_download_script_refuses_a_file_as_its_folders(tmp_path, capsys):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import download_simclr
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    for flag in ("--output-dir", "--tf-dir"):
        with pytest.raises(SystemExit) as exit_:
            download_simclr.main([flag, str(notes), "--base-url", "http://127.0.0.1:9/"])
        assert exit_.value.code == 2 and flag in capsys.readouterr().err
    assert notes.read_text() == "mine"
    # an unknown checkpoint: one line, nothing written
    assert download_simclr.main(["--model", "r9_1x_sk0", "--output-dir",
                                 str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and err.count("\n") == 0
    assert not (tmp_path / "w").exists()
