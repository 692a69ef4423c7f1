"""``make paper`` (scripts/reproduce_study.py) end to end at the tiny scale on `sample`: every
figure and table of the report is there, a second run recomputes nothing, ``--redo`` recomputes
one step, an interrupted run resumes, and the full plan is the study's protocol."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from study import build_plan
from study.report import load_published
from tests.conftest import REPO

SCRIPT = REPO / "scripts" / "reproduce_study.py"


def _run(*argv: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *argv], capture_output=True, text=True,
                          cwd=REPO, timeout=timeout)


def _ledger(folder: Path) -> dict[str, dict]:
    return {s["name"]: s for s in json.loads((folder / "experiments.json").read_text())["steps"]}


def _stamps(folder: Path) -> dict[str, float]:
    """Modification times of every file the steps wrote (not the report, redrawn each run)."""
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns
            for part in ("steps", "features") for p in (folder / part).rglob("*")
            if p.is_file() and p.name not in (".lock", ".outputs.json")}


@pytest.fixture(scope="module")
def paper(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("study") / "paper"
    done = _run("--scale", "tiny", "--output", str(folder))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return folder


def test_every_step_ran_and_every_figure_and_table_is_in_the_report(paper):
    plan = build_plan("tiny", Path("/nonexistent"))
    ledger = _ledger(paper)
    assert list(ledger) == [s.name for s in plan]
    assert {e["status"] for e in ledger.values()} == {"computed"}
    report = (paper / "report.md").read_text()
    html = (paper / "report.html").read_text()
    for step in plan:
        entry = ledger[step.name]
        assert f"### {step.name}:" in report and entry["command"] in report
        assert Path(entry["result"]).is_dir() and entry["inputs"]["script"] == step.script
        for figure in step.figures:
            assert f"({f'steps/{step.name}/{figure}'}.png)" in report, (step.name, figure)
        if step.table:
            assert f"*{step.table}*" in report, step.name
    figures = re.findall(r"\]\(([^)]+\.(?:png|pdf))\)", report)
    assert {"figures/roc.png", "figures/auc_families.png", "figures/times.png",
            "figures/recall_size.png"} <= set(figures)
    for name in figures:
        magic = b"%PDF" if name.endswith(".pdf") else b"\x89PNG"
        assert (paper / name).read_bytes()[:4] == magic, name
        assert f"src='{name}'" in html or name.endswith(".pdf")


def test_the_digest_tables_are_the_steps_own_numbers_beside_the_study_column(paper):
    summary = pd.read_csv(paper / "steps" / "hashes" / "summary.csv")
    report = (paper / "report.md").read_text()
    assert "| study auc | difference |" in report
    for _, row in summary.iterrows():  # the report shows what the digest holds
        assert f"| {row['algorithm']} | {row['auc']:.4g} |" in report


def test_a_second_run_recomputes_nothing_and_redo_recomputes_one_step(paper):
    before = _stamps(paper)
    again = _run("--scale", "tiny", "--output", str(paper))
    assert again.returncode == 0, again.stderr[-2000:]
    assert {e["status"] for e in _ledger(paper).values()} == {"cached"}
    assert _stamps(paper) == before
    redo = _run("--scale", "tiny", "--output", str(paper), "--redo", "hashes")
    assert redo.returncode == 0, redo.stderr[-2000:]
    ledger = _ledger(paper)
    assert ledger["hashes"]["status"] == "computed"
    assert {e["status"] for n, e in ledger.items() if n != "hashes"} == {"cached"}
    after = _stamps(paper)
    changed = {k for k in before if after.get(k) != before[k]}
    assert changed and all(k.startswith("steps/hashes/") for k in changed)


def test_a_run_at_another_scale_never_replaces_the_folders_steps(paper):
    before = _stamps(paper)
    done = _run("--scale", "quick", "--output", str(paper))
    assert done.returncode == 2 and "holds the study at scale tiny" in done.stderr
    assert _stamps(paper) == before


def test_an_interrupted_run_resumes_from_the_unfinished_step(paper):
    record = paper / "experiments.json"
    ledger = json.loads(record.read_text())
    ledger["steps"] = ledger["steps"][:-1]  # as if stopped before the last step finished
    record.write_text(json.dumps(ledger))
    last = build_plan("tiny", Path("/nonexistent"))[-1].name
    done = _run("--scale", "tiny", "--output", str(paper))
    assert done.returncode == 0, done.stderr[-2000:]
    statuses = {n: e["status"] for n, e in _ledger(paper).items()}
    assert statuses.pop(last) == "computed" and set(statuses.values()) == {"cached"}


def test_the_full_plan_is_the_studys_protocol_and_a_dry_run_writes_nothing(tmp_path):
    done = _run("--scale", "full", "--dry-run", "--datasets-dir", str(tmp_path),
                "--output", str(tmp_path / "paper"))
    assert done.returncode == 0, done.stderr
    for algorithms in ("ahash phash dhash whash crop_resistant", "orb sift daisy latch"):
        assert (f"--n-experimental 250 --n-control 250 --n-attacked 100 --algorithms "
                f"{algorithms}") in done.stdout
    assert "simclr_v2_r50_2x_sk1" in done.stdout and "500000" in done.stdout
    assert "bsds500 (missing)" in done.stdout
    assert not (tmp_path / "paper").exists()


def test_unknown_step_names_are_one_line_errors(tmp_path):
    done = _run("--scale", "tiny", "--redo", "hashez", "--output", str(tmp_path / "p"))
    assert done.returncode == 2 and "no step hashez" in done.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "p").exists()


def test_the_published_file_cites_a_table_and_page_for_every_value():
    published = load_published()
    assert set(published["kind"]) <= {"value", "claim"}
    for _, row in published.iterrows():
        assert row["table"], row.to_dict()
        if row["value"]:  # a number read from the paper says where
            float(row["value"])
            assert row["page"] and row["table"] != "not read", row.to_dict()
        if row["kind"] == "claim":
            assert row["page"] and row["note"]


def test_a_published_value_shows_beside_ours_with_the_difference():
    from study.report import _with_published

    ours = pd.DataFrame({"algorithm": ["dhash", "phash"], "auc": [0.93, 0.95]})
    published = pd.DataFrame([{"kind": "value", "table": "Table 9", "page": "7",
                               "method": "dhash", "quantity": "AUC", "value": "0.90",
                               "note": ""}])
    table = _with_published(ours, published)
    assert table["study auc"].tolist() == ["0.900", "not read"]
    assert table["difference"].tolist() == ["+0.030", "—"]


def test_the_study_results_file_names_its_source_and_our_methods():
    from hashing.methods.registry import ALGORITHMS
    from study.report import load_study_results

    results = load_study_results()
    assert len(results) == 16  # the study's 16 methods of Constant_FPR_BSDS500
    assert (results["source"] == "Results/Constant_FPR_BSDS500/general.json").all()
    for column in ("recall", "precision", "fpr", "accuracy"):
        assert results[column].between(0, 1).all(), column
    assert results["fpr"].between(0.003, 0.031).all()  # "about 0.005", as the study chose
    # accuracy = (recall + 1 - fpr) / 2 on the study's balanced protocol (5,800 + 5,800)
    assert np.allclose(results["accuracy"], (results["recall"] + 1 - results["fpr"]) / 2)
    named = [m for m in results["method"] if m]
    # every method of the study has its own counterpart here (the study's neuralhash.py
    # loaders name them), registered
    assert len(set(named)) == len(named) == 16 and all(m in ALGORITHMS for m in named), named
    assert dict(zip(results["study_method"], results["method"], strict=True))[
        "ResNet50 2x raw features Jensen-Shannon"] == "wide_resnet50_2"


def test_the_study_results_show_beside_ours_with_the_difference():
    from study.report import beside_study_results

    study = pd.DataFrame({"study_method": ["Dhash 64 bits", "SIFT 30 descriptors", "X"],
                          "method": ["dhash", "sift", ""], "threshold": [0.159, 67.8, 0.5],
                          "recall": [0.8147, 0.7455, 0.9], "fpr": [0.0066, 0.0053, 0.005]})
    ours = pd.DataFrame({"algorithm": ["dhash", "phash"], "recall_at_fpr_0.005": [0.85, 0.9],
                         "threshold_at_fpr_0.005": [0.171875, 0.25]})
    table = beside_study_results(ours, study)
    assert table["difference"].tolist() == ["+0.035", "—", "—"]
    # the study's own configuration of a method is preferred: raw features in Jensen-Shannon
    ours = pd.DataFrame({"algorithm": ["sift", "sift_distance=jensenshannon"],
                         "recall_at_fpr_0.005": [0.5, 0.8455],
                         "threshold_at_fpr_0.005": [1.0, 2.0]})
    row = beside_study_results(ours, study).iloc[1]
    assert row["ours"] == "sift_distance=jensenshannon" and row["difference"] == "+0.100"
    assert table["our recall at fpr 0.005"].tolist() == [0.85, "not run", "not run"]
    assert table["ours"].tolist() == ["dhash", "sift", "no counterpart"]
    assert table["our threshold"].tolist()[0] == 0.171875


#: BSDS500's official splits (Arbelaez et al. 2011): 200 train, 100 val, 200 test photos.
BSDS500_SPLITS = {"train": 200, "val": 100, "test": 200, None: 500}


def _flag(argv: tuple, name: str, default=None):
    return argv[argv.index(name) + 1] if name in argv else default


@pytest.mark.parametrize("scale", ["quick", "full"])
def test_every_bsds500_step_fits_its_split(scale, tmp_path):
    """The study's plan at quick and full scale asks no split for more photos than it holds
    (a protocol's experimental + control groups, a fine-tuning batch from the training
    photos less the validation tenth), and each step's figures are ones its methods draw."""
    for name in ("BSDS500/train", "BSDS500/val", "BSDS500/test", "imagenet_samples"):
        (tmp_path / name).mkdir(parents=True)  # the data root has the study's data
    for step in build_plan(scale, tmp_path):
        argv = tuple(step.argv)
        if _flag(argv, "--dataset", _flag(argv, "--data")) != "bsds500":
            continue
        held = BSDS500_SPLITS[_flag(argv, "--subset")]
        if "--n-experimental" in argv:
            asked = int(_flag(argv, "--n-experimental")) + int(_flag(argv, "--n-control"))
            assert asked <= held, (step.name, asked, held)
        if step.script == "finetune":
            assert int(_flag(argv, "--batch-size")) <= int(held * 0.9), step.name
        for figure in step.figures:
            if figure.startswith("figures/separation_"):
                methods = argv[argv.index("--methods") + 1:]
                assert figure.removeprefix("figures/separation_") in methods, step.name


