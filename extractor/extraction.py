"""Batched feature extraction through a DataLoader: decode and transform in workers, the model in
the main process (on GPU when asked), unreadable images reported and skipped."""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence
from typing import Any

import numpy as np
from torch.utils.data import DataLoader, Dataset

from data_retrieval import ImageRecord
from data_retrieval.items import load_item, loadable
from extractor.models import FeatureModel
from helpers import ImageLoadError, get_logger, progress, resolve_device
from helpers.descriptors import FLOAT_METRICS, FloatFeatures

logger = get_logger(__name__)

#: Distances raw features can be compared with (`hashing.distances`).
FEATURE_METRICS = FLOAT_METRICS  # the one list: helpers.descriptors


class _ImageDataset(Dataset):
    def __init__(self, items: Sequence[Any], transform):
        self.items = [loadable(item, i) for i, item in enumerate(items)]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        image_id, source = self.items[index]
        try:
            return index, self.transform(load_item(source)), None
        except (ImageLoadError, OSError, ValueError) as exc:
            return index, None, str(exc)


def _worker_init(_: int) -> None:
    # Ctrl-C reaches the whole process group: the main process stops the loader and reports
    # once; the workers must not each print a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class _Collate:
    def __init__(self, model: FeatureModel):
        self.model = model

    def __call__(self, rows):
        good = [(i, x) for i, x, _ in rows if x is not None]
        bad = [(i, reason) for i, x, reason in rows if x is None]
        batch = self.model.collate([x for _, x in good]) if good else None
        return [i for i, _ in good], batch, bad


def extract(
    model: FeatureModel,
    images: Sequence[Any],
    batch_size: int = 32,
    device: str | None = None,
    workers: int = 0,
    show_progress: bool | None = None,
    multiprocessing_context: str | None = None,
    metric: str = "cosine",
) -> FloatFeatures:
    """Features of many images, batch by batch.

    Parameters
    ----------
    model : FeatureModel
        From `extractor.get_model` or `extractor.custom_model`.
    images : sequence
        Paths, `ImageRecord` objects, PIL images, or ``(id, PIL image)`` pairs.
    batch_size : int
    device : str, optional
        Move the model there first (default: where it is).
    workers : int
        DataLoader worker processes that decode and transform (0: in this process).
    show_progress : bool, optional
        Progress bar (default: when stderr is a terminal).
    multiprocessing_context : str, optional
        ``"fork"``, ``"spawn"``... for the workers (default: the platform's).
    metric : str
        How the features are to be compared: ``cosine``, ``jensenshannon``, ``l1`` or ``l2``.

    Returns
    -------
    FloatFeatures
        The same kind of object `hashing.describe` gives: float32 ``values`` of the readable
        images in input order, their ``ids`` (and ``records`` when every item was an
        `ImageRecord`), ``method`` (the model's identity, ``model.name``), ``metric``, and the
        unreadable images in ``bad`` as ``(image id, path, reason)`` (each logged as a warning).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if metric not in FEATURE_METRICS:
        raise ValueError(f"metric must be one of {', '.join(FEATURE_METRICS)}, got {metric!r}")
    if device is not None:
        model.to(resolve_device(device))
    dataset = _ImageDataset(images, model.transform)
    features = np.empty((len(dataset), model.dim), dtype=np.float32)
    done = np.zeros(len(dataset), dtype=bool)
    bad: list[tuple[str, str, str]] = []
    records = all(isinstance(item, ImageRecord) for item in images)

    def result(rows: np.ndarray) -> FloatFeatures:
        return FloatFeatures(features[rows], metric,
                             ids=tuple(dataset.items[i][0] for i in rows),
                             records=tuple(images[i] for i in rows) if records else None,
                             method=model.name, bad=tuple(bad))

    if len(dataset) == 0:
        return result(np.zeros(0, dtype=np.int64))
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                        collate_fn=_Collate(model),
                        pin_memory=model.device.startswith("cuda"),
                        multiprocessing_context=multiprocessing_context if workers else None,
                        worker_init_fn=_worker_init if workers else None,
                        persistent_workers=False)
    bar = progress(total=len(dataset), desc=f"{model.name} features", unit="img",
                   disable=None if show_progress is None else not show_progress)
    for indices, batch, failures in loader:
        if indices:
            features[indices] = model.forward(batch).numpy()
            done[indices] = True
        for index, reason in failures:
            image_id, source = dataset.items[index]
            path = str(source) if isinstance(source, str | os.PathLike) else ""
            logger.warning("skipping image %s (%s): %s", image_id, path, reason)
            bad.append((image_id, path, reason))
        bar.update(len(indices) + len(failures))
    bar.close()
    return result(np.flatnonzero(done))

