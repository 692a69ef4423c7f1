#!/usr/bin/env python3
"""Fine-tune an encoder contrastively (SimCLR's NT-Xent, or SSCD's InfoNCE with its entropy
term) on a dataset, on one CPU or GPU, or under torchrun on many.

Writes Results/<name>/: checkpoints/epoch_<E>.pt after every epoch (and step_<S>.pt every
--checkpoint-every steps), log.csv (loss and learning rate per step, validation loss per
epoch), TensorBoard events when TensorBoard is installed, experiment.json. A killed run
continues with --resume (torchrun's elastic restarts resume by themselves). A checkpoint is a
model at once: extractor.get_model(MODEL, weights="Results/<name>/checkpoints/epoch_10.pt").

Defaults are the study's: LARS, learning rate 0.005 sqrt(global batch), weight decay 1e-6,
one warm-up epoch then cosine decay, NT-Xent at temperature 0.1, SimCLR's augmentations.

Examples
--------
python scripts/finetune.py --model efficientnet_lite0 --data bsds500 --subset train \\
    --views attacks --epochs 5 --batch-size 32 --name ft_lite0
torchrun --nproc_per_node 4 scripts/finetune.py --model simclr_v2_r50_1x_sk1 --data cartoons \\
    --device cuda --batch-size 128 --name ft_cartoons
python scripts/finetune.py --name ft_lite0 --resume ...   (the same flags as the first run)
"""

from __future__ import annotations

import argparse
import contextlib
import os
from pathlib import Path

from data_retrieval.roots import data_root
from finetuning import VIEW_KINDS, FinetuneConfig, train
from finetuning.losses import LOSSES, SSCD_ENTROPY_WEIGHT
from finetuning.model import INITS
from finetuning.optim import OPTIMIZER_BUILDERS
from helpers import (
    add_output_arguments,
    experiment_run,
    read_json,
    resolve_device,
    setup_logging,
)
from helpers.cli import (
    MAX_COUNT,
    MAX_SEED,
    error_message,
    fail,
    integer,
    real,
    run_script,
    script_main,
)
from helpers.distributed import distributed
from helpers.params import parse_key_values

SCRIPT = "finetune"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    _model_and_data_arguments(parser)
    _training_arguments(parser)
    add_output_arguments(parser, "Results/<name> (default: ft_<model>)", resume=True,
                         resume_help="continue the run in the folder from its newest "
                                     "checkpoint")
    return parser.parse_args(argv)


def _model_and_data_arguments(parser: argparse.ArgumentParser) -> None:
    model = parser.add_argument_group("model")
    model.add_argument("--model", default="efficientnet_lite0",
                       help="a torch model of the extractor registry (default: "
                            "efficientnet_lite0)")
    model.add_argument("--weights", default=None,
                       help="start from this file (converted SimCLR file, state dict, or a "
                            "fine-tuning checkpoint) instead of the registry's weights")
    model.add_argument("--init", default="pretrained", choices=INITS,
                       help="random: an untrained SimCLR ResNet (default: pretrained)")
    model.add_argument("--model-param", action="append", default=[], metavar="K=V",
                       help="registry parameter, e.g. image_size=160 (repeatable)")
    model.add_argument("--head-layers", type=integer(0, 16), default=3,
                       help="projection head layers when the model has none (SimCLR v2: 3; 0 "
                            "trains the features directly)")
    model.add_argument("--head-dim", type=integer(1, 65_536), default=128,
                       help="head output (default: 128)")
    model.add_argument("--new-head", action="store_true",
                       help="a new head even when the checkpoint has one (SimCLR)")
    data = parser.add_argument_group("data")
    data.add_argument("--data", default="sample",
                      help="dataset name, folder:<path>, a folder or a manifest CSV")
    data.add_argument("--subset", default=None, help="dataset subset, e.g. train")
    data.add_argument("--data-root", default=None, help="datasets folder (default: "
                                                        "$DATASETS_DIR or Datasets/)")
    data.add_argument("--val-data", default=None,
                      help="validation images (default: --val-fraction of --data)")
    data.add_argument("--val-subset", default=None, help="subset of --val-data, e.g. val")
    data.add_argument("--val-fraction", type=real(0, 1), default=0.1,
                      help="originals held out for the validation loss (default: 0.1)")


