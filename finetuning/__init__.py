"""Contrastive fine-tuning of encoders.

`train(FinetuneConfig(...), output)` fine-tunes any torch encoder of the extractor registry (or a
custom module) with a projection head: SimCLR's NT-Xent or SSCD's InfoNCE with its entropy
term (`nt_xent`, `sscd_loss`; negatives gathered from every process with a correct gradient),
LARS (timm's), Adam, AdamW or SGD with warm-up and cosine decay, SimCLR's augmentations or the
attack generator's edits as views, on one CPU or GPU or under ``torchrun`` (DDP, SyncBatchNorm on
GPUs, mixed precision, gradient accumulation). Checkpoints are written atomically and resume
exactly; each one loads back with ``extractor.get_model(name, weights=checkpoint)``.

`train_head(features, labels, HeadConfig(...), output)` trains a projection head on frozen
features for pair verification (triplet or contrastive loss with mined hard negatives,
pytorch-metric-learning's), through the same loop (`run_loop`: optimisers, schedule, log,
atomic, resumable checkpoints); the head is saved as a reducer (`extractor.reduce`) that
composes with the model.

Objectives and optimisers are registries (`helpers.Registry`) with the library's one rule: the
registry's ``get(name)`` returns the entry, a function builds the object: `LOSSES` and
``make_loss(name, ...)``, ``finetuning.losses.HEAD_LOSSES`` (the heads' losses) and
``finetuning.heads.make_loss_and_miner``, ``finetuning.optim.OPTIMIZER_BUILDERS`` and
``build_optimizer(modules, name, ...)`` (`OPTIMIZERS`: their names).
"""

from finetuning.heads import HeadConfig, train_head
from finetuning.loop import LoopResult, TrainingLog, latest_checkpoint, run_loop
from finetuning.losses import LOSSES, gather, koleo_entropy, make_loss, nt_xent, sscd_loss
from finetuning.model import (
    Encoder,
    Trainable,
    load_checkpoint,
    load_encoder,
    make_head,
    save_checkpoint,
)
from finetuning.optim import (
    OPTIMIZERS,
    build_optimizer,
    default_learning_rate,
    parameter_groups,
    warmup_cosine,
)
from finetuning.train import FinetuneConfig, split_train_val, train
from finetuning.views import (
    VIEW_KINDS,
    EpochSampler,
    InputSpec,
    TwoViews,
    ViewMaker,
    input_spec,
    simclr_augmentation,
)

__all__ = [
    "LOSSES",
    "OPTIMIZERS",
    "VIEW_KINDS",
    "Encoder",
    "EpochSampler",
    "FinetuneConfig",
    "HeadConfig",
    "InputSpec",
    "LoopResult",
    "Trainable",
    "TrainingLog",
    "TwoViews",
    "ViewMaker",
    "build_optimizer",
    "default_learning_rate",
    "gather",
    "input_spec",
    "koleo_entropy",
    "latest_checkpoint",
    "load_checkpoint",
    "load_encoder",
    "make_head",
    "make_loss",
    "nt_xent",
    "parameter_groups",
    "run_loop",
    "save_checkpoint",
    "simclr_augmentation",
    "split_train_val",
    "sscd_loss",
    "train",
    "train_head",
    "warmup_cosine",
]
