#!/usr/bin/env python3
"""Regenerate every figure of one or more benchmark digests, or of a search experiment, from
the result files alone. (A clustering result's figures are drawn by cluster.py or
find_duplicates.py, which made it: this script says so.)

python scripts/process_results.py Results/evaluate_copy_detection
python scripts/process_results.py Results/run_a Results/run_b --output Results/merged_figures
python scripts/process_results.py Results/search_experiment     # a folder with search.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hashing.evaluation.digest import load_digest
from hashing.evaluation.plots import plot_digest
from helpers import add_log_level_argument, result_file, setup_logging
from helpers.cli import real, run_script, script_main
from helpers.outputs import check_output_dir
from helpers.runs import folder_type

SCRIPT = "process_results"
#: What a run records beside the figures it drew (configuration, versions, the files).
RECORD = "process_results.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+", help="digest folder(s), merged; or one search "
                        "experiment folder (search.json)")
    parser.add_argument("--threshold", type=real(0, 1e9), default=0.2,
                        help="threshold of the galleries (default: 0.2)")
    out = parser.add_argument_group("output")
    out.add_argument("--output", type=folder_type, default=None,
                     help="figure folder (default: RESULTS/figures of the first digest)")
    out.add_argument("--overwrite", action="store_true",
                     help=f"redraw a figure folder this script drew before (its {RECORD}); "
                          "never replaces another script's record")
    add_log_level_argument(out)
    return parser.parse_args(argv)


def _record_file(args: argparse.Namespace, figures: Path):
    """The run's record, ``<figures>/process_results.json``, through `helpers.result_file`:
    its lock, its inputs (the result folders) and --overwrite only over a record of this
    script. The figures themselves have fixed names beside it."""
    record_args = argparse.Namespace(**{**vars(args), "output": str(figures / RECORD)})
    return result_file(record_args, SCRIPT, config=vars(args))


@script_main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    for folder in args.results:
        if (Path(folder) / "clusters.json").is_file() and not (
                Path(folder) / "general.json").is_file():
            raise ValueError(f"{folder} is a clustering result: its figures and index.html are "
                             "drawn by the script that made it (scripts/cluster.py or "
                             "scripts/find_duplicates.py; run it again with --overwrite)")
    searches = [r for r in args.results if (Path(r) / "search.json").is_file()]
    if searches and len(args.results) > 1:
        raise ValueError(f"{searches[0]} is a search experiment: search results are redrawn "
                         "one folder at a time (digests of the hashing benchmark can be "
                         "merged)")
    figures = check_output_dir(args.output or Path(args.results[0]) / "figures")
    if searches:
        return _search(args, figures)
    digest = load_digest(args.results)
    with _record_file(args, figures) as record:
        written = plot_digest(digest, figures, args.threshold)
        record.write({"figures": sorted(str(p) for p in written)})
    print(f"wrote {len(written)} figure files to {figures}")
    print(digest.summary.to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    return 0


def _search(args: argparse.Namespace, figures: Path) -> int:
    """The figures of a search experiment (scripts/search_experiment.py)."""
    from fast_search.report import load_search, plot_search

    try:
        result = load_search(args.results[0])
    except KeyError as exc:  # a search.json without a field the figures need
        raise ValueError(f"{args.results[0]}/search.json lacks {exc}") from None
    with _record_file(args, figures) as record:
        written = plot_search(result, figures)
        record.write({"figures": sorted(str(p) for p in written)})
    print(f"wrote {len(written)} figure files to {figures}")
    return 0


if __name__ == "__main__":
    run_script(main)
