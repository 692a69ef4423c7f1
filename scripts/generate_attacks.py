#!/usr/bin/env python3
"""Attack the images of INPUT and write them, with a manifest, to OUTPUT.

Examples
--------
python scripts/generate_attacks.py sample Results/demo/attacks
python scripts/generate_attacks.py bsds500 Results/bsds_attacks \
    --attacks jpg_compression:10,50 rotation
python scripts/generate_attacks.py groups.csv out --group control --attack-config attacks.yaml
"""

from __future__ import annotations

import argparse

from data_retrieval.cli import add_data_arguments, images_from_args, input_help
from generator.cli import add_attack_arguments, attacks_from_args
from generator.pipeline import output_format, write_attacks
from helpers import Timer, add_log_level_argument, experiment_run, read_json, setup_logging
from helpers.cli import integer, run_script, script_main
from helpers.runs import folder_type

SCRIPT = "generate_attacks"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", help="images to attack: " + input_help())
    parser.add_argument("output", type=folder_type,
                        help="folder for the attacked images, manifest.csv and experiment.json")
    add_data_arguments(parser)
    add_attack_arguments(parser)
    out = parser.add_argument_group("output")
    out.add_argument("--format", default="png",
                     help="image format: png (lossless, default), jpg, webp, bmp, tiff")
    out.add_argument("--workers", type=integer(0, 1024), default=None,
                     help="worker processes (default: one per core, at most 8; 0: none)")
    out.add_argument("--include-originals", action="store_true",
                     help="also list the unattacked images in the manifest")
    mode = out.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true",
                      help="continue an existing OUTPUT made with the same settings")
    mode.add_argument("--overwrite", action="store_true",
                      help="empty an existing OUTPUT of this script first (never anything "
                           "else, nor an input)")
    add_log_level_argument(parser)
    return parser.parse_args(argv)


@script_main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    output_format(args.format)
    attacks, seed, options = attacks_from_args(args)
    dataset = images_from_args(args.input, args)
    if not dataset.records:
        raise ValueError(f"{args.input}: no readable image to attack")
    # the folders of the inputs, and where their symbolic links lead
    inputs = [dataset.root, *{str(folder) for r in dataset.records if r.path
                              for folder in (r.path.parent, r.path.resolve().parent)}]
    config = {
        "input": args.input,
        "data_root": args.data_root,
        "limit": args.limit,
        "group": args.group,
        "attacks": [a.id for a in attacks],
        "seed": seed,
        "options": {k: str(v) for k, v in options.items()},
        "format": args.format,
        "include_originals": args.include_originals,
    }
    # experiment_run also protects every path the flags name (a manifest given as INPUT)
    with experiment_run(args, SCRIPT, inputs=inputs, config=config) as run:
        output = run.folder
        previous = output / "experiment.json"
        if args.resume and previous.exists():
            old = read_json(previous).get("config", {})
            changed = sorted(k for k in config if old.get(k) != config[k])
            if changed:
                raise ValueError(f"{output} was made with other settings "
                                 f"({', '.join(changed)}); use --overwrite or another OUTPUT")
        run.record()
        with Timer() as timer:
            report = write_attacks(dataset.records, attacks, output, seed=seed,
                                   image_format=args.format, workers=args.workers,
                                   include_originals=args.include_originals,
                                   known_bad=dataset.bad)
        bad = report.bad
        run.finish(counts={"inputs": len(dataset.records), "attacks": len(attacks),
                           "written": report.written, "already_there": report.skipped,
                           "bad_inputs": len(bad)},
                   bad_inputs=[{"path": str(b.path), "reason": b.reason} for b in bad],
                   seconds=round(timer.elapsed, 3))
        print(f"{len(dataset.records)} images x {len(attacks)} attacks from {args.input}: "
              f"wrote {report.written} images, kept {report.skipped} already there, "
              f"in {timer.elapsed:.1f} s")
        print(f"manifest: {report.manifest} ({len(report.records)} rows)")
        print(f"settings: {previous}")
        if bad:
            print(f"skipped {len(bad)} bad input(s), listed in {output / 'bad_images.csv'}:")
            for b in bad:
                print(f"  {b.path}: {b.reason}")
        if not report.records:  # recorded as the run's error in experiment.json
            raise ValueError("no image was attacked: every input was unreadable (see above)")
    return 0


if __name__ == "__main__":
    run_script(main, resume_hint="run the same command with --resume to continue")
