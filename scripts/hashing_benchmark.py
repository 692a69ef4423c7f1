#!/usr/bin/env python3
"""Deprecated name of ``scripts/evaluate_copy_detection.py`` (the study's copy-detection
evaluation), kept for one release so that existing commands keep working: it runs that script
with the same flags after a deprecation message. Its results are that script's."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

NEW_NAME = "evaluate_copy_detection"
_spec = importlib.util.spec_from_file_location(
    f"script_{NEW_NAME}", Path(__file__).with_name(f"{NEW_NAME}.py"))
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)
main = _module.main
SCRIPT = _module.SCRIPT

if __name__ == "__main__":
    print(f"DeprecationWarning: scripts/hashing_benchmark.py is now scripts/{NEW_NAME}.py; "
          "the old name will be removed in the next release", file=sys.stderr)
    _module.run_script(main)
