"""Download a published SimCLR checkpoint (resumable, progress bar, size check) and convert it to
a PyTorch file ``{"encoder", "head", "supervised_head", ...}``."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from pathlib import Path

import torch

from helpers import DownloadError, download_file, get_logger, save_torch
from SimCLRv2.checkpoints import Checkpoint

logger = get_logger(__name__)


def default_dir() -> Path:
    """``<torch hub>/simclr``: converted weights (``<name>[_ema].pth``) and TensorFlow files."""
    return Path(torch.hub.get_dir()) / "simclr"


def converted_path(checkpoint: Checkpoint, ema: bool = False, folder: Path | None = None
                   ) -> Path:
    """Where the converted weights of ``checkpoint`` go by default."""
    return (folder or default_dir()) / f"{checkpoint.name}{'_ema' if ema else ''}.pth"


def _remote_size(url: str, timeout: float = 30.0) -> int | None:
    request = urllib.request.Request(url, method="HEAD",
                                     headers={"User-Agent": "image-similarity-lab"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            return int(length) if length is not None else None
    except (urllib.error.URLError, OSError, ValueError):
        return None


def download_checkpoint(checkpoint: Checkpoint, folder: str | Path | None = None,
                        base_url: str | None = None) -> Path:
    """Download the TensorFlow files of ``checkpoint``; returns the checkpoint prefix
    (``<folder>/model.ckpt-<step>``) to pass to `read_tf_checkpoint`.

    Parameters
    ----------
    checkpoint : Checkpoint
    folder : str or Path, optional
        Default ``<torch hub>/simclr/tf/<version>/<category>/<model>``.
    base_url : str, optional
        A mirror of the checkpoint folder (tests use a local server).

    Raises
    ------
    DownloadError
        Network errors, or a file whose size differs from the server's.
    """
    folder = Path(folder) if folder is not None else (
        default_dir() / "tf" / checkpoint.version / checkpoint.category / checkpoint.model)
    base = base_url or checkpoint.url
    if not base.endswith("/"):
        base += "/"
    index = download_file(base + "checkpoint", folder / "checkpoint",
                          expected_size=_remote_size(base + "checkpoint"))
    match = re.search(r'model_checkpoint_path:\s*"([^"]+)"', index.read_text())
    if not match:
        raise DownloadError(f"{index} names no model_checkpoint_path")
    stem = Path(match[1]).name
    if stem != f"model.ckpt-{checkpoint.step}":
        logger.info("%s: the folder names %s (the release listed step %d)", checkpoint.name,
                    stem, checkpoint.step)
    for suffix in (".index", ".data-00000-of-00001"):
        url = base + stem + suffix
        download_file(url, folder / (stem + suffix), expected_size=_remote_size(url))
    return folder / stem


def download_and_convert(checkpoint: Checkpoint, ema: bool = False,
                         output: str | Path | None = None, base_url: str | None = None,
                         tf_folder: str | Path | None = None) -> Path:
    """Download ``checkpoint``, convert it (TensorFlow needed to read it), save it atomically.

    Returns
    -------
    Path
        The ``.pth`` file (kept, not redone, when it exists).
    """
    from SimCLRv2 import convert  # the converter: only for TF checkpoints

    output = Path(output) if output is not None else converted_path(checkpoint, ema)
    if output.exists():
        logger.info("%s already converted", output)
        return output
    prefix = download_checkpoint(checkpoint, tf_folder, base_url)
    state = convert.convert_variables(convert.read_tf_checkpoint(prefix), checkpoint.model,
                                      checkpoint.version, ema)
    state["checkpoint"] = {"name": checkpoint.name, "url": base_url or checkpoint.url,
                           "file": prefix.name}
    save_torch(state, output)  # the format of convert.save_checkpoint
    logger.info("converted %s to %s", checkpoint.name, output)
    return output
