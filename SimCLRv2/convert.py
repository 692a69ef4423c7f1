"""TensorFlow SimCLR checkpoints -> PyTorch state dicts ``{"encoder", "head", "supervised_head"}``.

The release's variables are named by layer type and creation order: ``base_model/conv2d/kernel``,
``base_model/conv2d_1/kernel``..., ``base_model/batch_normalization_7/gamma``...,
``head_contrastive/nl_<j>/dense/kernel`` and ``.../batch_normalization/<gamma|beta|...>``,
``head_supervised/linear_layer/dense/<kernel|bias>``. Convolutions and batch norms of the
encoder are matched in creation order, which `SimCLRv2.resnet` keeps (module order = call order
= TensorFlow's creation order). Kernels are transposed from HWIO to OIHW (dense: IO to OI).

Every variable of the chosen kind (raw weights, or with ``ema=True`` their averaged copies, kept
either as ``<variable>/ExponentialMovingAverage`` shadows or under an ``ema_model/`` prefix, as
`ema_layout` finds; a checkpoint with both layouts is refused) must be used and every PyTorch
tensor filled, with matching shapes; optimizer slots (``Momentum``, LARS) and ``global_step`` are
the only variables left out. Anything else is an error that names the variables.

Reading a checkpoint file needs TensorFlow (`read_tf_checkpoint`), an optional dependency; the
conversion itself works on a ``{name: numpy array}`` dictionary.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

from helpers import get_logger, save_torch
from SimCLRv2.resnet import ContrastiveHead, ResNet, get_resnet

logger = get_logger(__name__)

EMA_SUFFIX = "/ExponentialMovingAverage"
EMA_PREFIX = "ema_model/"
_SKIPPED = re.compile(r"(^global_step$|/Momentum$|/LARS|/Adam|/momentum$|^beta\d_power)")
_BN_FIELDS = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean",
              "moving_variance": "running_var"}


class ConversionError(ValueError):
    """A checkpoint does not map onto the model, variable for variable."""


def read_tf_checkpoint(prefix: str | Path) -> dict[str, np.ndarray]:
    """Every variable of a TensorFlow checkpoint (``.../model.ckpt-250228``) as numpy arrays.

    Raises
    ------
    ImportError
        TensorFlow is not installed (``pip install tensorflow-cpu``).
    """
    try:
        import tensorflow as tf  # TensorFlow: optional, only to convert
    except ImportError as exc:
        raise ImportError("reading TensorFlow checkpoints needs TensorFlow: pip install "
                          "tensorflow-cpu (only the conversion needs it)") from exc
    reader = tf.train.load_checkpoint(str(prefix))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def _index(name: str) -> int:
    """``conv2d`` -> 0, ``conv2d_12`` -> 12."""
    match = re.search(r"_(\d+)$", name)
    return int(match[1]) if match else 0


def _modules(model: nn.Module, kind: type) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, kind)]


def ema_layout(variables: Mapping[str, np.ndarray]) -> str | None:
    """How a checkpoint keeps its averaged (EMA) weights: ``"suffix"``
    (``<variable>/ExponentialMovingAverage``, TensorFlow's `ExponentialMovingAverage` saved
    with the model), ``"prefix"`` (``ema_model/<variable>``, the layout public converters of
    the released v2 checkpoints read), or None.

    Raises
    ------
    ConversionError
        Both layouts at once: which weights are the averaged ones is ambiguous.
    """
    names = [n for n in variables if not _SKIPPED.search(_plain_name(n))]
    suffix = [n for n in names if n.endswith(EMA_SUFFIX)]
    prefix = [n for n in names if n.startswith(EMA_PREFIX)]
    if suffix and prefix:
        raise ConversionError(f"the checkpoint holds EMA weights in two layouts ({len(prefix)} "
                              f"'{EMA_PREFIX}...' and {len(suffix)} '...{EMA_SUFFIX}' "
                              f"variables, e.g. {prefix[0]} and {suffix[0]}); refusing to "
                              "guess which are the averaged weights")
    return "suffix" if suffix else "prefix" if prefix else None


def _plain_name(name: str) -> str:
    return name.removeprefix(EMA_PREFIX).removesuffix(EMA_SUFFIX)


def _select(variables: Mapping[str, np.ndarray], ema: bool) -> dict[str, np.ndarray]:
    """Model variables of the chosen kind (raw, or averaged in either EMA layout), named as
    the raw variables are."""
    layout = ema_layout(variables)
    if ema and layout is None:
        raise ConversionError("no EMA weights in the checkpoint (neither "
                              f"'{EMA_PREFIX}<variable>' nor '<variable>{EMA_SUFFIX}'): "
                              "convert the raw weights (without --ema)")
    if ema:
        logger.info("EMA weights found as %s", f"'{EMA_PREFIX}<variable>'" if layout ==
                    "prefix" else f"'<variable>{EMA_SUFFIX}'")
    out = {}
    for name, value in variables.items():
        if _SKIPPED.search(_plain_name(name)):
            continue
        averaged = name.endswith(EMA_SUFFIX) or name.startswith(EMA_PREFIX)
        if averaged == ema:
            out[_plain_name(name)] = np.asarray(value)
    if not ema and not out and layout is not None:
        raise ConversionError("the checkpoint holds only EMA weights: convert them with --ema")
    return out


def _put(tensor: torch.Tensor, value: np.ndarray, name: str) -> None:
    value = torch.from_numpy(np.ascontiguousarray(value))
    if tuple(value.shape) != tuple(tensor.shape):
        raise ConversionError(f"{name}: shape {tuple(value.shape)} in the checkpoint, "
                              f"{tuple(tensor.shape)} in the model")
    with torch.no_grad():
        tensor.copy_(value.to(tensor.dtype))


def infer_model_name(variables: Mapping[str, np.ndarray], version: str) -> str:
    """The model a checkpoint holds (``r50_2x_sk1``, or ``2x`` for v1), from its variables."""
    convs = sorted((k for k in variables if re.fullmatch(r"base_model/conv2d(_\d+)?/kernel", k)),
                   key=lambda k: _index(k.split("/")[1]))
    stem = variables[convs[0]].shape  # HWIO
    sk = stem[0] == 3  # a 3x3 stem only with selective kernels
    width = (stem[3] * 2 if sk else stem[3]) // 64
    if version == "v1":
        return f"{width}x"
    n_convs = len(convs)
    for depth in (50, 101, 152):
        with torch.device("meta"):  # layer counts only: no memory for the weights
            encoder = ResNet(depth, width, 0.0625 if sk else 0.0)
        if len(_modules(encoder, nn.Conv2d)) == n_convs:
            return f"r{depth}_{width}x_sk{int(sk)}"
    raise ConversionError(f"no SimCLR ResNet has {n_convs} convolutions with this stem")


def convert_variables(variables: Mapping[str, np.ndarray], model: str | None = None,
                      version: str = "v2", ema: bool = False) -> dict[str, dict]:
    """Map a checkpoint's variables onto `SimCLRv2.resnet` models.

    Parameters
    ----------
    variables : mapping of str to numpy.ndarray
        From `read_tf_checkpoint`.
    model : str, optional
        ``r50_1x_sk1`` (v2) or ``1x`` (v1); inferred from the variables when omitted.
    version : {"v1", "v2"}
    ema : bool
        Use the exponential-moving-average weights.

    Returns
    -------
    dict
        ``{"encoder": state dict, "head": state dict or None, "supervised_head": state dict or
        None, "model": name, "version": version, "ema": ema}``.

    Raises
    ------
    ConversionError
        A variable that maps nowhere, a tensor left empty, or a shape mismatch.
    """
    chosen = _select(variables, ema)
    if not chosen:
        raise ConversionError("no model variables" + (" with EMA shadows" if ema else ""))
    model = model or infer_model_name(chosen, version)
    encoder, head = get_resnet(model)
    used: set[str] = set()

    convs = sorted({k.split("/")[1] for k in chosen
                    if re.fullmatch(r"base_model/conv2d(_\d+)?/kernel", k)}, key=_index)
    bns = sorted({k.split("/")[1] for k in chosen
                  if re.fullmatch(r"base_model/batch_normalization(_\d+)?/\w+", k)},
                 key=_index)
    conv_modules = _modules(encoder, nn.Conv2d)
    bn_modules = _modules(encoder, nn.BatchNorm2d)
    if len(convs) != len(conv_modules) or len(bns) != len(bn_modules):
        raise ConversionError(f"{model}: the checkpoint has {len(convs)} convolutions and "
                              f"{len(bns)} batch norms, the model {len(conv_modules)} and "
                              f"{len(bn_modules)}")
    for layer, module in zip(convs, conv_modules, strict=True):
        key = f"base_model/{layer}/kernel"
        _put(module.weight, chosen[key].transpose(3, 2, 0, 1), key)
        used.add(key)
    for layer, module in zip(bns, bn_modules, strict=True):
        for tf_name, attr in _BN_FIELDS.items():
            key = f"base_model/{layer}/{tf_name}"
            if key not in chosen:
                raise ConversionError(f"{key} is missing")
            _put(getattr(module, attr), chosen[key], key)
            used.add(key)

    head_state = None
    if any(k.startswith("head_contrastive/") for k in chosen):
        head_state = _convert_head(chosen, head, used)
    supervised = None
    kernel = "head_supervised/linear_layer/dense/kernel"
    if kernel in chosen:
        fc = nn.Linear(*chosen[kernel].shape)
        _put(fc.weight, chosen[kernel].T, kernel)
        _put(fc.bias, chosen["head_supervised/linear_layer/dense/bias"],
             "head_supervised/linear_layer/dense/bias")
        used |= {kernel, "head_supervised/linear_layer/dense/bias"}
        supervised = fc.state_dict()
    unused = sorted(set(chosen) - used)
    if unused:
        raise ConversionError(f"{len(unused)} checkpoint variable(s) map nowhere: "
                              f"{', '.join(unused[:10])}")
    return {"encoder": encoder.state_dict(), "head": head_state,
            "supervised_head": supervised, "model": model, "version": version, "ema": ema}


def _convert_head(chosen: dict[str, np.ndarray], head: ContrastiveHead, used: set[str]) -> dict:
    layers = sorted({int(m[1]) for k in chosen
                     if (m := re.match(r"head_contrastive/nl_(\d+)/", k))})
    if layers != list(range(len(head.linears))):
        raise ConversionError(f"projection head layers {layers}, the model has "
                              f"{len(head.linears)}")
    for j, (linear, bn) in enumerate(zip(head.linears, head.bns, strict=True)):
        key = f"head_contrastive/nl_{j}/dense/kernel"
        _put(linear.weight, chosen[key].T, key)
        used.add(key)
        for tf_name, attr in _BN_FIELDS.items():
            key = f"head_contrastive/nl_{j}/batch_normalization/{tf_name}"
            if key in chosen:
                _put(getattr(bn, attr), chosen[key], key)
                used.add(key)
            elif not (tf_name == "beta" and j == len(head.linears) - 1):
                raise ConversionError(f"{key} is missing")
    return head.state_dict()


def save_checkpoint(path: str | Path, model: str, encoder: ResNet,
                    head: ContrastiveHead | None = None, **extra) -> Path:
    """Write the one SimCLR checkpoint format, atomically: ``{"model", "encoder", "head",
    ...}`` state dicts as `convert_variables` makes them from TensorFlow. A converted release
    and a fine-tuned encoder are the same kind of file: `load_converted` reads both, and
    ``extractor.get_model("simclr_v2_<model>", weights=path)`` describes with either (its
    identity then names the file).

    Parameters
    ----------
    path : str or Path
    model : str
        The architecture (``"r50_1x_sk1"``, ``"1x"``...), as `get_resnet` takes it.
    encoder, head : modules
        Their state dicts are saved (``head`` may be None).
    **extra
        More entries (e.g. ``epoch``, ``optimizer``, ``checkpoint``).
    """
    state = {"model": model, "encoder": encoder.state_dict(),
             "head": None if head is None else head.state_dict(), **extra}
    return save_torch(state, path)


def load_converted(path: str | Path) -> tuple[ResNet, ContrastiveHead | None, dict]:
    """Encoder (and projection head) with converted weights, in eval mode, and the file's
    content."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or "encoder" not in state:
        raise ValueError(f"{path} is not a converted SimCLR checkpoint (no 'encoder')")
    encoder, head = get_resnet(state["model"])
    encoder.load_state_dict(state["encoder"])
    if state.get("head") is not None:
        head.load_state_dict(state["head"])
        head.eval()
    else:
        head = None
    return encoder.eval(), head, state
