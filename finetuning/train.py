"""The training loop: one process or many under ``torchrun``, resumable, logged.

`train(config, output)` fine-tunes ``config.model`` on ``config.data`` and writes into
``output``: ``checkpoints/epoch_<E>.pt`` after every epoch (``step_<S>.pt`` every
``checkpoint_every`` steps, the newest one kept), ``log.csv`` (one
row per optimiser step and per validation), TensorBoard events when TensorBoard is installed.
Every process seeds its randomness from ``(seed, rank, step)`` and draws its views per image, so
a run resumed from a checkpoint continues exactly as if it had not stopped (bit for bit on CPU).
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from data_retrieval import load_dataset, load_images
from finetuning.loop import (
    LoopResult,
    TrainingLog,
    latest_checkpoint,
    mean_over_processes,
    run_loop,
)
from finetuning.losses import LOSSES, SSCD_ENTROPY_WEIGHT, make_loss
from finetuning.model import (
    Encoder,
    Trainable,
    load_checkpoint,
    load_encoder,
    make_head,
    save_checkpoint,
    set_rng_state,
)
from finetuning.optim import (
    OPTIMIZER_BUILDERS,
    SQRT_LR_BASE,
    build_optimizer,
    default_learning_rate,
    warmup_cosine,
)
from finetuning.views import (
    VIEW_KINDS,
    EpochSampler,
    TwoViews,
    ViewMaker,
    input_spec,
    simclr_augmentation,
)
from helpers import get_logger
from helpers.distributed import Distributed, distributed
from helpers.seeding import derive_seed, rng_for

logger = get_logger(__name__)

LOG_COLUMNS = ("split", "epoch", "step", "loss", "lr", "images_per_s", "seconds")
#: How often a view of ``views`` is an attack (``mixed``: half of them).
ATTACK_PROB = {"simclr": 0.0, "attacks": 1.0, "mixed": 0.5}


@dataclass
class FinetuneConfig:
    """Every setting of a fine-tuning run (what ``experiment.json`` records).

    Defaults are the study's SimCLR fine-tuning: NT-Xent at temperature 0.1, LARS with
    learning rate 0.005 sqrt(global batch), weight decay 1e-6, linear warm-up then cosine decay,
    SimCLR's augmentations.
    """

    model: Any = "efficientnet_lite0"
    weights: str | None = None
    init: str = "pretrained"
    model_params: dict[str, Any] = field(default_factory=dict)
    data: str = "sample"
    subset: str | None = None
    data_root: str | None = None
    val_data: str | None = None
    val_subset: str | None = None
    val_fraction: float = 0.1
    views: str = "simclr"
    attacks: list[str] | None = None
    attack_prob: float | None = None
    color_strength: float = 1.0
    min_scale: float = 0.08
    blur: bool = True
    head_layers: int = 3
    head_dim: int = 128
    reuse_head: bool = True
    loss: str = "nt_xent"
    temperature: float | None = None
    entropy_weight: float = SSCD_ENTROPY_WEIGHT
    optimizer: str = "lars"
    lr: float | None = None
    lr_base: float = SQRT_LR_BASE
    weight_decay: float = 1e-6
    momentum: float = 0.9
    trust_coefficient: float = 0.001
    epochs: int = 10
    warmup_epochs: float = 1.0
    batch_size: int = 64
    accumulate: int = 1
    max_steps: int | None = None
    seed: int = 0
    device: str = "auto"
    workers: int = 2
    amp: bool = True
    checkpoint_every: int = 0

    def record(self) -> dict[str, Any]:
        """Plain values (a custom model is named, not stored)."""
        model = self.model
        self.model = getattr(model, "name", model)
        try:
            return asdict(self)
        finally:
            self.model = model

    def check(self) -> None:
        """Refuse impossible settings before any work."""
        LOSSES.get(self.loss)  # unknown names raise the registries' one error, before any work
        OPTIMIZER_BUILDERS.get(self.optimizer)
        if self.views not in VIEW_KINDS:
            raise ValueError(f"views must be one of {', '.join(VIEW_KINDS)}, got {self.views!r}")
        for key in ("epochs", "batch_size", "accumulate"):
            if int(getattr(self, key)) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.batch_size < 2:
            raise ValueError("batch_size must be >= 2: a contrastive batch needs negatives")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.warmup_epochs < 0 or self.checkpoint_every < 0 or self.workers < 0:
            raise ValueError("warmup_epochs, checkpoint_every and workers must be >= 0")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")
        positive = {"lr": self.lr, "lr_base": self.lr_base, "temperature": self.temperature,
                    "trust_coefficient": self.trust_coefficient}
        for key, value in positive.items():
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"{key} must be a positive number, got {value}")
        for key in ("weight_decay", "entropy_weight"):
            value = getattr(self, key)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{key} must be a number >= 0, got {value}")
        if not (math.isfinite(self.momentum) and 0 <= self.momentum < 1):
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")


def _records(spec: str, subset: str | None, data_root: str | None) -> list:
    if subset is not None:
        dataset = load_dataset(spec, data_root, subset=subset)
    else:
        dataset = load_images(spec, data_root)
    return list(dataset.records)  # the lister has logged and skipped unreadable files


def split_train_val(records: list, fraction: float, seed: int) -> tuple[list, list]:
    """A seeded split of the originals into training and validation images (copies follow
    their source, so no image is in both through an edited twin)."""
    if fraction == 0:
        return records, []
    def source(record) -> str:
        return getattr(record, "source_id", None) or getattr(record, "image_id", str(record))

    sources = sorted({source(r) for r in records})
    order = rng_for(seed, "validation").permutation(len(sources))
    held = {sources[i] for i in order[:max(1, round(fraction * len(sources)))]}
    return ([r for r in records if source(r) not in held],
            [r for r in records if source(r) in held])


def make_views(config: FinetuneConfig, encoder: Encoder) -> ViewMaker:
    """The views of ``config.views`` for ``encoder``'s input."""
    spec = input_spec(encoder.transform)
    prob = ATTACK_PROB[config.views] if config.attack_prob is None else config.attack_prob
    attacks: list = []
    if prob > 0:
        from generator import default_attacks, parse_attack_id  # lazy: loads cv2, matplotlib

        attacks = ([parse_attack_id(a) for a in config.attacks] if config.attacks
                   else default_attacks())
    augmentation = (simclr_augmentation(spec.size, config.color_strength, config.min_scale,
                                        config.blur) if prob < 1 else None)
    return ViewMaker(spec, augmentation, attacks, prob, encoder.transform)


