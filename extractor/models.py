"""The model registry: a name gives a network, its weights, its preprocessing and its dimension.

``get_model("efficientnet_lite0")`` returns a ready :class:`FeatureModel`: ``transform`` turns a
PIL image into the network's input (picklable, so DataLoader workers can run it),
``forward`` turns a stacked batch into float32 features ``(N, dim)``. Weights come from an
installed package, a local file (``weights=PATH``) or a download URL; nothing downloads unless
``download=True`` is passed, and missing weights give a :class:`WeightsNotFoundError` that says
how to get them.

The registry (`MODELS`, a `helpers.Registry` of `ModelSpec`) follows the library's one rule:
``model_spec(name)`` (``MODELS.get``) returns the registered entry (its dimension, weights
source, parameters and builder), ``get_model(name, **params)`` builds the model;
``register_model`` adds one (`extractor.zoo` registers the study's), ``list_models`` lists
them, and an unknown name gets the one error that names the closest.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from torchvision import transforms as T

from extractor.reduce import Reducer, load_reducer, resolve_reducer
from helpers import (
    Registry,
    check_param_type,
    download_file,
    get_logger,
    method_label,
    resolve_device,
)

logger = get_logger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class WeightsNotFoundError(FileNotFoundError):
    """A model's weights are not on this machine; the message says how to get them."""


# --- models ready to run ----------------------------------------------------------------------

class FeatureModel:
    """A network with its preprocessing: ``features = model.forward(stack(transform(im)))``.

    Attributes
    ----------
    name : str
        Registry name (or the name given to a custom model).
    dim : int
        Feature dimension.
    transform : callable
        PIL image -> network input (a CHW float tensor, or an HWC uint8 array for ONNX).
    info : dict
        What the feature store records: weights, transform, output.
    """

    name: str
    dim: int
    transform: Callable[[Image.Image], Any]
    info: dict[str, Any]

    def to(self, device: str) -> FeatureModel:
        """Move to ``device`` (``"cpu"``, ``"cuda"``...); returns ``self``."""
        raise NotImplementedError

    @property
    def device(self) -> str:
        raise NotImplementedError

    def forward(self, batch: Any) -> torch.Tensor:
        """Features (N, dim) float32 on CPU of a collated batch of transformed images."""
        raise NotImplementedError

    def collate(self, items: list[Any]) -> Any:
        """Stack transformed images into one batch."""
        if isinstance(items[0], np.ndarray):
            return np.stack(items)
        return torch.stack(items)

    def __call__(self, images: list[Image.Image]) -> np.ndarray:
        """Features of PIL images, in one batch (see `extractor.extract` for many)."""
        return self.forward(self.collate([self.transform(im) for im in images])).numpy()


class TorchFeatureModel(FeatureModel):
    """A ``torch.nn.Module`` (or TorchScript module) in eval mode; float16 autocast on CUDA.

    Parameters
    ----------
    module : torch.nn.Module
        Maps a float batch (N, 3, H, W) to (N, dim) features.
    transform : callable
        PIL image -> CHW float tensor.
    dim : int
    name : str
    info : dict, optional
    mixed_precision : bool
        Autocast to float16 on CUDA (features are returned as float32).
    channels_last : bool
        On CPU, run the network on channels-last (NHWC) tensors: oneDNN's convolutions are
        faster on them (EfficientNet-Lite0 1.40x on two cores, measured by
        ``scripts/benchmark_extraction.py``; features equal to float32 rounding). For
        convolutional networks; a module that reshapes with ``view`` may refuse such tensors.
    """

    def __init__(self, module: nn.Module, transform: Callable, dim: int, name: str,
                 info: dict[str, Any] | None = None, mixed_precision: bool = True,
                 channels_last: bool = False):
        self.module = module.eval()
        self.transform = transform
        self.dim = int(dim)
        self.name = name
        self.info = {"backend": "torch", "transform": repr(transform), **(info or {})}
        self.mixed_precision = mixed_precision
        self.channels_last = channels_last
        self._device = "cpu"
        self._set_format()

    def _set_format(self) -> None:
        if self.channels_last:
            cpu = self._device == "cpu"
            self.module.to(memory_format=torch.channels_last if cpu
                           else torch.contiguous_format)

    def to(self, device: str) -> TorchFeatureModel:
        self.module.to(device)
        self._device = str(device)
        self._set_format()
        return self

    @property
    def device(self) -> str:
        return self._device

    @torch.inference_mode()
    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        batch = batch.to(self._device, non_blocking=True)
        if self.channels_last and self._device == "cpu" and batch.ndim == 4:
            batch = batch.contiguous(memory_format=torch.channels_last)
        cuda = self._device.startswith("cuda")
        with torch.autocast("cuda", dtype=torch.float16, enabled=cuda and self.mixed_precision):
            out = self.module(batch)
        if out.ndim != 2 or out.shape[1] != self.dim:
            raise RuntimeError(f"model {self.name} gave shape {tuple(out.shape)}, expected "
                               f"(N, {self.dim})")
        return out.float().cpu()


