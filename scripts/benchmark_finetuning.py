#!/usr/bin/env python3
"""Fine-tuning throughput: our training loop against a bare torch loop, in the same run.

Ours (finetuning.train): images decoded from disk, two views made per image in DataLoader
workers, forward of both views, loss, backward, optimiser and schedule steps, logging. The bare
loop runs the same model (encoder + projection head), loss and optimiser on one ready tensor of
the same shape, nothing else. Both are timed per optimiser step after a warm-up; the medians of
images (pairs of views) per second are compared. The issue's target: ours >= 85% of the bare
loop's.

Writes Results/benchmarks/finetuning.json (--output; a result of this script is replaced with
--overwrite, never another file).

Examples
--------
python scripts/benchmark_finetuning.py --data bsds500 --subset train --batch-size 32
python scripts/benchmark_finetuning.py --data sample --batch-size 4 --image-size 64 --steps 4
"""

from __future__ import annotations

import argparse
import csv
import math
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from finetuning import FinetuneConfig, input_spec, load_encoder, make_head, make_loss, train
from finetuning.model import Trainable
from finetuning.optim import build_optimizer
from helpers import add_output_file_arguments, result_file, setup_logging
from helpers.cli import integer, run_script, script_main

TARGET = 0.85
SCRIPT = "benchmark_finetuning"
OUTPUT = "benchmarks/finetuning.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="efficientnet_lite0",
                        help="extractor model to fine-tune (default: %(default)s)")
    parser.add_argument("--image-size", type=integer(32, 4096), default=None,
                        help="the model's image_size parameter (default: the model's own)")
    parser.add_argument("--data", default="bsds500",
                        help="training photos (a dataset name or folder:<path>) (default: "
                             "%(default)s)")
    parser.add_argument("--subset", default="train", help="dataset subset ('none': the whole)")
    parser.add_argument("--data-root", default=None,
                        help="datasets folder (default: $DATASETS_DIR or Datasets/)")
    parser.add_argument("--views", default="simclr", choices=["simclr", "attacks", "mixed"],
                        help="view kind: simclr augmentations, attacks, or mixed (default: "
                             "%(default)s)")
    parser.add_argument("--batch-size", type=integer(2, 65_536), default=32,
                        help="a contrastive batch needs 2 images or more (default: 32)")
    parser.add_argument("--steps", type=integer(1, 100_000), default=8,
                        help="timed optimiser steps")
    parser.add_argument("--warmup", type=integer(0, 100_000), default=2, help="untimed steps first")
    parser.add_argument("--workers", type=integer(0, 1024), nargs="+", default=[0, 2],
                        help="DataLoader worker counts to time our loop with (default: 0 2; "
                             "on a 2-core CPU, workers compete with the model for the cores)")
    parser.add_argument("--optimizer", default="lars",
                        help="optimiser (a name of finetuning.optim.OPTIMIZER_BUILDERS) (default: "
                             "%(default)s)")
    parser.add_argument("--device", default="cpu",
                        help="auto, cpu or cuda (default: %(default)s)")
    add_output_file_arguments(parser, OUTPUT, log_level="WARNING")
    return parser.parse_args(argv)


def _model_params(args: argparse.Namespace) -> dict[str, Any]:
    return {} if args.image_size is None else {"image_size": args.image_size}


def bare_loop(args: argparse.Namespace) -> dict[str, Any]:
    """The same model, loss and optimiser on one ready batch; per-step seconds."""
    encoder = load_encoder(args.model, **_model_params(args))
    model = Trainable(encoder.module, make_head(encoder)).to(args.device).train()
    optimizer = build_optimizer([model], args.optimizer, lr=0.005 * math.sqrt(args.batch_size))
    loss_fn = make_loss("nt_xent")
    size = input_spec(encoder.transform).size
    x = torch.randn(2 * args.batch_size, 3, size, size, device=args.device)
    seconds = []
    for _ in range(args.warmup + args.steps):
        tic = time.perf_counter()
        z = model(x)
        loss = loss_fn(*z.float().chunk(2))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - tic)
    timed = seconds[args.warmup:]
    return {"seconds_per_step": timed, "images_per_s": args.batch_size / statistics.median(timed),
            "input": [2 * args.batch_size, 3, size, size]}


def our_loop(args: argparse.Namespace, workers: int) -> dict[str, Any]:
    """finetuning.train from the image files; per-step images/s from its log."""
    config = FinetuneConfig(model=args.model, model_params=_model_params(args), data=args.data,
                            subset=None if args.subset in ("", "none") else args.subset,
                            data_root=args.data_root, val_fraction=0.0,
                            views=args.views, optimizer=args.optimizer,
                            batch_size=args.batch_size, epochs=10_000,
                            max_steps=args.warmup + args.steps, workers=workers,
                            device=args.device, warmup_epochs=0)
    with tempfile.TemporaryDirectory() as folder:
        result = train(config, folder, show_progress=False)
        with open(Path(folder) / "log.csv", newline="") as handle:
            rows = [r for r in csv.DictReader(handle) if r["split"] == "train"]
    rates = [float(r["images_per_s"]) for r in rows][args.warmup:]
    return {"images_per_s_per_step": rates, "images_per_s": statistics.median(rates),
            "steps_per_epoch": result["steps_per_epoch"], "train_images": result["train_images"],
            "views": result["views"]["attack_prob"]}


@script_main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    torch.manual_seed(0)
    with result_file(args, SCRIPT, OUTPUT) as output:
        # the bare loop before and after ours: its steps pooled, so that a slower stretch of
        # the machine does not favour either side
        first = bare_loop(args)
        ours = {str(w): our_loop(args, w) for w in args.workers}
        second = bare_loop(args)
        steps = first["seconds_per_step"] + second["seconds_per_step"]
        bare = {**first, "seconds_per_step": steps,
                "images_per_s": args.batch_size / statistics.median(steps)}
        ratios = {w: run["images_per_s"] / bare["images_per_s"] for w, run in ours.items()}
        output.write({"machine": {"platform": platform.platform(),
                                  "processor": platform.processor(),
                                  "torch_threads": torch.get_num_threads(),
                                  "device": args.device},
                      "ours": ours, "bare": bare, "ratio": ratios, "target": TARGET,
                      "target_met": {w: r >= TARGET for w, r in ratios.items()}})
    for w, run in ours.items():
        print(f"ours ({w} workers) {run['images_per_s']:.2f} images/s, bare loop "
              f"{bare['images_per_s']:.2f} images/s: {ratios[w]:.1%} (target {TARGET:.0%})")
    print(f"-> {output.path}")
    return 0


if __name__ == "__main__":
    run_script(main)
