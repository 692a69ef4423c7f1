#!/usr/bin/env python3
"""Fit reducers (PCA, whitened PCA, random projection, autoencoders) on a feature store.

Reads the store --store DATASET/METHOD (written by extract_features.py, search_stores.py...),
fits every reducer of --reducer on its rows (or a seeded --sample of them), and writes each to
Results/reducers/<method>/<kind>_<dims>.pt, where get_algorithm(method, reduce="pca:128") and
get_model(method, reduce="pca:128") find it (or to --output-dir). Beside each file: a JSON
summary (fitted on what, explained variance, autoencoder losses); and the cumulative explained
variance of the store's principal components as figures/explained_variance_<dataset>.png/.pdf.
A quantised reducer (--quantize uint8) is written as <kind>_<dims>_uint8.pt and named
"pca:128+uint8" in reduce=.

Examples
--------
python scripts/fit_reducer.py --store bsds500/sscd_distilled --reducer pca:128 pca:64
python scripts/fit_reducer.py --store views100k/efficientnet_lite0 --reducer ae:1024-512-256 \\
    --sample 50000 --epochs 20 --device cuda
python scripts/fit_reducer.py --store bsds500/sscd_distilled --reducer pca:256 --quantize uint8
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from helpers import FolderLock, add_store_arguments, path_inputs, setup_logging
from helpers.cli import MAX_COUNT, integer, real, run_script, script_main
from helpers.outputs import check_output_dir
from helpers.runs import folder_type

SCRIPT = "fit_reducer"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", required=True, metavar="DATASET/METHOD",
                        help="the feature store to fit on (float features)")
    parser.add_argument("--features-dir", default=None,
                        help="root of the feature stores (default: Results/features)")
    parser.add_argument("--reducer", nargs="+", required=True, metavar="SPEC",
                        help="pca:D, pcaw:D (whitened), rp:D (random projection), "
                             "ae:D[:linear|sigmoid|relu] (tied autoencoder), ae:W1-...-D "
                             "(deeper autoencoder)")
    parser.add_argument("--sample", type=integer(0, MAX_COUNT), default=0,
                        help="fit on a seeded sample of this many rows (default 0: all)")
    parser.add_argument("--seed", type=integer(0, 2**32 - 1), default=0,
                        help="sample, random projection, autoencoder initialisation and order")
    parser.add_argument("--quantize", choices=["uint8", "sq8"], default=None,
                        help="fit a byte quantiser on the reduced rows too")
    ae = parser.add_argument_group("autoencoder training (Adam, MSE)")
    ae.add_argument("--epochs", type=integer(1, 100_000), default=30,
                    help="autoencoder training epochs (default: %(default)s)")
    ae.add_argument("--lr", type=real(0, 10, low_open=True), default=1e-3,
                    help="autoencoder learning rate (default: %(default)s)")
    ae.add_argument("--batch-size", type=integer(1, 65_536), default=256,
                    help="autoencoder batch size (default: %(default)s)")
    ae.add_argument("--weight-decay", type=real(0, 1), default=0.0,
                    help="autoencoder weight decay (default: %(default)s)")
    ae.add_argument("--device", default="auto",
                    help="auto, cpu or cuda (default: %(default)s)")
    out = parser.add_argument_group("output")
    out.add_argument("--output-dir", type=folder_type, default=None,
                     help="folder of the reducer files (default: Results/reducers/<method>); "
                          "other reducers there are kept")
    add_store_arguments(out, "replace reducer files of the same names that exist")
    return parser.parse_args(argv)


def _targets(folder: Path, specs, quantize: str | None, overwrite: bool,
             inputs: list[Path]) -> list[Path]:
    """The reducer files to write: new ones, or with ``--overwrite`` reducer files only, never
    an input."""
    from extractor.reduce import load_reducer

    targets = [folder / s.file_name for s in specs]
    if quantize:
        targets = [t.with_name(f"{t.stem}_{quantize}.pt") for t in targets]
    for target in targets:
        for path in (target, target.with_suffix(".json")):
            if Path(os.path.abspath(path)) in inputs:
                raise ValueError(f"refusing to write {path}: it is an input of this run")
    existing = [t for t in targets if t.exists() or t.is_symlink()]
    if existing and not overwrite:
        raise ValueError(f"{', '.join(map(str, existing))} exist: --overwrite replaces them")
    for target in existing:
        if target.is_symlink() or not target.is_file():
            raise ValueError(f"refusing to overwrite {target}: not a plain file")
        try:  # only a reducer file is replaced
            load_reducer(target)
        except ValueError as exc:
            raise ValueError(f"refusing to overwrite {target}: {exc}") from None
    return targets


@script_main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    from extractor import load_store
    from extractor.reduce import (
        cumulative_variance_dims,
        explained_variance,
        fit_reducer,
        parse_reducer,
        reducers_dir,
    )
    from hashing.evaluation.separation_analysis import plot_explained_variance
    from helpers import check_name, resolve_device, write_json

    features_dir = args.features_dir
    if args.store.endswith(".npy"):  # a store's rows named by their file
        rows = Path(args.store)
        dataset, slash, method = rows.parent.name, "/", rows.stem
        features_dir = rows.parent.parent
    else:
        dataset, slash, method = args.store.partition("/")
    if not slash or not dataset or not method:
        raise ValueError(f"--store must be DATASET/METHOD or a store's .npy, got "
                         f"{args.store!r}")
    specs = [parse_reducer(r) for r in args.reducer]
    resolve_device(args.device)
    store = load_store(dataset, method, features_dir)
    kind = store.meta.get("kind", "float")
    if kind != "float":
        raise ValueError(f"--store {args.store} holds {kind} descriptors, not float features: "
                         "a reducer is fitted on a model's features")
    too_wide = [s.name for s in specs if s.dim > store.features.shape[1]]
    if too_wide:  # refused before any reducer is fitted or written
        raise ValueError(f"--reducer {', '.join(too_wide)}: more outputs than the "
                         f"{store.features.shape[1]}-d features of {args.store}")
    folder = Path(args.output_dir) if args.output_dir else reducers_dir() / check_name(
        method, "method")
    folder = check_output_dir(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # one run writes the folder at a time (two runs of the same reducer would both write it)
    with FolderLock(folder):
        inputs = path_inputs(args, roots=[features_dir])
        targets = _targets(folder, specs, args.quantize, args.overwrite, inputs)
        data = store
        if args.sample and args.sample < len(store.features):
            rows = np.sort(np.random.default_rng(args.seed).choice(
                len(store.features), args.sample, replace=False))
            from helpers.descriptors import FloatFeatures

            data = FloatFeatures(np.asarray(store.features[rows], np.float32), "cosine",
                                 method=method)
        ratio = explained_variance(data.features if data is store else data.values)
        ratio = ratio / ratio.sum() if ratio.sum() > 0 else ratio
        plot_explained_variance({method: ratio}, folder / "figures",
                                name=f"explained_variance_{dataset}")
        for spec, target in zip(specs, targets, strict=True):
            reducer = fit_reducer(data, spec, method=method, seed=args.seed,
                                  epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                                  weight_decay=args.weight_decay, device=args.device,
                                  quantize=args.quantize)
            reducer.info["fitted_on"].update({"store": args.store, "sample": args.sample})
            reducer.save(target)
            summary = {k: v for k, v in reducer.info.items() if k != "spectrum_ratio"}
            write_json(target.with_suffix(".json"), {
                "reducer": reducer.name, "file": str(target), "method": method,
                "input_dim": reducer.input_dim, "output_dim": reducer.output_dim,
                "bytes_per_descriptor": reducer.bytes_per_descriptor, **summary})
            kept = reducer.info.get("cumulative_explained_variance")
            losses = reducer.info.get("losses")
            print(f"{reducer.name}: {reducer.input_dim} -> {reducer.output_dim}"
                  + (f", explained variance {kept:.4f}" if kept is not None else "")
                  + (f", loss {losses[0]:.4g} -> {losses[-1]:.4g}" if losses else "")
                  + f" -> {target}")
    reach = cumulative_variance_dims(ratio)
    print("components reaching " + ", ".join(f"{k} of the variance: {v}"
                                              for k, v in reach.items()))
    return 0


if __name__ == "__main__":
    run_script(main)
