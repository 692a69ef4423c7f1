#!/usr/bin/env python3
"""Write the feature stores of the study's search protocol for one method: the database (the
experimental originals of a seeded split) and the queries (the first --n-attacked images of the
experimental and control groups under every attack, made on the fly, never written), each query
stored with its source. The same split and seeds as scripts/evaluate_copy_detection.py, so both
experiments see the same queries. Models extract resumably; hashes are fast.

Then: scripts/search_experiment.py --database <prefix>_database/<method>
      --queries <prefix>_queries/<method> [--distractors views.../<method>]

--copies writes one store <prefix>_copies instead: every original of the dataset followed by
its copies under every attack (500 + 500 x 58 = 29,500 rows for BSDS500), each copy with its
source: the ground truth of scripts/cluster.py and scripts/benchmark_clustering.py.

Examples
--------
python scripts/search_stores.py --dataset bsds500 --method sscd_distilled
python scripts/search_stores.py --dataset bsds500 --method dhash
python scripts/search_stores.py --dataset bsds500 --method sscd_distilled --copies
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from clustering.cli import descriptor_kind
from data_retrieval import load_dataset
from data_retrieval.cli import add_data_root_argument
from extractor.store import default_features_dir
from generator import attacked_images
from generator.cli import add_attack_arguments, attacks_from_args, resolved_options
from hashing.evaluation.benchmark import study_protocol
from helpers import (
    OutputError,
    add_store_arguments,
    available_cpus,
    check_name,
    get_logger,
    parse_key_values,
    setup_logging,
)
from helpers.cli import MAX_COUNT, MAX_SEED, fail, integer, run_script, script_main
from helpers.outputs import check_output_dir
from helpers.runs import folder_type

logger = get_logger("search_stores")


def prefix_type(text: str) -> str:
    """``--prefix``: one plain name (an empty one is refused, not taken for the default)."""
    try:
        return check_name(text, "--prefix")
    except OutputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="bsds500", help="default: bsds500")
    add_data_root_argument(parser)
    parser.add_argument("--n-experimental", type=integer(1, MAX_COUNT), default=250,
                        help="originals of the database (experimental group; default: 250)")
    parser.add_argument("--n-control", type=integer(0, MAX_COUNT), default=250,
                        help="originals of the control group, never in the database "
                             "(default: 250)")
    parser.add_argument("--n-attacked", type=integer(1, MAX_COUNT), default=100,
                        help="first originals of each group attacked into queries (at most "
                             "a group's size; default: 100)")
    parser.add_argument("--split-seed", type=integer(0, MAX_SEED), default=0,
                        help="seed of the experimental/control split (default: %(default)s)")
    add_attack_arguments(parser)
    parser.add_argument("--method", required=True, help="a model or a hash spec")
    parser.add_argument("--copies", action="store_true",
                        help="write <prefix>_copies: all originals and all their attacked "
                             "copies (for clustering), instead of the search protocol")
    parser.add_argument("--prefix", type=prefix_type, default=None,
                        help="store names <prefix>_database and <prefix>_queries (default: "
                             "the dataset name)")
    parser.add_argument("--features-dir", type=folder_type, default=str(default_features_dir()),
                        help="feature store root the stores are written into (default: "
                             "%(default)s)")
    parser.add_argument("--batch-size", type=integer(1, 65_536), default=32,
                        help="images described at once (default: %(default)s)")
    parser.add_argument("--workers", type=integer(0, 1024), default=None,
                        help="DataLoader workers for models (default: usable cores - 1)")
    parser.add_argument("--device", default="auto",
                        help="auto, cpu or cuda (default: %(default)s)")
    add_store_arguments(parser, "replace finished stores of the same names and method")
    return parser.parse_args(argv)


@script_main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    check_output_dir(args.features_dir)
    prefix = args.prefix or args.dataset.split(":")[-1].strip("/").replace("/", "_")
    check_name(f"{prefix}_queries", "--prefix")
    if descriptor_kind(args.method) == "multi":  # refused before any image is made
        raise ValueError(f"--method {args.method}: several codes per image (multi-codes) "
                         "cannot be stored; use a single-code hash or a model")
    attacks, seed, options = attacks_from_args(args)
    dataset = load_dataset(args.dataset, args.data_root)
    # what a gallery needs to make the images again: the options with their defaults
    # resolved, and whether every source is an original (then an id a+b is one composed
    # attack, not b made on a copy a)
    made = {"seed": seed, "options": resolved_options(attacks, options),
            "sources_are_originals": all(r.attack_id is None for r in dataset.records)}
    command = " ".join([os.path.basename(sys.argv[0]), *sys.argv[1:]])
    if args.copies:
        copies = attacked_images(dataset.records, attacks, seed)
        stores = [(f"{prefix}_copies", list(dataset.records) + list(copies))]
        meta = {"copies": {"dataset": args.dataset, "originals": len(dataset.records),
                           **made, "attacks": [a.id for a in attacks]},
                "command": command}
    else:
        protocol = study_protocol(dataset.records, attacks, args.n_experimental,
                                  args.n_control, args.n_attacked, args.split_seed, seed)
        queries = attacked_images(protocol.attacked, attacks, seed)
        stores = [(f"{prefix}_database", protocol.database), (f"{prefix}_queries", queries)]
        meta = {"protocol": {"dataset": args.dataset,
                             "n_experimental": args.n_experimental,
                             "n_control": args.n_control, "n_attacked": args.n_attacked,
                             "split_seed": args.split_seed, **made,
                             "attacks": [a.id for a in attacks]},
                "command": command}
    root = Path(args.features_dir)
    name, _, text = args.method.partition(":")
    from extractor import list_models

    written = []
    if name in list_models():
        from extractor import extract_to_store, get_model

        try:
            model = get_model(name, device=args.device,
                              **parse_key_values(text.split(",") if text else [], "--method"))
        except ImportError as exc:  # a model's optional package
            return fail(f"--method {args.method}: {exc}")
        workers = args.workers if args.workers is not None else max(0, available_cpus() - 1)
        for store, items in stores:
            written.append(extract_to_store(
                model, items, store, root=root, batch_size=args.batch_size,
                workers=workers, overwrite=args.overwrite, extra_meta=meta))
    else:
        from hashing import describe, save_descriptors

        for store, items in stores:
            codes = describe(items, args.method)
            written.append(save_descriptors(codes, store, root=root,
                                            overwrite=args.overwrite, meta=meta))
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    run_script(main, resume_hint="run the same command again to resume")