def _training_arguments(parser: argparse.ArgumentParser) -> None:
    views = parser.add_argument_group("views")
    views.add_argument("--views", default="simclr", choices=VIEW_KINDS,
                       help="simclr: SimCLR's augmentations; attacks: the attack generator's "
                            "edits then the model's transform; mixed: half of each")
    views.add_argument("--attacks", nargs="+", default=None, metavar="ATTACK_ID",
                       help="attack ids for attack views (default: the study's 58)")
    views.add_argument("--attack-prob", type=real(0, 1), default=None,
                       help="probability a view is an attack (overrides --views' 0, 1, 0.5)")
    views.add_argument("--color-strength", type=real(0, 10), default=1.0,
                       help="SimCLR colour jitter strength (default: 1.0)")
    views.add_argument("--min-scale", type=real(0, 1, low_open=True), default=0.08,
                       help="smallest crop area of the random resized crop (default: 0.08)")
    views.add_argument("--no-blur", action="store_true", help="no Gaussian blur")
    objective = parser.add_argument_group("objective and optimiser")
    objective.add_argument("--loss", default="nt_xent", choices=LOSSES.names(),
                           help="nt_xent (SimCLR) or sscd (InfoNCE + entropy)")
    objective.add_argument("--temperature", type=real(0, 100, low_open=True), default=None,
                           help="default: 0.1 for nt_xent, 0.05 for sscd")
    objective.add_argument("--entropy-weight", type=real(0, 1e6), default=SSCD_ENTROPY_WEIGHT,
                           help="sscd's entropy weight (default: 10)")
    objective.add_argument("--optimizer", default="lars", choices=OPTIMIZER_BUILDERS.names(),
                           help="optimiser (default: %(default)s)")
    objective.add_argument("--lr", type=real(0, 10, low_open=True), default=None,
                           help="peak learning rate (default: --lr-base x sqrt(global batch))")
    objective.add_argument("--lr-base", type=real(0, 10, low_open=True), default=0.005,
                           help="of the square-root rule (default: 0.005)")
    objective.add_argument("--weight-decay", type=real(0, 1), default=1e-6,
                           help="weight decay (default: %(default)s)")
    objective.add_argument("--momentum", type=real(0, 1), default=0.9, help="LARS and SGD")
    objective.add_argument("--trust-coefficient", type=real(0, 1, low_open=True), default=0.001,
                           help="LARS")
    run = parser.add_argument_group("run")
    run.add_argument("--epochs", type=integer(1, 100_000), default=10,
                     help="training epochs (default: %(default)s)")
    run.add_argument("--warmup-epochs", type=real(0, 100_000), default=1.0,
                     help="epochs of linear learning-rate warm-up (default: %(default)s)")
    run.add_argument("--batch-size", type=integer(2, 65_536), default=64,
                     help="per process (default: 64)")
    run.add_argument("--accumulate", type=integer(1, 65_536), default=1,
                     help="micro-batches per optimiser step (negatives stay within one)")
    run.add_argument("--max-steps", type=integer(1, MAX_COUNT), default=None,
                     help="stop the schedule after this many optimiser steps")
    run.add_argument("--seed", type=integer(0, MAX_SEED), default=0,
                     help="seed of views, sampling and initialisation (default: %(default)s)")
    run.add_argument("--device", default="auto", help="auto, cpu, cuda")
    run.add_argument("--workers", type=integer(0, 1024), default=2,
                     help="DataLoader workers per process")
    run.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
    run.add_argument("--checkpoint-every", type=integer(0, MAX_COUNT), default=0,
                     help="also checkpoint every N optimiser steps (the newest kept)")


