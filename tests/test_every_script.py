"""Every script under ``scripts/``, enumerated: a script added tomorrow is checked without
anyone remembering to add it here.

What each script must do (ARCHITECTURE.md, "Scripts"):
- its ``main`` is wrapped by `helpers.cli.script_main` (one ``error:`` line, never a traceback,
  for bad input, a full disk, a read-only folder);
- every numeric flag declares its range (`helpers.cli.integer` / `real`, finite bounds), so
  -1, 0, NaN, infinity and huge values are refused when parsed or lie in the declared range;
- ``--name`` and ``--output`` go through the output mechanism's types (`helpers.runs`), and
  results are written through `experiment_run` / `result_file` only, never by hand;
- a script that writes results has ``--overwrite`` and refuses to replace anything else.
"""

from __future__ import annotations

import argparse
import re

import pytest

from helpers.cli import Number
from helpers.runs import file_type, folder_type, name_type
from tests.conftest import REPO, load_script

SCRIPTS = sorted(p.stem for p in (REPO / "scripts").glob("*.py") if not p.stem.startswith("_"))
HOSTILE_NUMBERS = ["-1", "0", "nan", "inf", "-inf", "1e30", "99999999999999999999", "0.5", "x"]


class _Captured(BaseException):  # noqa: N818 - not an error: the parser, carried out of main
    def __init__(self, parser):
        self.parser = parser


def script_parser(name: str, monkeypatch) -> argparse.ArgumentParser:
    """The parser a script's ``main`` builds (caught when it parses, before any work)."""
    module = load_script(name)

    def capture(self, *args, **kwargs):
        raise _Captured(self)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    with pytest.raises(_Captured) as caught:
        module.main([])
    monkeypatch.undo()
    return caught.value.parser