def test_the_comparison_with_the_study_says_what_ours_ran_on(paper):
    """The tiny scale runs on `sample`: the section beside the study's own numbers names our
    commands and warns that its differences say nothing."""
    report = (paper / "report.md").read_text(encoding="utf-8")
    section = report[report.index("## The study's own results beside ours"):]
    assert "Ours: `python scripts/evaluate_copy_detection.py --dataset sample" in section
    assert "say nothing about the reproduction" in section


def test_redo_outside_only_and_missing_prerequisites_are_said(tmp_path):
    done = _run("--scale", "tiny", "--only", "hashes", "--redo", "neural",
                "--output", str(tmp_path / "a"))
    assert done.returncode == 2 and "--redo neural: not among --only hashes" in done.stderr
    done = _run("--scale", "tiny", "--only", "search_dhash_0", "--output", str(tmp_path / "b"))
    assert done.returncode == 1
    entry = _ledger(tmp_path / "b")["search_dhash_0"]
    assert entry["status"] == "skipped"
    assert entry["reason"] == "needs stores_dhash (add it to --only)"


def test_a_full_dry_run_says_which_weights_are_missing(tmp_path):
    from extractor import WeightsNotFoundError, get_model

    try:
        get_model("simclr_v2_r50_2x_sk1", device="cpu")
        missing = False
    except WeightsNotFoundError:
        missing = True
    done = _run("--scale", "full", "--dry-run", "--datasets-dir", str(tmp_path),
                "--output", str(tmp_path / "paper"))
    assert done.returncode == 0, done.stderr
    said = "warning: weights missing for simclr_v2_r50_2x_sk1" in done.stdout
    assert said == missing
    if missing:
        assert "download_simclr.py --version v2 --model r50_2x_sk1" in done.stdout