class OnnxFeatureModel(FeatureModel):
    """An ONNX model run by onnxruntime (CUDA provider on ``cuda`` when installed).

    Parameters
    ----------
    path : str or PathLike
        The ``.onnx`` file; its first input takes the collated batch, its first output is
        the features.
    transform : callable
        PIL image -> the array the model takes per image (e.g. HWC uint8).
    dim : int
    name : str
    info : dict, optional
    """

    def __init__(self, path: str | os.PathLike, transform: Callable, dim: int, name: str,
                 info: dict[str, Any] | None = None):
        try:
            import onnxruntime  # noqa: F401  # reason: an optional dependency, for ONNX models
        except ImportError as exc:
            raise ImportError(f"model {name} runs on onnxruntime: pip install onnxruntime "
                              "(or onnxruntime-gpu)") from exc
        self.path = Path(path)
        if not self.path.is_file():
            raise WeightsNotFoundError(f"ONNX model file {self.path} not found")
        self.transform = transform
        self.dim = int(dim)
        self.name = name
        self.info = {"backend": "onnxruntime", "file": str(self.path),
                     "transform": repr(transform), **(info or {})}
        self._device = "cpu"
        self._session = None

    def _make_session(self):
        import onnxruntime as ort  # reason: an optional dependency, for ONNX models

        providers = ["CPUExecutionProvider"]
        if self._device.startswith("cuda") and \
                "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        return ort.InferenceSession(str(self.path), providers=providers)

    def to(self, device: str) -> OnnxFeatureModel:
        self._device = str(device)
        self._session = None
        return self

    @property
    def device(self) -> str:
        return self._device

    def forward(self, batch: np.ndarray) -> torch.Tensor:
        if self._session is None:
            self._session = self._make_session()
        name = self._session.get_inputs()[0].name
        out = self._session.run(None, {name: np.ascontiguousarray(batch)})[0]
        out = np.asarray(out, dtype=np.float32)
        if out.ndim != 2 or out.shape[1] != self.dim:
            raise RuntimeError(f"model {self.name} gave shape {out.shape}, expected "
                               f"(N, {self.dim})")
        return torch.from_numpy(out)

    def __getstate__(self):  # sessions do not pickle; workers rebuild theirs
        state = self.__dict__.copy()
        state["_session"] = None
        return state


# --- preprocessing ----------------------------------------------------------------------------

class ToUint8HWC:
    """PIL image -> RGB ``uint8`` array (H, W, 3) resized to ``size`` (width, height)."""

    def __init__(self, size: tuple[int, int]):
        self.size = tuple(size)

    def __call__(self, image: Image.Image) -> np.ndarray:
        image = image.convert("RGB").resize(self.size, Image.Resampling.BILINEAR)
        return np.asarray(image, dtype=np.uint8)

    def __repr__(self) -> str:
        return f"ToUint8HWC(size={self.size}, bilinear)"


