#!/usr/bin/env python3
"""Measure a fine-tuning run's checkpoints on copy detection: did copies get closer and other
images farther?

The model the run started from ("before", epoch 0) and the chosen checkpoints describe one
evaluation set, made by the hashing benchmark's protocol (a seeded split of --dataset into
database originals and controls, the first --n-attacked of each group attacked with every
attack) or read from --queries. Per checkpoint: AUC and micro-AP over all queries and over the
hardest attack families (cropping, rotation, shearing, text) apart, and the true groups (each
original with its copies) measured as clusters in the descriptor's metric: diameter,
separation, and their ratio.

Writes Results/<name>/: evaluation.csv (one row per checkpoint), groups.csv (one row per
checkpoint and group), matches.csv, figures/measures_by_epoch and figures/group_violins (PDF
and PNG), experiment.json.

Examples
--------
python scripts/evaluate_finetuning.py --run Results/ft_lite0 --dataset bsds500 --subset test
python scripts/evaluate_finetuning.py --run Results/ft_lite0 --checkpoints every:5
python scripts/evaluate_finetuning.py --run Results/ft_lite0 --checkpoints 1 10 --dataset \\
    sample --n-experimental 6 --n-control 5 --n-attacked 5
"""

from __future__ import annotations

import argparse
from pathlib import Path

from finetuning.evaluate import evaluate_checkpoints, plot_evaluation, run_checkpoints
from generator.cli import add_attack_arguments, attacks_from_args
from hashing import study_protocol
from helpers import add_output_arguments, experiment_run, resolve_device, setup_logging
from helpers.cli import MAX_COUNT, MAX_SEED, integer, run_script, script_main
from helpers.io import write_csv

SCRIPT = "evaluate_finetuning"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    run = parser.add_argument_group("run")
    run.add_argument("--run", required=True, help="the fine-tuning run's folder")
    run.add_argument("--checkpoints", nargs="+", default=["all"],
                     help="all (default), every:N, or epoch numbers / file names")
    run.add_argument("--no-baseline", action="store_true",
                     help="leave out the model the run started from")
    run.add_argument("--distance", default=None,
                     help="compare features with this metric (default: the model's)")
    data = parser.add_argument_group("evaluation set")
    data.add_argument("--dataset", default="bsds500", help="dataset name or folder:<path>")
    data.add_argument("--subset", default=None, help="e.g. test (bsds500)")
    data.add_argument("--data-root", default=None,
                      help="datasets folder (default: $DATASETS_DIR or Datasets/)")
    data.add_argument("--n-experimental", type=integer(1, MAX_COUNT), default=250,
                      help="originals in the database (default: 250)")
    data.add_argument("--n-control", type=integer(0, MAX_COUNT), default=250,
                      help="originals kept out of the database (default: 250)")
    data.add_argument("--n-attacked", type=integer(0, MAX_COUNT), default=100,
                      help="images of each group that are attacked (default: 100; at most "
                           "what a group holds)")
    data.add_argument("--split-seed", type=integer(0, MAX_SEED), default=0,
                      help="seed of the experimental/control split (default: %(default)s)")
    data.add_argument("--queries", default=None, metavar="MANIFEST",
                      help="read the queries from this manifest instead of making them")
    add_attack_arguments(parser)
    work = parser.add_argument_group("work")
    work.add_argument("--batch-size", type=integer(1, 65_536), default=64,
                      help="images per forward pass (default: %(default)s)")
    work.add_argument("--device", default="auto",
                      help="auto, cpu or cuda (default: %(default)s)")
    work.add_argument("--workers", type=integer(1, 1024), default=None,
                      help="processes making the attacked copies and threads describing them "
                           "(default: the usable cores)")
    add_output_arguments(parser, "Results/<name> (default: <run folder name>_evaluation)")
    return parser.parse_args(argv)


@script_main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    from data_retrieval import load_dataset, read_manifest

    device = resolve_device(args.device)
    checkpoints = run_checkpoints(args.run, args.checkpoints, args.distance,
                                  baseline=not args.no_baseline)
    attacks, seed, _ = attacks_from_args(args)
    dataset = load_dataset(args.dataset, args.data_root, subset=args.subset)
    protocol = study_protocol(
        dataset.records, attacks, args.n_experimental, args.n_control,
        args.n_attacked, args.split_seed, seed,
        read_manifest(args.queries) if args.queries else None, args.workers)
    name = f"{Path(args.run).resolve().name}_evaluation"
    with experiment_run(args, SCRIPT, name=name, inputs=[dataset.root]) as run:
        output = run.folder
        run.record({**{k: v for k, v in vars(args).items() if k != "attacks"},
                    "attacks": [a.id for a in attacks], "seed": seed,
                    "checkpoints_evaluated": [vars(c) for c in checkpoints]})
        evaluation = evaluate_checkpoints(checkpoints, protocol, args.batch_size, device,
                                          args.workers)
        bad = protocol.finish()
        for frame, file in ((evaluation.table, "evaluation.csv"),
                            (evaluation.groups, "groups.csv"),
                            (evaluation.benchmark.matches, "matches.csv")):
            write_csv(frame, output / file)
        plot_evaluation(evaluation, output / "figures")
        run.finish(evaluation=evaluation.table.to_dict("records"),
                   bad_inputs=[{"path": p, "reason": r} for p, r in bad],
                   wall_seconds=evaluation.benchmark.wall_seconds)
    columns = [c for c in ("label", "epoch", "auc", "micro_ap", "hard_auc", "hard_micro_ap",
                           "diameter_median", "separation_median",
                           "separation_ratio_median") if c in evaluation.table]
    print(evaluation.table[columns].to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    print(f"{len(checkpoints)} models, {evaluation.benchmark.matches['query_id'].nunique()} "
          f"queries -> {output}")
    return 0


if __name__ == "__main__":
    run_script(main)
