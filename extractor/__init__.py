"""Neural models and feature extraction.

A registry of models by name (`get_model`: torchvision, SimCLR v1/v2, DINO, SSCD,
EfficientNet-Lite0; `custom_model` for any module, TorchScript or ONNX file), batched
extraction through a DataLoader on CPU or GPU (`extract`, which returns the same
`FloatFeatures` object as `hashing.describe`), reducers fitted on stores (PCA, whitening,
random projection, autoencoders: `fit_reducer`, `get_model(..., reduce=...)`), and the
feature store ``Results/features/<dataset>/<model>.npy`` with its JSON sidecar, resumable
(`extract_to_store`, `load_store`).

Registries follow the library's one rule: ``model_spec(name)`` returns the registered entry and
``get_model(name, **params)`` builds the model; ``extractor.reduce.REDUCERS.get(kind)`` returns a
reducer kind and ``fit_reducer`` / ``load_reducer`` build reducers.

Names load on first use: reading a feature store (`load_store`, `store_paths`) does not import
torch; the first model name asked for imports torch and registers the model zoo.
"""

from __future__ import annotations

import importlib
from typing import Any

_STORE = ("FeatureStore", "extract_to_store", "load_descriptors", "load_store", "save_descriptors",
          "save_store", "store_paths")
_EXTRACT = ("extract",)
_MODELS = ("FINETUNE_FORMAT", "FeatureModel", "ModelSpec", "OnnxFeatureModel",
           "TorchFeatureModel", "WeightsNotFoundError", "custom_model", "get_model",
           "imagenet_transform", "list_models", "model_spec", "read_finetuned", "register_model",
           "resolve_weights", "ReducedModel", "reduced_model", "model_name")
_REDUCE = ("REDUCER_FORMAT", "Reducer", "explained_variance", "fit_reducer", "load_reducer",
           "parse_reducer", "reducers_dir", "resolve_reducer")

__all__ = sorted(_STORE + _EXTRACT + _MODELS + _REDUCE)


def __getattr__(name: str) -> Any:
    if name in _STORE:
        module = importlib.import_module("extractor.store")
    elif name in _REDUCE:
        module = importlib.import_module("extractor.reduce")
    elif name in _EXTRACT or name in _MODELS:
        importlib.import_module("extractor.zoo")  # registers the study's models
        module = importlib.import_module("extractor.extraction" if name in _EXTRACT
                                         else "extractor.models")
    else:
        raise AttributeError(f"module 'extractor' has no attribute {name!r}")
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
