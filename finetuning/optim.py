"""Optimisers and the learning-rate schedule of SimCLR fine-tuning.

LARS comes from timm (`timm.optim.Lars`): SGD with momentum whose step for each weight tensor is
scaled by the trust ratio ``trust_coeff * ||w|| / (||g|| + weight_decay * ||w||)``. As in SimCLR,
biases and batch-norm parameters (every parameter with fewer than two dimensions) get neither
weight decay nor the adaptation unless asked (``exclude_bias_and_norm=False``).

The optimisers are a registry (`OPTIMIZER_BUILDERS`, a `helpers.Registry`) that follows the
library's one rule: ``OPTIMIZER_BUILDERS.get(name)`` returns the registered entry,
``make(groups, lr=, momentum=, trust_coefficient=) -> Optimizer``, and ``build_optimizer(modules,
name, ...)`` builds the optimiser; an unknown name gets the one error that names the closest.
`OPTIMIZERS` holds the names registered here (for flags' choices).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import nn

from helpers import Registry

#: ``make(groups, lr=, momentum=, trust_coefficient=) -> Optimizer`` over parameter groups
#: (`parameter_groups`; LARS reads their ``always_adapt``, the others are given groups
#: without it).
OptimizerMaker = Callable[..., torch.optim.Optimizer]
#: Every optimiser by name.
OPTIMIZER_BUILDERS: Registry[OptimizerMaker] = Registry("optimizer")
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
    make = OPTIMIZER_BUILDERS.get(name)
    groups = parameter_groups(modules, weight_decay, exclude_bias_and_norm)
    if not groups:
        raise ValueError("nothing to train: no parameter requires a gradient")
    return make(groups, lr=lr, momentum=momentum, trust_coefficient=trust_coefficient)


@OPTIMIZER_BUILDERS.register("lars")
def _lars(groups: list[dict], *, lr: float, momentum: float, trust_coefficient: float
          ) -> torch.optim.Optimizer:
    """timm's LARS; groups whose ``always_adapt`` is False get no trust-ratio adaptation."""
    from timm.optim import Lars  # reason: importing timm takes seconds; LARS only

    return Lars(groups, lr=lr, momentum=momentum, trust_coeff=trust_coefficient)


def _plain(groups: list[dict]) -> list[dict]:
    """The groups without LARS's ``always_adapt``, which torch's optimisers refuse."""
    return [{k: v for k, v in group.items() if k != "always_adapt"} for group in groups]


@OPTIMIZER_BUILDERS.register("adam")
def _adam(groups: list[dict], *, lr: float, **_options: float) -> torch.optim.Optimizer:
    """Adam; its weight_decay is L2 added to the gradient, as torch defines it."""
    return torch.optim.Adam(_plain(groups), lr=lr)


@OPTIMIZER_BUILDERS.register("adamw")
def _adamw(groups: list[dict], *, lr: float, **_options: float) -> torch.optim.Optimizer:
    """AdamW (decoupled weight decay)."""
    return torch.optim.AdamW(_plain(groups), lr=lr)


@OPTIMIZER_BUILDERS.register("sgd")
def _sgd(groups: list[dict], *, lr: float, momentum: float, **_options: float
         ) -> torch.optim.Optimizer:
    """SGD with momentum."""
    return torch.optim.SGD(_plain(groups), lr=lr, momentum=momentum)


#: The names of the optimisers registered here (`OPTIMIZER_BUILDERS` is the registry).
OPTIMIZERS = tuple(OPTIMIZER_BUILDERS.names())


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
