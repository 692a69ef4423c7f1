"""The separation report: several methods and their reduced variants side by side (the protocol
of ``scripts/separation_report.py``).

The originals and their attacked copies (made on the fly, never written) are described by every
method once (`hashing.evaluation.separation_analysis.describe_originals_and_copies`). Every
method that gives float features (a model) is also reduced by every reducer spec (PCA,
whitened PCA, random projection, autoencoders: `extractor.reduce`), fitted on the originals'
features or on other records, and optionally quantised to bytes. Each method and variant then
gets its `hashing.evaluation.separation_analysis.separation`: unrelated distances, T1, T2,
the thresholds at the target false positive rates, and the share of copies above each per
attack.

`run_separation_report` returns a `SeparationReport` (and saves the fitted reducers, which
must exist as files for their variants to be named by them); `write_separation_report` writes
its tables and figures.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hashing.evaluation.separation_analysis import (
    DEFAULT_FPRS,
    DEFAULT_MAX_PAIRS,
    describe_originals_and_copies,
    plot_explained_variance,
    plot_separation,
    plot_shares,
    reduce_descriptors,
    separation,
    separation_frame,
    share_pivot,
)
from hashing.methods.describing import describe, get_algorithm
from hashing.methods.neural import algorithm_model_label
from helpers import write_csv, write_json
from helpers.descriptors import FloatFeatures

log = logging.getLogger(__name__)


@dataclass
class SeparationReport:
    """What `run_separation_report` found.

    Attributes
    ----------
    results : list of dict
        One `separation` result per method and variant, in run order (``method`` is the name
        shown: ``<label>`` or ``<label>+<reducer>``).
    fprs : tuple of float
        The target false positive rates.
    originals, copies : int
        Originals given and copies described.
    bad : list
        Inputs skipped (`generator.BadImage`).
    curves : dict
        ``{label: explained variance ratio of each principal component}`` of every method
        that was reduced.
    reducer_files : dict
        ``{shown name: {"file": saved reducer, "identity": the label
        get_algorithm(method, reduce=file) gives}}``.
    """

    results: list[dict[str, Any]]
    fprs: tuple[float, ...]
    originals: int
    copies: int
    bad: list = field(default_factory=list)
    curves: dict[str, np.ndarray] = field(default_factory=dict)
    reducer_files: dict[str, dict[str, str]] = field(default_factory=dict)

    def to_frame(self) -> pd.DataFrame:
        """Every method's share table stacked (`separation_frame`): one row per method and
        attack, ``all`` included."""
        return separation_frame(self.results)

    def share_columns(self) -> list[str]:
        """The shares reported as attacks x methods tables: above T1, T2 and the threshold
        at the largest target rate."""
        return ["above_t1", "above_t2", f"above_fpr_{max(self.fprs):g}"]

    def thresholds(self) -> dict[str, dict[str, Any]]:
        """``{method: thresholds (Thresholds.to_dict), copies, reducer}``: thresholds.json."""
        return {r["method"]: {**r["thresholds"].to_dict(), "copies": int(len(r["copies"])),
                              "reducer": self.reducer_files.get(r["method"])}
                for r in self.results}

    def explained_variance_frame(self) -> pd.DataFrame | None:
        """Cumulative explained variance per component (a column per reduced method; NaN past
        a method's width), None when nothing was reduced."""
        if not self.curves:
            return None
        width = max(len(c) for c in self.curves.values())
        table = pd.DataFrame({"component": np.arange(1, width + 1)})
        for label, ratio in self.curves.items():
            column = np.full(width, np.nan)
            column[:len(ratio)] = np.cumsum(ratio)
            table[label] = column
        return table

    def summary(self) -> pd.DataFrame:
        """One row per method over all attacks: ``method, t1, t2, above_t1, above_t2``."""
        frame = self.to_frame()
        return frame[frame["attack"] == "all"][["method", "t1", "t2", "above_t1", "above_t2"]]


def run_separation_report(
    records: Sequence[Any], attacks: Sequence[Any], algorithms: Sequence[Any],
    folder: str | os.PathLike, *, reducers: Sequence[Any] = (),
    fit_records: Sequence[Any] | None = None, quantize: str | None = None,
    reducer_options: Mapping[str, Any] | None = None, fprs: Sequence[float] = DEFAULT_FPRS,
    max_pairs: int = DEFAULT_MAX_PAIRS, seed: int = 0, device: str = "auto",
    batch_size: int = 64, workers: int = 0,
) -> SeparationReport:
    """The separation of every method of ``algorithms`` and of its reduced variants.

    Parameters
    ----------
    records : sequence of ImageRecord
        The originals.
    attacks : sequence of Attack
        Every original is attacked by each (seeded by ``seed``).
    algorithms : sequence of Algorithm
        Distinct methods (a label reported once).
    folder : path
        Where the fitted reducers are saved (``reducers/<model>/<reducer>.pt``).
    reducers : sequence of ReducerSpec
        Fitted for every method that gives float features (others are logged and kept
        unreduced).
    fit_records : sequence of ImageRecord, optional
        Fit the reducers on these images' features (default: on the originals').
    quantize : {"uint8", "sq8"}, optional
        Also report every reducer's output quantised to bytes.
    reducer_options : mapping, optional
        More arguments of `extractor.reduce.fit_reducer` (``epochs``, ``lr``,
        ``batch_size`` of the autoencoders).
    fprs, max_pairs, seed, device
        As `separation`.
    batch_size, workers
        As `describe_originals_and_copies`.

    Raises
    ------
    ValueError
        No copy could be made.
    """
    originals, copies, bad = describe_originals_and_copies(
        records, attacks, algorithms, seed, batch_size, workers)
    if not copies:
        raise ValueError("no copy could be made (see the skipped images above)")
    report = SeparationReport([], tuple(fprs), len(records),
                              len(next(iter(copies.values()))), list(bad))
    fit_features = {}
    if fit_records is not None and reducers:
        fit_features = {a.label: describe(fit_records, a) for a in algorithms
                        if isinstance(originals.get(a.label), FloatFeatures)}
    for algorithm in algorithms:
        label = algorithm.label
        if label not in originals:
            continue
        variants = [(label, originals[label], copies[label])]
        if reducers:
            variants += _reduced_variants(
                algorithm, originals[label], copies[label], fit_features.get(label),
                reducers, Path(folder), quantize, dict(reducer_options or {}), seed, report)
        for variant, orig, cop in variants:
            result = separation(orig, cop, fprs, max_pairs, seed, device)
            result["method"] = variant
            report.results.append(result)
            th = result["thresholds"]
            log.info("%s: mu %.4f sigma %.4f T1 %.4f (FPR %.4f) T2 %.4f; copies above T1 %.3f",
                     variant, th.mu, th.sigma, th.t1, th.fpr_t1, th.t2,
                     float(result["table"].iloc[-1]["above_t1"]))
    return report


def _reduced_variants(algorithm: Any, originals: Any, copies: Any, fit_on: Any | None,
                      reducers: Sequence[Any], folder: Path, quantize: str | None,
                      options: dict[str, Any], seed: int, report: SeparationReport
                      ) -> list[tuple[str, Any, Any]]:
    """``(shown name, originals, copies)`` of every reducer (and its quantised form) fitted
    on ``fit_on`` (default: the originals) for one method; the explained variance and the
    reducer files go into ``report``."""
    label = algorithm.label
    if not isinstance(originals, FloatFeatures):
        log.warning("%s does not give float features: no reducer applies to it", label)
        return []
    model = algorithm_model_label(algorithm)  # what the reducers are fitted on
    params = dict(algorithm.params)
    if params.get("distance") == "jensenshannon":
        log.warning("%s: reduced features are compared with cosine (Jensen-Shannon needs "
                    "non-negative vectors)", label)
        params["distance"] = "cosine"
    metric = params.get("distance", "cosine")
    # the reducers (and torch): on use, so that `import hashing` imports nothing of extractor
    from extractor.reduce import explained_variance, fit_reducer, with_quantizer

    fit_on = fit_on if fit_on is not None else originals
    ratio = explained_variance(fit_on.values)
    report.curves[label] = ratio / ratio.sum() if ratio.sum() > 0 else ratio
    variants = []
    for spec in reducers:
        if spec.dim > fit_on.values.shape[1] or (
                spec.kind.startswith("pca") and spec.dim >= len(fit_on)):
            log.warning("skipping %s for %s: %d rows of %d-d features cannot give %d outputs",
                        spec.name, label, len(fit_on), fit_on.values.shape[1], spec.dim)
            continue
        fitted = fit_reducer(fit_on, spec, method=model, seed=seed, **options)
        kinds = [fitted] + ([with_quantizer(fitted, fit_on, quantize)] if quantize else [])
        for reducer in kinds:
            file = folder / "reducers" / model / (
                reducer.name.replace(":", "_").replace("+", "_") + ".pt")
            reducer.save(file)
            # The table names it short; the descriptors carry the identity
            # get_algorithm(name, ..., reduce=file) gives.
            shown = f"{label}+{reducer.name}"
            identity = get_algorithm(algorithm.name, **{**params, "reduce": str(file)}).label
            report.reducer_files[shown] = {"file": str(file), "identity": identity}
            variants.append((shown, reduce_descriptors(originals, reducer, identity, metric),
                             reduce_descriptors(copies, reducer, identity, metric)))
    return variants


def write_separation_report(report: SeparationReport, folder: str | os.PathLike) -> None:
    """Write ``separation.csv``, ``shares_<column>.csv`` (attacks x methods),
    ``thresholds.json``, ``explained_variance.csv`` (when methods were reduced) and
    ``figures/`` (each method's histograms, the share heat maps, the explained variance)."""
    folder = Path(folder)
    for result in report.results:
        plot_separation(result, folder / "figures")
    frame = report.to_frame()
    write_csv(frame, folder / "separation.csv")
    for column in report.share_columns():
        write_csv(share_pivot(frame, column), folder / f"shares_{column}.csv", index=True)
        plot_shares(frame, folder / "figures", column)
    write_json(folder / "thresholds.json", report.thresholds())
    table = report.explained_variance_frame()
    if table is not None:
        write_csv(table, folder / "explained_variance.csv")
        plot_explained_variance(report.curves, folder / "figures")
