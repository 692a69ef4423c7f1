#!/usr/bin/env python3
"""Download a named dataset into the data root (those that have a public URL).

Example
-------
python scripts/download_datasets.py bsds500
"""

from __future__ import annotations

import argparse

from data_retrieval import data_root, dataset_spec, list_datasets
from data_retrieval.cli import add_data_root_argument
from helpers import DownloadError, setup_logging
from helpers.cli import fail, run_script, script_main


@script_main
def main(argv: list[str] | None = None) -> int:
    downloadable = [n for n in list_datasets() if dataset_spec(n).downloader is not None]
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    # dest "dataset": "name" is the output mechanism's --name everywhere else
    parser.add_argument("dataset", metavar="name", choices=list_datasets(),
                        help=f"dataset (downloadable: {', '.join(downloadable)})")
    add_data_root_argument(parser, writes=True)
    parser.add_argument("--url", default=None, help="archive URL (default: the official one)")
    args = parser.parse_args(argv)
    setup_logging("INFO")
    info = dataset_spec(args.dataset)
    if info.downloader is None:
        raise ValueError(f"{args.dataset} cannot be downloaded automatically. {info.how_to_get}")
    kwargs = {"url": args.url} if args.url else {}
    try:
        path = info.downloader(data_root(args.data_root), **kwargs)
    except DownloadError as exc:  # a failed transfer or check: one line, as a user error
        return fail(exc)
    print(f"{args.dataset} is ready in {path}")
    return 0


if __name__ == "__main__":
    run_script(main)