def config_from(args: argparse.Namespace) -> FinetuneConfig:
    return FinetuneConfig(
        model=args.model, weights=args.weights, init=args.init,
        model_params=parse_key_values(args.model_param, "--model-param"), data=args.data,
        subset=args.subset, data_root=args.data_root, val_data=args.val_data,
        val_subset=args.val_subset, val_fraction=args.val_fraction, views=args.views,
        attacks=args.attacks,
        attack_prob=args.attack_prob, color_strength=args.color_strength,
        min_scale=args.min_scale, blur=not args.no_blur, head_layers=args.head_layers,
        head_dim=args.head_dim, reuse_head=not args.new_head, loss=args.loss,
        temperature=args.temperature, entropy_weight=args.entropy_weight,
        optimizer=args.optimizer, lr=args.lr, lr_base=args.lr_base,
        weight_decay=args.weight_decay, momentum=args.momentum,
        trust_coefficient=args.trust_coefficient, epochs=args.epochs,
        warmup_epochs=args.warmup_epochs, batch_size=args.batch_size,
        accumulate=args.accumulate, max_steps=args.max_steps, seed=args.seed,
        device=args.device, workers=args.workers, amp=not args.no_amp,
        checkpoint_every=args.checkpoint_every)


def _same_run(output: Path, config: FinetuneConfig) -> None:
    """A resumed run must have the first run's settings (else its checkpoints mean nothing)."""
    record = output / "experiment.json"
    if not record.is_file():
        return
    before = read_json(record).get("config", {}).get("finetune", {})
    now = config.record()
    changed = sorted(k for k in now if k not in ("device", "workers") and
                     k in before and before[k] != now[k])
    if changed:
        raise ValueError(f"{output} was trained with other settings "
                         f"({', '.join(f'{k}: {before[k]!r} -> {now[k]!r}' for k in changed)})"
                         ": resume with the first run's flags, or choose another --name")


@script_main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    config = config_from(args)
    config.check()
    resolve_device(config.device)  # an unknown device, or CUDA without a GPU, fails here
    # torchrun's elastic restart: every worker continues from the newest checkpoint
    args.resume = args.resume or int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0
    with distributed(config.device) as process, contextlib.ExitStack() as stack:
        # the main process claims the folder; every process learns whether it could, and where
        refused, folder, run = None, None, None
        if process.is_main:
            try:  # not left to script_main: the other processes must hear of a refusal
                run = stack.enter_context(experiment_run(
                    args, SCRIPT, name=f"ft_{args.model}",
                    inputs=[] if args.data.startswith("folder:") else [
                        data_root(args.data_root)]))
                if args.resume:
                    _same_run(run.folder, config)
                run.record({"finetune": config.record(), "world_size": process.world_size})
                folder = str(run.folder)
            except (ValueError, OSError) as exc:
                refused = error_message(exc)
        if process.world_size > 1:
            import torch.distributed as dist

            box = [refused, folder]
            dist.broadcast_object_list(box, src=0)
            refused, folder = box
        if refused is not None:
            return fail(refused)
        output = Path(folder)
        try:
            summary = train(config, output, resume=args.resume, process=process)
        except (ImportError, FloatingPointError) as exc:  # a missing extra, a diverged loss
            raise ValueError(str(exc)) from exc
        if run is not None:
            run.finish(result=summary)
            rate = summary["images_per_s"]

            def loss(value: float | None) -> str:
                return "-" if value is None else f"{value:.4f}"

            print(f"{summary['steps']} steps (global batch {summary['global_batch']}, lr "
                  f"{summary['lr']:.4g}): train loss {loss(summary['train_loss'])}, "
                  f"validation loss {loss(summary['val_loss'])}"
                  + (f", {rate:.1f} images/s" if rate else "") + f" -> {output}")
    return 0


if __name__ == "__main__":
    run_script(main, resume_hint="run it again with --resume")
