"""ResNets of SimCLR v1 (width multipliers) and v2 (depth, width, selective kernels), and the
projection head, following the TensorFlow release layer by layer so that its checkpoints load.

Layers are created (and called) in the order the TensorFlow code creates them: the converter
(`SimCLRv2.convert`) relies on it, since TensorFlow names layers ``conv2d``, ``conv2d_1``...
in creation order.

- Stem: a 7x7 stride-2 convolution, or with selective kernels three 3x3 convolutions (ResNet-D
  stem); then a 3x3 stride-2 max pool with TensorFlow's SAME padding.
- Bottleneck: 1x1, 3x3 (a selective-kernel convolution when ``sk_ratio > 0``), 1x1 (x4);
  projection shortcuts are a strided 1x1 convolution, or with selective kernels a 2x2 average
  pool then a 1x1 convolution (ResNet-D) at every stride: at stride 2 over TensorFlow's fixed
  zero padding (zeros counted), at stride 1 with SAME padding (padding not counted), as
  google-research/simclr's ``resnet.py`` does.
- Selective kernel: one 3x3 convolution to 2 x filters channels split into two streams, mixed
  by softmax weights from a squeeze-and-excitation branch of width max(filters x sk_ratio, 32).
"""

from __future__ import annotations

import math
import re

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

BN_EPS = 1e-5
BN_MOMENTUM = 0.1  # TensorFlow's decay 0.9
LAYERS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
SK_RATIO = 0.0625  # SimCLRv2's selective-kernel ratio (1/16)


def _bn(channels: int, zero_init: bool = False) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)
    if zero_init:
        nn.init.zeros_(bn.weight)
    return bn


def _conv(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Conv2d:
    # TensorFlow's conv2d_fixed_padding: symmetric (k - 1) / 2 padding for odd kernels.
    return nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, bias=False)


class MaxPoolSame(nn.Module):
    """Max pool with TensorFlow's SAME padding (extra padding at the end, -inf)."""

    def __init__(self, kernel: int = 3, stride: int = 2):
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size in (x.shape[-1], x.shape[-2]):
            total = max((math.ceil(size / self.stride) - 1) * self.stride + self.kernel - size,
                        0)
            pads += [total // 2, total - total // 2]
        x = F.pad(x, pads, value=float("-inf"))
        return F.max_pool2d(x, self.kernel, self.stride)


class SelectiveKernel(nn.Module):
    def __init__(self, cin: int, filters: int, stride: int, sk_ratio: float,
                 min_dim: int = 32):
        super().__init__()
        mid = max(int(filters * sk_ratio), min_dim)
        self.conv = _conv(cin, 2 * filters, 3, stride)
        self.bn = _bn(2 * filters)
        self.fc1 = _conv(filters, mid, 1)
        self.fc_bn = _bn(mid)
        self.fc2 = _conv(mid, 2 * filters, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.conv(x)))
        streams = torch.stack(torch.chunk(x, 2, dim=1))  # (2, N, filters, H, W)
        squeezed = streams.sum(0).mean((2, 3), keepdim=True)
        mixing = self.fc2(F.relu(self.fc_bn(self.fc1(squeezed))))
        weights = torch.softmax(torch.stack(torch.chunk(mixing, 2, dim=1)), dim=0)
        return (streams * weights).sum(0)


