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
            from torch.utils.tensorboard import SummaryWriter
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
    *,
    model: torch.nn.Module,
    net: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    batches_of: Callable[[int, int], Iterable[Any]],
    loss_of: Callable[[torch.nn.Module, Any, Any], tuple[torch.Tensor, dict[str, Any]]],
    save: Callable[[Path, int, int], Path],
    output: Path,
    log: TrainingLog,
    steps_per_epoch: int,
    total_steps: int,
    epochs: int,
    start_step: int = 0,
    seed: int = 0,
    accumulate: int = 1,
    checkpoint_every: int = 0,
    validate: Callable[[int], float | None] | None = None,
    scaler: torch.amp.GradScaler | None = None,
    use_amp: bool = False,
    rank: int = 0,
    world: int = 1,
    is_main: bool = True,
    barrier: Callable[[], None] | None = None,
    items_per_batch: int = 1,
    rate_name: str = "images_per_s",
    description: str = "training",
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
        Loss scaling (enabled with ``use_amp``).
    use_amp : bool
        float16 autocast on CUDA.
    rank, world, is_main, barrier
        This process's place in the group (one process by default).
    items_per_batch : int
        Items a micro-batch holds over all processes (for the rate).
    rate_name : str
        Log column of the rate (items per second).
    description : str
        The progress bar's title.
    show_progress : bool, optional

    Returns
    -------
    LoopResult

    Raises
    ------
    FloatingPointError
        The loss, or a parameter about to be saved, is NaN or infinite.
    """
    scaler = scaler or torch.amp.GradScaler("cuda", enabled=False)
    result = LoopResult(step=start_step)
    folder = output / "checkpoints"

    def checkpoint(name: str, epoch: int) -> None:
        broken = [n for n, p in model.named_parameters() if not torch.isfinite(p).all()]
        if broken:
            raise FloatingPointError(f"parameter {broken[0]} (and {len(broken) - 1} more) "
                                     f"holds NaN or infinite values at step {result.step}: "
                                     "not saved; lower the learning rate or check --momentum")
        if is_main:
            path = save(folder / name, epoch, result.step)
            for older in folder.glob("step_*.pt"):
                if older != path:
                    older.unlink()  # only the newest mid-epoch checkpoint is kept
            result.checkpoints.append(str(path))
        if barrier is not None:
            barrier()

    bar = progress(total=total_steps, desc=description, unit="step",
                   disable=(not is_main) or (None if show_progress is None
                                             else not show_progress))
    bar.update(result.step)
    started = time.perf_counter()
    autocast = torch.autocast("cuda", dtype=torch.float16, enabled=use_amp)
    for epoch in range(result.step // steps_per_epoch, epochs):
        if result.step >= total_steps:
            break
        done_in_epoch = result.step - epoch * steps_per_epoch
        net.train()
        micro, tick = 0, time.perf_counter()
        loss_sum, loss_count = 0.0, 0
        for batch in batches_of(epoch, done_in_epoch * accumulate):
            # dropout and drop-connect draw from here: the same at a step whatever came before
            torch.manual_seed(derive_seed(seed, rank, "step", result.step, micro) % 2**63)
            last_micro = micro == accumulate - 1
            sync = net.no_sync() if (world > 1 and not last_micro) else contextlib.nullcontext()
            with sync:
                loss, extras = loss_of(net, batch, autocast)
                scaler.scale(loss / accumulate).backward()
            micro += 1
            if not last_micro:
                continue
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            current_lr = scheduler.get_last_lr()[0]
            scheduler.step()
            result.step += 1
            micro = 0
            now = time.perf_counter()
            rate = items_per_batch * accumulate / max(now - tick, 1e-9)
            tick = now
            result.trained_items += items_per_batch * accumulate
            result.last_loss = mean_over_processes(loss, world)
            if not math.isfinite(result.last_loss):
                raise FloatingPointError(f"the loss became {result.last_loss} at step "
                                         f"{result.step}: lower the learning rate")
            loss_sum += result.last_loss
            loss_count += 1
            log.row(split="train", epoch=epoch + 1, step=result.step, loss=result.last_loss,
                    lr=current_lr, **{rate_name: rate}, **extras, seconds=now - started)
            bar.update(1)
            bar.set_postfix(loss=f"{result.last_loss:.4f}", rate=f"{rate:.1f}")
            if checkpoint_every and result.step % checkpoint_every == 0 and \
                    result.step % steps_per_epoch:
                checkpoint(f"step_{result.step}.pt", epoch)
            if result.step >= total_steps:
                break
        epoch_done = result.step % steps_per_epoch == 0
        if epoch_done and loss_count and done_in_epoch == 0:
            result.epoch_losses[epoch + 1] = loss_sum / loss_count
        if validate is not None and epoch_done:
            value = validate(epoch)
            if value is not None:
                result.last_val = value
            if value is not None and math.isfinite(value):
                result.val_losses[epoch + 1] = value
                log.row(split="val", epoch=epoch + 1, step=result.step, loss=value, lr="",
                        seconds=time.perf_counter() - started)
        checkpoint(f"epoch_{epoch + 1}.pt" if epoch_done else f"step_{result.step}.pt",
                   epoch + 1 if epoch_done else epoch)
    bar.close()
    result.seconds = time.perf_counter() - started
    return result
