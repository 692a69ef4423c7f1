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
from helpers import (
    check_output_file,
    experiment_record,
    file_name,
    results_root,
    setup_logging,
    write_json,
)
from helpers.cli import fail, run_script


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", help="images to split: " + input_help())
    parser.add_argument("--output", default=None,
                        help="manifest CSV to write "
                             "(default: Results/groups/<input>_seed<seed>.csv)")
    parser.add_argument("--n-experimental", type=int, default=None,
                        help="size of the experimental group (default: half of the images)")
    parser.add_argument("--n-control", type=int, default=None,
                        help="size of the control group (default: all the other images)")
    parser.add_argument("--seed", type=int, default=0, help="split seed (default: 0)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT")
    add_data_arguments(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging("INFO")
    try:
        dataset = images_from_args(args.input, args)
        if not dataset.records:
            raise ValueError(f"{args.input}: no readable image to split")
        records = split_groups(dataset.records, args.n_experimental, args.n_control, args.seed)
        name = args.input.replace("folder:", "").strip("/").replace("/", "_") or "images"
        output = Path(args.output) if args.output else (
            results_root() / "groups" / f"{file_name(Path(name).stem)}_seed{args.seed}.csv")
        output = check_output_file(output, ".csv", args.overwrite,
                                   [r.path for r in dataset.records]
                                   + [args.input if args.input.endswith(".csv") else None])
        write_manifest(records, output)
    except (ValueError, FileNotFoundError) as exc:
        return fail(exc)
    write_json(output.with_suffix(".experiment.json"),
               experiment_record(vars(args), script="create_groups"))
    counts = Counter(r.group for r in records)
    print(f"{output}: {counts['experimental']} experimental, {counts['control']} control "
          f"(seed {args.seed}, from {len(dataset.records)} images of {args.input})")
    return 0


if __name__ == "__main__":
    run_script(main)