def _actions(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _actions(sub)
        else:
            yield action


def _flag(action) -> str:
    return action.option_strings[0] if action.option_strings else action.dest


def test_the_enumeration_finds_the_scripts():
    assert len(SCRIPTS) >= 26 and {"cluster", "benchmark_search", "finetune"} <= set(SCRIPTS)


@pytest.mark.parametrize("name", SCRIPTS)
def test_main_gives_one_line_errors(name):
    main = load_script(name).main
    assert getattr(main, "__script_main__", False), (
        f"scripts/{name}.py: decorate main with helpers.cli.script_main"
    )


@pytest.mark.parametrize("name", SCRIPTS)
def test_numeric_flags_declare_a_finite_range(name, monkeypatch):
    parser = script_parser(name, monkeypatch)
    undeclared = [_flag(a) for a in _actions(parser) if a.type in (int, float)]
    assert not undeclared, (
        f"scripts/{name}.py: {undeclared} take plain int/float; declare "
        "the range with helpers.cli.integer(low, high) / real(low, high)"
    )
    unbounded = [
        _flag(a)
        for a in _actions(parser)
        if isinstance(a.type, Number) and (a.type.low is None or a.type.high is None)
    ]
    assert not unbounded, f"scripts/{name}.py: {unbounded} need both bounds"


@pytest.mark.parametrize("name", SCRIPTS)
def test_numeric_flags_refuse_hostile_values_in_one_line(name, monkeypatch, capsys):
    parser = script_parser(name, monkeypatch)
    numeric = [a for a in _actions(parser) if isinstance(a.type, Number) and a.option_strings]
    for action in numeric:
        kind, low, high = action.type.kind, action.type.low, action.type.high
        for text in HOSTILE_NUMBERS:
            try:
                value = action.type(text)
            except argparse.ArgumentTypeError as exc:
                assert "\n" not in str(exc) and text in str(exc)
                continue
            assert isinstance(value, kind) and low <= value <= high, (name, _flag(action), text)
        # through argparse: exit status 2, one line that names the flag
        with pytest.raises(SystemExit) as exit_:
            _parse_alone(parser, [action.option_strings[0], "nan"])
        assert exit_.value.code == 2
        last = capsys.readouterr().err.strip().splitlines()[-1]
        assert action.option_strings[0] in last and "nan" in last


def _parse_alone(parser: argparse.ArgumentParser, argv: list[str]):
    """Parse ``argv`` with every other flag optional (positionals given a placeholder)."""
    placeholders = []
    for action in parser._actions:
        action.required = False
        if not action.option_strings and not isinstance(action, argparse._SubParsersAction):
            placeholders += ["placeholder"] * (1 if action.nargs in (None, 1) else 0)
    return parser.parse_args([*placeholders, *argv])


@pytest.mark.parametrize("name", SCRIPTS)
def test_names_and_outputs_go_through_the_output_mechanism(name, monkeypatch):
    parser = script_parser(name, monkeypatch)
    for action in _actions(parser):
        if action.dest == "name":
            assert action.type is name_type, f"scripts/{name}.py: --name needs runs.name_type"
        if action.dest.startswith("output"):
            assert action.type is folder_type or getattr(action.type, "suffix", None), (
                f"scripts/{name}.py: {_flag(action)} needs runs.folder_type or file_type"
            )


@pytest.mark.parametrize("name", SCRIPTS)
def test_results_are_written_through_one_mechanism(name, monkeypatch):
    """No script builds its result folder or record by hand: those paths skip the checks."""
    source = (REPO / "scripts" / f"{name}.py").read_text()
    by_hand = [
        call
        for call in (
            "output_dir(",
            "check_output_file(",
            "write_experiment_json(",
            "experiment_record(",
            "results_root() /",
        )
        if re.search(rf"(?<![\w.]){re.escape(call)}", source)
    ]
    assert not by_hand, (
        f"scripts/{name}.py calls {by_hand}: write through "
        "helpers.experiment_run / helpers.result_file"
    )
    parser = script_parser(name, monkeypatch)
    flags = {f for a in _actions(parser) for f in a.option_strings}
    if "--output" in flags:
        assert "--overwrite" in flags, f"scripts/{name}.py writes --output without --overwrite"


@pytest.mark.parametrize(
    "value", ["..", "", "../x", "/tmp/isl_evil", ".", "a/b", "a\nb", " x", ".hidden", "x" * 300]
)
def test_name_type_refuses_what_is_not_one_plain_name(value):
    with pytest.raises(argparse.ArgumentTypeError, match="plain name"):
        name_type(value)


def test_output_types_refuse_files_links_and_wrong_kinds(tmp_path):
    (tmp_path / "README.md").write_text("mine")
    (tmp_path / "store.npy").write_bytes(b"x")
    for bad in (tmp_path / "README.md", tmp_path / "README.md" / "sub", ""):
        with pytest.raises(argparse.ArgumentTypeError, match="refused"):
            folder_type(str(bad))
    json_file = file_type(".json")
    for bad in (
        tmp_path / "README.md",
        tmp_path / "store.npy",
        tmp_path,
        tmp_path / "README.md" / "x.json",
    ):
        with pytest.raises(argparse.ArgumentTypeError, match="refused"):
            json_file(str(bad))
    assert json_file(str(tmp_path / "new.json")) == str(tmp_path / "new.json")
    assert folder_type(str(tmp_path / "new")) == str(tmp_path / "new")


@pytest.mark.parametrize("name", SCRIPTS)
def test_hostile_names_and_outputs_are_refused_through_main(name, monkeypatch, tmp_path,
                                                             capsys):
    """Through each script's own ``main``: ``--name ../x`` and an ``--output`` that is an
    existing file of ours (a README, a store's rows) exit 2 with one line, touching nothing."""
    parser = script_parser(name, monkeypatch)
    flags = {f for a in _actions(parser) for f in a.option_strings}
    readme, rows = tmp_path / "README.md", tmp_path / "store.npy"
    readme.write_text("mine")
    rows.write_bytes(b"rows")
    attempts = []  # (argv, what the error line names)
    if "--name" in flags:
        attempts += [(["--name", v], "--name") for v in ("../escaped", str(tmp_path / "abs"),
                                                         "a\nb")]
    positionals = [a for a in parser._actions if not a.option_strings
                   and not isinstance(a, argparse._SubParsersAction)]
    for action in _actions(parser):  # every flag or positional naming a place written to
        if not (action.type is folder_type or getattr(action.type, "suffix", None)):
            continue
        for value in (readme, rows, readme / "under"):
            if action.option_strings:
                attempts.append(([action.option_strings[0], str(value)],
                                 action.option_strings[0]))
            else:
                argv = ["placeholder"] * positionals.index(action) + [str(value)]
                attempts.append((argv, action.metavar or action.dest))
    if not attempts:
        pytest.skip(f"scripts/{name}.py names no output")
    for argv, named in attempts:
        with pytest.raises(SystemExit) as exit_:
            load_script(name).main([*argv, "--overwrite"] if "--overwrite" in flags else argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert exit_.value.code == 2 and named in err[-1], (name, argv, err[-1:])
    assert readme.read_text() == "mine" and rows.read_bytes() == b"rows"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "store.npy"]
    assert not (REPO.parent / "escaped").exists()


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_flag_says_what_it_does(name, monkeypatch):
    """--help is the script's manual: every flag has a help text (a flag hidden on purpose says
    so with argparse.SUPPRESS)."""
    parser = script_parser(name, monkeypatch)
    silent = [_flag(a) for a in _actions(parser)
              if not isinstance(a, argparse._HelpAction) and not a.help]
    assert not silent, f"scripts/{name}.py: flags without help: {silent}"