def _loader(dataset: TwoViews, sampler: EpochSampler, workers: int, pin: bool) -> DataLoader:
    return DataLoader(dataset, batch_sampler=sampler, num_workers=workers, pin_memory=pin,
                      persistent_workers=False)


def train(config: FinetuneConfig, output: str | Path, resume: bool = False,
          show_progress: bool | None = None, process: Distributed | None = None
          ) -> dict[str, Any]:
    """Fine-tune ``config.model``; see the module docstring for what is written.

    Parameters
    ----------
    config : FinetuneConfig
    output : str or Path
        The run's folder (made by the caller; ``scripts/finetune.py`` holds its lock).
    resume : bool
        Continue from the newest checkpoint (a run restarted by torchrun resumes too).
    show_progress : bool, optional
    process : Distributed, optional
        This process's place under torchrun (default: join the group here).

    Returns
    -------
    dict
        ``steps``, ``epochs``, final train and validation losses, images per second, the
        checkpoints written, the unreadable images.
    """
    config.check()
    if process is None:
        with distributed(config.device) as process:
            return train(config, output, resume, show_progress, process)
    output = Path(output)
    world, cuda = process.world_size, process.device.startswith("cuda")
    encoder, model = _build_model(config, process.device)
    views = make_views(config, encoder)
    dataset, val_set = _view_sets(config, views, world)
    schedule = _schedule(config, len(dataset), world)
    net = _parallel(model, process)
    optimizer = build_optimizer([model], config.optimizer, schedule.lr, config.weight_decay,
                                config.momentum, config.trust_coefficient)
    scheduler = warmup_cosine(optimizer, schedule.total_steps, schedule.warmup_steps)
    use_amp = config.amp and cuda
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    loss_fn = make_loss(config.loss, config.temperature, config.entropy_weight)
    start, step = _resume(output, resume, model, optimizer, scheduler, scaler)
    if process.is_main:
        (output / "checkpoints").mkdir(parents=True, exist_ok=True)
    log = TrainingLog(output, step if start is not None else None, process.is_main,
                      LOG_COLUMNS)
    task = _EncoderTask(config, process, dataset, encoder, model, optimizer, scheduler, scaler,
                        loss_fn, schedule.steps_per_epoch)
    try:
        done = run_loop(
            model=model, net=net, optimizer=optimizer, scheduler=scheduler,
            batches_of=task.batches_of, loss_of=task.loss_of, save=task.save, output=output,
            log=log, steps_per_epoch=schedule.steps_per_epoch,
            total_steps=schedule.total_steps, epochs=config.epochs, start_step=step,
            seed=config.seed, accumulate=config.accumulate,
            checkpoint_every=config.checkpoint_every,
            validate=None if val_set is None else
            lambda epoch: validation_loss(net, val_set, loss_fn, config, process),
            scaler=scaler, use_amp=use_amp, rank=process.rank, world=world,
            is_main=process.is_main, barrier=process.barrier,
            items_per_batch=config.batch_size * world,
            description=f"fine-tuning {encoder.name}", show_progress=show_progress)
    finally:
        log.close()
    return {**_outcome(done, start is not None, output, schedule),
            "train_images": len(dataset), "val_images": 0 if val_set is None else len(val_set),
            "unreadable": dict(dataset.bad), "model": encoder.name, "views": views.describe()}


