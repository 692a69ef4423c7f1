"""Optimisers and the learning-rate schedule of SimCLR fine-tuning.

LARS comes from timm (`timm.optim.Lars`): SGD with momentum whose step for each weight tensor is
scaled by the trust ratio ``trust_coeff * ||w|| / (||g|| + weight_decay * ||w||)``. As in SimCLR,
biases and batch-norm parameters (every parameter with fewer than two dimensions) get neither
weight decay nor the adaptation unless asked (``exclude_bias_and_norm=False``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

OPTIMIZERS = ("lars", "adam", "adamw", "sgd")
#: SimCLR's base learning rate for its square-root rule: lr = 0.005 * sqrt(global batch).
SQRT_LR_BASE = 0.005


def default_learning_rate(global_batch: int, base: float = SQRT_LR_BASE) -> float:
    """The study's learning rate: ``base * sqrt(global_batch)`` (0.005 sqrt(B) by default)."""
    if global_batch < 1:
        raise ValueError(f"global batch must be >= 1, got {global_batch}")
    return base * math.sqrt(global_batch)


def parameter_groups(modules: Iterable[nn.Module], weight_decay: float,
                     exclude_bias_and_norm: bool = True) -> list[dict]:
    """Trainable parameters in two groups: weights (decayed, LARS-adapted) and biases /
    normalisation parameters (neither, when ``exclude_bias_and_norm``)."""
    decay, plain, seen = [], [], set()
    for module in modules:
        for param in module.parameters():
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            (plain if exclude_bias_and_norm and param.ndim < 2 else decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay, "always_adapt": True}]
    if plain:
        groups.append({"params": plain, "weight_decay": 0.0, "always_adapt": False})
    return [g for g in groups if g["params"]]


def build_optimizer(modules: Iterable[nn.Module], name: str = "lars", lr: float = 0.1,
                    weight_decay: float = 1e-6, momentum: float = 0.9,
                    trust_coefficient: float = 0.001,
                    exclude_bias_and_norm: bool = True) -> torch.optim.Optimizer:
    """An optimiser over the trainable parameters of ``modules``.

    Parameters
    ----------
    modules : iterable of nn.Module
        E.g. the encoder and the projection head.
    name : str
        ``lars`` (timm's, SimCLR's choice), ``adam``, ``adamw`` or ``sgd``.
    lr : float
        The peak learning rate (the schedule scales it).
    weight_decay : float
        1e-6 as in SimCLR.
    momentum : float
        LARS and SGD (SimCLR: 0.9).
    trust_coefficient : float
        LARS's eta (SimCLR: 0.001).
    exclude_bias_and_norm : bool
        No weight decay (nor LARS adaptation) on biases and normalisation parameters.
    """
    groups = parameter_groups(modules, weight_decay, exclude_bias_and_norm)
    if not groups:
        raise ValueError("nothing to train: no parameter requires a gradient")
    if name == "lars":
        from timm.optim import Lars

        return Lars(groups, lr=lr, momentum=momentum, trust_coeff=trust_coefficient)
    for group in groups:
        group.pop("always_adapt")
    if name == "adam":
        # Adam's weight_decay is L2 added to the gradient, as torch defines it
        return torch.optim.Adam(groups, lr=lr)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum)
    raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")


def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int
                  ) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``warmup_steps`` optimiser steps (the first at 1 / warmup_steps of
    the peak, the last at the peak), then cosine decay towards 0 over the remaining steps
    (SimCLR's schedule); stepped once per optimiser step."""
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if not 0 <= warmup_steps <= total_steps:
        raise ValueError(f"warmup_steps must be in [0, {total_steps}], got {warmup_steps}")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        # the step after the warm-up's last (at the peak) already decays; the last step of
        # the schedule still learns (progress < 1)
        progress = (step - warmup_steps + 1) / (total_steps - warmup_steps + 1)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
