"""Run the study's steps in order, each once per configuration.

The ledger, ``<paper>/experiments.json``, lists every step with its key
(`study.cache.step_key`), its inputs, its command, its result folder, how long it took and
whether this run computed it or found it cached. It is rewritten atomically after every step,
so an interrupted run resumes from the first step not finished. The steps' scripts are run by
a callable the caller passes (``runner(script, argv) -> exit status``): this package names
scripts but does not import them (they sit above every package).
"""

from __future__ import annotations

import logging
import re
import shlex
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from helpers import now_iso, read_json, write_json
from study.cache import step_key
from study.plan import FEATURES, Step

logger = logging.getLogger(__name__)

#: The ledger's file name inside the paper folder.
LEDGER = "experiments.json"

Runner = Callable[[str, list[str]], int]


@dataclass
class Layout:
    """Where the paper's parts live."""

    folder: Path

    @property
    def steps(self) -> Path:
        return self.folder / "steps"

    @property
    def features(self) -> Path:
        return self.folder / "features"

    def step(self, name: str) -> Path:
        return self.steps / name


def resolve_argv(step: Step, layout: Layout) -> list[str]:
    """The step's flags with the paper's folders filled in."""
    out = []
    for arg in step.argv:
        arg = arg.replace(FEATURES, str(layout.features))
        arg = re.sub(r"\{step:([A-Za-z0-9_]+)\}", lambda m: str(layout.step(m.group(1))), arg)
        out.append(arg)
    return out


def output_flags(step: Step, layout: Layout, rerun: bool) -> list[str]:
    """The output flags the runner adds: a step's own folder, or the paper's stores."""
    if step.writes == "stores":
        return ["--features-dir", str(layout.features), *(["--overwrite"] if rerun else [])]
    folder = layout.step(step.name)
    used = folder.is_dir() and any(p.name != ".lock" for p in folder.iterdir())
    return ["--output", str(folder), *(["--overwrite"] if used else [])]


def command_line(step: Step, layout: Layout | None = None) -> str:
    """The command that runs the step by hand (placeholders kept without a layout)."""
    argv = resolve_argv(step, layout) if layout else list(step.argv)
    if layout is not None:
        argv += (["--features-dir", str(layout.features)] if step.writes == "stores"
                 else ["--output", str(layout.step(step.name))])
    words = [w if re.fullmatch(r"[\w@%+=:,./{}-]+", w) else _quoted(w) for w in argv]
    return " ".join(["python", f"scripts/{step.script}.py", *words])


def _quoted(word: str) -> str:
    """A word as a shell reads it back: a spec with Python quotes in double quotes
    (``"sscd:reduce='pca:64'"``), anything else as `shlex.quote` gives it."""
    if "'" in word and not re.search(r'["$`\\!]', word):
        return f'"{word}"'
    return shlex.quote(word)


def load_ledger(layout: Layout) -> dict[str, dict]:
    """The steps recorded by earlier runs, by name (empty when there is none)."""
    path = layout.folder / LEDGER
    if not path.is_file():
        return {}
    try:
        return {s["name"]: s for s in read_json(path).get("steps", [])}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        logger.warning("%s cannot be read: every step runs again", path)
        return {}


def check_same_study(layout: Layout, scale: str, root: Path) -> None:
    """Refuse to continue a paper folder made at another scale or from another data root:
    its steps would be replaced by different ones (``--overwrite`` does it on purpose).

    Raises
    ------
    ValueError
    """
    path = layout.folder / LEDGER
    try:
        earlier = read_json(path) if path.is_file() else {}
    except (OSError, ValueError):
        return
    old_scale, old_root = earlier.get("scale"), earlier.get("data_root")
    if (old_scale, old_root) not in ((None, None), (scale, str(root))):
        raise ValueError(
            f"{layout.folder} holds the study at scale {old_scale} from the data in {old_root}; "
            f"this run (scale {scale}, data in {root}) would replace its steps: pass the same "
            "--scale and --datasets-dir (or $DATASETS_DIR), another --name, or --overwrite "
            "to replace them")


