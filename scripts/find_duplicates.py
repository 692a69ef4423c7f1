#!/usr/bin/env python3
"""Find the near-duplicates in a folder of images: describe every image, group those within a
distance of each other (connected components), and write the groups.

Writes Results/<name>/ (default name: duplicates_<folder>_<method>):
  duplicates.csv   group, image (path), image_id, distance to the group's first image;
                   only groups of two or more images
  index.html       the largest groups as image grids (figures/galleries/)
  assignments.csv, clusters.json, experiment.json
Unreadable images are reported and skipped.

The threshold is a distance of the method (hashing.distances: cosine as (1 - cos) / 2 in
[0, 1], Hamming as a bit error rate). Defaults (sscd_distilled 0.15, dhash 0.075) are the
thresholds with the best pairwise F1 on the 500 BSDS500 originals and their 58 attacked copies
each; other methods need --threshold or --threshold-from.
--threshold-from DIGEST takes a benchmark digest's operating point instead (the threshold at
false positive rate --threshold-fpr, 0.005 by default).

Examples
--------
python scripts/find_duplicates.py ~/Pictures
python scripts/find_duplicates.py photos/ --method dhash --threshold 0.12
python scripts/find_duplicates.py photos/ --method phash \\
    --threshold-from Results/bsds500_hashes --threshold-algorithm phash
"""

from __future__ import annotations

import argparse
from pathlib import Path

from clustering.cli import (
    add_digest_threshold_arguments,
    check_one_row_method,
    digest_threshold,
)
from clustering.duplicates import (
    DEFAULT_METHOD,
    DEFAULT_THRESHOLDS,
    find_duplicates,
    list_folder,
)
from hashing import parse_algorithm
from helpers import (
    add_output_arguments,
    experiment_run,
    get_logger,
    is_within,
    setup_logging,
)
from helpers.cli import integer, real, run_script, script_main

SCRIPT = "find_duplicates"
logger = get_logger(SCRIPT)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", help="folder of images (searched recursively)")
    parser.add_argument("--method", default=DEFAULT_METHOD,
                        help="any hash or model of the registry with one descriptor per image "
                             f"(default: {DEFAULT_METHOD}; not crop_resistant nor keypoint "
                             "methods)")
    parser.add_argument("--threshold", type=real(0, 1e9), default=None,
                        help="distance under which two images are duplicates (default: the "
                             f"method's, {DEFAULT_THRESHOLDS})")
    add_digest_threshold_arguments(parser)
    parser.add_argument("--device", default="auto",
                        help="Faiss's device for grouping: auto, cpu or cuda (a model runs on "
                             "CUDA when present; 'sscd_distilled:device=cpu' chooses)")
    parser.add_argument("--batch-size", type=integer(1, 65_536), default=64,
                        help="images described at once (default: %(default)s)")
    parser.add_argument("--galleries", type=integer(0, 1000), default=24,
                        help="groups shown as image grids in index.html")
    add_output_arguments(parser, "Results/<name> (default: duplicates_<folder>_<method>)")
    return parser.parse_args(argv)


def _threshold(args: argparse.Namespace, label: str) -> float:
    from_digest = digest_threshold(args)
    if from_digest is not None:
        return from_digest
    if args.threshold is not None:
        return args.threshold
    if label in DEFAULT_THRESHOLDS:
        return DEFAULT_THRESHOLDS[label]
    raise ValueError(f"no default threshold for {label}: give --threshold (in its distance) "
                     "or --threshold-from a benchmark digest of it")


@script_main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    folder = Path(args.folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder")
    if args.output and is_within(args.output, folder):
        raise ValueError(f"--output {args.output} lies inside {folder}, which is searched "
                         "recursively: the next run would take the result's figures for "
                         "photos; choose a folder outside it")
    label = parse_algorithm(args.method).label
    check_one_row_method(args.method)  # before describing any image
    threshold = _threshold(args, label)
    records, unreadable = list_folder(folder)  # bad files are logged as found
    name = f"duplicates_{folder.resolve().name}_{label}"
    with experiment_run(args, SCRIPT, name=name, inputs=[folder]) as run:
        output = run.folder
        run.record({**vars(args), "threshold_used": threshold, "method_label": label})
        found = find_duplicates(records, args.method, threshold, unreadable=unreadable,
                                root=folder, batch_size=args.batch_size, device=args.device)
        found.write(output, galleries=args.galleries, device=args.device)
        run.finish(groups=found.n_groups, images_in_groups=len(found.groups),
                   skipped=len(found.skipped))
    print(f"{len(found)} images ({len(found.skipped)} skipped), {label}, threshold "
          f"{threshold:g}: {found.n_groups} groups of near-duplicates holding "
          f"{len(found.groups)} images -> {output / 'duplicates.csv'}")
    return 0


if __name__ == "__main__":
    run_script(main)