def _build_model(config: FinetuneConfig, device: str) -> tuple[Encoder, Trainable]:
    """The encoder to fine-tune and, on ``device``, the encoder with its projection head."""
    # a new head (and a randomly initialised encoder) draws from the seed: runs repeat
    torch.manual_seed(derive_seed(config.seed, "init") % 2**63)
    encoder = load_encoder(config.model, config.weights, config.init, **config.model_params)
    head = make_head(encoder, config.head_layers, config.head_dim, config.reuse_head)
    return encoder, Trainable(encoder.module, head).to(device)


def _view_sets(config: FinetuneConfig, views: ViewMaker, world: int
               ) -> tuple[TwoViews, TwoViews | None]:
    """The training images and the validation images (None when they do not fill one batch
    of ``batch_size`` per process), as pairs of views."""
    records = _records(config.data, config.subset, config.data_root)
    if config.val_data:
        train_records = records
        val_records = _records(config.val_data, config.val_subset, config.data_root)
    else:
        train_records, val_records = split_train_val(records, config.val_fraction, config.seed)
    dataset = TwoViews(train_records, views, config.seed)
    val_set = None
    if EpochSampler.batches_per_epoch(len(val_records), config.batch_size, world):
        val_set = TwoViews(val_records, views, config.seed)
    elif val_records:
        logger.warning("the %d validation images do not fill one batch of %d x %d: no "
                       "validation loss (raise --val-fraction or give --val-data)",
                       len(val_records), config.batch_size, world)
    return dataset, val_set


@dataclass
class _Schedule:
    """How long a run is and how fast it learns (reported in this order by `train`)."""

    total_steps: int
    steps_per_epoch: int
    global_batch: int
    lr: float
    warmup_steps: int


def _schedule(config: FinetuneConfig, images: int, world: int) -> _Schedule:
    """Optimiser steps per epoch and in all, the global batch, the learning rate (``lr``, or
    `default_learning_rate` of the global batch) and the warm-up steps.

    Raises
    ------
    ValueError
        ``images`` do not fill one batch per process, or fewer batches than ``accumulate``.
    """
    batches = EpochSampler.batches_per_epoch(images, config.batch_size, world)
    if batches == 0:
        raise ValueError(f"{images} training images do not fill one batch of "
                         f"{config.batch_size} x {world} process(es): lower --batch-size")
    if batches < config.accumulate:
        raise ValueError(f"{images} training images give {batches} batch(es) of "
                         f"{config.batch_size} x {world} per epoch, fewer than --accumulate "
                         f"{config.accumulate}")
    steps_per_epoch = batches // config.accumulate
    total_steps = steps_per_epoch * config.epochs
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)
    global_batch = config.batch_size * world * config.accumulate
    lr = (config.lr if config.lr is not None
          else default_learning_rate(global_batch, config.lr_base))
    warmup = min(total_steps, round(config.warmup_epochs * steps_per_epoch))
    return _Schedule(total_steps, steps_per_epoch, global_batch, lr, warmup)


def _parallel(model: Trainable, process: Distributed) -> torch.nn.Module:
    """What the loop calls: ``model`` itself, or under several processes its DDP wrapper
    (with synchronised batch norm on CUDA)."""
    if process.world_size == 1:
        return model
    cuda = process.device.startswith("cuda")
    net: torch.nn.Module = model
    if cuda:
        net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    else:
        logger.info("batch norm statistics stay per process on CPU (SyncBatchNorm needs "
                    "CUDA)")
    # registry modules may hold parameters the features never use (efficientnet's
    # classifier): DDP must not wait for their gradients
    return torch.nn.parallel.DistributedDataParallel(
        net, device_ids=[process.local_rank] if cuda else None, find_unused_parameters=True)


