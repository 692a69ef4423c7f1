#!/usr/bin/env python3
"""Find the near-duplicates in a folder of images: describe every image, group those within a
distance of each other (connected components), and write the groups.

Writes Results/<name>/ (default name: duplicates_<folder>_<method>):
  duplicates.csv   group, image (path), image_id, distance to the group's first image;
                   only groups of two or more images
  keepers.csv      the image to keep in each group, and why (the rule below)
  removable.txt    every other member of the groups: one absolute path a line
  index.html       the page to act on: counts, the groups (numbered as in duplicates.csv)
                   with thumbnails, file names, distances and the keeper marked, the
                   threshold and what it means, the files skipped and why (thumbnails/)
  assignments.csv, clusters.json, figures/, experiment.json
Files that are not images by their extension (a .txt), empty or unreadable ones are reported
(on screen, in index.html and clusters.json) and skipped.

The image to keep in a group has the most pixels (width x height, from the file's header),
then the largest file, then the oldest modification time, then the first path in alphabetical
order. Nothing is ever deleted: --list-removable FILE writes the others' paths, one a line,
for you to check and delete yourself. FILE must end in .txt; an existing file is replaced only
with --overwrite and only when this script made it (FILE's .experiment.json beside it says
so); the same list is always in the result folder as removable.txt.

The threshold is a distance of the method (hashing.distances: cosine as (1 - cos) / 2 in
[0, 1], Hamming as a bit error rate). The defaults (clustering.duplicates.DEFAULT_THRESHOLDS:
sscd_distilled 0.225, dhash 0.10, phash 0.125) group photos and their common edits (JPEG,
crop, rotation, text, noise, brightness) with V-measure 0.996 for sscd_distilled, and leave
1,000 distinct photos without a false group (scripts/benchmark_duplicates.py); the hashes
cannot group crops and rotations without false groups (V-measure 0.89). Other methods need
--threshold or --threshold-from.
--threshold-from DIGEST takes a benchmark digest's operating point instead (the threshold at
false positive rate --threshold-fpr, 0.005 by default).

Examples
--------
python scripts/find_duplicates.py ~/Pictures
python scripts/find_duplicates.py photos/ --method dhash --threshold 0.12
python scripts/find_duplicates.py photos/ --list-removable ~/to_delete.txt
python scripts/find_duplicates.py photos/ --method phash \\
    --threshold-from Results/bsds500_hashes --threshold-algorithm phash
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from clustering.cli import (
    add_digest_threshold_arguments,
    check_one_row_method,
    digest_threshold,
)
from clustering.duplicates import (
    DEFAULT_METHOD,
    DEFAULT_THRESHOLDS,
    KEEPER_RULE,
    find_duplicates,
    list_folder,
    other_files,
    write_path_list,
)
from clustering.duplicates_report import PAGE_GROUPS, summary_sentence, threshold_sentence
from hashing import parse_algorithm
from helpers import (
    OutputError,
    add_output_arguments,
    experiment_run,
    get_logger,
    is_within,
    printable,
    result_file,
    results_root,
    setup_logging,
)
from helpers.cli import integer, real, run_script, script_main
from helpers.runs import file_type

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
    parser.add_argument("--galleries", type=integer(0, 100_000), default=PAGE_GROUPS,
                        help="groups shown with thumbnails in index.html, the largest first "
                             "(default: %(default)s; every group is in duplicates.csv)")
    group = add_output_arguments(parser,
                                 "Results/<name> (default: duplicates_<folder>_<method>)")
    group.add_argument("--list-removable", metavar="FILE", type=file_type(".txt"),
                       default=None,
                       help="also write the removable files (every group's members but the "
                            "one to keep), one absolute path a line, into FILE (.txt; "
                            "replaced only with --overwrite and only when this script made "
                            "it); nothing is deleted (default: only removable.txt in the "
                            "result folder)")
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


#: Skipped files printed one by one at most (all are in index.html and clusters.json).
PRINTED_SKIPPED = 20


def _removable_list(args: argparse.Namespace, folder: Path, name: str):
    """The ``--list-removable`` file through `helpers.result_file` (checked and locked before
    any image is described), or a null context without the flag."""
    if args.list_removable is None:
        return contextlib.nullcontext()
    # where experiment_run will write, only to refuse a list inside it (removable.txt is there)
    target = Path(args.output) if args.output else results_root().joinpath(args.name or name)
    if is_within(args.list_removable, target):
        raise ValueError(f"--list-removable {args.list_removable} lies inside the result "
                         f"folder {target}, which holds removable.txt already; choose a file "
                         "outside it")
    if Path(args.list_removable).exists() and not args.overwrite:
        raise OutputError(f"--list-removable {args.list_removable} exists; pass --overwrite to "
                          "replace a list this script made (nothing else is replaced), or "
                          "choose another file")
    listing = argparse.Namespace(**{**vars(args), "output": args.list_removable,
                                    "list_removable": None})  # the file is no input
    return result_file(listing, SCRIPT, suffix=".txt", inputs=[folder], config=vars(args))


def _report(found, label: str, threshold: float, output: Path, listed: Path | None) -> None:
    """What the run found, on screen: the counts, the threshold, the rule, the files."""
    print(f"{label}, threshold {threshold:g}: {summary_sentence(found)}.")
    print(threshold_sentence(found))
    print(f"Keeper rule: {KEEPER_RULE}.")
    where = f"{output / 'removable.txt'}" + (f" and {listed}" if listed else "")
    print(f"{len(found.removable())} removable files listed in {where} (nothing deleted); "
          f"groups: {output / 'duplicates.csv'}; page: {output / 'index.html'}")
    skipped = [*found.not_images, *found.skipped]
    if skipped:
        print("Skipped:")
        for _, path, reason in skipped[:PRINTED_SKIPPED]:
            print(f"  {printable(path)}: {reason}")
        if len(skipped) > PRINTED_SKIPPED:
            print(f"  ... and {len(skipped) - PRINTED_SKIPPED} more (index.html)")


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
    not_images = other_files(folder)  # a .txt: reported, not looked at
    name = f"duplicates_{folder.resolve().name}_{label}"
    # the list file first: refused (it exists, made by someone else) before a folder is made
    with _removable_list(args, folder, name) as listing, \
            experiment_run(args, SCRIPT, name=name, inputs=[folder]) as run:
        output = run.folder
        run.record({**vars(args), "threshold_used": threshold, "method_label": label,
                    "keeper_rule": KEEPER_RULE})
        found = find_duplicates(records, args.method, threshold, unreadable=unreadable,
                                not_images=not_images, root=folder,
                                batch_size=args.batch_size, device=args.device)
        found.write(output, galleries=args.galleries, device=args.device)
        if listing is not None:
            listing.write(None, writer=lambda path: write_path_list(found.removable(), path))
        run.finish(groups=found.n_groups, images_in_groups=len(found.groups),
                   removable=len(found.removable()), skipped=len(found.skipped),
                   not_images=len(found.not_images))
    _report(found, label, threshold, output, listing.path if listing is not None else None)
    return 0


if __name__ == "__main__":
    run_script(main)
