"""Seeded split of originals into the experimental group (the database) and the control group,
and seeded samples of records."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from data_retrieval.records import ImageRecord
from helpers import rng_for

EXPERIMENTAL = "experimental"
CONTROL = "control"


def split_groups(
    records: Sequence[ImageRecord],
    n_experimental: int | None = None,
    n_control: int | None = None,
    seed: int = 0,
) -> list[ImageRecord]:
    """Assign originals to the experimental and control groups at random (seeded).

    Parameters
    ----------
    records : sequence of ImageRecord
        Originals (attacked images are refused: a copy must go where its source goes).
    n_experimental : int, optional
        Size of the experimental group; half of the records (rounded down) by default.
    n_control : int, optional
        Size of the control group; all the remaining records by default.
    seed : int
        The same seed and records give the same split.

    Returns
    -------
    list of ImageRecord
        The chosen records with ``group`` set, experimental first, each group in input order.

    Raises
    ------
    ValueError
        Sizes that do not fit, or attacked images among the records.
    """
    records = list(records)
    attacked = [r.image_id for r in records if not r.is_original]
    if attacked:
        raise ValueError(f"split_groups takes originals only; attacked: {attacked[:5]}")
    total = len(records)
    n_exp = total // 2 if n_experimental is None else n_experimental
    n_ctl = total - n_exp if n_control is None else n_control
    if n_exp < 0 or n_ctl < 0 or n_exp + n_ctl > total:
        raise ValueError(
            f"cannot split {total} images into {n_exp} experimental and {n_ctl} control"
        )
    order = rng_for(seed, "split_groups").permutation(total)
    exp_idx = sorted(order[:n_exp])
    ctl_idx = sorted(order[n_exp : n_exp + n_ctl])
    return [records[i].replace(group=EXPERIMENTAL) for i in exp_idx] + [
        records[i].replace(group=CONTROL) for i in ctl_idx
    ]


def sample_records(records: Sequence[ImageRecord], count: int,
                   seed: int | np.random.Generator = 0, what: str = "the dataset"
                   ) -> list[ImageRecord]:
    """A seeded sample of ``count`` records in their order (0, or more than there are: all of
    them, the latter logged). ``seed`` may be a generator the caller keeps drawing from.

    Raises
    ------
    ValueError
        A negative count.
    """
    records = list(records)
    if count < 0:
        raise ValueError(f"--count must be >= 0, got {count}")
    if count > len(records):
        logging.getLogger(__name__).warning("--count %d: %s has %d originals, all used",
                                            count, what, len(records))
    if not count or count >= len(records):
        return records
    keep = np.sort(np.random.default_rng(seed).choice(len(records), count, replace=False))
    return [records[i] for i in keep]
