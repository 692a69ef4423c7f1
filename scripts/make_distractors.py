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
import json
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
    OutputError,
    add_store_arguments,
    atomic_write,
    check_name,
    get_logger,
    parse_key_values,
    printable,
    progress,
    read_json,
    setup_logging,
)
from helpers.cli import MAX_SEED, fail, integer, run_script, script_main
from helpers.outputs import check_output_dir
from helpers.runs import folder_type

logger = get_logger("make_distractors")
#: Views of one run: each is held in memory as a small object (about 1 kB) before described.
MAX_VIEWS = 10_000_000


def store_name_type(text: str) -> str:
    """``--store-name``: one plain name (an empty one is refused, not taken for the default)."""
    try:
        return check_name(text, "--store-name")
    except OutputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", required=True,
                        help="dataset name, folder:<path>, a folder or a manifest .csv of the "
                             "real photos the views are made from")
    add_data_root_argument(parser)
    parser.add_argument("--count", type=integer(1, MAX_VIEWS), required=True,
                        help=f"number of views (at most {MAX_VIEWS:,})")
    parser.add_argument("--seed", type=integer(0, MAX_SEED), default=0,
                        help="views seed (default: 0)")
    parser.add_argument("--view", action="append", default=[], metavar="K=V",
                        help="view recipe option, repeatable; defaults: " + ", ".join(
                            f"{k}={v}" for k, v in DEFAULT_RECIPE.items()))
    parser.add_argument("--method", required=True,
                        help="a model (efficientnet_lite0, sscd_distilled...) or a hash "
                             "spec (dhash, phash:hash_size=16)")
    parser.add_argument("--weights", default=None, help="model weights file")
    parser.add_argument("--store-name", type=store_name_type, default=None,
                        help="store folder (default: views<count>_<photos>)")
    parser.add_argument("--features-dir", type=folder_type, default=str(default_features_dir()),
                        help="feature store root the store is written into (default: "
                             "%(default)s)")
    parser.add_argument("--batch-size", type=integer(1, 65_536), default=32, help="default: 32")
    parser.add_argument("--workers", type=integer(0, 1024), default=None,
                        help="DataLoader workers for models (default: usable cores - 1)")
    parser.add_argument("--chunk-size", type=integer(1, 1_000_000), default=4096,
                        help="views per resumable chunk (default: 4096)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda (default: auto)")
    add_store_arguments(parser)
    return parser.parse_args(argv)


def _is_model(method: str) -> bool:
    from extractor import list_models

    return method.partition(":")[0] in list_models()


def describe_hash_chunks(views, method, store: str, root: Path, chunk_size: int,
                         batch_size: int, overwrite: bool, meta: dict) -> Path:
    """Hash the views chunk by chunk into ``<method>.partial/`` (resumable), then store them."""
    from hashing import parse_algorithm
    from helpers.descriptors import BinaryCodes

    algorithm = parse_algorithm(method)
    sample = algorithm.describe([Image.new("RGB", (64, 48), "gray")])
    if not isinstance(sample, BinaryCodes):
        raise ValueError(f"{method} makes {type(sample).__name__}, which a store cannot hold; "
                         "give a model or a single-code hash")
    npy, sidecar = store_paths(store, algorithm.label, root)
    npy.parent.mkdir(parents=True, exist_ok=True)
    with FolderLock(npy.parent, f".{algorithm.label}.lock"):  # the store's lock, held to the end
        return _hash_chunks(views, algorithm, store, root, chunk_size, batch_size, overwrite,
                            meta, npy, sidecar)