def test_every_shown_command_reads_back_as_its_arguments(tmp_path):
    """The commands the plan prints split (as a shell splits them) into the step's own
    arguments, quotes in method specs included."""
    import shlex

    from study import command_line

    for name in ("BSDS500/train", "BSDS500/val", "BSDS500/test", "imagenet_samples"):
        (tmp_path / name).mkdir(parents=True)
    for scale in ("quick", "full"):
        for step in build_plan(scale, tmp_path):
            words = shlex.split(command_line(step))
            assert words[:2] == ["python", f"scripts/{step.script}.py"]
            assert words[2:] == list(step.argv), step.name


def test_a_dry_run_says_what_is_cached_and_shows_runnable_commands(paper, tmp_path):
    done = _run("--scale", "tiny", "--dry-run", "--output", str(paper))
    assert done.returncode == 0, done.stderr
    titles = [line for line in done.stdout.splitlines() if line.startswith("[")]
    assert titles and all(t.endswith("(cached)") for t in titles), titles
    runs = [line for line in done.stdout.splitlines() if line.strip().startswith("run:")]
    assert runs and not any("{" in line for line in runs)  # no placeholders left
    done = _run("--scale", "tiny", "--dry-run", "--output", str(tmp_path / "new"))
    assert all(t.endswith("(to run)") for t in done.stdout.splitlines() if t.startswith("["))
    done = _run("--scale", "quick", "--dry-run", "--datasets-dir", str(tmp_path),
                "--output", str(paper))
    assert "warning: a run would stop:" in done.stdout and "scale tiny" in done.stdout
    assert not (tmp_path / "new").exists()
