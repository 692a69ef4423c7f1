"""The optimisation loop of the fine-tuning package, shared by encoder fine-tuning
(`finetuning.train`) and projection heads on frozen features (`finetuning.heads`).

`run_loop` takes what differs between them as callables (the batches of an epoch, the loss of a
batch, the validation loss, the checkpoint's content) and does the rest the same way for both:
optimiser steps with gradient accumulation (DDP gradients exchanged on the last micro-batch
only), float16 autocast with a gradient scaler on CUDA, every micro-batch reseeded from
``(seed, rank, step, micro-batch)`` so that a resumed run repeats what it would have done,
the learning-rate schedule, one ``log.csv`` row per step and per validation (TensorBoard
scalars when it is installed), the progress bar, checkpoints every ``checkpoint_every`` steps
(the newest mid-epoch one kept) and at the end of every epoch, a non-finite loss or parameter
refused before it is saved, and resuming from any step.
"""

from __future__ import annotations

import contextlib
import csv
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from helpers import get_logger, progress
from helpers.seeding import derive_seed

logger = get_logger(__name__)


class TrainingLog:
    """``log.csv`` rows (appended, flushed) and TensorBoard scalars when it is installed.

    Parameters
    ----------
    folder : Path
        The run's folder (``log.csv`` and ``tensorboard/`` go there).
    resume_step : int or None
        Resuming from this step: rows and events after it are dropped (they will be redone).
    enabled : bool
        False on processes other than the main one.
    columns : tuple of str
        The CSV's columns; values of other keys are not written to it.
    """

    def __init__(self, folder: Path, resume_step: int | None, enabled: bool,
                 columns: tuple[str, ...]):
        self.enabled = enabled
        self.columns = columns
        self.path = folder / "log.csv"
        self.writer = None
        if not enabled:
            return
        rows: list[dict] = []
        if resume_step is not None and self.path.is_file():
            with open(self.path, newline="") as handle:
                rows = [r for r in csv.DictReader(handle) if int(r["step"]) <= resume_step]
        with open(self.path, "w", newline="") as handle:  # drops rows past the checkpoint
            out = csv.DictWriter(handle, columns)
            out.writeheader()
            out.writerows(rows)
        self.handle = open(self.path, "a", newline="")  # noqa: SIM115 (open for the run)
        self.csv = csv.DictWriter(self.handle, columns, extrasaction="ignore")
        try:
            from torch.utils.tensorboard import SummaryWriter  # optional: may be absent
        except ImportError:
            logger.info("TensorBoard is not installed: logging to %s only", self.path)
        else:
            # events after the checkpoint's step are dropped, as the CSV rows are
            self.writer = SummaryWriter(str(folder / "tensorboard"),
                                        purge_step=None if resume_step is None
                                        else resume_step + 1)

    def row(self, **values: Any) -> None:
        """One row: ``split``, ``epoch``, ``step``, ``loss`` and any other column."""
        if not self.enabled:
            return
        self.csv.writerow(values)
        self.handle.flush()
        if self.writer is not None:
            split, step = values["split"], values["step"]
            self.writer.add_scalar(f"loss/{split}", values["loss"], step)
            if split == "train":
                for key, value in values.items():
                    if key in self.columns and key not in ("split", "epoch", "step", "loss",
                                                           "seconds") \
                            and isinstance(value, int | float):
                        self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        if self.enabled:
            self.handle.close()
            if self.writer is not None:
                self.writer.close()


def latest_checkpoint(output: str | Path) -> Path | None:
    """The checkpoint of a run with the most optimiser steps (an epoch's before a mid-epoch
    one of the same step), or None. Read from the files themselves: a run killed between
    writing a checkpoint and anything else still resumes from it."""
    best, best_key = None, None
    for path in (Path(output) / "checkpoints").glob("*.pt"):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            key = (int(state["step"]), path.name.startswith("epoch_"))
        except Exception as exc:  # a file that is not a whole checkpoint is not resumed from
            logger.warning("ignoring %s: not a readable checkpoint (%s)", path, exc)
            continue
        if best_key is None or key > best_key:
            best, best_key = path, key
    return best


