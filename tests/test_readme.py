"""The README and the guides in docs/ are true: the README's Python blocks run, in order, as a
new user pastes them, and so do each guide's, from a folder holding ``photos/``; every link
points at a file that exists."""

import re
import shlex
from pathlib import Path

import pytest

from data_retrieval import load_dataset

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
GUIDES = sorted((REPO / "docs").glob("*.md"))


def _python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), re.S)


def test_the_readme_starts_in_a_minute():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines: the guides belong in docs/"
    assert _python_blocks(README), "the quick start has no Python block"


def test_the_readme_python_blocks_run_in_order(tmp_path, monkeypatch):
    """What the quick start shows works on a fresh install: the blocks run one after the other
    in one namespace (results written under a temporary Results/)."""
    monkeypatch.setenv("RESULTS_DIR", str(tmp_path / "Results"))
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__readme__"}
    for number, block in enumerate(_python_blocks(README), 1):
        try:
            exec(compile(block, f"README.md python block {number}", "exec"), namespace)
        except Exception as exc:  # noqa: BLE001 - name the block that failed
            pytest.fail(f"README.md python block {number} failed: {exc!r}\n{block}")


@pytest.mark.parametrize("page", [README, REPO / "ARCHITECTURE.md", *GUIDES],
                         ids=lambda p: p.name)
def test_every_link_points_at_a_file(page):
    text = page.read_text(encoding="utf-8")
    broken = []
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if re.match(r"https?://", target):
            continue
        if not (page.parent / target).exists():
            broken.append(target)
    assert not broken, f"{page.name}: links to missing files: {broken}"


RUN_FROM = "from a folder holding `photos/`"


def _run_blocks(page: Path, namespace: dict) -> None:
    for number, block in enumerate(_python_blocks(page), 1):
        try:
            exec(compile(block, f"{page.name} python block {number}", "exec"), namespace)
        except Exception as exc:  # noqa: BLE001 - name the block that failed
            pytest.fail(f"{page.name} python block {number} failed: {exc!r}\n{block}")


@pytest.fixture
def photos_folder(tmp_path, monkeypatch):
    """The folder a guide's reader runs its blocks from: ``photos/`` holds the sample photos
    and two edited copies of ``chelsea``; results go to its ``Results/``."""
    from generator import get_attack
    from helpers import load_image

    photos = tmp_path / "photos"
    photos.mkdir()
    for record in load_dataset("sample").records:
        load_image(record.path).save(photos / f"{record.image_id}.png")
    chelsea = load_image(photos / "chelsea.png")
    get_attack("jpg_compression_50")(chelsea).save(photos / "chelsea_jpeg.png")
    get_attack("scaling_0.8")(chelsea).save(photos / "chelsea_small.png")
    monkeypatch.setenv("RESULTS_DIR", str(tmp_path / "Results"))
    monkeypatch.chdir(tmp_path)
    return photos


@pytest.mark.parametrize("page", [g for g in GUIDES if _python_blocks(g)], ids=lambda p: p.name)
def test_the_guides_python_blocks_run_in_order(page, photos_folder):
    """Every Python block of every guide runs, in order, in one namespace per guide, from the
    folder its first lines promise (``photos/`` beside the reader), as a reader pastes them."""
    text = page.read_text(encoding="utf-8")
    assert RUN_FROM in " ".join(text.split()), (
        f"{page.name} has Python blocks but does not say where they run from ({RUN_FROM!r})")
    _run_blocks(page, {"__name__": f"__{page.stem}__"})


def test_the_guides_are_linked_from_the_readme():
    text = README.read_text(encoding="utf-8")
    missing = [g.name for g in GUIDES if f"docs/{g.name}" not in text]
    assert not missing, f"guides the README does not link: {missing}"


def _commands(page: Path) -> list[tuple[str, list[str]]]:
    """``(script, arguments)`` of every ``scripts/<name>.py`` command the page shows, in its
    code blocks and its inline code (continuation lines joined, comments dropped; ``...``
    stands for flags shown elsewhere)."""
    text = page.read_text(encoding="utf-8")
    lines = []
    for body in re.findall(r"```[a-z]*\n(.*?)```", text, re.S):
        lines += body.replace("\\\n", " ").splitlines()
    prose = re.sub(r"```[a-z]*\n.*?```", "", text, flags=re.S)
    lines += [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", prose)]
    out = []
    for line in lines:
        if not re.search(r"scripts/\w+\.py", line):
            continue
        words = shlex.split(line, comments=True)
        at = next((i for i, w in enumerate(words) if re.fullmatch(r"scripts/\w+\.py", w)), None)
        if at is not None:
            out.append((Path(words[at]).stem, [w for w in words[at + 1:] if w != "..."]))
    return out


COMMANDS = [(page, script, argv) for page in [README, REPO / "ARCHITECTURE.md", *GUIDES]
            for script, argv in _commands(page)]


def test_the_pages_show_commands():
    assert len(COMMANDS) > 30, "the command extraction found too few commands to mean anything"


@pytest.mark.parametrize(("page", "script", "argv"), COMMANDS,
                         ids=[f"{p.name}:{s}:{i}" for i, (p, s, _) in enumerate(COMMANDS)])
def test_every_shown_command_is_accepted_by_its_script(page, script, argv, monkeypatch):
    """The shell blocks of the README and the guides: each names a script that exists and
    flags it accepts with values of the right type (parsed by the script's own parser; the
    experiments they start are the scripts' own tests' business)."""
    from tests.test_every_script import script_parser

    assert (REPO / "scripts" / f"{script}.py").is_file(), f"{page.name}: no scripts/{script}.py"
    if not argv:
        return  # a mention of the script, not a command
    parser = script_parser(script, monkeypatch)
    try:
        parser.parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"{page.name}: `{script}.py {' '.join(argv)}` is refused by its parser "
                    f"(exit {exc.code})")
