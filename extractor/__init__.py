"""Neural models and feature extraction.

A registry of models by name (`get_model`: torchvision, SimCLR v1/v2, DINO, SSCD,
EfficientNet-Lite0; `custom_model` for any module, TorchScript or ONNX file), batched
extraction through a DataLoader on CPU or GPU (`extract`, which returns the same
`FloatFeatures` object as `hashing.describe`), and the feature store
``Results/features/<dataset>/<model>.npy`` with its JSON sidecar, resumable
(`extract_to_store`, `load_store`).
"""

from extractor import zoo as _zoo  # noqa: F401  (registers the study's models)
from extractor.extract import FEATURE_METRICS, extract
from extractor.models import (
    FeatureModel,
    ModelSpec,
    OnnxFeatureModel,
    TorchFeatureModel,
    WeightsNotFoundError,
    custom_model,
    get_model,
    imagenet_transform,
    list_models,
    model_spec,
    register_model,
    resolve_weights,
)
from extractor.store import FeatureStore, extract_to_store, load_store, save_store, store_paths

__all__ = [
    "FEATURE_METRICS",
    "FeatureModel",
    "FeatureStore",
    "ModelSpec",
    "OnnxFeatureModel",
    "TorchFeatureModel",
    "WeightsNotFoundError",
    "custom_model",
    "extract",
    "extract_to_store",
    "get_model",
    "imagenet_transform",
    "list_models",
    "load_store",
    "model_spec",
    "register_model",
    "resolve_weights",
    "save_store",
    "store_paths",
]
