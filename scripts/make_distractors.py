#!/usr/bin/env python3
"""Make distractors for search experiments: many seeded views of real photos (random crops of
10-40% of the area at random aspect ratios, 2x2 mosaics, flips, colour changes), described on
the fly by a model or a hash into a feature store, without writing any image. Resumable: an
interrupted run continues from its last finished chunk when started again with the same
arguments.

Make views of photos that are not your experiment's originals (a view of an original is a
partial copy of it): e.g. imagenet_samples views as distractors beside bsds500 originals.

Examples
--------
python scripts/make_distractors.py --photos imagenet_samples --count 100000 \\
    --method sscd_distilled --store-name views100k
python scripts/make_distractors.py --photos folder:/data/photos --count 10000 --method dhash
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from data_retrieval import load_images
from data_retrieval.cli import add_data_root_argument
from extractor.store import default_features_dir, store_paths
from fast_search.distractors import DEFAULT_RECIPE, distractor_views
from helpers import (
    FolderLock,
    atomic_write,
    check_name,
    get_logger,
    parse_key_values,
    progress,
    setup_logging,
)
from helpers.cli import fail, run_script
from helpers.outputs import check_output_dir

logger = get_logger("make_distractors")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", required=True,
                        help="dataset name, folder:<path>, a folder or a manifest .csv of the "
                             "real photos the views are made from")
    add_data_root_argument(parser)
    parser.add_argument("--count", type=int, required=True, help="number of views")
    parser.add_argument("--seed", type=int, default=0, help="views seed (default: 0)")
    parser.add_argument("--view", action="append", default=[], metavar="K=V",
                        help="view recipe option, repeatable; defaults: " + ", ".join(
                            f"{k}={v}" for k, v in DEFAULT_RECIPE.items()))
    parser.add_argument("--method", required=True,
                        help="a model (efficientnet_lite0, sscd_distilled...) or a hash "
                             "spec (dhash, phash:hash_size=16)")
    parser.add_argument("--weights", default=None, help="model weights file")
    parser.add_argument("--store-name", default=None,
                        help="store folder (default: views<count>_<photos>)")
    parser.add_argument("--features-dir", default=str(default_features_dir()),
                        help="feature store root (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=32, help="default: 32")
    parser.add_argument("--workers", type=int, default=None,
                        help="DataLoader workers for models (default: usable cores - 1)")
    parser.add_argument("--chunk-size", type=int, default=4096,
                        help="views per resumable chunk (default: 4096)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda (default: auto)")
    parser.add_argument("--overwrite", action="store_true", help="replace a finished store")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    for flag in ("count", "batch_size", "chunk_size"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be >= 1")
    return args


def _is_model(method: str) -> bool:
    from extractor import list_models

    return method.partition(":")[0] in list_models()


def describe_hash_chunks(views, method, store: str, root: Path, chunk_size: int,
                         batch_size: int, overwrite: bool, meta: dict) -> Path:
    """Hash the views chunk by chunk into ``<method>.partial/`` (resumable), then store them."""
    from hashing import describe, parse_algorithm, save_descriptors
    from helpers.descriptors import BinaryCodes

    algorithm = parse_algorithm(method)
    sample = algorithm.describe([Image.new("RGB", (64, 48), "gray")])
    if not isinstance(sample, BinaryCodes):
        raise ValueError(f"{method} makes {type(sample).__name__}, which a store cannot hold; "
                         "give a model or a single-code hash")
    npy, sidecar = store_paths(store, algorithm.label, root)
    if sidecar.exists() and not overwrite:
        raise FileExistsError(f"feature store {npy} exists; pass --overwrite to replace it")
    partial = npy.with_suffix(".partial")
    check_plan(partial, meta["distractor_views"], overwrite)
    parts = []
    with FolderLock(partial):
        bar = progress(total=len(views), desc=f"{algorithm.label} views", unit="view")
        for start in range(0, len(views), chunk_size):
            chunk = views[start:start + chunk_size]
            path = partial / f"chunk_{start:09d}_{start + len(chunk):09d}.npz"
            if not path.exists():
                codes = describe(chunk, algorithm, batch_size=batch_size, show_progress=False)
                with atomic_write(path, "wb") as handle:
                    np.savez(handle, packed=codes.packed, ids=np.array(codes.ids, dtype=str),
                             n_bits=codes.n_bits)
            with np.load(path) as data:
                parts.append(BinaryCodes(data["packed"], int(data["n_bits"]),
                                         ids=tuple(data["ids"].tolist())))
            bar.update(len(chunk))
        bar.close()
    codes = BinaryCodes.concat(parts)
    by_id = {v.record.image_id: v.record for v in views}
    codes = codes.with_identity(records=tuple(by_id[i] for i in codes.ids),
                                method=algorithm.label)
    out = save_descriptors(codes, store, root=root, overwrite=overwrite)
    _add_meta(sidecar, meta)
    shutil.rmtree(partial, ignore_errors=True)
    return out


def check_plan(partial: Path, plan: dict, overwrite: bool) -> None:
    """Resume only the same views: an unfinished store of other photos, count, seed or recipe
    is refused (or, with --overwrite, started again)."""
    from helpers import read_json, write_json

    plan_file = partial / "views.json"
    if plan_file.exists() and read_json(plan_file) != plan:
        if not overwrite:
            raise ValueError(f"{partial} holds unfinished views of other settings "
                             f"({read_json(plan_file)}); run those settings again to finish "
                             "them, or pass --overwrite to start again")
        shutil.rmtree(partial)
    partial.mkdir(parents=True, exist_ok=True)
    if not plan_file.exists():
        write_json(plan_file, plan)


def _add_meta(sidecar: Path, meta: dict) -> None:
    from helpers import read_json, write_json

    write_json(sidecar, {**read_json(sidecar), **meta})


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    try:
        recipe = parse_key_values(args.view, "--view")
        check_output_dir(args.features_dir)
        photos = load_images(args.photos, args.data_root)
        if not photos.records:
            raise ValueError(f"{args.photos} has no readable photo")
        views = distractor_views(photos.records, args.count, args.seed, **recipe)
        name = "".join(c if c.isalnum() or c in "_.-" else "_"
                       for c in Path(args.photos.split(":")[-1]).name) or "photos"
        store = args.store_name or f"views{args.count}_{name}"
        check_name(store, "store name")
        meta = {"distractor_views": {
            "photos": args.photos, "photo_count": len(photos.records), "count": args.count,
            "seed": args.seed, "recipe": {**DEFAULT_RECIPE, **recipe}},
            "command": " ".join([os.path.basename(sys.argv[0]), *sys.argv[1:]])}
        root = Path(args.features_dir)
        if _is_model(args.method):
            from extractor import extract_to_store, get_model
            from helpers import available_cpus

            model_name, _, text = args.method.partition(":")
            params = parse_key_values(text.split(",") if text else [], "--method")
            model = get_model(model_name, weights=args.weights, device=args.device, **params)
            npy, sidecar = store_paths(store, model.name, root)
            if not (sidecar.exists() and not args.overwrite):  # extract_to_store refuses it
                check_plan(npy.with_suffix(".partial"), meta["distractor_views"],
                           args.overwrite)
            workers = args.workers if args.workers is not None else max(0, available_cpus() - 1)
            path = extract_to_store(model, views, store, root=root, batch_size=args.batch_size,
                                    workers=workers, chunk_size=args.chunk_size,
                                    overwrite=args.overwrite, extra_meta=meta)
        else:
            path = describe_hash_chunks(views, args.method, store, root, args.chunk_size,
                                        args.batch_size, args.overwrite, meta)
    except (ValueError, FileExistsError, FileNotFoundError, ImportError, OSError) as exc:
        return fail(exc)
    print(f"wrote {path} ({args.count} views of {len(photos.records)} photos)")
    return 0


if __name__ == "__main__":
    run_script(main, resume_hint="run the same command again to resume")
