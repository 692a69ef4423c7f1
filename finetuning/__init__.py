"""SimCLR fine-tuning (to come).

NT-Xent loss gathered across processes, LARS and Adam, cosine schedule, SimCLR augmentations and
the attack generator as augmentations, mixed precision, DDP through torchrun, checkpoints with
resume, logs, and a before/after evaluation of descriptors.
"""

__all__: list[str] = []
