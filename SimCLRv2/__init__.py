"""SimCLR v1 and v2 model code and weights (to come).

ResNet definitions (v1 width multipliers; v2 depth, width, selective kernel), the projection
head, the list of published checkpoints with their URLs, the downloader, and the
TensorFlow-checkpoint-to-PyTorch conversion.
"""

__all__: list[str] = []
