"""Did fine-tuning bring copies closer and other images farther? Measures per checkpoint.

For the model a run started from and each chosen checkpoint, the copy-detection benchmark runs
once over the same database and attacked queries (every checkpoint describes the same decoded
images): AUC and micro-AP over all queries and over the hardest attack families apart. From the
same descriptors, the true groups (each database original with its attacked copies) are
measured as clusters by `clustering.cluster_attributes`, in the descriptor's metric: diameter,
separation (distance to the nearest image of another group) and their ratio.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from clustering import as_points, cluster_attributes, concat_points
from extractor import model_spec
from finetuning.model import load_checkpoint
from hashing import parse_algorithm, run_benchmark, score_matches
from helpers import get_logger, resolve_device
from helpers.plotting import figure_style, new_figure, save_figure

if TYPE_CHECKING:  # matplotlib loads only when a figure is drawn
    from matplotlib.figure import Figure

logger = get_logger(__name__)

#: Attack families the issue names as hardest for descriptors, reported apart.
HARD_FAMILIES = ("cropping", "rotation", "shearing", "text_length")
#: Group measures reported per checkpoint (medians over the true groups).
GROUP_MEASURES = ("diameter", "separation", "separation_ratio")


@dataclass(frozen=True)
class Checkpoint:
    """One model to evaluate: ``label`` names it in tables, ``epoch`` orders it (0 for the
    model the run started from), ``algorithm`` is the benchmark's spec string."""

    label: str
    epoch: float
    algorithm: str


def _epoch_of(path: Path, state: dict[str, Any]) -> float:
    """Whole epochs for ``epoch_E.pt``; half-way into its epoch for a mid-epoch checkpoint."""
    epoch = float(state["epoch"])
    return epoch if path.name.startswith("epoch_") else epoch + 0.5


def run_checkpoints(run: str | Path, select: str | Sequence[str] = "all",
                    distance: str | None = None, baseline: bool = True) -> list[Checkpoint]:
    """The checkpoints of a fine-tuning run to evaluate, in epoch order.

    Parameters
    ----------
    run : str or Path
        The run's folder (``checkpoints/`` inside it).
    select : str or sequence of str
        ``all``; ``every:N`` (every N-th epoch, the last one always); or file names /
        epoch numbers (``epoch_3.pt``, ``3``). A one-item sequence counts as its item.
    distance : str, optional
        The metric the benchmark compares the features with (default: the model's).
    baseline : bool
        Put the model the run started from first (epoch 0).

    Raises
    ------
    ValueError
        No checkpoint, a named one missing, a run of a custom model (not in the registry).
    """
    if not isinstance(select, str) and len(select) == 1:
        select = select[0]
    folder = Path(run) / "checkpoints"
    found = sorted(folder.glob("epoch_*.pt"), key=lambda p: int(re.sub(r"\D", "", p.stem)))
    if not found:
        raise ValueError(f"no epoch checkpoint in {folder}")
    if isinstance(select, str) and select == "all":
        chosen = found
    elif isinstance(select, str) and select.startswith("every:"):
        text = select.split(":", 1)[1]
        step = int(text) if text.isdigit() else 0
        if step < 1:
            raise ValueError(f"every:N needs a whole number N >= 1, got {select!r}")
        chosen = [p for i, p in enumerate(found, 1) if i % step == 0 or p == found[-1]]
    else:
        names = [select] if isinstance(select, str) else list(select)
        chosen = []
        for name in names:
            path = folder / (f"epoch_{name}.pt" if str(name).isdigit() else str(name))
            if not path.is_file():
                raise ValueError(f"checkpoint {path} not found; there are: "
                                 f"{', '.join(p.name for p in found)}")
            chosen.append(path)
    def spec(name: str, params: dict[str, Any]) -> str:
        params = {**params, **({"distance": distance} if distance else {})}
        return name + (":" + ",".join(f"{k}={v}" for k, v in params.items()) if params else "")

    result: list[Checkpoint] = []
    first = None
    for path in chosen:
        state = load_checkpoint(path)
        name = state.get("registry_name")
        if name is None:
            raise ValueError(f"{path} is a checkpoint of a custom model: evaluate it with "
                             "finetuning.load_checkpoint and extractor.custom_model")
        first = first or state
        result.append(Checkpoint(path.stem, _epoch_of(path, state),
                                 spec(name, {"weights": path.resolve()})))
    if baseline and first.get("init") == "random":
        logger.warning("the run started from a random initialisation: no 'before' model")
    elif baseline:
        # the model the run started from: the weights file it was given (--weights), else the
        # registry's, with its parameters as trained
        start = first.get("start_weights") or first.get("base_weights")
        defaults = _registry_params(first["registry_name"])
        params = {k: v for k, v in sorted((first.get("model_params") or {}).items())
                  if defaults.get(k) != v}
        if start and Path(start).is_file():
            params["weights"] = start
        elif first.get("start_weights"):
            raise ValueError(f"the run started from {start}, which is not there any more: "
                             "pass --no-baseline, or put the file back")
        result.insert(0, Checkpoint("before", 0.0, spec(first["registry_name"], params)))
    return sorted(result, key=lambda c: c.epoch)


