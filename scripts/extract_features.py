#!/usr/bin/env python3
"""Extract a model's features of a dataset into the feature store, resumably.

Writes <features-dir>/<dataset>/<model>.npy (float32, memory-mappable), <model>.records.csv
(image_id, path, source_id, attack_id, group of every row) and <model>.json (ids in row order,
model, transform, skipped images). <model> is the model's identity: its name, its non-default
parameters and its weights file (efficientnet_lite0_image_size=288). An interrupted run resumes
where it stopped when started again with the same arguments.

With --attacks (or --attack-config), the store holds attacked copies made on the fly, each with
its source: the queries of a copy-detection experiment, without writing any image.

Several processes, one per GPU or several CPU processes (gloo backend), each extract a share
and the first one merges them into one store:

    torchrun --nproc_per_node 2 scripts/extract_features.py --model efficientnet_lite0 \\
        --dataset bsds500

Examples
--------
python scripts/extract_features.py --model efficientnet_lite0 --dataset sample
python scripts/extract_features.py --model efficientnet_lite0 --dataset sample \
    --attacks jpg_compression:10,50 rotation        # attacked queries with their source
python scripts/extract_features.py --model efficientnet_lite0 --dataset attacks/manifest.csv
python scripts/extract_features.py --model resnet50 --dataset bsds500 --download
python scripts/extract_features.py --model sscd_disc_mixup --weights sscd.torchscript.pt \\
    --dataset folder:/data/photos --store-name photos
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
from pathlib import Path

import torch

from data_retrieval import load_dataset, load_images
from data_retrieval.cli import add_data_root_argument
from extractor import extract_to_store, get_model, list_models
from extractor.store import default_features_dir
from generator import attacked_images
from generator.cli import add_attack_arguments, attacks_from_args
from helpers import (
    Distributed,
    add_store_arguments,
    available_cpus,
    check_name,
    distributed,
    get_logger,
    parse_key_values,
    setup_logging,
)
from helpers.cli import MAX_COUNT, fail, integer, run_script, script_main
from helpers.outputs import check_output_dir
from helpers.runs import folder_type

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
    parser.add_argument("--dataset", required=True,
                        help="dataset name, folder:<path>, a folder, or a manifest .csv (its "
                             "source_id, attack_id and group go into the store's records)")
    add_data_root_argument(parser)
    parser.add_argument("--subset", default=None, help="dataset subset, e.g. train")
    parser.add_argument("--limit", type=integer(1, MAX_COUNT), default=None,
                        help="first N images only")
    parser.add_argument("--store-name", default=None,
                        help="store folder name, one plain name (default: the dataset name, "
                             "with _<subset> and _first<N> for --subset and --limit; an empty "
                             "name is refused, not taken for the default)")
    parser.add_argument("--features-dir", type=folder_type, default=str(default_features_dir()),
                        help="feature store root (default: %(default)s)")
    parser.add_argument("--batch-size", type=integer(1, 65_536), default=32, help="default: 32")
    parser.add_argument("--workers", type=integer(0, 1024), default=None,
                        help="DataLoader workers per process (default: usable cores - 1; 0: "
                             "none, in the main process)")
    parser.add_argument("--chunk-size", type=integer(1, 1_000_000), default=4096,
                        help="images per resumable chunk, held in memory (default: 4096)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda (default: auto)")
    parser.add_argument("--threads", type=integer(1, 4096), default=None,
                        help="torch CPU threads per process (default: usable cores / "
                             "processes). Features are bit-identical for the same threads "
                             "per process; other counts change float rounding (~1e-6)")
    add_store_arguments(parser)
    add_attack_arguments(parser, "attacked queries made on the fly, stored with their source "
                                 "(none by default: the images themselves)")
    return parser.parse_args(argv)


def check_model(model) -> None:
    """Run the model's preprocessing on one small image: a parameter that breaks it for every
    image (``image_size=-5``) fails now, not after a whole dataset of skipped images."""
    from PIL import Image

    try:
        model.transform(Image.new("RGB", (64, 48), "gray"))
    except Exception as exc:  # any failure here would repeat for every image
        raise ValueError(f"model {model.name}: its preprocessing fails on a 64x48 test image "
                         f"({type(exc).__name__}: {exc})") from exc


def images_to_describe(args: argparse.Namespace) -> tuple[list, str, dict]:
    """The items to extract (records, or attacked images made on the fly), the default store
    name, and what the sidecar should say about them."""
    spec = args.dataset
    if spec.endswith(".csv") or Path(spec).is_dir():
        dataset = load_images(spec, args.data_root)
        if args.limit is not None:
            dataset.records = dataset.records[:args.limit]
    else:
        dataset = load_dataset(spec, args.data_root, subset=args.subset, limit=args.limit)
    if not dataset.records:
        raise ValueError(f"dataset {spec} has no readable image")
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(spec).stem if spec.endswith(".csv")
                  else spec).strip("_.") or "images"
    # a part of a dataset is named as such: a 40-image store is never "bsds500"
    name += (f"_{args.subset}" if args.subset else "") + (
        f"_first{args.limit}" if args.limit is not None else "")
    meta = {"skipped_at_listing": [str(b) for b in dataset.bad]}
    if not (args.attacks or args.attack_config):
        return dataset.records, name, meta
    attacks, seed, _ = attacks_from_args(args)
    ids = " ".join(a.id for a in attacks)
    # one store per attack list and seed: another list never resumes or overwrites this one
    tag = hashlib.sha256(f"{seed} {ids}".encode()).hexdigest()[:8]
    meta.update({"attacks": [a.id for a in attacks], "seed": seed})
    return attacked_images(dataset.records, attacks, seed), f"{name}_attacked-{tag}", meta


@script_main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    # the store's name is checked before any work: '' is refused, never the default
    if args.store_name is not None:
        check_name(args.store_name, "--store-name")
    with distributed(args.device) as dist:
        return _main(args, dist)


def _main(args: argparse.Namespace, dist: Distributed) -> int:
    if args.threads is not None or (dist.device == "cpu" and dist.world_size > 1):
        # share the cores between the processes
        torch.set_num_threads(args.threads or max(1, available_cpus() // dist.world_size))
    check_output_dir(args.features_dir)
    items, default_store, meta = images_to_describe(args)
    store = default_store if args.store_name is None else args.store_name
    check_name(store, "store name")
    params = parse_key_values(args.model_param, "--model-param")
    if dist.barrier is not None and args.download and not dist.is_main:
        dist.barrier()  # the first process downloads, the others wait for the file
    try:
        model = get_model(args.model, weights=args.weights,
                          download=args.download and dist.is_main, device=dist.device, **params)
    except ImportError as exc:  # a model's optional package is not installed
        return fail(exc)
    if dist.barrier is not None and args.download and dist.is_main:
        dist.barrier()
    check_model(model)
    workers = args.workers if args.workers is not None else max(
        0, available_cpus() // dist.world_size - 1)
    path = extract_to_store(
        model, items, store, root=args.features_dir, batch_size=args.batch_size,
        workers=workers, chunk_size=args.chunk_size, rank=dist.rank,
        world_size=dist.world_size, overwrite=args.overwrite, barrier=dist.barrier,
        extra_meta={"command": " ".join([os.path.basename(sys.argv[0]), *sys.argv[1:]]),
                    "processes": dist.world_size, "device": dist.device, **meta})
    if path is not None:
        print(f"wrote {path}, {path.with_suffix('.json').name} and "
              f"{path.stem}.records.csv ({model.name})")
    return 0


if __name__ == "__main__":
    run_script(main, resume_hint="run the same command again to resume")