def is_cached(step: Step, key: str, old: dict | None, layout: Layout) -> bool:
    """Whether ``old`` (the step's entry in ``experiments.json``) was made with ``key`` and
    its result is there and complete: a run would not compute the step again."""
    return bool(old and old.get("key") == key and old.get("status") in ("computed", "cached")
                and _finished(step, layout))


def _finished(step: Step, layout: Layout) -> bool:
    """Whether the step's result is there and complete (its record has an end, no error)."""
    if step.writes == "stores":
        return layout.features.is_dir()
    record = layout.step(step.name) / "experiment.json"
    try:
        data = read_json(record)
    except (OSError, ValueError):
        return False
    return bool(data.get("ended_at")) and not data.get("error")


@dataclass
class Study:
    """One run over the plan: what it resolves, runs and records."""

    plan: list[Step]
    layout: Layout
    root: Path
    scale: str
    runner: Runner

    def run(self, redo: Iterable[str] = (), only: Iterable[str] | None = None,
            rerun_all: bool = False) -> list[dict]:
        """Run the plan's steps (``only`` those named, when given) and return the ledger."""
        redo, only = set(redo), set(only) if only is not None else None
        earlier = load_ledger(self.layout)
        keys: dict[str, str] = {}
        entries: list[dict] = []
        failed: set[str] = set()
        for step in self.plan:
            key, inputs = step_key(step, self.root, keys)
            keys[step.name] = key
            old = earlier.get(step.name)
            entry = self._entry(step, key, inputs, old)
            if only is not None and step.name not in only:
                kept = is_cached(step, key, old, self.layout)
                entry.update(status="cached") if kept else entry.update(
                    status="not run", reason="not among --only")
            elif failed & set(step.after):
                entry.update(status="skipped",
                             reason=f"needs {', '.join(sorted(failed & set(step.after)))}"
                             + (" (add it to --only)" if only is not None else ""))
            elif (not rerun_all and step.name not in redo
                  and is_cached(step, key, old, self.layout)):
                entry.update(status="cached")
                logger.info("%s: cached (key %s, computed %s)", step.name, key,
                            old.get("computed_at"))
            else:
                self._compute(step, entry, rerun=True)
            if entry["status"] in ("failed", "skipped", "not run"):
                failed.add(step.name)
            entries.append(entry)
            self.save(entries + [e for e in earlier.values()
                                 if e["name"] not in {x["name"] for x in entries}
                                 and e["name"] not in {s.name for s in self.plan}])
        return entries

    def _entry(self, step: Step, key: str, inputs: dict, old: dict | None) -> dict:
        kept = {k: old[k] for k in ("seconds", "computed_at", "status") if old and k in old
                and old.get("key") == key}
        return {"name": step.name, "title": step.title, "part": step.part,
                "script": f"scripts/{step.script}.py", "key": key, "inputs": inputs,
                "command": command_line(step, self.layout),
                "result": str(self.layout.features if step.writes == "stores"
                              else self.layout.step(step.name)),
                "notes": list(step.notes), **kept}

    def _compute(self, step: Step, entry: dict, rerun: bool) -> None:
        argv = resolve_argv(step, self.layout) + output_flags(step, self.layout, rerun)
        logger.info("%s: python scripts/%s.py %s", step.name, step.script, " ".join(argv))
        started = time.perf_counter()
        status = self.runner(step.script, argv)
        seconds = round(time.perf_counter() - started, 2)
        if status == 0:
            entry.update(status="computed", seconds=seconds, computed_at=now_iso())
        else:
            entry.update(status="failed", seconds=seconds, computed_at=now_iso(),
                         reason=f"exit status {status}")
            logger.error("%s failed (exit status %s) after %.1f s", step.name, status, seconds)

    def save(self, entries: list[dict]) -> Path:
        """Write the ledger (atomically)."""
        return write_json(self.layout.folder / LEDGER, {
            "scale": self.scale, "data_root": str(self.root), "updated_at": now_iso(),
            "steps": entries})
