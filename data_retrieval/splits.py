"""Seeded split of originals into the experimental group (the database) and the control group."""

from __future__ import annotations

from collections.abc import Sequence

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
