"""The study regenerated: every experiment of arXiv 2206.00282 and of this repository's
follow-up work as steps of existing scripts (`study.plan`), each cached by its configuration
and inputs (`study.cache`), run in order and recorded (`study.runs`), and one report with the
study's figures and its published values beside ours (`study.report`, `study.figures`).
``scripts/reproduce_study.py`` (``make paper``) is its command line."""

from study.plan import SCALES, Step, build_plan
from study.report import write_report
from study.runs import LEDGER, Layout, Study, command_line

__all__ = ["LEDGER", "SCALES", "Layout", "Step", "Study", "build_plan", "command_line",
           "write_report"]