def mean_over_processes(value: torch.Tensor, world: int) -> float:
    """``value`` averaged over the processes of the group (itself with one process)."""
    value = value.detach().float().clone()
    if world > 1:
        dist.all_reduce(value)
        value /= world
    return float(value)


@dataclass
class LoopResult:
    """What `run_loop` did.

    Attributes
    ----------
    step : int
        Optimiser steps done in all (with the resumed ones).
    last_loss, last_val : float
        The last training step's loss and the last validation loss (NaN when none).
    epoch_losses : dict
        ``{epoch: mean training loss of its steps}`` for the epochs this call finished (the
        sum taken in step order, as the log's rows give it back).
    val_losses : dict
        ``{epoch: validation loss}`` for the epochs this call validated.
    trained_items : int
        Items (images, rows) seen by the optimiser in this call, all processes.
    checkpoints : list of str
        Checkpoints written by this call.
    seconds : float
    """

    step: int
    last_loss: float = float("nan")
    last_val: float = float("nan")
    epoch_losses: dict[int, float] = field(default_factory=dict)
    val_losses: dict[int, float] = field(default_factory=dict)
    trained_items: int = 0
    checkpoints: list[str] = field(default_factory=list)
    seconds: float = 0.0


def run_loop(
    *, model: torch.nn.Module, net: torch.nn.Module, optimizer: torch.optim.Optimizer,
    scheduler: Any, batches_of: Callable[[int, int], Iterable[Any]],
    loss_of: Callable[[torch.nn.Module, Any, Any], tuple[torch.Tensor, dict[str, Any]]],
    save: Callable[[Path, int, int], Path], output: Path, log: TrainingLog,
    steps_per_epoch: int, total_steps: int, epochs: int, start_step: int = 0, seed: int = 0,
    accumulate: int = 1, checkpoint_every: int = 0,
    validate: Callable[[int], float | None] | None = None,
    scaler: torch.amp.GradScaler | None = None, use_amp: bool = False,
    rank: int = 0, world: int = 1, is_main: bool = True,
    barrier: Callable[[], None] | None = None, items_per_batch: int = 1,
    rate_name: str = "images_per_s", description: str = "training",
    show_progress: bool | None = None,
) -> LoopResult:
    """Train from ``start_step`` to ``total_steps`` (see the module docstring).

    Parameters
    ----------
    model : torch.nn.Module
        What is checkpointed and checked for non-finite values (unwrapped).
    net : torch.nn.Module
        What is called: ``model``, or its DDP wrapper (``no_sync`` between micro-batches).
    optimizer, scheduler
        The scheduler steps once per optimiser step.
    batches_of : callable
        ``batches_of(epoch, skip)``: the epoch's micro-batches after the first ``skip`` (a
        resumed epoch), at most ``steps_per_epoch * accumulate`` of them.
    loss_of : callable
        ``loss_of(net, batch, autocast)``: the batch's loss (a scalar tensor) and extra log
        values (e.g. ``{"mined": 12}``); ``autocast`` is the context the forward pass runs in.
    save : callable
        ``save(path, epoch, step)`` writes a checkpoint atomically and returns its path
        (called on the main process only).
    output : Path
        The run's folder (``checkpoints/`` inside).
    log : TrainingLog
    steps_per_epoch, total_steps, epochs : int
    start_step : int
        Steps already done (a resumed run).
    seed : int
    accumulate : int
        Micro-batches per optimiser step.
    checkpoint_every : int
        Also a checkpoint every this many steps inside an epoch (0: epochs only).
    validate : callable, optional
        ``validate(epoch)``: the validation loss after a finished epoch, or None.
    scaler : torch.amp.GradScaler, optional
        Loss scaling (enabled with ``use_amp``: float16 autocast on CUDA).
    use_amp : bool
    rank, world, is_main, barrier
        This process's place in the group (one process by default).
    items_per_batch : int
        Items a micro-batch holds over all processes, for the rate (log column ``rate_name``).
    rate_name, description : str
        The rate's log column (items per second) and the progress bar's title.
    show_progress : bool, optional

    Returns
    -------
    LoopResult

    Raises
    ------
    FloatingPointError
        The loss, or a parameter about to be saved, is NaN or infinite.
    """
    loop = _Loop(
        model=model, net=net, optimizer=optimizer, scheduler=scheduler, batches_of=batches_of,
        loss_of=loss_of, save=save, folder=output / "checkpoints", log=log,
        steps_per_epoch=steps_per_epoch, total_steps=total_steps, seed=seed,
        accumulate=accumulate, checkpoint_every=checkpoint_every, validate=validate,
        scaler=scaler or torch.amp.GradScaler("cuda", enabled=False),
        autocast=torch.autocast("cuda", dtype=torch.float16, enabled=use_amp), rank=rank,
        world=world, is_main=is_main, barrier=barrier, items_per_batch=items_per_batch,
        rate_name=rate_name, result=LoopResult(step=start_step))
    return loop.run(epochs, description, show_progress)


