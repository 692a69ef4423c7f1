#!/usr/bin/env python3
"""Split a dataset at random (seeded) into the experimental group (the database) and the
control group (never in the database), and write the split as a manifest CSV.

Files are never moved. The original study used 250 experimental and 250 control images of
BSDS500.

Example
-------
python scripts/create_groups.py bsds500 --n-experimental 250 --n-control 250 --seed 0
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from data_retrieval import split_groups, write_manifest
from data_retrieval.cli import add_data_arguments, images_from_args, input_help
from helpers import add_output_file_arguments, file_name, result_file, setup_logging
from helpers.cli import MAX_COUNT, MAX_SEED, integer, run_script, script_main

SCRIPT = "create_groups"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", help="images to split: " + input_help())
    parser.add_argument("--n-experimental", type=integer(0, MAX_COUNT), default=None,
                        help="size of the experimental group (default: half of the images)")
    parser.add_argument("--n-control", type=integer(0, MAX_COUNT), default=None,
                        help="size of the control group (default: all the other images)")
    parser.add_argument("--seed", type=integer(0, MAX_SEED), default=0,
                        help="split seed (default: 0)")
    add_data_arguments(parser)
    add_output_file_arguments(parser, "groups/<input>_seed<seed>.csv", suffix=".csv",
                              help="manifest CSV to write "
                                   "(default: Results/groups/<input>_seed<seed>.csv)")
    return parser.parse_args(argv)


@script_main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    dataset = images_from_args(args.input, args)
    if not dataset.records:
        raise ValueError(f"{args.input}: no readable image to split")
    records = split_groups(dataset.records, args.n_experimental, args.n_control, args.seed)
    name = args.input.replace("folder:", "").strip("/").replace("/", "_") or "images"
    default = f"groups/{file_name(Path(name).stem)}_seed{args.seed}.csv"
    # the manifest beside <stem>.experiment.json; never one of the images it lists
    with result_file(args, SCRIPT, default, suffix=".csv",
                     inputs=[r.path for r in dataset.records]) as out:
        out.write(None, writer=lambda path: write_manifest(records, path))
    counts = Counter(r.group for r in records)
    print(f"{out.path}: {counts['experimental']} experimental, {counts['control']} control "
          f"(seed {args.seed}, from {len(dataset.records)} images of {args.input})")
    return 0


if __name__ == "__main__":
    run_script(main)