def _resume(output: Path, resume: bool, model: Trainable, optimizer: torch.optim.Optimizer,
            scheduler: Any, scaler: torch.amp.GradScaler) -> tuple[Path | None, int]:
    """Load the newest checkpoint of ``output`` into the model, optimiser, schedule, scaler
    and random generators when asked to resume (or restarted by torchrun); the checkpoint
    (None: starting afresh) and its step."""
    restarted = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0
    start = latest_checkpoint(output) if (resume or restarted) else None
    if (resume or restarted) and start is None:
        logger.info("nothing to resume in %s: starting from the beginning", output)
    if start is None:
        return None, 0
    state = load_checkpoint(start)
    model.encoder.load_state_dict(state["encoder"])
    model.head.load_state_dict(state["projection_head"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"])
    step = int(state["step"])
    logger.info("resuming from %s (epoch %s, step %d)", start.name, state["epoch"], step)
    return start, step


@dataclass
class _EncoderTask:
    """What `run_loop` calls back for encoder fine-tuning: an epoch's batches of view pairs,
    a batch's loss, a checkpoint."""

    config: FinetuneConfig
    process: Distributed
    dataset: TwoViews
    encoder: Encoder
    model: Trainable
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    loss_fn: Any
    steps_per_epoch: int

    def batches_of(self, epoch: int, skip: int) -> DataLoader:
        config, process = self.config, self.process
        sampler = EpochSampler(len(self.dataset), config.batch_size, process.world_size,
                               process.rank, config.seed, epoch, skip=skip,
                               limit=self.steps_per_epoch * config.accumulate)
        self.dataset.set_epoch(epoch)
        return _loader(self.dataset, sampler, config.workers,
                       process.device.startswith("cuda"))

    def loss_of(self, net: torch.nn.Module, batch, autocast) -> tuple[torch.Tensor, dict]:
        view_a, view_b, notes = batch
        for note in filter(None, "\n".join(notes).split("\n")):
            self.dataset.note(*note.split("\t", 1))
        x = torch.cat([view_a, view_b]).to(self.process.device, non_blocking=True)
        with autocast:
            z = net(x)
        za, zb = z.float().chunk(2)
        return self.loss_fn(za, zb), {}

    def save(self, path: Path, epoch: int, at_step: int) -> Path:
        config = self.config
        return save_checkpoint(
            path, self.encoder, self.model, epoch=epoch, step=at_step,
            optimizer=self.optimizer.state_dict(), scheduler=self.scheduler.state_dict(),
            scaler=self.scaler.state_dict(), config=config.record(), init=config.init,
            start_weights=config.weights)


def _outcome(done: LoopResult, resumed: bool, output: Path, schedule: _Schedule
             ) -> dict[str, Any]:
    """The first entries of `train`'s result: steps, schedule, last losses, rate and
    checkpoints (a resumed run that had finished reports its log's last losses)."""
    step, trained_images = done.step, done.trained_items
    last_loss, last_val = done.last_loss, done.last_val
    if resumed and not trained_images:  # resumed a finished run: report it
        last_loss, last_val = _last_losses(output / "log.csv")
        logger.info("%s had finished (%d steps): nothing to do", output, step)
    checkpoints = done.checkpoints or sorted(str(p) for p in
                                             (output / "checkpoints").glob("epoch_*.pt"))
    return {"steps": step, **asdict(schedule),
            "train_loss": _finite(last_loss), "val_loss": _finite(last_val),
            "images_per_s": trained_images / done.seconds if trained_images else None,
            "checkpoints": checkpoints}


def _finite(value: float) -> float | None:
    """None for NaN (no such loss): experiment.json stays valid JSON."""
    return value if math.isfinite(value) else None


def _last_losses(path: Path) -> tuple[float, float]:
    """The last train and validation losses of a log (NaN when absent)."""
    last = {"train": float("nan"), "val": float("nan")}
    if path.is_file():
        with open(path, newline="") as handle:
            for row in csv.DictReader(handle):
                last[row["split"]] = float(row["loss"])
    return last["train"], last["val"]


@torch.no_grad()
def validation_loss(net: torch.nn.Module, val_set: TwoViews, loss_fn, config: FinetuneConfig,
                    process: Distributed) -> float:
    """The loss on the validation images, in evaluation mode, on views that are the same at
    every epoch (they fill at least one global batch)."""
    world = process.world_size
    module = net.module if hasattr(net, "module") else net
    module.eval()
    val_set.set_epoch(-1)
    sampler = EpochSampler(len(val_set), config.batch_size, world, process.rank, config.seed, -1)
    total, count = torch.zeros(()), 0
    for view_a, view_b, _ in _loader(val_set, sampler, config.workers, False):
        z = module(torch.cat([view_a, view_b]).to(process.device))
        total += loss_fn(*z.float().chunk(2)).cpu()
        count += 1
    module.train()
    return mean_over_processes(total / count, world)