@dataclass
class _Loop:
    """One call of `run_loop`: its settings (the arguments of the same names), what it has
    done so far (``result``), and the steps it is made of."""

    model: torch.nn.Module
    net: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    batches_of: Callable[[int, int], Iterable[Any]]
    loss_of: Callable[[torch.nn.Module, Any, Any], tuple[torch.Tensor, dict[str, Any]]]
    save: Callable[[Path, int, int], Path]
    folder: Path
    log: TrainingLog
    steps_per_epoch: int
    total_steps: int
    seed: int
    accumulate: int
    checkpoint_every: int
    validate: Callable[[int], float | None] | None
    scaler: torch.amp.GradScaler
    autocast: Any
    rank: int
    world: int
    is_main: bool
    barrier: Callable[[], None] | None
    items_per_batch: int
    rate_name: str
    result: LoopResult
    bar: Any = None
    started: float = 0.0

    def run(self, epochs: int, description: str, show_progress: bool | None) -> LoopResult:
        """Every epoch from the one ``result.step`` lies in, up to ``total_steps``, under a
        progress bar; the result, timed."""
        self.bar = progress(total=self.total_steps, desc=description, unit="step",
                            disable=(not self.is_main) or (None if show_progress is None
                                                           else not show_progress))
        self.bar.update(self.result.step)
        self.started = time.perf_counter()
        for epoch in range(self.result.step // self.steps_per_epoch, epochs):
            if self.result.step >= self.total_steps:
                break
            self.run_epoch(epoch)
        self.bar.close()
        self.result.seconds = time.perf_counter() - self.started
        return self.result

    def run_epoch(self, epoch: int) -> None:
        """Train what is left of ``epoch``; when it is finished, record its mean loss (an
        epoch trained whole by this call) and validate; then checkpoint where it stopped."""
        done_in_epoch = self.result.step - epoch * self.steps_per_epoch
        loss_sum, loss_count = self.train_epoch(epoch, done_in_epoch)
        epoch_done = self.result.step % self.steps_per_epoch == 0
        if epoch_done and loss_count and done_in_epoch == 0:
            self.result.epoch_losses[epoch + 1] = loss_sum / loss_count
        if self.validate is not None and epoch_done:
            self.validation(epoch)
        if epoch_done:
            self.checkpoint(f"epoch_{epoch + 1}.pt", epoch + 1)
        else:
            self.checkpoint(f"step_{self.result.step}.pt", epoch)

    def train_epoch(self, epoch: int, done_in_epoch: int) -> tuple[float, int]:
        """The optimiser steps of ``epoch`` after the first ``done_in_epoch``, up to
        ``total_steps``; the sum of their losses (in step order) and their count."""
        self.net.train()
        micro, tick = 0, time.perf_counter()
        loss_sum, loss_count = 0.0, 0
        for batch in self.batches_of(epoch, done_in_epoch * self.accumulate):
            loss, extras = self.micro_batch(batch, micro)
            micro += 1
            if micro < self.accumulate:
                continue
            micro = 0
            lr = self.optimiser_step()
            tick = self.record_step(epoch, loss, extras, lr, tick)
            loss_sum += self.result.last_loss
            loss_count += 1
            if self.checkpoint_every and self.result.step % self.checkpoint_every == 0 and \
                    self.result.step % self.steps_per_epoch:
                self.checkpoint(f"step_{self.result.step}.pt", epoch)
            if self.result.step >= self.total_steps:
                break
        return loss_sum, loss_count

    def micro_batch(self, batch: Any, micro: int) -> tuple[torch.Tensor, dict[str, Any]]:
        """Forward and backward one micro-batch, reseeded from ``(seed, rank, step, micro)``;
        DDP exchanges gradients on the step's last micro-batch only."""
        # dropout and drop-connect draw from here: the same at a step whatever came before
        torch.manual_seed(derive_seed(self.seed, self.rank, "step", self.result.step, micro)
                          % 2**63)
        last_micro = micro == self.accumulate - 1
        sync = (self.net.no_sync() if (self.world > 1 and not last_micro)
                else contextlib.nullcontext())
        with sync:
            loss, extras = self.loss_of(self.net, batch, self.autocast)
            self.scaler.scale(loss / self.accumulate).backward()
        return loss, extras

    def optimiser_step(self) -> float:
        """Step the optimiser (through the scaler) and the schedule; the learning rate the step
        used."""
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        current_lr = self.scheduler.get_last_lr()[0]
        self.scheduler.step()
        self.result.step += 1
        return current_lr

    def record_step(self, epoch: int, loss: torch.Tensor, extras: dict[str, Any], lr: float,
                    tick: float) -> float:
        """Log the step that just ended (its loss averaged over the processes, refused when
        not finite; its rate since ``tick``) and show it; the time it ended."""
        now = time.perf_counter()
        rate = self.items_per_batch * self.accumulate / max(now - tick, 1e-9)
        result = self.result
        result.trained_items += self.items_per_batch * self.accumulate
        result.last_loss = mean_over_processes(loss, self.world)
        if not math.isfinite(result.last_loss):
            raise FloatingPointError(f"the loss became {result.last_loss} at step "
                                     f"{result.step}: lower the learning rate")
        self.log.row(split="train", epoch=epoch + 1, step=result.step, loss=result.last_loss,
                     lr=lr, **{self.rate_name: rate}, **extras, seconds=now - self.started)
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{result.last_loss:.4f}", rate=f"{rate:.1f}")
        return now

    def validation(self, epoch: int) -> None:
        """The validation loss after ``epoch``: kept as the last one, and logged when finite."""
        value = self.validate(epoch)
        if value is not None:
            self.result.last_val = value
        if value is not None and math.isfinite(value):
            self.result.val_losses[epoch + 1] = value
            self.log.row(split="val", epoch=epoch + 1, step=self.result.step, loss=value, lr="",
                         seconds=time.perf_counter() - self.started)

    def checkpoint(self, name: str, epoch: int) -> None:
        """``checkpoints/<name>`` written by the main process (only the newest mid-epoch one
        kept), after every process has checked its parameters are finite."""
        broken = [n for n, p in self.model.named_parameters() if not torch.isfinite(p).all()]
        if broken:
            raise FloatingPointError(f"parameter {broken[0]} (and {len(broken) - 1} more) "
                                     f"holds NaN or infinite values at step {self.result.step}: "
                                     "not saved; lower the learning rate or check --momentum")
        if self.is_main:
            path = self.save(self.folder / name, epoch, self.result.step)
            for older in self.folder.glob("step_*.pt"):
                if older != path:
                    older.unlink()  # only the newest mid-epoch checkpoint is kept
            self.result.checkpoints.append(str(path))
        if self.barrier is not None:
            self.barrier()