def _hash_chunks(views, algorithm, store: str, root: Path, chunk_size: int, batch_size: int,
                 overwrite: bool, meta: dict, npy: Path, sidecar: Path) -> Path:
    from hashing import describe, save_descriptors
    from helpers.descriptors import BinaryCodes

    if sidecar.exists() and not overwrite:
        raise FileExistsError(f"feature store {npy} exists; pass --overwrite to replace it")
    partial = npy.with_suffix(".partial")
    check_plan(partial, meta["distractor_views"], overwrite)
    parts, skipped = [], []
    bar = progress(total=len(views), desc=f"{algorithm.label} views", unit="view")
    for start in range(0, len(views), chunk_size):
        chunk = views[start:start + chunk_size]
        path = partial / f"chunk_{start:09d}_{start + len(chunk):09d}.npz"
        if not path.exists():
            codes = describe(chunk, algorithm, batch_size=batch_size, show_progress=False)
            bad = np.array([json.dumps(list(b)) for b in codes.bad or ()], dtype=str)
            with atomic_write(path, "wb") as handle:
                np.savez(handle, packed=codes.packed, ids=np.array(codes.ids, dtype=str),
                         n_bits=codes.n_bits, bad=bad)
        with np.load(path) as data:
            parts.append(BinaryCodes(data["packed"], int(data["n_bits"]),
                                     ids=tuple(data["ids"].tolist())))
            if "bad" in data.files:  # chunks of an older run kept no skipped views
                skipped += [json.loads(b) for b in data["bad"].tolist()]
        bar.update(len(chunk))
    bar.close()
    codes = BinaryCodes.concat(parts)
    by_id = {v.record.image_id: v.record for v in views}
    codes = codes.with_identity(records=tuple(by_id[i] for i in codes.ids),
                                method=algorithm.label)
    out = save_descriptors(codes, store, root=root, overwrite=overwrite)
    _add_meta(sidecar, {**meta, "bad": [{"id": b[0], "path": b[1], "reason": b[2]}
                                        for b in skipped]})
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


def stored_views(path: Path, count: int, photos: int) -> str:
    """What the finished store holds, in words, read from the store itself: the views stored
    and those skipped (made from a photo that cannot be read)."""
    stored = len(np.load(path, mmap_mode="r"))
    if stored == count:
        return f"{stored} views of {photos} photos"
    try:
        bad = read_json(path.with_suffix(".json")).get("bad", [])
    except (OSError, ValueError):
        bad = []
    unreadable = sorted({printable(str(b.get("path") or "")) for b in bad
                         if isinstance(b, dict)} - {""})
    which = (f", made from {len(unreadable)} photo(s) that cannot be read: "
             f"{', '.join(unreadable[:3])}{' ...' if len(unreadable) > 3 else ''}"
             if unreadable else "")
    return (f"{stored} of the {count} views of {photos} photos stored, {count - stored} "
            f"skipped{which}")


@script_main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    recipe = parse_key_values(args.view, "--view")
    check_output_dir(args.features_dir)
    photos = load_images(args.photos, args.data_root)
    if not photos.records:
        raise ValueError(f"{args.photos} has no readable photo")
    views = distractor_views(photos.records, args.count, args.seed, **recipe)
    name = "".join(c if c.isalnum() or c in "_.-" else "_"
                   for c in Path(args.photos.split(":")[-1]).name) or "photos"
    store = args.store_name or check_name(f"views{args.count}_{name}", "store name")
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
        try:
            model = get_model(model_name, weights=args.weights, device=args.device, **params)
        except ImportError as exc:  # a model's optional package
            return fail(f"--method {args.method}: {exc}")
        npy, sidecar = store_paths(store, model.name, root)
        npy.parent.mkdir(parents=True, exist_ok=True)
        # the store's lock (extract_to_store takes it again), held before the plan is checked:
        # a second run must not replace the first one's unfinished views
        with FolderLock(npy.parent, f".{model.name}.lock"):
            if not (sidecar.exists() and not args.overwrite):  # extract_to_store refuses it
                check_plan(npy.with_suffix(".partial"), meta["distractor_views"],
                           args.overwrite)
            workers = (args.workers if args.workers is not None
                       else max(0, available_cpus() - 1))
            path = extract_to_store(model, views, store, root=root,
                                    batch_size=args.batch_size, workers=workers,
                                    chunk_size=args.chunk_size, overwrite=args.overwrite,
                                    extra_meta=meta)
    else:
        path = describe_hash_chunks(views, args.method, store, root, args.chunk_size,
                                    args.batch_size, args.overwrite, meta)
    print(f"wrote {path} ({stored_views(Path(path), args.count, len(photos.records))})")
    return 0


if __name__ == "__main__":
    run_script(main, resume_hint="run the same command again to resume")
