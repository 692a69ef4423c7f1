"""The torch networks of the ``ae`` and ``head`` reducers, and the autoencoder's training.

Their architecture is rebuilt from the reducer's spec and input width, so that a reducer file
holds tensors and plain data only. Inputs are standardised first: ``z = (x - mean) / scale``
(the fitting data's mean and the square root of its average per-dimension variance for an
autoencoder; zero and one for a head).

This module needs only the parsed name (`extractor.reducer_spec.ReducerSpec`); `extractor.reduce`
imports it, never the other way round.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np
import torch
from torch import nn

import helpers
from extractor.reducer_spec import ReducerSpec
from helpers import progress as bar
from helpers import resolve_device

log = logging.getLogger(__name__)

_ACTIVATIONS = {"linear": nn.Identity, "sigmoid": nn.Sigmoid, "relu": nn.ReLU}


def _mlp(widths: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for k in range(len(widths) - 1):
        layers.append(nn.Linear(widths[k], widths[k + 1]))
        if k < len(widths) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class ReducerNet(nn.Module):
    """An autoencoder (``ae``: tied single layer, or a deeper encoder with a mirrored decoder)
    or a projection head (``head``: the encoder alone: one linear map, or an MLP with ReLU
    between the given widths).

    Parameters
    ----------
    spec : ReducerSpec
    input_dim : int
    """

    def __init__(self, spec: ReducerSpec, input_dim: int):
        super().__init__()
        self.kind = spec.kind
        self.tied = spec.kind == "ae" and len(spec.dims) == 1
        self.register_buffer("mean", torch.zeros(input_dim))
        self.register_buffer("scale", torch.ones(()))
        if self.tied:
            dim = spec.dims[0]
            self.weight = nn.Parameter(torch.empty(dim, input_dim))
            nn.init.xavier_uniform_(self.weight)
            self.bias = nn.Parameter(torch.zeros(dim))
            self.out_bias = nn.Parameter(torch.zeros(input_dim))
            self.activation = _ACTIVATIONS[spec.activation]()
        else:
            widths = [input_dim, *spec.dims]
            self.encoder = _mlp(widths)
            if spec.kind == "ae":
                self.decoder = _mlp(widths[::-1])

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Codes (N, d) of raw features (N, D)."""
        z = (x - self.mean) / self.scale
        if self.tied:
            return self.activation(z @ self.weight.T + self.bias)
        return self.encoder(z)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(code, reconstruction of the standardised input)`` (no reconstruction for a
        head)."""
        code = self.encode(x)
        if self.kind != "ae":
            return code, None
        if self.tied:
            return code, code @ self.weight + self.out_bias
        return code, self.decoder(code)


def build_network(spec: ReducerSpec, input_dim: int, state: dict[str, np.ndarray]
                  ) -> ReducerNet:
    """The network of a fitted reducer, weights loaded, in eval mode on CPU."""
    net = ReducerNet(spec, input_dim)
    net.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()})
    return net.eval()


def network_weights(spec: ReducerSpec, input_dim: int) -> int:
    """How many weights `ReducerNet` ``(spec, input_dim)`` holds (counted, not allocated)."""
    if spec.kind == "ae" and len(spec.dims) == 1:
        return spec.dims[0] * input_dim + spec.dims[0] + input_dim
    widths = [input_dim, *spec.dims]
    count = sum((a + 1) * b for a, b in zip(widths, widths[1:], strict=False))
    if spec.kind == "ae":
        count += sum((b + 1) * a for a, b in zip(widths, widths[1:], strict=False))
    return count


def check_network_fits(spec: ReducerSpec, input_dim: int, device: str,
                       flag: str = "the widths") -> None:
    """Refuse, before allocating anything, a network whose training would not fit the memory
    of ``device``: its weights, their gradients and the optimiser's two moments (float32).

    Raises
    ------
    ValueError
        Naming the size and ``flag`` (what to lower).
    """
    weights = network_weights(spec, input_dim)
    need = 4 * 4 * weights
    if str(device).startswith("cuda"):
        free = torch.cuda.mem_get_info(torch.device(device))[0]
    else:
        free = helpers.available_memory()  # looked up when called: tests replace it
    if free is not None and need > free:
        raise ValueError(f"{spec.name} on {input_dim}-d features has {weights:,} weights: "
                         f"training needs about {need / 1e9:,.1f} GB (weights, gradients, "
                         f"optimiser state), {free / 1e9:,.1f} GB are free on {device}; "
                         f"lower {flag}")


def network_state(net: ReducerNet) -> dict[str, np.ndarray]:
    """A network's weights as NumPy arrays (what a reducer file keeps)."""
    return {k: v.detach().cpu().numpy().copy() for k, v in net.state_dict().items()}


def train_autoencoder(values: np.ndarray, spec: ReducerSpec, *, seed: int = 0,
                      epochs: int = 30, batch_size: int = 256, lr: float = 1e-3,
                      weight_decay: float = 0.0, device: str = "auto",
                      show_progress: bool | None = None, progress: bool | None = None
                      ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Train an ``ae`` reducer: Adam on the mean squared reconstruction error of the
    standardised features, shuffled with ``seed``.

    The fitting data is read into memory as float32 (fit on a sample of a very large store).
    Returns the weights and ``{"losses": per-epoch mean loss, "device": ...}``; the loss of the
    last epoch is also logged. ``show_progress``: a bar per epoch (``None``: when stderr is a
    terminal); ``progress`` is its deprecated name.
    """
    if progress is not None:
        warnings.warn("train_autoencoder(progress=) is deprecated: use show_progress=",
                      DeprecationWarning, stacklevel=2)
        show_progress = None if progress else False  # progress=True meant "when a terminal"
    if epochs < 1 or batch_size < 1 or not lr > 0:
        raise ValueError(f"epochs and batch_size must be >= 1 and lr > 0, got {epochs}, "
                         f"{batch_size}, {lr}")
    device = resolve_device(device)
    check_network_fits(spec, values.shape[1], device, "the reducer's widths")
    data = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))
    if not torch.isfinite(data).all():
        row = int((~torch.isfinite(data).all(1)).nonzero()[0])
        raise ValueError(f"row {row} of the fitting features is not finite")
    mean = data.double().mean(0)
    scale = float(((data.double() - mean) ** 2).mean().sqrt().clamp_min(1e-12))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = ReducerNet(spec, data.shape[1])
    net.mean.copy_(mean.float())
    net.scale.fill_(scale)
    net.to(device).train()
    data = data.to(device)
    optimiser = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    for _epoch in bar(range(epochs), desc=f"autoencoder {spec.name}", unit="epoch",
                      disable=None if show_progress is None else not show_progress):
        order = torch.randperm(len(data), generator=generator).to(device)
        total, count = 0.0, 0
        for start in range(0, len(data), batch_size):
            batch = data[order[start:start + batch_size]]
            _, recon = net(batch)
            target = (batch - net.mean) / net.scale
            loss = torch.mean((recon - target) ** 2)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            total += loss.item() * len(batch)
            count += len(batch)
        losses.append(total / count)
    log.info("autoencoder %s: loss %.4g -> %.4g over %d epochs on %s", spec.name, losses[0],
             losses[-1], epochs, device)
    net.cpu().eval()
    return network_state(net), {"losses": losses, "device": device, "epochs": epochs,
                                "batch_size": batch_size, "lr": lr, "seed": seed,
                                "weight_decay": weight_decay}
