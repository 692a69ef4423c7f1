#!/usr/bin/env python3
"""Extract a model's features of a dataset into the feature store, resumably.

Writes <features-dir>/<dataset>/<model>.npy (float32, memory-mappable) and <model>.json (image
ids in row order, model, transform, skipped images). An interrupted run resumes where it
stopped when started again with the same arguments.

Several processes, one per GPU or several CPU processes (gloo backend), each extract a share
and the first one merges them into one store:

    torchrun --nproc_per_node 2 scripts/extract_features.py --model efficientnet_lite0 \\
        --dataset bsds500

Examples
--------
python scripts/extract_features.py --model efficientnet_lite0 --dataset sample
python scripts/extract_features.py --model resnet50 --dataset bsds500 --download
python scripts/extract_features.py --model sscd_disc_mixup --weights sscd.torchscript.pt \\
    --dataset folder:/data/photos --store-name photos
"""

from __future__ import annotations

import argparse
import os
import re
import sys

import torch

from data_retrieval import load_dataset
from extractor import WeightsNotFoundError, extract_to_store, get_model, list_models
from extractor.store import default_features_dir
from helpers import (
    available_cpus,
    check_name,
    get_logger,
    parse_key_values,
    resolve_device,
    setup_logging,
)
from helpers.cli import fail, run_script

logger = get_logger("extract_features")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True,
                        help="model name; known: " + ", ".join(list_models()))
    parser.add_argument("--model-param", action="append", default=[], metavar="K=V",
                        help="model option, e.g. image_size=288 (repeatable)")
    parser.add_argument("--weights", default=None, help="local weights file instead of the "
                        "model's source")
    parser.add_argument("--download", action="store_true",
                        help="download missing weights (needs internet)")
    parser.add_argument("--dataset", required=True, help="dataset name or folder:<path>")
    parser.add_argument("--data-root", default=None,
                        help="folder holding the datasets (default: $DATASETS_DIR, else "
                             "Datasets/)")
    parser.add_argument("--subset", default=None, help="dataset subset, e.g. train")
    parser.add_argument("--limit", type=int, default=None, help="first N images only")
    parser.add_argument("--store-name", default=None,
                        help="store folder name, one plain name (default: the dataset name)")
    parser.add_argument("--features-dir", default=str(default_features_dir()),
                        help="feature store root (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=32, help="default: 32")
    parser.add_argument("--workers", type=int, default=None,
                        help="DataLoader workers per process (default: usable cores - 1)")
    parser.add_argument("--chunk-size", type=int, default=4096,
                        help="images per resumable chunk (default: 4096)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda (default: auto)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads per process (default: usable cores / "
                             "processes). Features are bit-identical for the same threads "
                             "per process; other counts change float rounding (~1e-6)")
    parser.add_argument("--overwrite", action="store_true", help="replace a finished store")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error("--batch-size must be >= 1")
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be >= 1")
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be >= 1")
    if args.workers is not None and args.workers < 0:
        parser.error(f"--workers must be >= 0, got {args.workers}")
    if args.chunk_size < 1:
        parser.error(f"--chunk-size must be >= 1, got {args.chunk_size}")
    return args


def distributed() -> tuple[int, int, int]:
    """(rank, world size, local rank), initialising torch.distributed under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, 0
    import torch.distributed as dist

    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend)
    return dist.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0"))


def check_model(model) -> None:
    """Run the model's preprocessing on one small image: a parameter that breaks it for every
    image (``image_size=-5``) fails now, not after a whole dataset of skipped images."""
    from PIL import Image

    try:
        model.transform(Image.new("RGB", (64, 48), "gray"))
    except Exception as exc:  # any failure here would repeat for every image
        raise ValueError(f"model {model.name}: its preprocessing fails on a 64x48 test image "
                         f"({type(exc).__name__}: {exc})") from exc


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    rank, world, local_rank = distributed()
    try:
        return _main(args, rank, world, local_rank)
    finally:
        if world > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


def _main(args: argparse.Namespace, rank: int, world: int, local_rank: int) -> int:
    barrier = None
    if world > 1:
        import torch.distributed as dist

        barrier = dist.barrier
    try:
        device = resolve_device(args.device)
        if device == "cuda" and world > 1:
            device = f"cuda:{local_rank}"
            torch.cuda.set_device(device)
        if args.threads is not None or (device == "cpu" and world > 1):
            # share the cores between the processes
            torch.set_num_threads(args.threads or max(1, available_cpus() // world))
        store = args.store_name or re.sub(r"[^A-Za-z0-9_.-]+", "_", args.dataset).strip("_.")
        check_name(store, "--store-name")
        dataset = load_dataset(args.dataset, args.data_root, subset=args.subset,
                               limit=args.limit)
        if not dataset.records:
            raise ValueError(f"dataset {args.dataset} has no readable image")
        for bad in dataset.bad:
            logger.warning("skipping %s", bad)
        params = parse_key_values(args.model_param, "--model-param")
        if barrier is not None and args.download and rank != 0:
            barrier()  # the first process downloads, the others wait for the file
        model = get_model(args.model, weights=args.weights, download=args.download and rank == 0,
                          device=device, **params)
        if barrier is not None and args.download and rank == 0:
            barrier()
        check_model(model)
        workers = args.workers if args.workers is not None else max(
            0, available_cpus() // world - 1)
        path = extract_to_store(
            model, dataset.records, store, root=args.features_dir, batch_size=args.batch_size,
            workers=workers, chunk_size=args.chunk_size, rank=rank, world_size=world,
            overwrite=args.overwrite, barrier=barrier,
            extra_meta={"command": " ".join([os.path.basename(sys.argv[0]), *sys.argv[1:]]),
                        "processes": world, "device": device,
                        "skipped_at_listing": [str(b) for b in dataset.bad]})
    except (ValueError, FileExistsError, FileNotFoundError, WeightsNotFoundError,
            ImportError) as exc:
        return fail(exc)
    if path is not None:
        print(f"wrote {path} and {path.with_suffix('.json').name}")
    return 0


if __name__ == "__main__":
    run_script(main, resume_hint="run the same command again to resume")
