"""The published SimCLR checkpoints (TensorFlow 1 format, Google Cloud Storage) and their URLs.

SimCLR v2: 13 models ``r{50,101,152}_{1x,2x}_sk{0,1}`` and ``r152_3x_sk1`` in five categories
(``pretrained``, ``finetuned_100pct``, ``finetuned_10pct``, ``finetuned_1pct``, ``supervised``).
SimCLR v1: ResNet-50 ``1x``, ``2x``, ``4x`` in ``pretrain``, ``finetune_100pct`` and
``finetune_10pct``. Every checkpoint holds the raw weights and their exponential moving averages
(EMA); the converter picks one or the other (``ema=True``).

A checkpoint folder holds a small ``checkpoint`` text file naming the step
(``model_checkpoint_path: "model.ckpt-250228"``), then ``<step>.index`` and
``<step>.data-00000-of-00001`` (the weights). The steps below are those of the release; the
downloader reads the ``checkpoint`` file rather than trusting them.
"""

from __future__ import annotations

from dataclasses import dataclass

BUCKET = "https://storage.googleapis.com/simclr-checkpoints"

V2_MODELS = tuple(f"r{d}_{w}x_sk{s}" for d in (50, 101, 152) for w in (1, 2) for s in (0, 1)
                  ) + ("r152_3x_sk1",)
V2_STEPS = {"pretrained": 250228, "finetuned_100pct": 37535, "finetuned_10pct": 3754,
            "finetuned_1pct": 751, "supervised": 28151}
V1_MODELS = ("1x", "2x", "4x")
V1_STEPS = {"pretrain": {"1x": 225206, "2x": 225206, "4x": 225206},
            "finetune_100pct": {"1x": 9384, "2x": 18768, "4x": 4692},
            "finetune_10pct": {"1x": 939, "2x": 939, "4x": 470}}


@dataclass(frozen=True)
class Checkpoint:
    """One published checkpoint.

    Attributes
    ----------
    version : {"v1", "v2"}
    model : str
        ``r50_1x_sk1`` (v2) or ``1x`` (v1).
    category : str
    step : int
        The release's step (file names ``model.ckpt-<step>.*``).
    """

    version: str
    model: str
    category: str
    step: int

    @property
    def url(self) -> str:
        """Folder URL (ends with ``/``)."""
        return f"{BUCKET}/simclr{self.version}/{self.category}/{self.model}/"

    @property
    def files(self) -> list[str]:
        """The files the converter needs, as the release names them."""
        stem = f"model.ckpt-{self.step}"
        return ["checkpoint", f"{stem}.index", f"{stem}.data-00000-of-00001"]

    @property
    def name(self) -> str:
        """``simclr_v2_r50_1x_sk1_pretrained``: how converted weights are named."""
        return f"simclr_{self.version}_{self.model}_{self.category}"


def list_checkpoints(version: str | None = None) -> list[Checkpoint]:
    """Every published checkpoint (of one version if given)."""
    out = []
    if version in (None, "v2"):
        out += [Checkpoint("v2", m, c, s) for c, s in V2_STEPS.items() for m in V2_MODELS]
    if version in (None, "v1"):
        out += [Checkpoint("v1", m, c, steps[m]) for c, steps in V1_STEPS.items()
                for m in V1_MODELS]
    if version not in (None, "v1", "v2"):
        raise ValueError(f"version must be v1 or v2, got {version!r}")
    return out


def find_checkpoint(version: str, model: str, category: str) -> Checkpoint:
    """A published checkpoint; a clear error lists the valid choices."""
    options = list_checkpoints(version)
    for c in options:
        if c.model == model and c.category == category:
            return c
    models = sorted({c.model for c in options})
    categories = sorted({c.category for c in options})
    raise ValueError(f"no SimCLR {version} checkpoint {model!r} in {category!r}; models: "
                     f"{', '.join(models)}; categories: {', '.join(categories)}")
