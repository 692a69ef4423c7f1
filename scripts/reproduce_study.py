#!/usr/bin/env python3
"""Regenerate the study (arXiv 2206.00282) and this repository's follow-up work in one command:
every experiment the data at hand allows, each an existing script run in this process, cached
by its configuration and inputs, then one report with every figure and table.

Writes Results/paper/ (--name/--output): steps/<step>/ (each script's own result folder),
features/ (the stores the search and clustering steps share), figures/ (the study's layouts),
report.md, report.html and experiments.json (each step: inputs, configuration, command, result
folder, time, computed or cached). A second run recomputes nothing and redraws the report;
--redo STEP recomputes one step (and what reads it); an interrupted run resumes.

Examples
--------
python scripts/reproduce_study.py                          # quick scale, ~15 min on 2 cores
python scripts/reproduce_study.py --scale full --dry-run   # the study's protocols: the plan
python scripts/reproduce_study.py --redo hashes            # recompute one step
python scripts/reproduce_study.py --only hashes keypoints neural
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import sys
import time
from pathlib import Path

from data_retrieval import DATA_ROOT_ENV, data_root
from helpers import add_output_arguments, experiment_run, result_folder, setup_logging
from helpers.cli import run_script, script_main
from study import SCALES, Layout, Study, build_plan, command_line, write_report
from study.cache import step_key
from study.plan import SIMCLR, SIMCLR_NOTE, available
from study.runs import check_same_study, is_cached, load_ledger

SCRIPT = "reproduce_study"
SCRIPTS = Path(__file__).resolve().parent
logger = logging.getLogger(SCRIPT)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    plan = parser.add_argument_group("plan")
    plan.add_argument("--scale", default="quick", choices=SCALES,
                      help="tiny (the tests' protocol on `sample`), quick (subsets, about 30 "
                           "min on 2 CPU cores) or full (the study's protocols, a GPU box) "
                           "(default: quick)")
    plan.add_argument("--datasets-dir", default=None,
                      help=f"the data root (default: ${DATA_ROOT_ENV}, else Datasets/)")
    plan.add_argument("--only", nargs="+", default=None, metavar="STEP",
                      help="run only these steps; the others keep their cached results "
                           "(default: every step)")
    plan.add_argument("--redo", nargs="+", default=[], metavar="STEP",
                      help="recompute these steps even when cached, and the steps that read "
                           "them (default: none)")
    plan.add_argument("--dry-run", action="store_true",
                      help="print the plan (steps, data found, commands) and write nothing")
    add_output_arguments(parser, "Results/<name> (default: paper)", default_name="paper")
    for action in parser._actions:  # --overwrite means: every step again, in the same folder
        if action.dest == "overwrite":
            action.help = ("recompute every step (each step's earlier result is set aside "
                           "until its new one is complete; default: cached steps are kept)")
    return parser.parse_args(argv)


def run_step(script: str, argv: list[str]) -> int:
    """Run ``scripts/<script>.py``'s ``main(argv)`` in this process; its exit status."""
    spec = importlib.util.spec_from_file_location(f"study_step_{script}",
                                                  SCRIPTS / f"{script}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        return int(module.main(argv) or 0)
    except SystemExit as exc:  # argparse's refusals
        return exc.code if isinstance(exc.code, int) else 2


def check_names(args: argparse.Namespace, names: list[str]) -> None:
    """Step names given to --only and --redo must be in the plan, and a step to redo among
    those --only runs."""
    for flag, given in (("--only", args.only or []), ("--redo", args.redo)):
        unknown = [n for n in given if n not in names]
        if unknown:
            raise ValueError(f"{flag}: no step {', '.join(unknown)} at scale {args.scale}; "
                             f"steps: {', '.join(names)}")
    outside = [n for n in args.redo if args.only and n not in args.only]
    if outside:
        raise ValueError(f"--redo {' '.join(outside)}: not among --only {' '.join(args.only)}; "
                         "add it there, or leave --only out")


def missing_weights(plan) -> list[str]:
    """Lines for the SimCLR weight files the plan needs that are not on this machine
    (downloaded and converted by scripts/download_simclr.py): where `get_model` looks for
    them, checked without building the network."""
    from SimCLRv2 import converted_path, find_checkpoint  # torch: only for a dry run

    used = [s.name for s in plan if any(SIMCLR in a for a in s.argv)]
    if not used:
        return []
    checkpoint = find_checkpoint("v2", SIMCLR.removeprefix("simclr_v2_"), "pretrained")
    lines = []
    for ema in (False, True):  # the study's neural step reads the EMA weights
        path = converted_path(checkpoint, ema)
        if not path.is_file():
            lines.append(f"weights missing for {SIMCLR}{' (EMA)' if ema else ''} (not in "
                         f"{path}), which {len(used)} steps use ({', '.join(used)}): "
                         f"{SIMCLR_NOTE}")
    return lines


def dry_run(plan, root: Path, scale: str, folder: Path) -> int:
    """Print the plan: each step, its data (found or not), whether a run would compute it or
    find it cached in ``folder``, its command there, and what a real run would miss or
    refuse (model weights, a folder of another scale or data root)."""
    layout = Layout(folder)
    print(f"scale {scale}, data root {root}, results {folder}: {len(plan)} steps")
    for line in missing_weights(plan):
        print(f"warning: {line}")
    try:
        check_same_study(layout, scale, root)
    except ValueError as exc:
        print(f"warning: a run would stop: {exc}")
    ledger, keys = load_ledger(layout), {}
    for step in plan:
        keys[step.name] = step_key(step, root, keys)[0]
        state = ("cached" if is_cached(step, keys[step.name], ledger.get(step.name), layout)
                 else "to run")
        data = ", ".join(f"{d} ({'found' if available(d, root) else 'missing'})"
                         for d in step.datasets) or "results of " + ", ".join(step.after)
        print(f"\n[{step.part}] {step.name}: {step.title} ({state})\n  data: {data}")
        print(f"  run:  {command_line(step, layout)}")
        for note in step.notes:
            print(f"  note: {note}")
    return 0


def _dependents(plan, redo: list[str]) -> set[str]:
    """The steps of ``redo`` and every step that reads one of them, directly or not."""
    found = set(redo)
    for step in plan:
        if found & set(step.after):
            found.add(step.name)
    return found


@script_main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    root = data_root(args.datasets_dir)
    plan = build_plan(args.scale, root)
    check_names(args, [s.name for s in plan])
    if args.dry_run:
        folder = result_folder(args, SCRIPT)
        return dry_run(plan, root, args.scale, folder.resolve())
    os.environ[DATA_ROOT_ENV] = str(root)  # the steps' scripts find the datasets there
    rerun_all, args.overwrite, args.resume = args.overwrite, False, True
    command = " ".join(["python scripts/reproduce_study.py", *(argv if argv is not None
                                                                 else sys.argv[1:])])
    started = time.perf_counter()
    with experiment_run(args, SCRIPT, inputs=[root]) as run:
        if not rerun_all:
            check_same_study(Layout(run.folder), args.scale, root)
        run.record({**vars(args), "data_root": str(root),
                    "steps": [s.name for s in plan]})
        study = Study(plan, Layout(run.folder), root, args.scale, run_step)
        entries = study.run(_dependents(plan, args.redo), args.only, rerun_all)
        setup_logging(args.log_level)  # the steps' scripts set their own
        write_report(plan, entries, study.layout, args.scale, command)
        counts = {s: sum(e["status"] == s for e in entries)
                  for s in ("computed", "cached", "failed", "skipped", "not run")}
        run.finish(counts=counts, wall_seconds=round(time.perf_counter() - started, 2))
    print(f"{counts['computed']} steps computed, {counts['cached']} cached, "
          f"{counts['failed']} failed, {counts['skipped']} skipped in "
          f"{time.perf_counter() - started:.0f} s -> {run.folder / 'report.html'}")
    return 1 if counts["failed"] or counts["skipped"] else 0


if __name__ == "__main__":
    run_script(main, resume_hint="run the same command again to resume")
