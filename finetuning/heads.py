"""Projection heads trained on frozen features for pair verification.

A head maps a model's features (N, D) to shorter embeddings (N, d) so that an image and its
copies come closer than other images, in cosine distance. It is trained on features whose rows
carry their source image (an original and its attacked copies share a label) with the triplet
loss (margin alpha) or the contrastive pair loss, mining hard negatives in each batch; losses
and miners are pytorch-metric-learning's. Batches hold ``per_source`` rows of each of
``batch_size / per_source`` source images, drawn with the seed of the epoch, so a resumed run
repeats the batches it would have seen. The head is trained by the fine-tuning package's loop
(`finetuning.loop.run_loop`, as encoders are): its optimisers, warm-up and cosine schedule,
``log.csv``, progress bar, non-finite checks, atomic checkpoints every epoch, and ``resume``
from the newest (bit for bit on CPU).

The trained head is saved in the reducer file format (``head.pt``, kind ``head``): it plugs
into the registry like any reducer, ``get_algorithm("sscd_distilled", reduce="head.pt")``.

Collapse (every embedding the same, the triplet loss stuck at the margin) is detected and
reported: the result's ``collapsed`` says why.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from extractor.reduce import Reducer, ReducerSpec
from extractor.reducer_nets import ReducerNet, check_network_fits, network_state
from finetuning.loop import LoopResult, TrainingLog, latest_checkpoint, run_loop
from finetuning.losses import HEAD_LOSSES
from finetuning.optim import OPTIMIZER_BUILDERS, build_optimizer, warmup_cosine
from helpers import get_logger, resolve_device, save_torch, unknown_name
from helpers.seeding import derive_seed

logger = get_logger(__name__)


def __getattr__(name: str) -> Any:
    """``LOSSES``, the deprecated name of the head losses' names (`HEAD_LOSSES`)."""
    if name == "LOSSES":
        warnings.warn("finetuning.heads.LOSSES is deprecated: use "
                      "finetuning.losses.HEAD_LOSSES", DeprecationWarning, stacklevel=2)
        return tuple(HEAD_LOSSES.names())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


MINERS = ("semihard", "hard", "all", "batch_hard", "none")
HEAD_LOG_COLUMNS = ("split", "epoch", "step", "loss", "lr", "mined", "rows_per_s", "seconds")


