"""SimCLR v1 and v2 model code and weights.

ResNet definitions (v1 width multipliers; v2 depth, width, selective kernel) and the projection
head (`get_resnet`), the list of published checkpoints with their URLs (`list_checkpoints`),
the downloader and the TensorFlow-checkpoint-to-PyTorch conversion (`download_and_convert`,
`convert_variables`, `load_converted`).
"""

from SimCLRv2.checkpoints import Checkpoint, find_checkpoint, list_checkpoints
from SimCLRv2.convert import (
    ConversionError,
    convert_variables,
    load_converted,
    read_tf_checkpoint,
    save_checkpoint,
)
from SimCLRv2.download import converted_path, download_and_convert, download_checkpoint
from SimCLRv2.resnet import ContrastiveHead, ResNet, count_parameters, get_resnet, name_to_params

__all__ = [
    "Checkpoint",
    "ContrastiveHead",
    "ConversionError",
    "ResNet",
    "convert_variables",
    "converted_path",
    "count_parameters",
    "download_and_convert",
    "download_checkpoint",
    "find_checkpoint",
    "get_resnet",
    "list_checkpoints",
    "load_converted",
    "save_checkpoint",
    "name_to_params",
    "read_tf_checkpoint",
]