def _registry_params(name: str) -> dict[str, Any]:
    return dict(model_spec(name).params)


@dataclass
class Evaluation:
    """What `evaluate_checkpoints` measured.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per checkpoint: ``label``, ``epoch``, ``auc``, ``micro_ap`` (all queries),
        ``hard_auc``, ``hard_micro_ap`` (the hardest attack families), per family
        ``<family>_auc``, and the medians of the group measures.
    groups : pandas.DataFrame
        One row per checkpoint and true group: ``label``, ``epoch``, ``group``, ``size``,
        ``diameter``, ``separation``, ``separation_ratio``.
    benchmark : BenchmarkResult
        The benchmark run (its ``matches`` hold every query of every checkpoint).
    """

    table: pd.DataFrame
    groups: pd.DataFrame
    benchmark: Any


def _family(attack_id: str | None) -> str | None:
    if attack_id is None or (isinstance(attack_id, float) and np.isnan(attack_id)):
        return None
    for family in HARD_FAMILIES:
        if str(attack_id).startswith(family):
            return family
    return None


def group_measures(database: Any, queries: Any, matches: pd.DataFrame, db_ids: Sequence[str],
                   device: str = "cpu") -> pd.DataFrame:
    """Each database original with its attacked copies as one cluster, measured by
    `clustering.cluster_attributes` in the descriptors' metric."""
    positive = np.flatnonzero((matches["kind"] == "positive").to_numpy())
    copies = replace(queries[positive],
                     ids=tuple(matches["query_id"].to_numpy()[positive].astype(str)))
    database = replace(database, ids=tuple(map(str, db_ids)))
    points = concat_points([as_points(database), as_points(copies)])
    # a copy's group is its source's database row, which the benchmark has matched already
    labels = np.r_[np.arange(len(db_ids)),
                   matches["source_index"].to_numpy()[positive]].astype(np.int64)
    table = cluster_attributes(points, labels, device=device)
    table["group"] = [db_ids[int(c)] for c in table["cluster"]]
    return table[["group", "size", "diameter", "separation", "separation_ratio"]]


def evaluate_checkpoints(checkpoints: Sequence[Checkpoint], protocol: Any,
                         batch_size: int = 64, device: str = "auto",
                         workers: int | None = None) -> Evaluation:
    """Run the benchmark once with every checkpoint and measure each (see the module).

    Parameters
    ----------
    checkpoints : sequence of Checkpoint
        From `run_checkpoints`.
    protocol : hashing.Protocol
        Database and queries (`hashing.study_protocol`).
    batch_size, device, workers
        As `hashing.run_benchmark` takes them.
    """
    algorithms = [parse_algorithm(c.algorithm) for c in checkpoints]
    label_of = {a.label: c for a, c in zip(algorithms, checkpoints, strict=True)}
    result = run_benchmark(algorithms, protocol.database_images(), protocol.queries(),
                           batch_size=batch_size, device=device, workers=workers,
                           total_queries=protocol.n_queries, keep_descriptors=True)
    db_ids = list(result.database["image_id"])
    rows, group_tables = [], []
    for algorithm in algorithms:
        checkpoint = label_of[algorithm.label]
        matches = result.matches[result.matches["algorithm"] == algorithm.label]
        matches = matches.reset_index(drop=True)
        row: dict[str, Any] = {"label": checkpoint.label, "epoch": checkpoint.epoch,
                               "algorithm": algorithm.label}
        overall = score_matches(matches)
        row.update(auc=overall["auc"], micro_ap=overall["micro_ap"],
                   recall_at_p90=overall["recall_at_p90"])
        families = matches["attack_id"].map(_family)
        hard = matches[families.notna()]
        if len(hard) and (hard["kind"] == "positive").any() and \
                (hard["kind"] != "positive").any():
            scores = score_matches(hard)
            row.update(hard_auc=scores["auc"], hard_micro_ap=scores["micro_ap"])
            for family, part in hard.groupby(families[families.notna()]):
                if (part["kind"] != "positive").any() and (part["kind"] == "positive").any():
                    row[f"{family}_auc"] = score_matches(part)["auc"]
        database, queries = result.descriptors[algorithm.label]
        groups = group_measures(database, queries, matches, db_ids, resolve_device(device))
        for measure in GROUP_MEASURES:
            values = groups[measure].replace([np.inf, -np.inf], np.nan)
            values = values[groups["size"] > 1] if measure != "separation" else values
            row[f"{measure}_median"] = float(values.median())
        rows.append(row)
        group_tables.append(groups.assign(label=checkpoint.label, epoch=checkpoint.epoch))
    table = pd.DataFrame(rows).sort_values("epoch", kind="stable").reset_index(drop=True)
    groups = pd.concat(group_tables, ignore_index=True)
    return Evaluation(table, groups[["label", "epoch", *groups.columns[:-2]]], result)