class Projection(nn.Module):
    """Projection shortcut (created before the block's main path, as in TensorFlow)."""

    def __init__(self, cin: int, cout: int, stride: int, sk_ratio: float):
        super().__init__()
        self.resnet_d = sk_ratio > 0
        self.stride = stride
        self.conv = _conv(cin, cout, 1, 1 if self.resnet_d else stride)
        self.bn = _bn(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.resnet_d:  # ResNet-D: a 2x2 average pool before the 1x1 convolution, always
            if self.stride > 1:
                # TensorFlow: fixed zero padding of 1 at the end, then a VALID 2x2 pool
                # (the zeros count in the average).
                x = F.avg_pool2d(F.pad(x, (0, 1, 0, 1)), 2, self.stride)
            else:
                # TensorFlow: a SAME 2x2 pool at stride 1, padding after the last row and
                # column, not counted. Repeating the edge there gives exactly that average.
                x = F.avg_pool2d(F.pad(x, (0, 1, 0, 1), mode="replicate"), 2, 1)
        return self.bn(self.conv(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, filters: int, stride: int, sk_ratio: float,
                 projection: bool):
        super().__init__()
        cout = filters * self.expansion
        self.projection = Projection(cin, cout, stride, sk_ratio) if projection else None
        self.conv1 = _conv(cin, filters, 1)
        self.bn1 = _bn(filters)
        if sk_ratio > 0:
            self.conv2 = SelectiveKernel(filters, filters, stride, sk_ratio)
            self.bn2 = None
        else:
            self.conv2 = _conv(filters, filters, 3, stride)
            self.bn2 = _bn(filters)
        self.conv3 = _conv(filters, cout, 1)
        self.bn3 = _bn(cout, zero_init=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = self.projection(x) if self.projection is not None else x
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.conv2(out)
        if self.bn2 is not None:
            out = F.relu(self.bn2(out))
        out = self.bn3(self.conv3(out))
        return F.relu(out + shortcut)


class ResNet(nn.Module):
    """SimCLR encoder: ``forward`` gives the pooled representation (N, 2048 x width).

    Parameters
    ----------
    depth : {50, 101, 152}
    width : int
        Width multiplier (1, 2, 3, 4).
    sk_ratio : float
        Selective-kernel ratio; 0 disables selective kernels (and the ResNet-D stem).
    """

    def __init__(self, depth: int = 50, width: int = 1, sk_ratio: float = 0.0):
        super().__init__()
        if depth not in LAYERS:
            raise ValueError(f"depth must be one of {sorted(LAYERS)}, got {depth}")
        self.depth, self.width, self.sk_ratio = depth, width, sk_ratio
        stem_width = 64 * width
        if sk_ratio > 0:
            self.stem = nn.Sequential(
                _conv(3, stem_width // 2, 3, 2), _bn(stem_width // 2), nn.ReLU(inplace=True),
                _conv(stem_width // 2, stem_width // 2, 3), _bn(stem_width // 2),
                nn.ReLU(inplace=True),
                _conv(stem_width // 2, stem_width, 3), _bn(stem_width), nn.ReLU(inplace=True))
        else:
            self.stem = nn.Sequential(_conv(3, stem_width, 7, 2), _bn(stem_width),
                                      nn.ReLU(inplace=True))
        self.pool = MaxPoolSame(3, 2)
        cin = stem_width
        stages = []
        for i, blocks in enumerate(LAYERS[depth]):
            filters = 64 * width * 2 ** i
            stage = []
            for b in range(blocks):
                stage.append(Bottleneck(cin, filters, 2 if (b == 0 and i > 0) else 1, sk_ratio,
                                        projection=b == 0))
                cin = filters * Bottleneck.expansion
            stages.append(nn.Sequential(*stage))
        self.stages = nn.Sequential(*stages)
        self.out_dim = cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.pool(self.stem(x))).mean((2, 3))


class BatchNormNoCenter(nn.BatchNorm1d):
    """BatchNorm1d without the shift (TensorFlow's ``center=False``): the bias stays 0.

    The bias is a frozen parameter (``requires_grad=False``, zero), not a buffer, so that
    ``nn.SyncBatchNorm.convert_sync_batchnorm`` can carry it over like any batch norm's.
    """

    def __init__(self, features: int):
        super().__init__(features, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.bias.requires_grad_(False)


class ContrastiveHead(nn.Module):
    """Projection head: ``layers - 1`` of (linear, BN, ReLU) at the input width, then linear and
    BN (no shift) to ``out_dim``. SimCLR v2 uses 3 layers, v1 2, both 128-d out.

    ``forward`` returns the output of every layer (``hiddens[0]`` is the input), as the
    release does: fine-tuning from the middle of the head uses them.
    """

    def __init__(self, in_dim: int, layers: int = 3, out_dim: int = 128):
        super().__init__()
        self.linears = nn.ModuleList()
        self.bns = nn.ModuleList()
        for j in range(layers):
            last = j == layers - 1
            self.linears.append(nn.Linear(in_dim, out_dim if last else in_dim, bias=False))
            self.bns.append(BatchNormNoCenter(out_dim) if last else
                            nn.BatchNorm1d(in_dim, eps=BN_EPS, momentum=BN_MOMENTUM))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        hiddens = [x]
        for j, (linear, bn) in enumerate(zip(self.linears, self.bns, strict=True)):
            x = bn(linear(x))
            if j != len(self.linears) - 1:
                x = F.relu(x)
            hiddens.append(x)
        return hiddens


_NAME = re.compile(r"^r(\d+)_(\d)x_sk([01])$")


def name_to_params(name: str) -> tuple[int, int, float]:
    """``"r50_2x_sk1"`` -> (depth 50, width 2, sk_ratio 0.0625)."""
    match = _NAME.match(name)
    if not match:
        raise ValueError(f"not a SimCLRv2 model name like r50_1x_sk1: {name!r}")
    return int(match[1]), int(match[2]), SK_RATIO if match[3] == "1" else 0.0


def get_resnet(name: str) -> tuple[ResNet, ContrastiveHead]:
    """Encoder and projection head of a SimCLR v2 (``r50_1x_sk1``) or v1 (``1x``, ``2x``,
    ``4x``: ResNet-50, 2-layer head) model, randomly initialised."""
    if re.fullmatch(r"[124]x", name):
        encoder = ResNet(50, int(name[0]), 0.0)
        return encoder, ContrastiveHead(encoder.out_dim, layers=2)
    encoder = ResNet(*name_to_params(name))
    return encoder, ContrastiveHead(encoder.out_dim, layers=3)


def count_parameters(module: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
