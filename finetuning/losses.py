"""Contrastive objectives: SimCLR's NT-Xent and SSCD's InfoNCE with an entropy regulariser.

Under DDP every process holds a local batch of pairs ``(a_i, b_i)``. The negatives are those of
the whole global batch: `gather` concatenates every process's embeddings, and its backward sums
the gradients that all processes computed for a slice and hands each process its own slice, so
that after DDP averages the parameter gradients they equal the gradients of the loss of the
global batch computed in one process. Each process builds only its rows of the similarity matrix
(local anchors against the global batch: ``2n x 2N``), never the full ``2N x 2N`` one.

Two registries (`helpers.Registry`) follow the library's one rule, ``REGISTRY.get(name)``
returns the registered entry and a function builds the object:

- `LOSSES`, the encoders' objectives on two views (``nt_xent``, ``sscd``): each entry makes
  ``loss(a, b)`` from a temperature (its recipe's when None) and an entropy weight;
  ``make_loss(name, ...)`` builds one.
- `HEAD_LOSSES`, the verification heads' metric-learning losses on labelled embeddings
  (``triplet``, ``contrastive``, pytorch-metric-learning's): each entry makes the loss from a
  `finetuning.heads.HeadConfig` and a distance (`finetuning.heads.make_loss_and_miner`).

An unknown name in either gets the one error that names the closest.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F

from helpers import Registry

#: Temperatures of the two recipes: SimCLR's fine-tuning default and SSCD's.
SIMCLR_TEMPERATURE = 0.1
SSCD_TEMPERATURE = 0.05
#: SSCD's entropy weight for new data (its authors' advice; 30 on DISC21).
SSCD_ENTROPY_WEIGHT = 10.0


class _Gather(torch.autograd.Function):
    """All-gather with a gradient: forward concatenates every rank's rows (in rank order);
    backward sums the incoming gradient over ranks and returns this rank's rows. An all-reduce
    rather than a reduce-scatter, because gloo (CPU) has no reduce-scatter."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.rows = x.shape[0]
        ctx.rank = dist.get_rank()
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        start = ctx.rank * ctx.rows
        return grad[start:start + ctx.rows]