@dataclass
class HeadConfig:
    """How a head is trained (every field is a flag of ``scripts/train_verifier.py``).

    Attributes
    ----------
    dims : tuple of int
        Widths after the input: ``(256,)`` a linear map to 256; ``(512, 256)`` an MLP.
    loss : {"triplet", "contrastive"}
    margin : float
        Triplet margin alpha, in cosine similarity (pytorch-metric-learning's units).
    pos_margin, neg_margin : float
        Contrastive loss: positives are pulled above ``pos_margin`` similarity, negatives
        pushed below ``neg_margin``.
    miner : {"semihard", "hard", "all", "batch_hard", "none"}
        Which triplets of a batch count (``TripletMarginMiner`` types, or ``BatchHardMiner``).
    epochs, batch_size, per_source : int
    optimizer : str
        ``adam`` (default), ``adamw``, ``sgd`` or ``lars``.
    lr, weight_decay, warmup_epochs : float
    val_fraction : float
        Share of the source images held out for the validation loss.
    seed : int
    device : str
    """

    dims: tuple[int, ...] = (256,)
    loss: str = "triplet"
    margin: float = 0.2
    pos_margin: float = 1.0
    neg_margin: float = 0.5
    miner: str = "semihard"
    epochs: int = 30
    batch_size: int = 128
    per_source: int = 4
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 1e-6
    warmup_epochs: float = 1.0
    val_fraction: float = 0.2
    seed: int = 0
    device: str = "auto"

    def check(self) -> None:
        """Raise ValueError naming the first bad field."""
        HEAD_LOSSES.get(self.loss)  # an unknown name raises the registry's error
        if self.miner not in MINERS:
            raise ValueError(unknown_name("miner", self.miner, MINERS))
        OPTIMIZER_BUILDERS.get(self.optimizer)  # an unknown name raises the registry's error
        if not self.dims or any(int(d) < 1 for d in self.dims):
            raise ValueError(f"dims must be positive widths, got {self.dims}")
        for name in ("epochs", "batch_size", "per_source"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.per_source < 2:
            raise ValueError("per_source must be >= 2: a batch needs positives")
        if self.batch_size < 2 * self.per_source:
            raise ValueError(f"batch_size {self.batch_size} holds fewer than two source images "
                             f"of {self.per_source} rows: a batch needs negatives")
        for name in ("lr", "margin", "pos_margin", "neg_margin", "weight_decay",
                     "warmup_epochs"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0 or (name == "lr" and value == 0):
                bound = "> 0" if name == "lr" else ">= 0"
                raise ValueError(f"{name} must be a finite number {bound}, got {value}")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")

    @property
    def spec(self) -> ReducerSpec:
        return ReducerSpec("head", tuple(int(d) for d in self.dims))


def make_loss_and_miner(config: HeadConfig):
    """pytorch-metric-learning's loss and miner for ``config``, in cosine similarity."""
    from pytorch_metric_learning import miners  # lazy: 0.5 s to import, heads only
    from pytorch_metric_learning.distances import CosineSimilarity  # lazy: 0.5 s, heads only

    distance = CosineSimilarity()
    loss = HEAD_LOSSES.get(config.loss)(config, distance)
    if config.miner == "none":
        miner = None
    elif config.miner == "batch_hard":
        miner = miners.BatchHardMiner(distance=distance)
    else:
        miner = miners.TripletMarginMiner(margin=config.margin, distance=distance,
                                          type_of_triplets=config.miner)
    return loss, miner


def source_batches(labels: np.ndarray, batch_size: int, per_source: int, seed: int,
                   epoch: int) -> list[np.ndarray]:
    """One epoch of batches: ``per_source`` rows of each of ``batch_size // per_source``
    source images (rows drawn with replacement when a source has fewer), every source once,
    seeded by ``(seed, epoch)``. Sources with a single row are left out (no positive)."""
    rng = np.random.default_rng(derive_seed(seed, "head-batches", epoch))
    rows_of: dict[int, np.ndarray] = {}
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        if len(rows) > 1:
            rows_of[int(label)] = rows
    sources = rng.permutation(sorted(rows_of))
    per_batch = max(2, batch_size // per_source)
    batches = []
    for start in range(0, len(sources) - per_batch + 1, per_batch):
        chosen = []
        for s in sources[start:start + per_batch]:
            rows = rows_of[int(s)]
            chosen.append(rng.choice(rows, per_source, replace=len(rows) < per_source))
        batches.append(np.concatenate(chosen))
    return batches


def _split(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """True for the rows of the held-out source images."""
    unique = np.unique(labels)
    held = np.random.default_rng(derive_seed(seed, "head-split")).permutation(unique)[
        :int(round(fraction * len(unique)))]
    return np.isin(labels, held)


def collapse_check(embeddings: torch.Tensor, last_loss: float, config: HeadConfig
                   ) -> str | None:
    """Why the head collapsed, or None: unit embeddings all alike (mean cosine similarity of
    random pairs above 0.99), or a triplet loss stuck at the margin."""
    z = torch.nn.functional.normalize(embeddings.float(), dim=1)
    if len(z) > 1:
        generator = torch.Generator().manual_seed(0)
        a = torch.randint(len(z), (min(4096, len(z) * 4),), generator=generator)
        b = torch.randint(len(z), a.shape, generator=generator)
        keep = a != b
        similarity = float((z[a[keep]] * z[b[keep]]).sum(1).mean()) if keep.any() else 0.0
        if similarity > 0.99:
            return (f"embeddings collapsed: mean cosine similarity of random pairs "
                    f"{similarity:.4f}")
    if (config.loss == "triplet" and config.margin > 0 and math.isfinite(last_loss)
            and abs(last_loss - config.margin) < 0.02 * config.margin):
        return f"the triplet loss is stuck at the margin ({last_loss:.4f} vs {config.margin})"
    return None


def _checkpoint(path: Path, net: ReducerNet, optimizer, scheduler, epoch: int, step: int,
                config: HeadConfig) -> Path:
    return save_torch({"format": "image-similarity-lab/head-checkpoint-1",
                       "net": net.state_dict(), "optimizer": optimizer.state_dict(),
                       "scheduler": scheduler.state_dict(), "epoch": epoch, "step": step,
                       "config": asdict(config)}, path)


def train_head(features: np.ndarray, labels: np.ndarray, config: HeadConfig,
               output: str | Path, method: str | None = None, resume: bool = False,
               show_progress: bool | None = None) -> dict[str, Any]:
    """Train a head on frozen features; write ``head.pt`` (a reducer), ``log.csv`` and
    ``checkpoints/epoch_<E>.pt`` into ``output``.

    Parameters
    ----------
    features : array (N, D)
        Frozen features (an original and its copies are rows with the same label).
    labels : array (N,)
        The source image of each row (any hashable values).
    config : HeadConfig
    output : str or Path
    method : str, optional
        The features' method (the head only applies to it).
    resume : bool
        Continue from the newest checkpoint in ``output``.
    show_progress : bool, optional

    Returns
    -------
    dict
        ``head`` (the file), ``steps``, train and validation losses per epoch, ``collapsed``
        (None or why), the row and source counts.

    Raises
    ------
    ValueError
        A bad config, too few sources for one batch, non-finite features.
    """
    config.check()
    output = Path(output)
    x = _feature_rows(features, labels)
    rows = _HeadRows.split(labels, config)
    device = resolve_device(config.device)
    check_network_fits(config.spec, x.shape[1], device, "the head's widths (--dims)")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(config.seed, "head-init") % 2**63)
        net = ReducerNet(config.spec, x.shape[1])
    net.to(device)
    optimizer = build_optimizer([net], config.optimizer, config.lr, config.weight_decay)
    total = rows.steps_per_epoch * config.epochs
    scheduler = warmup_cosine(optimizer, total, min(total, round(config.warmup_epochs
                                                                 * rows.steps_per_epoch)))
    loss_fn, miner = make_loss_and_miner(config)
    (output / "checkpoints").mkdir(parents=True, exist_ok=True)
    latest, step = _resume_head(output, resume, config, net, optimizer, scheduler)
    start_epoch = step // rows.steps_per_epoch
    log = TrainingLog(output, step if latest is not None else None, True, HEAD_LOG_COLUMNS)
    losses, val_losses = _history(output / "log.csv", start_epoch)
    if latest is not None and start_epoch >= config.epochs:
        logger.info("%s had finished (%d epochs): nothing to train", output, start_epoch)
    task = _HeadTask(config, rows, x.to(device), net, loss_fn, miner, device)
    try:
        done = run_loop(
            model=net, net=net, optimizer=optimizer, scheduler=scheduler,
            batches_of=task.batches_of, loss_of=task.loss_of, output=output, log=log,
            save=lambda path, epoch, at_step: _checkpoint(path, net, optimizer, scheduler,
                                                          epoch, at_step, config),
            steps_per_epoch=rows.steps_per_epoch, total_steps=total, epochs=config.epochs,
            start_step=step, seed=config.seed, validate=task.validate,
            items_per_batch=config.batch_size, rate_name="rows_per_s",
            description="training head", show_progress=show_progress)
    finally:
        log.close()
    losses += [done.epoch_losses[e] for e in sorted(done.epoch_losses)]
    val_losses += [done.val_losses[e] for e in sorted(done.val_losses)]
    return _save_head(net, x, rows, config, method, losses, val_losses, output, done)


def _feature_rows(features: np.ndarray, labels: np.ndarray) -> torch.Tensor:
    """The features as a float32 tensor of its own, refused when they are not one finite row
    per label."""
    rows = np.ascontiguousarray(features, dtype=np.float32)
    # a store's memory-mapped rows are read-only: torch wants its own writable copy
    x = torch.from_numpy(rows if rows.flags.writeable else rows.copy())
    if x.ndim != 2 or len(x) != len(labels):
        raise ValueError(f"features {tuple(x.shape)} and {len(labels)} labels do not match")
    if not torch.isfinite(x).all():
        bad = (~torch.isfinite(x).all(1)).nonzero()[:, 0].tolist()
        raise ValueError(f"{len(bad)} feature rows are not finite, the first row {bad[0]} "
                         f"(source image {labels[bad[0]]!r}); describe those images again")
    return x


@dataclass
class _HeadRows:
    """The rows' source images as integer codes, split into training and held-out rows by
    source image, and the optimiser steps an epoch of training batches makes."""

    codes: np.ndarray
    train_rows: np.ndarray
    val_rows: np.ndarray
    steps_per_epoch: int

    @classmethod
    def split(cls, labels: np.ndarray, config: HeadConfig) -> _HeadRows:
        """Raises ValueError when the training sources do not fill one batch; warns when the
        held-out ones give no validation loss."""
        _, codes = np.unique(np.asarray(labels, dtype=object).astype(str), return_inverse=True)
        held = _split(codes, config.val_fraction, config.seed) if config.val_fraction else \
            np.zeros(len(codes), bool)
        train_rows, val_rows = np.flatnonzero(~held), np.flatnonzero(held)
        steps_per_epoch = len(source_batches(codes[train_rows], config.batch_size,
                                             config.per_source, config.seed, 0))
        if steps_per_epoch == 0:
            _, counts = np.unique(codes[train_rows], return_counts=True)
            raise ValueError(f"{int(np.sum(counts > 1))} training source images with 2+ rows "
                             "(an original and a copy) do not fill one batch of "
                             f"{config.batch_size // config.per_source} sources: lower "
                             "--batch-size or give more images and copies")
        if len(val_rows) and not _validation_batch_size(codes, val_rows, config):
            logger.warning("the %d held-out rows hold fewer than two source images with two "
                           "rows: no validation loss (raise --val-fraction)", len(val_rows))
        return cls(codes, train_rows, val_rows, steps_per_epoch)


def _resume_head(output: Path, resume: bool, config: HeadConfig, net: ReducerNet, optimizer,
                 scheduler) -> tuple[Path | None, int]:
    """Load the newest checkpoint of ``output`` into the head, optimiser and schedule when
    asked to resume; the checkpoint (None: starting afresh) and its step.

    Raises
    ------
    ValueError
        The checkpoint was trained with other settings (the device aside).
    """
    latest = latest_checkpoint(output) if resume else None
    if latest is None:
        return None, 0
    state = torch.load(latest, map_location="cpu", weights_only=True)
    saved = {k: v for k, v in state["config"].items() if k != "device"}
    wanted = {k: v for k, v in asdict(config).items() if k != "device"}
    saved["dims"] = tuple(saved["dims"])
    wanted["dims"] = tuple(wanted["dims"])
    if saved != wanted:
        changed = sorted(k for k in wanted if saved.get(k) != wanted[k])
        raise ValueError(f"{latest} was trained with other settings ({', '.join(changed)}):"
                         " resume with the same ones, or start a new run")
    net.load_state_dict(state["net"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    step = int(state["step"])
    logger.info("resuming the head from %s (epoch %d)", latest.name, int(state["epoch"]))
    return latest, step


@dataclass
class _HeadTask:
    """What `run_loop` calls back for a head: an epoch's source batches, a batch's mined
    loss, the validation loss."""

    config: HeadConfig
    rows: _HeadRows
    xt: torch.Tensor  # every row's features, on the device
    net: ReducerNet
    loss_fn: Any
    miner: Any
    device: str

    def batches_of(self, epoch: int, skip: int) -> list[np.ndarray]:
        config = self.config
        return source_batches(self.rows.codes[self.rows.train_rows], config.batch_size,
                              config.per_source, config.seed, epoch)[skip:]

    def loss_of(self, module: torch.nn.Module, batch: np.ndarray, autocast
                ) -> tuple[torch.Tensor, dict]:
        rows = self.rows.train_rows[batch]
        target = torch.from_numpy(self.rows.codes[rows]).to(self.device)
        with autocast:
            z = module.encode(self.xt[torch.from_numpy(rows).to(self.device)])
        mined = self.miner(z, target) if self.miner is not None else None
        return self.loss_fn(z, target, mined), {"mined": int(len(mined[0]))
                                                if mined is not None else -1}

    def validate(self, epoch: int) -> float | None:
        codes, val_rows = self.rows.codes, self.rows.val_rows
        if not (len(val_rows) and _validation_batch_size(codes, val_rows, self.config)):
            return None
        return _validation_loss(self.net, self.xt, codes, val_rows, self.config, self.loss_fn,
                                self.miner, epoch, self.device)


def _save_head(net: ReducerNet, x: torch.Tensor, rows: _HeadRows, config: HeadConfig,
               method: str | None, losses: list[float], val_losses: list[float],
               output: Path, done: LoopResult) -> dict[str, Any]:
    """Check the trained head for collapse (on the held-out rows, or the training rows when
    none are), save it as ``head.pt`` (a reducer) and say what was done (`train_head`)."""
    net.eval().cpu()
    with torch.no_grad():
        embeddings = net.encode(x[rows.val_rows if len(rows.val_rows) else rows.train_rows])
    last_epoch_loss = losses[-1] if losses else float("nan")
    collapsed = collapse_check(embeddings, last_epoch_loss, config)
    if collapsed:
        logger.warning("the head collapsed: %s. Lower the learning rate, use a smaller margin "
                       "or another miner.", collapsed)
    sources = int(rows.codes.max() + 1)
    reducer = Reducer(config.spec, int(x.shape[1]), int(config.dims[-1]), network_state(net),
                      method, {"config": asdict(config), "train_losses": losses,
                               "val_losses": val_losses, "collapsed": collapsed,
                               "rows": int(len(x)), "sources": sources})
    head = reducer.save(output / "head.pt")
    return {"head": str(head), "steps": done.step, "steps_per_epoch": rows.steps_per_epoch,
            "train_losses": losses, "val_losses": val_losses, "collapsed": collapsed,
            "rows": int(len(x)), "sources": sources,
            "train_rows": int(len(rows.train_rows)), "val_rows": int(len(rows.val_rows)),
            "seconds": done.seconds}


def _history(path: Path, epochs: int) -> tuple[list[float], list[float]]:
    """Per-epoch mean training loss and validation loss of the first ``epochs`` epochs, read
    back from ``log.csv`` (a resumed run reports its whole history)."""
    if not epochs or not path.is_file():
        return [], []
    rows = pd.read_csv(path)
    rows = rows[rows["epoch"] <= epochs]
    train = rows[rows["split"] == "train"].groupby("epoch")["loss"]
    # the same sum in the same order as the loop: the mean is the one a straight run reports
    losses = [float(sum(v.tolist()) / len(v)) for _, v in train]
    val = [float(v) for v in rows[rows["split"] == "val"]["loss"]]
    return losses, val


def _validation_batch_size(codes: np.ndarray, val_rows: np.ndarray, config: HeadConfig) -> int:
    """The training batch size, or all held-out sources when they are fewer (0: fewer than
    two sources with two rows, no validation loss)."""
    labels, counts = np.unique(codes[val_rows], return_counts=True)
    usable = int(np.sum(counts > 1))
    if usable < 2:
        return 0
    return min(config.batch_size, usable * config.per_source)


def _validation_loss(net, xt, codes, val_rows, config, loss_fn, miner, epoch, device) -> float:
    net.eval()
    values = []
    size = _validation_batch_size(codes, val_rows, config)
    with torch.no_grad():
        for batch in source_batches(codes[val_rows], size, config.per_source, config.seed,
                                    epoch):
            rows = val_rows[batch]
            target = torch.from_numpy(codes[rows]).to(device)
            z = net.encode(xt[torch.from_numpy(rows).to(device)])
            mined = miner(z, target) if miner is not None else None
            values.append(float(loss_fn(z, target, mined)))
    return float(np.mean(values)) if values else float("nan")

