"""What is trained: a registry encoder (or any torch module) with a projection head, and the
checkpoint file that brings it back through `extractor.get_model`.

A checkpoint holds the encoder's and head's state, the optimiser, scheduler and gradient scaler,
the epoch and step, the random states and the run's configuration, with ``format`` =
`extractor.FINETUNE_FORMAT`, the registry name and parameters of the model it started from:
``extractor.get_model(name, weights=checkpoint)`` rebuilds that model with the trained encoder.
For SimCLR encoders it is also a converted SimCLR file (``model``, ``encoder``, ``head``), which
`SimCLRv2.load_converted` reads.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from extractor import get_model
from extractor.models import FINETUNE_FORMAT, FeatureModel, TorchFeatureModel, imagenet_transform
from helpers import get_logger, save_torch
from SimCLRv2 import ContrastiveHead, get_resnet, load_converted

logger = get_logger(__name__)

INITS = ("pretrained", "random")


@dataclass
class Encoder:
    """A trainable encoder and what is needed to save it as a usable model.

    Attributes
    ----------
    module : nn.Module
        Images (N, 3, H, W) -> features (N, dim).
    dim : int
    transform : callable
        The model's evaluation transform (PIL -> tensor).
    name : str
        The model's identity.
    registry_name : str or None
        None for a custom module (its checkpoint then loads with `load_encoder_state`).
    model_params : dict
        Registry parameters it was built with.
    base_weights : str or None
        The weights it started from.
    simclr_model : str or None
        SimCLR architecture (``r50_1x_sk1``, ``1x``...), when it is one.
    head : nn.Module or None
        A pretrained projection head that came with it (SimCLR checkpoints).
    """

    module: nn.Module
    dim: int
    transform: Any
    name: str
    registry_name: str | None = None
    model_params: dict[str, Any] = field(default_factory=dict)
    base_weights: str | None = None
    simclr_model: str | None = None
    head: nn.Module | None = None


def _simclr_model(name: str) -> str | None:
    """``simclr_v2_r50_1x_sk1`` -> ``r50_1x_sk1``; None for other names."""
    parts = name.split("_", 2)
    return parts[2] if len(parts) == 3 and parts[0] == "simclr" else None


def load_encoder(model: str | FeatureModel, weights: str | None = None,
                 init: str = "pretrained", **params: Any) -> Encoder:
    """The encoder to fine-tune.

    Parameters
    ----------
    model : str or FeatureModel
        A registry name (`extractor.list_models`; torch models only) or a `TorchFeatureModel`
        (e.g. `extractor.custom_model` around any module).
    weights : str, optional
        Start from this file instead of the registry's weights (a converted SimCLR file, a
        state dict, or an earlier fine-tuning checkpoint).
    init : str
        ``pretrained``, or ``random`` (SimCLR ResNets only: the architecture untrained, for
        tests and from-scratch runs).
    **params
        Registry parameters (``image_size``...).

    Raises
    ------
    ValueError
        An ONNX model (onnxruntime cannot train), an unknown init, random init of a model that
        is not a SimCLR ResNet.
    """
    if init not in INITS:
        raise ValueError(f"init must be one of {', '.join(INITS)}, got {init!r}")
    if isinstance(model, FeatureModel):
        if not isinstance(model, TorchFeatureModel):
            raise ValueError(f"model {model.name} is not a torch module and cannot be trained")
        return Encoder(model.module, model.dim, model.transform, model.name)
    simclr = _simclr_model(model)
    if init == "random":
        if simclr is None:
            raise ValueError(f"init='random' builds SimCLR ResNets only, not {model!r}")
        module, head = get_resnet(simclr)
        transform = imagenet_transform(256, 224, mean=(0.0,) * 3, std=(1.0,) * 3)
        return Encoder(module, module.out_dim, transform, f"{model}_random", model, params,
                       None, simclr, head)
    built = get_model(model, weights=weights, device="cpu", **params)
    if not isinstance(built, TorchFeatureModel):
        raise ValueError(f"model {model!r} runs on {built.info.get('backend', 'another engine')}"
                         " and cannot be trained: choose a torch model (extractor.list_models)")
    head = None
    if simclr is not None:
        source = weights or built.info.get("weights")
        _, head, _ = load_converted(source)
    base = built.info.get("finetuned_from", {}).get("base_weights") or \
        built.info.get("weights") or weights
    return Encoder(built.module, built.dim, built.transform, built.name, model,
                   built.info.get("params", {}), None if base is None else str(base), simclr,
                   head)


class Trainable(nn.Module):
    """Encoder then projection head: ``forward(x)`` gives the head's output (the embedding the
    loss sees); ``encoder(x)`` the features the library describes with."""

    def __init__(self, encoder: nn.Module, head: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(self.encoder(x))
        return out[-1] if isinstance(out, list | tuple) else out


def make_head(encoder: Encoder, layers: int = 3, out_dim: int = 128,
              reuse: bool = True) -> nn.Module:
    """The projection head: the encoder's pretrained one when it has one and ``reuse``, else
    SimCLR v2's (``layers`` - 1 linear + BN + ReLU at the feature width, then linear + BN to
    ``out_dim``); ``layers=0`` trains the features directly."""
    if reuse and encoder.head is not None:
        return encoder.head
    if layers < 0 or out_dim < 1:
        raise ValueError(f"head layers must be >= 0 and out_dim >= 1, got {layers}, {out_dim}")
    if layers == 0:
        return nn.Identity()
    return ContrastiveHead(encoder.dim, layers=layers, out_dim=out_dim)


def rng_state() -> dict[str, Any]:
    """Random states of Python, NumPy's global generator and torch (CPU and CUDA), in types a
    ``weights_only`` load accepts."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"python": [version, list(internal), gauss],
            "numpy": [kind, keys.tolist(), pos, has_gauss, cached],
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` saved."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, encoder: Encoder, model: Trainable, **training: Any
                    ) -> Path:
    """Write a checkpoint atomically (see the module's docstring).

    Parameters
    ----------
    path : str or Path
    encoder : Encoder
        Where the model came from.
    model : Trainable
        Unwrapped (not the DDP wrapper).
    **training
        ``epoch``, ``step``, ``optimizer``, ``scheduler``, ``scaler``, ``config``... state.
    """
    state: dict[str, Any] = {
        "format": FINETUNE_FORMAT,
        "registry_name": encoder.registry_name,
        "model_params": encoder.model_params,
        "base_weights": encoder.base_weights,
        "name": encoder.name,
        "dim": encoder.dim,
        "encoder": model.encoder.state_dict(),
        "projection_head": model.head.state_dict(),
        "rng": rng_state(),
        **training,
    }
    if encoder.simclr_model is not None:
        # a converted SimCLR file too; its "head" only when it is the architecture's own
        state["model"] = encoder.simclr_model
        state["head"] = model.head.state_dict() if model.head is encoder.head else None
    return save_torch(state, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint's content (``weights_only``: no code is run).

    Raises
    ------
    ValueError
        Not a fine-tuning checkpoint.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path} is not a readable checkpoint: {exc}") from exc
    if not isinstance(state, dict) or state.get("format") != FINETUNE_FORMAT:
        raise ValueError(f"{path} is not a fine-tuning checkpoint of this library")
    return state
