"""The README and the guides in docs/ are true: the README's Python blocks run, in order, as a
new user pastes them; every link points at a file that exists; every Python block of the
guides is valid Python."""

import re
from pathlib import Path

import pytest

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


@pytest.mark.parametrize("page", GUIDES, ids=lambda p: p.name)
def test_the_guides_python_blocks_are_python(page):
    """Each guide's blocks at least parse (the README's run; the guides' use real datasets and
    run through the tests of their packages)."""
    for number, block in enumerate(_python_blocks(page), 1):
        compile(block, f"{page.name} python block {number}", "exec")


def test_the_guides_are_linked_from_the_readme():
    text = README.read_text(encoding="utf-8")
    missing = [g.name for g in GUIDES if f"docs/{g.name}" not in text]
    assert not missing, f"guides the README does not link: {missing}"
