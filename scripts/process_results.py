#!/usr/bin/env python3
"""Regenerate every figure of one or more benchmark digests, or of a search experiment, from
the result files alone.

python scripts/process_results.py Results/hashing_benchmark
python scripts/process_results.py Results/run_a Results/run_b --output Results/merged_figures
python scripts/process_results.py Results/search_experiment     # a folder with search.json
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from hashing.digest import load_digest
from hashing.plots import plot_digest
from helpers import experiment_record, setup_logging, write_json
from helpers.cli import fail, run_script
from helpers.outputs import check_output_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+", help="digest folder(s), merged; or one search "
                        "experiment folder (search.json)")
    parser.add_argument("--output", default=None,
                        help="figure folder (default: RESULTS/figures of the first digest)")
    parser.add_argument("--threshold", type=float, default=0.2,
                        help="threshold of the galleries (default: 0.2)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    searches = [r for r in args.results if (Path(r) / "search.json").is_file()]
    if searches and len(args.results) > 1:
        return fail(f"{searches[0]} is a search experiment: search results are redrawn one "
                    "folder at a time (digests of the hashing benchmark can be merged)")
    if searches:
        return _search(args)
    try:
        if not math.isfinite(args.threshold) or args.threshold < 0:
            raise ValueError(f"--threshold must be a finite number >= 0, got {args.threshold}")
        digest = load_digest(args.results)
        output = check_output_dir(args.output or Path(args.results[0]) / "figures")
    except (ValueError, FileNotFoundError) as exc:
        return fail(exc)
    written = plot_digest(digest, output, args.threshold)
    # its own name: --output may be a digest folder, whose experiment.json is the benchmark's
    write_json(output / "process_results.experiment.json",
               experiment_record(vars(args), script="process_results"))
    print(f"wrote {len(written)} figure files to {output}")
    print(digest.summary.to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    return 0


def _search(args: argparse.Namespace) -> int:
    """The figures of a search experiment (scripts/search_experiment.py)."""
    from fast_search.report import load_search, plot_search

    try:
        result = load_search(args.results[0])
        output = check_output_dir(args.output or Path(args.results[0]) / "figures")
    except (ValueError, FileNotFoundError, KeyError) as exc:
        return fail(exc)
    written = plot_search(result, output)
    write_json(output / "process_results.experiment.json",
               experiment_record(vars(args), script="process_results"))
    print(f"wrote {len(written)} figure files to {output}")
    return 0


if __name__ == "__main__":
    run_script(main)