def evaluation_figures(evaluation: Evaluation) -> dict[str, Figure]:
    """Each measure against epoch (``measures_by_epoch``), and violins of the group measures
    per checkpoint (``group_violins``), as the study drew them; a notebook shows each
    `Figure` as it is.

    Returns
    -------
    dict of str to matplotlib.figure.Figure
    """
    with figure_style():
        return {"measures_by_epoch": _measures_by_epoch(evaluation.table),
                "group_violins": _group_violins(evaluation.table, evaluation.groups)}


def plot_evaluation(evaluation: Evaluation, folder: str | Path | None = None
                    ) -> list[Path] | dict[str, Figure]:
    """`evaluation_figures` written into ``folder`` (PDF and PNG each), or returned as
    ``{file name: Figure}`` when ``folder`` is None.

    Returns
    -------
    list of Path or dict of str to Figure
        The files written, or the figures.
    """
    figures = evaluation_figures(evaluation)
    if folder is None:
        return figures
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with figure_style():
        for name, fig in figures.items():
            written += save_figure(fig, folder, name)
    return written


def _measures_by_epoch(table: pd.DataFrame) -> Figure:
    """One panel per measure, against the epoch."""
    measures = [m for m in ("auc", "micro_ap", "hard_auc", "hard_micro_ap",
                            *(f"{m}_median" for m in GROUP_MEASURES)) if m in table]
    columns = 3
    fig, axes = new_figure(-(-len(measures) // columns), columns,
                           figsize=(4.2 * columns, 3.2 * -(-len(measures) // columns)),
                           squeeze=False)
    fig.set_layout_engine("constrained")
    for ax, measure in zip(axes.flat, measures, strict=False):
        ax.plot(table["epoch"], table[measure], marker="o")
        ax.set_xticks(table["epoch"])
        ax.set_xlabel("epoch (0: before fine-tuning)")
        ax.set_title(measure.replace("_", " "))
    for ax in list(axes.flat)[len(measures):]:
        ax.set_visible(False)
    return fig


def _group_violins(table: pd.DataFrame, groups: pd.DataFrame) -> Figure:
    """Violins of each group measure, one per checkpoint."""
    labels = list(table["label"])
    fig, axes = new_figure(1, len(GROUP_MEASURES),
                           figsize=(4.5 * len(GROUP_MEASURES), 3.8), squeeze=False)
    fig.set_layout_engine("constrained")
    for ax, measure in zip(axes[0], GROUP_MEASURES, strict=True):
        data = []
        for label in labels:
            values = groups.loc[groups["label"] == label, measure]
            if measure != "separation":
                values = values[groups.loc[groups["label"] == label, "size"] > 1]
            values = values.replace([np.inf, -np.inf], np.nan).dropna().to_numpy(float)
            data.append(values if len(values) else np.array([np.nan]))
        ax.violinplot(data, showmedians=True)
        ax.set_xticks(range(1, len(labels) + 1), labels, rotation=45, ha="right")
        ax.set_title(f"{measure.replace('_', ' ')} of the true groups")
    return fig