def gather(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Every process's ``x`` stacked in rank order, and where this process's rows start.

    One process (or no process group): ``x`` itself and 0. Every process must pass the same
    number of rows (the sampler drops the last incomplete batch).
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x, 0
    return _Gather.apply(x), dist.get_rank() * x.shape[0]


def _similarities(a: torch.Tensor, b: torch.Tensor, temperature: float
                 ) -> tuple[torch.Tensor, ...]:
    """Logits of the local anchors ``[a; b]`` against the global ``[A; B]`` with each anchor's
    own column masked, the columns of each anchor itself and of its positive, and the
    normalised local and global views."""
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"the two views must be (n, d) of one shape, got {tuple(a.shape)} "
                         f"and {tuple(b.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    a = F.normalize(a.float(), dim=1)
    b = F.normalize(b.float(), dim=1)
    all_a, start = gather(a)
    all_b, _ = gather(b)
    n, total = a.shape[0], all_a.shape[0]
    local = torch.cat([a, b])                      # (2n, d)
    every = torch.cat([all_a, all_b])              # (2N, d)
    logits = local @ every.T / temperature         # (2n, 2N): this process's rows only
    rows = torch.arange(n, device=a.device)
    own = torch.cat([start + rows, total + start + rows])
    positive = torch.cat([total + start + rows, start + rows])
    logits = logits.masked_fill(
        F.one_hot(own, 2 * total).bool(), float("-inf"))
    return logits, own, positive, local, every


def nt_xent(a: torch.Tensor, b: torch.Tensor, temperature: float = SIMCLR_TEMPERATURE
            ) -> torch.Tensor:
    """SimCLR's normalized temperature-scaled cross entropy of paired views.

    For each of the ``2N`` views of the global batch, the cross entropy of its cosine
    similarities divided by ``temperature`` to the other ``2N - 1`` views, its pair's view as
    the target; the mean over the views. This process returns the mean over its own ``2n``
    views (the global loss is the mean over processes, which is what DDP's gradient averaging
    gives).

    Parameters
    ----------
    a, b : torch.Tensor
        (n, d) embeddings of the first and second view of the same n images (not normalised).
    temperature : float
        SimCLR: 0.1 for fine-tuning (0.5 at small batch sizes in the paper).

    Returns
    -------
    torch.Tensor
        A scalar.
    """
    logits, _, positive, _, _ = _similarities(a, b, temperature)
    return F.cross_entropy(logits, positive)


def koleo_entropy(local: torch.Tensor, every: torch.Tensor, own: torch.Tensor,
                  positive: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """The Kozachenko-Leonenko differential-entropy term that SSCD adds: minus the mean log
    distance of each (normalised) local embedding to its nearest embedding of another image in
    the global batch (its own column and its pair's are left out). Minimising it spreads the
    descriptors apart.
    """
    distances = torch.cdist(local, every)
    rows = torch.arange(local.shape[0], device=local.device)
    distances = distances.index_put((rows, own), distances.new_tensor(float("inf")))
    distances = distances.index_put((rows, positive), distances.new_tensor(float("inf")))
    return -torch.log(distances.min(dim=1).values + eps).mean()


def sscd_loss(a: torch.Tensor, b: torch.Tensor, temperature: float = SSCD_TEMPERATURE,
              entropy_weight: float = SSCD_ENTROPY_WEIGHT) -> torch.Tensor:
    """SSCD's objective: InfoNCE over the global batch (NT-Xent at ``temperature``) plus
    ``entropy_weight`` times the KoLeo entropy term of the embeddings.

    Parameters
    ----------
    a, b : torch.Tensor
        (n, d) embeddings of two views of the same n images.
    temperature : float
        0.05 in SSCD.
    entropy_weight : float
        10 for new data, as SSCD's authors advise (30 on DISC21); 0 gives plain InfoNCE.
    """
    if entropy_weight < 0:
        raise ValueError(f"entropy_weight must be >= 0, got {entropy_weight}")
    logits, own, positive, local, every = _similarities(a, b, temperature)
    loss = F.cross_entropy(logits, positive)
    if entropy_weight:
        loss = loss + entropy_weight * koleo_entropy(local, every, own, positive)
    return loss


# --- the registries ----------------------------------------------------------------------------

#: ``loss(a, b) -> scalar`` of two views' embeddings.
PairLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

#: The encoders' objectives by name (``--loss``): ``make(temperature, entropy_weight)``
#: -> ``loss(a, b)``, the recipe's temperature when ``temperature`` is None.
LOSSES: Registry[Callable[[float | None, float], PairLoss]] = Registry("loss")


@LOSSES.register("nt_xent")
def _nt_xent_loss(temperature: float | None, entropy_weight: float) -> PairLoss:
    """SimCLR's NT-Xent (no entropy term: ``entropy_weight`` is not used)."""
    t = SIMCLR_TEMPERATURE if temperature is None else float(temperature)
    return lambda a, b: nt_xent(a, b, t)


@LOSSES.register("sscd")
def _sscd_loss(temperature: float | None, entropy_weight: float) -> PairLoss:
    """SSCD's InfoNCE with its KoLeo entropy term."""
    t = SSCD_TEMPERATURE if temperature is None else float(temperature)
    return lambda a, b: sscd_loss(a, b, t, entropy_weight)


def make_loss(name: str, temperature: float | None = None,
              entropy_weight: float = SSCD_ENTROPY_WEIGHT) -> PairLoss:
    """The objective ``name`` (see `LOSSES`: ``nt_xent`` or ``sscd``) as ``loss(a, b)``, with
    its recipe's temperature when none is given.

    Raises
    ------
    ValueError
        Unknown name: the message names the closest and lists the known ones.
    """
    return LOSSES.get(name)(temperature, entropy_weight)


#: The verification heads' losses by name (``HeadConfig.loss``): ``make(config, distance)``
#: -> a pytorch-metric-learning loss, ``config`` a `finetuning.heads.HeadConfig`.
HEAD_LOSSES: Registry[Callable[[Any, Any], Any]] = Registry("head loss")


@HEAD_LOSSES.register("triplet")
def _triplet_loss(config: Any, distance: Any) -> Any:
    """The triplet margin loss (margin ``config.margin``)."""
    from pytorch_metric_learning import losses  # reason: 0.5 s to import, heads only

    return losses.TripletMarginLoss(margin=config.margin, distance=distance)


@HEAD_LOSSES.register("contrastive")
def _contrastive_loss(config: Any, distance: Any) -> Any:
    """The contrastive pair loss (``config.pos_margin``, ``config.neg_margin``)."""
    from pytorch_metric_learning import losses  # reason: 0.5 s to import, heads only

    return losses.ContrastiveLoss(pos_margin=config.pos_margin,
                                  neg_margin=config.neg_margin, distance=distance)
