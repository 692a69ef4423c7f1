"""Two views of every image: SimCLR's augmentations, copy-detection edits from the attack
generator, or a mix.

Each view's randomness is drawn from a generator seeded by ``(seed, epoch, image id, view)``,
never from a process's running random state: the same seed gives the same views whatever the
number of DataLoader workers or processes, and a run resumed mid-epoch sees the views it would
have seen without the stop.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import transforms as T
from torchvision.transforms import v2

from data_retrieval.items import load_item, loadable
from helpers import ImageLoadError, get_logger
from helpers.seeding import derive_seed

logger = get_logger(__name__)

VIEW_KINDS = ("simclr", "attacks", "mixed")


@dataclass(frozen=True)
class InputSpec:
    """What an encoder takes: square ``size`` pixels, normalised with ``mean`` and ``std``."""

    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


def input_spec(transform: Callable) -> InputSpec:
    """Read the input size and normalisation from a model's evaluation transform (a
    torchvision ``Compose`` ending in ``Normalize``, or a torchvision weights preset).

    Raises
    ------
    ValueError
        The transform says neither (pass the size, mean and std explicitly).
    """
    steps = list(getattr(transform, "transforms", [transform]))
    mean = std = size = None
    for step in steps:
        if isinstance(step, T.Normalize | v2.Normalize):
            mean, std = tuple(map(float, step.mean)), tuple(map(float, step.std))
        elif isinstance(step, T.CenterCrop | v2.CenterCrop):
            size = int(step.size[0])
        elif isinstance(step, T.Resize | v2.Resize) and size is None:
            value = step.size
            size = int(value if isinstance(value, int) else value[0])
        elif hasattr(step, "crop_size") and hasattr(step, "mean"):  # torchvision presets
            size = int(step.crop_size[0])
            mean, std = tuple(map(float, step.mean)), tuple(map(float, step.std))
    if size is None or mean is None:
        raise ValueError(f"cannot tell the input size and normalisation from the transform "
                         f"{transform!r}: give them explicitly")
    return InputSpec(size, mean, std)


def to_input(spec: InputSpec) -> v2.Compose:
    """PIL image (already at size) -> normalised float tensor."""
    return v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
                       v2.Normalize(list(spec.mean), list(spec.std))])


def simclr_augmentation(size: int, strength: float = 1.0, min_scale: float = 0.08,
                        blur: bool = True) -> v2.Compose:
    """SimCLR's augmentations on a PIL image, to ``size`` x ``size``: random resized crop
    (area ``min_scale``..1, aspect 3/4..4/3), horizontal flip, colour jitter of ``strength``
    (brightness, contrast, saturation 0.8 s, hue 0.2 s; applied with probability 0.8), grayscale
    with probability 0.2, Gaussian blur with probability 0.5 (kernel 10% of the size, sigma
    0.1..2), as in the paper's ImageNet setting.
    """
    if strength < 0:
        raise ValueError(f"colour strength must be >= 0, got {strength}")
    if not 0 < min_scale <= 1:
        raise ValueError(f"min_scale must be in (0, 1], got {min_scale}")
    steps: list[Any] = [
        v2.RandomResizedCrop(size, scale=(min_scale, 1.0), antialias=True),
        v2.RandomHorizontalFlip(),
        v2.RandomApply([v2.ColorJitter(0.8 * strength, 0.8 * strength, 0.8 * strength,
                                       0.2 * strength)], p=0.8),
        v2.RandomGrayscale(p=0.2),
    ]
    if blur:
        kernel = max(3, int(math.floor(0.1 * size)) // 2 * 2 + 1)
        steps.append(v2.RandomApply([v2.GaussianBlur(kernel, sigma=(0.1, 2.0))], p=0.5))
    return v2.Compose(steps)


class ViewMaker:
    """Makes one view of an image: with probability ``attack_prob`` a random attack of
    ``attacks`` followed by the model's own evaluation transform (the view an attacked copy
    gets when it is described), otherwise SimCLR's augmentations.

    Parameters
    ----------
    spec : InputSpec
    augmentation : callable, optional
        PIL -> PIL at ``spec.size`` (e.g. `simclr_augmentation`); needed when
        ``attack_prob < 1``.
    attacks : sequence of attacks, optional
        From `generator` (`parse_attack_id`...); needed when ``attack_prob > 0``.
    attack_prob : float
    eval_transform : callable, optional
        The model's transform, applied after an attack.
    """

    def __init__(self, spec: InputSpec, augmentation: Callable | None = None,
                 attacks: Sequence[Any] = (), attack_prob: float = 0.0,
                 eval_transform: Callable | None = None):
        if not 0 <= attack_prob <= 1:
            raise ValueError(f"attack_prob must be in [0, 1], got {attack_prob}")
        if attack_prob > 0 and (not attacks or eval_transform is None):
            raise ValueError("attack views need a list of attacks and the model's transform")
        if attack_prob < 1 and augmentation is None:
            raise ValueError("SimCLR views need an augmentation")
        self.spec = spec
        self.augmentation = augmentation
        self.attacks = list(attacks)
        self.attack_prob = float(attack_prob)
        self.eval_transform = eval_transform
        self.finish = to_input(spec)

    def __call__(self, image: Image.Image, seed: int) -> torch.Tensor:
        rng = np.random.default_rng(seed)
        if self.attack_prob and rng.random() < self.attack_prob:
            attack = self.attacks[int(rng.integers(len(self.attacks)))]
            return self.eval_transform(attack(image, rng=rng))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(rng.integers(2**63)))
            return self.finish(self.augmentation(image))

    def describe(self) -> dict[str, Any]:
        """For experiment.json."""
        return {"size": self.spec.size, "mean": self.spec.mean, "std": self.spec.std,
                "augmentation": repr(self.augmentation), "attack_prob": self.attack_prob,
                "attacks": [getattr(a, "id", str(a)) for a in self.attacks]}


class TwoViews(Dataset):
    """``(view_a, view_b)`` of each image, seeded by ``(seed, epoch, image id, view)``.

    An image that cannot be read is reported once and replaced by the next readable one, so
    every batch keeps its size (processes gather equal batches).

    Parameters
    ----------
    images : sequence
        Records, paths or ``(id, PIL image)`` pairs.
    views : ViewMaker
    seed : int
    """

    def __init__(self, images: Sequence[Any], views: ViewMaker, seed: int = 0):
        if len(images) < 2:
            raise ValueError(f"contrastive training needs at least 2 images, got {len(images)}")
        self.items = [loadable(item, i) for i, item in enumerate(images)]
        self.views = views
        self.seed = int(seed)
        self.epoch = 0
        self.bad: dict[str, str] = {}

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose views to make (call before making the DataLoader's iterator)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.items)

    def pair(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image_id, source = self.items[index]
        image = load_item(source)
        return tuple(self.views(image, derive_seed(self.seed, self.epoch, image_id, view))
                     for view in (0, 1))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, str]:
        """The two views, and ``"<image id>\t<reason>"`` of each unreadable image skipped on
        the way ("" when none): DataLoader workers cannot report into this object, so the
        training loop records them from the batches."""
        skipped = []
        for offset in range(len(self.items)):
            position = (index + offset) % len(self.items)
            try:
                return (*self.pair(position), "\n".join(skipped))
            except (ImageLoadError, OSError, ValueError) as exc:
                skipped.append(f"{self.items[position][0]}\t{exc}")
                self.note(self.items[position][0], str(exc))
        raise ValueError("no image of the training set can be read")

    def note(self, image_id: str, reason: str) -> bool:
        """Record an unreadable image once (logged the first time); True when new."""
        if image_id in self.bad:
            return False
        self.bad[image_id] = reason  # the reason names the file (load_item's errors do)
        logger.warning("skipping unreadable image %s: %s; the next image takes its place",
                       image_id, reason)
        return True


class EpochSampler(torch.utils.data.Sampler):
    """This process's batches of one epoch: a permutation seeded by ``(seed, epoch)``, cut to
    whole global batches, rank ``r`` taking every ``world``-th batch-sized slice; the first
    ``skip`` batches left out (a resumed run starts where it stopped).

    Parameters
    ----------
    n : int
        Dataset size.
    batch_size : int
        Per process.
    world, rank : int
    seed, epoch : int
    skip : int
        Batches of this process already done this epoch.
    limit : int, optional
        Batches per epoch at most (whole optimiser steps under gradient accumulation: a
        micro-batch left over would add its gradient to the next epoch's first step).
    """

    def __init__(self, n: int, batch_size: int, world: int = 1, rank: int = 0, seed: int = 0,
                 epoch: int = 0, skip: int = 0, limit: int | None = None):
        self.n, self.batch_size, self.world, self.rank = n, batch_size, world, rank
        self.seed, self.epoch, self.skip, self.limit = seed, epoch, skip, limit
        if self.batches_per_epoch(n, batch_size, world) == 0:
            raise ValueError(f"{n} images do not fill one global batch of {batch_size} x "
                             f"{world} process(es): lower --batch-size")

    @staticmethod
    def batches_per_epoch(n: int, batch_size: int, world: int = 1) -> int:
        """Batches each process runs per epoch (incomplete global batches are dropped)."""
        return n // (batch_size * world)

    def __iter__(self):
        generator = torch.Generator().manual_seed(derive_seed(self.seed, "epoch", self.epoch)
                                                  % 2**63)
        order = torch.randperm(self.n, generator=generator).tolist()
        for batch in range(self.skip, self._count()):
            start = (batch * self.world + self.rank) * self.batch_size
            yield order[start:start + self.batch_size]

    def _count(self) -> int:
        count = self.batches_per_epoch(self.n, self.batch_size, self.world)
        return count if self.limit is None else min(count, self.limit)

    def __len__(self) -> int:
        return max(0, self._count() - self.skip)
