"""Shared fixtures: small real photos, the optional BSDS500 copy, and a local HTTP server."""

from __future__ import annotations

import functools
import http.server
import os
import threading
from pathlib import Path

import pytest
from PIL import Image

from data_retrieval import DATA_ROOT_ENV, sample_files

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def sample_paths() -> dict[str, Path]:
    return sample_files()


@pytest.fixture
def photo(sample_paths) -> Image.Image:
    """A real colour photo (chelsea, 451x300)."""
    with Image.open(sample_paths["chelsea"]) as image:
        return image.convert("RGB")


@pytest.fixture
def small_photos(tmp_path, sample_paths) -> Path:
    """A folder with three small real photos (fast to attack)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("chelsea", "coffee", "rocket"):
        with Image.open(sample_paths[name]) as image:
            image.convert("RGB").resize((160, 120)).save(folder / f"{name}.png")
    return folder


def _datasets_dir() -> Path | None:
    value = os.environ.get(DATA_ROOT_ENV)
    return Path(value) if value else None


@pytest.fixture(scope="session")
def bsds_root() -> Path:
    """The data root holding BSDS500, or skip."""
    root = _datasets_dir()
    if root is None:
        pytest.skip(f"${DATA_ROOT_ENV} is not set: BSDS500 photos unavailable (CI sets it)")
    if not (root / "BSDS500").is_dir():
        pytest.skip(f"no BSDS500 folder under ${DATA_ROOT_ENV}={root}")
    return root


class RangeRequestHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with HTTP Range support (for resume tests); quiet."""

    def log_message(self, format, *args):  # noqa: A002
        pass

    def send_head(self):
        rng = self.headers.get("Range")
        path = Path(self.translate_path(self.path))
        if rng is None or not path.is_file():
            return super().send_head()
        start = int(rng.split("=")[1].split("-")[0])
        size = path.stat().st_size
        if start >= size:
            self.send_error(416)
            return None
        handle = open(path, "rb")  # noqa: SIM115 - closed by the base class
        handle.seek(start)
        self.send_response(206)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        self.send_header("Content-Length", str(size - start))
        self.end_headers()
        return handle


@pytest.fixture
def http_server(tmp_path):
    """Serve ``tmp_path/www`` on 127.0.0.1; yields (folder, base URL)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(RangeRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def compiled_or_fallback(request, monkeypatch, kernel, what: str):
    """The body of a fixture with params ``["compiled", <fallback>]``: a test runs once with a
    kernel of `hashing.distances.native` (skipped without a C compiler) and once with the
    NumPy/torch path a machine without a compiler takes. ``yield from`` it."""
    from hashing.distances import native

    compiled = request.param == "compiled"
    monkeypatch.setenv(native.NO_NATIVE, "0" if compiled else "1")
    native.reset()
    if compiled and kernel() is None:
        pytest.skip(f"no C compiler here: the compiled {what} kernel cannot be built")
    yield request.param
    native.reset()


@functools.cache
def load_script(name: str):
    """A script under scripts/ imported as a module, so its ``main(argv)`` runs in-process."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"script_{name}", REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_main(script: str, argv: list[str]) -> tuple[int, str]:
    """A script's ``main(argv)`` run in this process: (exit status, stderr); argparse's exits
    count as statuses too."""
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = load_script(script).main(argv)
        except SystemExit as exc:
            code = exc.code
    return code, err.getvalue()


@pytest.fixture
def fake_repo(tmp_path, monkeypatch) -> Path:
    """A stand-in for the repository (pyproject.toml, .git, Results/ with another experiment's
    files): the library's project root and default Results/ point there, so a destructive
    bug deletes this copy, never the real tree."""
    import helpers.paths

    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (repo / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (repo / "Results" / "other").mkdir(parents=True)
    (repo / "Results" / "README.md").write_text("results\n")
    (repo / "Results" / "other" / "summary.csv").write_text("a,b\n1,2\n")
    monkeypatch.setattr(helpers.paths, "_PACKAGE_PARENT", repo)
    monkeypatch.delenv("RESULTS_DIR", raising=False)
    return repo


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes (to compare before and after a run)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}
