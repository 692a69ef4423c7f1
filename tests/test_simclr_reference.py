"""SimCLR v2 as google-research/simclr's TensorFlow code computes it: the selective-kernel
(ResNet-D) shortcut at stride 1, and both layouts of the averaged (EMA) weights.

The TensorFlow comparison runs where ``tensorflow`` is importable (an optional extra; it is
skipped otherwise, saying so): one bottleneck written with TensorFlow's own ops (NHWC, SAME
padding, batch norm in inference mode) against `SimCLRv2.resnet.Bottleneck` with the same
weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from SimCLRv2.convert import ConversionError, convert_variables, ema_layout
from SimCLRv2.resnet import Bottleneck, Projection, get_resnet
from tests.test_simclr import randomised, tf_like_variables


def _identity_projection(channels: int, stride: int) -> Projection:
    """The shortcut with an identity 1x1 convolution and batch norm: its output is the pool."""
    projection = Projection(channels, channels, stride, sk_ratio=0.0625).eval()
    with torch.no_grad():
        projection.conv.weight.copy_(torch.eye(channels)[:, :, None, None])
        projection.bn.weight.fill_(1)
        projection.bn.bias.zero_()
        projection.bn.running_mean.zero_()
        projection.bn.running_var.fill_(1 - projection.bn.eps)
    return projection


def test_stride_1_shortcut_pools_2x2_same_excluding_the_padding():
    """TensorFlow pools the ResNet-D shortcut at every stride; at stride 1 with SAME padding
    (one row and column after the end, not counted in the average). Hand-computed."""
    x = torch.arange(9, dtype=torch.float32).reshape(1, 1, 3, 3)  # 0 1 2 / 3 4 5 / 6 7 8
    expected = torch.tensor([[(0 + 1 + 3 + 4) / 4, (1 + 2 + 4 + 5) / 4, (2 + 5) / 2],
                             [(3 + 4 + 6 + 7) / 4, (4 + 5 + 7 + 8) / 4, (5 + 8) / 2],
                             [(6 + 7) / 2, (7 + 8) / 2, 8.0]])
    with torch.no_grad():
        out = _identity_projection(1, 1)(x)[0, 0]
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)


def test_stride_2_shortcut_pools_over_fixed_zero_padding():
    """At stride 2: zero padding of one after the end, then a VALID 2x2 pool (zeros count)."""
    x = torch.arange(9, dtype=torch.float32).reshape(1, 1, 3, 3)
    expected = torch.tensor([[(0 + 1 + 3 + 4) / 4, (2 + 5) / 4],
                             [(6 + 7) / 4, 8 / 4]])
    with torch.no_grad():
        out = _identity_projection(1, 2)(x)[0, 0]
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)


def _prefixed(variables: dict) -> dict:
    """The same checkpoint with its averaged weights under ``ema_model/`` (the layout public
    converters of the released v2 checkpoints read)."""
    out = {}
    for name, value in variables.items():
        if name.endswith("/ExponentialMovingAverage"):
            out["ema_model/" + name.removesuffix("/ExponentialMovingAverage")] = value
        else:
            out[name] = value
    return out


def test_both_ema_layouts_convert_to_the_same_weights():
    encoder, head = get_resnet("r50_1x_sk1")
    randomised(encoder), randomised(head)
    suffix = tf_like_variables(encoder, head, None, ema_too=True)
    prefix = _prefixed(suffix)
    assert ema_layout(suffix) == "suffix" and ema_layout(prefix) == "prefix"
    for ema in (False, True):
        a = convert_variables(suffix, "r50_1x_sk1", ema=ema)
        b = convert_variables(prefix, "r50_1x_sk1", ema=ema)
        for key, value in a["encoder"].items():
            assert torch.equal(value, b["encoder"][key]), key
        for key, value in a["head"].items():
            assert torch.equal(value, b["head"][key]), key
    averaged = convert_variables(prefix, "r50_1x_sk1", ema=True)["encoder"]
    key = "stages.0.0.conv1.weight"
    assert torch.equal(averaged[key], encoder.state_dict()[key] + 1)


def test_ema_layout_mixtures_and_absences_are_refused_clearly():
    encoder, head = get_resnet("r50_1x_sk0")
    suffix = tf_like_variables(encoder, head, None, ema_too=True)
    mixed = dict(_prefixed(suffix), **{k: v for k, v in suffix.items()
                                      if k.endswith("/ExponentialMovingAverage")})
    with pytest.raises(ConversionError, match="two layouts"):
        convert_variables(mixed, "r50_1x_sk0", ema=True)
    plain = tf_like_variables(encoder, head, None)
    with pytest.raises(ConversionError, match="no EMA weights"):
        convert_variables(plain, "r50_1x_sk0", ema=True)
    only_ema = {k: v for k, v in _prefixed(suffix).items() if k.startswith("ema_model/")}
    with pytest.raises(ConversionError, match="only EMA weights"):
        convert_variables(only_ema, "r50_1x_sk0")


# --- against TensorFlow's own ops ---------------------------------------------------------------


def _tf():
    try:
        import tensorflow as tf
    except ImportError:
        pytest.skip("tensorflow is not installed: the TensorFlow-ops comparison is optional "
                    "(pip install -e '.[tensorflow]')")
    return tf


def _tf_bn(tf, x, bn: nn.BatchNorm2d, relu: bool):
    y = tf.nn.batch_normalization(x, bn.running_mean.numpy(), bn.running_var.numpy(),
                                  bn.bias.detach().numpy(), bn.weight.detach().numpy(), bn.eps)
    return tf.nn.relu(y) if relu else y


def _tf_conv(tf, x, conv: nn.Conv2d, stride: int):
    """TensorFlow's conv2d_fixed_padding: SAME at stride 1, explicit padding then VALID."""
    kernel = conv.weight.detach().numpy().transpose(2, 3, 1, 0)  # OIHW -> HWIO
    k = kernel.shape[0]
    if stride > 1:
        total = k - 1
        x = tf.pad(x, [[0, 0], [total // 2, total - total // 2],
                       [total // 2, total - total // 2], [0, 0]])
        return tf.nn.conv2d(x, kernel, stride, "VALID")
    return tf.nn.conv2d(x, kernel, 1, "SAME")


def _tf_sk(tf, x, sk, stride: int):
    """google-research/simclr's selective kernel conv, with our module's weights."""
    conv = _tf_conv(tf, x, sk.conv, stride)
    conv = _tf_bn(tf, conv, sk.bn, relu=True)
    a, b = tf.split(conv, 2, axis=3)
    mixed = tf.reduce_mean(a + b, axis=[1, 2], keepdims=True)
    mixed = _tf_conv(tf, mixed, sk.fc1, 1)
    mixed = _tf_bn(tf, mixed, sk.fc_bn, relu=True)
    mixed = _tf_conv(tf, mixed, sk.fc2, 1)
    weights = tf.nn.softmax(tf.stack(tf.split(mixed, 2, axis=3), 0), axis=0)
    return tf.reduce_sum(tf.stack([a, b], 0) * weights, axis=0)


def _tf_bottleneck(tf, x, block: Bottleneck, stride: int, sk: bool):
    if block.projection is not None:
        shortcut = x
        if sk:
            if stride > 1:
                shortcut = tf.pad(shortcut, [[0, 0], [0, 1], [0, 1], [0, 0]])
            shortcut = tf.nn.avg_pool2d(shortcut, 2, stride, "SAME" if stride == 1 else "VALID")
            shortcut = _tf_conv(tf, shortcut, block.projection.conv, 1)
        else:
            shortcut = _tf_conv(tf, shortcut, block.projection.conv, stride)
        shortcut = _tf_bn(tf, shortcut, block.projection.bn, relu=False)
    else:
        shortcut = x
    out = _tf_bn(tf, _tf_conv(tf, x, block.conv1, 1), block.bn1, relu=True)
    if sk:
        out = _tf_sk(tf, out, block.conv2, stride)
    else:
        out = _tf_bn(tf, _tf_conv(tf, out, block.conv2, stride), block.bn2, relu=True)
    out = _tf_bn(tf, _tf_conv(tf, out, block.conv3, 1), block.bn3, relu=False)
    return tf.nn.relu(out + shortcut)


def _realistic(module: nn.Module) -> nn.Module:
    """Zero-mean He-initialised convolutions and batch-norm statistics of a trained network
    (outputs of order 1, so a wrong pool shows against the tolerance)."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (2 / fan_in) ** 0.5)
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
    return module.eval()


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("sk", [False, True])
def test_one_bottleneck_equals_tensorflow_ops(stride, sk):
    tf = _tf()
    torch.manual_seed(0)
    block = _realistic(Bottleneck(64, 32, stride, 0.0625 if sk else 0.0, projection=True))
    x = torch.randn(2, 64, 9, 9)
    with torch.no_grad():
        ours = block(x).numpy()
    theirs = _tf_bottleneck(tf, x.numpy().transpose(0, 2, 3, 1), block, stride, sk).numpy()
    assert np.abs(ours).max() > 0.5  # outputs of order 1: a wrong pool differs by ~0.1-1
    np.testing.assert_allclose(ours, theirs.transpose(0, 3, 1, 2), rtol=0, atol=1e-4)