def imagenet_transform(resize: int | tuple[int, int], crop: int | None = None,
                       mean: tuple[float, ...] = IMAGENET_MEAN,
                       std: tuple[float, ...] = IMAGENET_STD,
                       interpolation: str = "bilinear") -> T.Compose:
    """Resize (short side, or exact (H, W)), optional centre crop, to tensor, normalise."""
    mode = T.InterpolationMode(interpolation)
    steps = [ToRGB(), T.Resize(resize, interpolation=mode, antialias=True)]
    if crop:
        steps.append(T.CenterCrop(crop))
    steps += [T.ToTensor(), T.Normalize(mean, std)]
    return T.Compose(steps)


class ToRGB:
    """Convert to RGB (picklable; grayscale and RGBA inputs become RGB)."""

    def __call__(self, image: Image.Image) -> Image.Image:
        return image if image.mode == "RGB" else image.convert("RGB")

    def __repr__(self) -> str:
        return "RGB()"


# --- weights ----------------------------------------------------------------------------------

def weights_dir() -> Path:
    """Where downloaded weights live: torch hub's checkpoint folder (``$TORCH_HOME``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def resolve_weights(name: str, url: str | None, weights: str | os.PathLike | None,
                    download: bool, filename: str | None = None) -> Path:
    """The weights file of model ``name``: ``weights`` if given, else the cached download.

    Raises
    ------
    WeightsNotFoundError
        The file is not there and ``download`` is false (or there is no URL).
    """
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsNotFoundError(f"weights file {path} for model {name} not found")
        return path
    if url is None:
        raise WeightsNotFoundError(f"model {name} has no download URL: pass weights=PATH")
    path = weights_dir() / (filename or url.rsplit("/", 1)[-1])
    if path.is_file():
        return path
    if not download:
        raise WeightsNotFoundError(
            f"weights of model {name} are not in {path}. Get them with `python "
            f"scripts/extract_features.py --model {name} --download ...` or "
            f"`extractor.get_model({name!r}, download=True)` (needs internet; from {url}), "
            "or pass weights=PATH to a local copy.")
    logger.info("downloading weights of %s from %s", name, url)
    return download_file(url, path)


# --- the registry -----------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelSpec:
    """A registry entry.

    Attributes
    ----------
    name : str
    dim : int
        Feature dimension.
    weights : str
        Where the weights come from (package, URL, or a local file to pass).
    description : str
    build : callable
        ``build(weights=None, download=False, **params) -> FeatureModel``.
    params : dict
        Extra keyword parameters ``build`` accepts, with their defaults.
    """

    name: str
    dim: int
    weights: str
    description: str
    build: Callable[..., FeatureModel] = field(repr=False)
    params: dict[str, Any] = field(default_factory=dict)


#: Every model by name (`extractor.zoo` registers the study's).
MODELS: Registry[ModelSpec] = Registry("model")


def register_model(name: str, dim: int, weights: str, description: str = ""
                   ) -> Callable[[Callable[..., FeatureModel]], Callable[..., FeatureModel]]:
    """Register ``build(weights=None, download=False, **params) -> FeatureModel`` as model
    ``name`` (a name taken already is refused)."""

    def decorate(build: Callable[..., FeatureModel]) -> Callable[..., FeatureModel]:
        params = {k: p.default for k, p in inspect.signature(build).parameters.items()
                  if k not in ("weights", "download")}
        MODELS.add(name, ModelSpec(name, dim, weights, description, build, params))
        return build

    return decorate


def list_models() -> list[str]:
    """Registered model names."""
    return MODELS.names()


def model_spec(name: str) -> ModelSpec:
    """The registry entry of ``name`` (`get_model` builds the model).

    Raises
    ------
    ValueError
        Unknown name: the message lists the known ones and the closest.
    """
    return MODELS.get(name)


def get_model(name: str, weights: str | os.PathLike | None = None, download: bool = False,
              device: str = "auto", reduce: Any = None, **params: Any) -> FeatureModel:
    """Build a registered model with its weights and preprocessing.

    Parameters
    ----------
    name : str
        See :func:`list_models`.
    weights : str or PathLike, optional
        A local weights file instead of the registry's source.
    download : bool
        Allow downloading missing weights (never done implicitly).
    device : str
        Where to put the model: ``"auto"`` (CUDA when present, else CPU, as everywhere),
        ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
    reduce : str, PathLike or extractor.reduce.Reducer, optional
        A reducer applied to the features (see `extractor.reduce`): a reducer file, or a name
        such as ``"pca:128"`` for ``Results/reducers/<model>/pca_128.pt``. It must have been
        fitted on this model's features; the model's name then carries it
        (``sscd_distilled_reduce=pca-128.pt-1a2b3c4d5e6f``).
    **params
        Model-specific options (see ``model_spec(name).params``).

    Raises
    ------
    ValueError
        Unknown name, parameter or device, or a weights file that does not load.
    WeightsNotFoundError
        Weights not on this machine (the message says how to get them).
    """
    spec = model_spec(name)
    unknown = set(params) - set(spec.params)
    if unknown:
        raise ValueError(f"model {name!r} has no parameter(s) {sorted(unknown)}; parameters: "
                         f"{', '.join(spec.params) or 'none'}")
    for key, value in params.items():
        check_param_type(f"model {name!r}", key, value, spec.params[key])
    device = resolve_device(device)
    if weights is not None and not Path(weights).expanduser().is_file():
        raise WeightsNotFoundError(f"weights file {weights} for model {name} not found")
    finetuned = read_finetuned(weights) if weights is not None else None
    try:
        if finetuned is not None:
            model = _build_finetuned(spec, Path(weights).expanduser(), finetuned, download,
                                     params)
        else:
            model = spec.build(weights=weights, download=download, **params)
    except (WeightsNotFoundError, ValueError, TypeError, ImportError):
        raise
    except Exception as exc:  # torch/onnx loaders raise many types for a file that is not theirs
        source = (f"weights file {weights}" if weights is not None
                  else f"its weights ({spec.weights})")
        first = (str(exc).strip().splitlines() or [""])[0][:160]
        raise ValueError(f"model {name!r}: {source} could not be loaded, is it a checkpoint of "
                         f"this model? ({type(exc).__name__}: {first})") from exc
    model.name = model_name(name, params, weights)
    model.info.update({"registry_name": name, "params": {**spec.params, **params},
                       "weights_file": None if weights is None else str(weights)})
    model = model.to(device)
    if reduce is not None:
        model = reduced_model(model, reduce)
    return model


def model_name(name: str, params: dict[str, Any] | None = None,
               weights: str | os.PathLike | None = None) -> str:
    """The identity of model ``name`` built with ``params`` and ``weights`` (what
    `get_model` names it, and its feature stores and reducers): every non-default parameter of
    the model and the weights file, so that another image size or a fine-tuned checkpoint never
    shares a name, a feature store or a resume plan. Parameters the model does not have (an
    algorithm's ``distance``, ``bits``...) are left out."""
    spec = model_spec(name).params
    explicit = {k: v for k, v in (params or {}).items() if k in spec and spec[k] != v}
    if weights is not None:
        explicit["weights"] = Path(weights).expanduser()
    return method_label(name, explicit)


class ReducedModel(FeatureModel):
    """A model followed by a fitted reducer (`extractor.reduce`): same preprocessing, shorter
    features.

    Parameters
    ----------
    base : FeatureModel
    reducer : extractor.reduce.Reducer
    file : Path, optional
        The reducer's file, which names the model (`helpers.method_label`).
    """

    def __init__(self, base: FeatureModel, reducer: Reducer, file: Path | None = None):
        self.base = base
        self.reducer = reducer
        self.transform = base.transform
        self.dim = reducer.output_dim
        tag = method_label("", {"reduce": file if file is not None else reducer.name})
        self.name = base.name + tag
        self.info = {**base.info, "reducer": {"name": reducer.name, "file": None if file is None
                                             else str(file), "method": reducer.method,
                                             "output_dim": reducer.output_dim}}

    def to(self, device: str) -> ReducedModel:
        self.base.to(device)
        return self

    @property
    def device(self) -> str:
        return self.base.device

    def collate(self, items: list[Any]) -> Any:
        return self.base.collate(items)

    def forward(self, batch: Any) -> torch.Tensor:
        out = self.base.forward(batch).numpy()
        return torch.from_numpy(self.reducer.transform(out, method=self.base.name))


def reduced_model(model: FeatureModel, reduce: Any) -> ReducedModel:
    """``model`` followed by the reducer ``reduce`` (a `Reducer`, a file, or a name resolved
    under ``Results/reducers/<model.name>/``), checked against the model's name and width.

    Raises
    ------
    FileNotFoundError
        The reducer file does not exist (a name's message says how to fit it).
    ValueError
        A reducer fitted on another method or another width.
    """
    if isinstance(reduce, Reducer):
        reducer, file = reduce, None
    else:
        file = resolve_reducer(reduce, model.name)
        reducer = load_reducer(file)
    if reducer.input_dim != model.dim:
        raise ValueError(f"reducer {reducer.name} takes {reducer.input_dim}-d features; "
                         f"{model.name} gives {model.dim}-d")
    if reducer.method is not None and reducer.method != model.name:
        raise ValueError(f"reducer {reducer.name} was fitted on {reducer.method} features, not "
                         f"{model.name}")
    return ReducedModel(model, reducer, file)


#: The ``format`` entry of a fine-tuning checkpoint (`finetuning` writes them).
FINETUNE_FORMAT = "image-similarity-lab/finetune-1"


def read_finetuned(path: str | os.PathLike) -> dict[str, Any] | None:
    """The content of a fine-tuning checkpoint (tensors memory-mapped), or None when ``path``
    is another kind of file."""
    try:
        state = torch.load(Path(path).expanduser(), map_location="cpu", weights_only=True,
                           mmap=True)
    except Exception:  # not a torch zip file, or not one we wrote: the builder reads it
        return None
    if isinstance(state, dict) and state.get("format") == FINETUNE_FORMAT:
        return state
    return None


def _build_finetuned(spec: ModelSpec, path: Path, state: dict[str, Any], download: bool,
                     params: dict[str, Any]) -> FeatureModel:
    """A registry model whose encoder weights come from a fine-tuning checkpoint: the
    architecture and preprocessing are built as for the model the run started from (its
    parameters as trained unless given), then the encoder's trained state is loaded."""
    trained = state.get("registry_name")
    if trained != spec.name:
        raise ValueError(f"{path} is a fine-tuning checkpoint of model {trained!r}, not "
                         f"{spec.name!r}: get_model({trained!r}, weights=...)")
    for key, value in (state.get("model_params") or {}).items():
        params.setdefault(key, value)
    if "model" in state:  # SimCLR: the checkpoint is also a converted SimCLR file
        base = path
    else:
        base = state.get("base_weights")
        base = base if base and Path(base).is_file() else None
    model = spec.build(weights=base, download=download, **params)
    if not isinstance(model, TorchFeatureModel):
        raise ValueError(f"model {spec.name} is not a torch module: a fine-tuning checkpoint "
                         "cannot be loaded into it")
    model.module.load_state_dict(state["encoder"])
    model.info["finetuned_from"] = {"base_weights": state.get("base_weights"),
                                    "epoch": state.get("epoch"), "step": state.get("step")}
    return model


def custom_model(model: nn.Module | str | os.PathLike, transform: Callable, dim: int,
                 name: str = "custom") -> FeatureModel:
    """Wrap any module, TorchScript file (``.pt``) or ONNX file (``.onnx``) with a transform.

    Parameters
    ----------
    model : torch.nn.Module, or path to a TorchScript or ONNX file
        Maps a collated batch of ``transform`` outputs to (N, dim) features.
    transform : callable
        PIL image -> the model's per-image input.
    dim : int
    name : str
        How feature stores and results name it.
    """
    if isinstance(model, nn.Module):
        return TorchFeatureModel(model, transform, dim, name)
    path = Path(model)
    if path.suffix == ".onnx":
        return OnnxFeatureModel(path, transform, dim, name)
    if not path.is_file():
        raise WeightsNotFoundError(f"model file {path} not found")
    return TorchFeatureModel(torch.jit.load(str(path), map_location="cpu"), transform, dim,
                             name, {"file": str(path)})
