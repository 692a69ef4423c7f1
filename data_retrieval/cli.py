"""Command-line flags for choosing images, shared by the scripts."""

from __future__ import annotations

import argparse

from data_retrieval.datasets import DATA_ROOT_ENV, Dataset, list_datasets, load_images
from helpers.cli import MAX_COUNT, integer
from helpers.runs import folder_type


def add_data_root_argument(parser, writes: bool = False) -> None:
    """Add ``--data-root`` (where the named datasets live) to a parser or argument group: one
    flag, one help text, in every script. ``writes``: the script writes into it (a download),
    so it is checked as an output folder (`helpers.runs.folder_type`) when parsed."""
    parser.add_argument(
        "--data-root",
        default=None,
        type=folder_type if writes else None,
        help=f"folder holding the named datasets (default: ${DATA_ROOT_ENV}, else Datasets/)",
    )


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--data-root``, ``--limit`` and ``--group`` to a parser."""
    group = parser.add_argument_group("images")
    add_data_root_argument(group)
    group.add_argument("--limit", type=integer(1, MAX_COUNT), default=None,
                       help="use only the first N images of the input (default: all)")
    group.add_argument("--group", choices=("experimental", "control"), default=None,
                       help="with a manifest as input, keep only this group (default: all)")


def input_help() -> str:
    """Help text for a positional INPUT argument."""
    return (
        f"a dataset name ({', '.join(list_datasets())}), folder:<path>, a folder of images, "
        "or a manifest .csv"
    )


def images_from_args(spec: str, args: argparse.Namespace) -> Dataset:
    """The images an INPUT argument and the data flags select."""
    dataset = load_images(spec, args.data_root)
    records = dataset.records
    if args.group is not None:
        records = [r for r in records if r.group == args.group]
        if not records:
            raise ValueError(f"{spec}: no image in group {args.group!r}")
    if args.limit is not None:
        if args.limit < 1:
            raise ValueError(f"--limit must be >= 1, got {args.limit}")
        records = records[: args.limit]
    dataset.records = records
    return dataset
