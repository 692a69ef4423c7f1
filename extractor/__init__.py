"""Neural models and feature extraction (to come).

A registry of models by name (torchvision, SimCLR v1/v2, DINO, SSCD, EfficientNet-Lite0, custom
modules), batched extraction through a DataLoader on CPU or GPU, and the feature store
``Results/features/<dataset>/<model>.npy`` with its JSON sidecar, resumable.
"""

__all__: list[str] = []
