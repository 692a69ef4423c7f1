#!/usr/bin/env python3
"""Train a projection head on frozen features for pair verification (triplet or contrastive
loss, hard negatives mined in each batch; pytorch-metric-learning's losses and miners).

Training rows are the features of --model for the originals of --dataset and --copies attacked
copies of each (attacks drawn with --seed from --attacks; made in memory, never written), an
original and its copies sharing a label; or the rows of a feature store (--store
DATASET/METHOD) labelled by their records' source_id. The features are kept in the run folder,
so --resume continues a stopped run from its newest checkpoint without describing again.

Writes Results/<name>/: head.pt (a reducer: get_algorithm(model, reduce="<folder>/head.pt"),
verify_pairs.py --methods "sscd_distilled:reduce='<folder>/head.pt'"), log.csv (loss per step,
validation loss per epoch), checkpoints/epoch_<E>.pt, features/training/<method>.npy (the
training rows, a feature store: fit_reducer.py --store training/<method> --features-dir
<folder>/features fits a PCA on the same images), figures/loss, experiment.json (with
"collapsed": null, or why the head collapsed).

Examples
--------
python scripts/train_verifier.py --model sscd_distilled --dataset imagenet_samples --copies 6
python scripts/train_verifier.py --store views/efficientnet_lite0 --dims 512 256 --loss \\
    contrastive --miner batch_hard
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

import numpy as np

from data_retrieval.cli import add_data_root_argument
from data_retrieval.roots import data_root
from finetuning.heads import MINERS, HeadConfig, train_head
from finetuning.losses import HEAD_LOSSES
from finetuning.optim import OPTIMIZER_BUILDERS
from generator.cli import add_attack_arguments, attacks_from_args
from helpers import add_output_arguments, experiment_run, setup_logging
from helpers.cli import MAX_COUNT, integer, real, run_script, script_main

SCRIPT = "train_verifier"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    data = parser.add_argument_group("training rows")
    data.add_argument("--model", default="sscd_distilled",
                      help="the frozen features: a model algorithm spec (default: "
                           "sscd_distilled)")
    data.add_argument("--dataset", default="imagenet_samples",
                      help="originals (default: imagenet_samples)")
    data.add_argument("--subset", default=None,
                      help="dataset subset, e.g. train (default: the whole dataset)")
    add_data_root_argument(data)
    data.add_argument("--count", type=integer(0, MAX_COUNT), default=0,
                      help="a seeded sample of this many originals (default 0: all)")
    data.add_argument("--copies", type=integer(1, 10_000), default=4,
                      help="attacked copies per original, attacks drawn from --attacks "
                           "(default 4)")
    data.add_argument("--store", default=None, metavar="DATASET/METHOD",
                      help="train on this feature store of float features instead (labels: "
                           "source_id)")
    data.add_argument("--features-dir", default=None,
                      help="root of --store (default: Results/features)")
    add_attack_arguments(parser)
    head = parser.add_argument_group("head and training")
    defaults = HeadConfig()
    head.add_argument("--dims", type=integer(1, 65_536), nargs="+",
                      default=list(defaults.dims),
                      help="widths after the input: 256 (linear), 512 256 (MLP) "
                           "(default: 256; a head whose training would not fit the memory is "
                           "refused)")
    head.add_argument("--loss", choices=HEAD_LOSSES.names(), default=defaults.loss,
                      help="metric-learning loss of the head (default: %(default)s)")
    head.add_argument("--margin", type=real(0, 10), default=defaults.margin,
                      help="triplet margin alpha, in cosine similarity (default 0.2)")
    head.add_argument("--pos-margin", type=real(0, 10), default=defaults.pos_margin,
                      help="contrastive loss: positive margin (default: %(default)s)")
    head.add_argument("--neg-margin", type=real(0, 10), default=defaults.neg_margin,
                      help="contrastive loss: negative margin (default: %(default)s)")
    head.add_argument("--miner", choices=MINERS, default=defaults.miner,
                      help="pair/triplet miner (default: %(default)s)")
    head.add_argument("--epochs", type=integer(1, 100_000), default=defaults.epochs,
                      help="training epochs (default: %(default)s)")
    head.add_argument("--batch-size", type=integer(1, 65_536), default=defaults.batch_size,
                      help="rows per batch (default: %(default)s)")
    head.add_argument("--per-source", type=integer(2, 65_536), default=defaults.per_source,
                      help="rows of each source image in a batch (default 4)")
    head.add_argument("--optimizer", choices=OPTIMIZER_BUILDERS.names(), default=defaults.optimizer,
                      help="optimiser (default: %(default)s)")
    head.add_argument("--lr", type=real(0, 10, low_open=True), default=defaults.lr,
                      help="learning rate (default: %(default)s)")
    head.add_argument("--weight-decay", type=real(0, 1), default=defaults.weight_decay,
                      help="weight decay (default: %(default)s)")
    head.add_argument("--warmup-epochs", type=real(0, 100_000), default=defaults.warmup_epochs,
                      help="epochs of linear learning-rate warm-up (default: %(default)s)")
    head.add_argument("--val-fraction", type=real(0, 1), default=defaults.val_fraction,
                      help="sources held out for validation (default: %(default)s)")
    head.add_argument("--device", default="auto",
                      help="auto, cpu or cuda (default: %(default)s)")
    add_output_arguments(parser, "Results/<name> (default: verifier_<model>, or "
                                 "verifier_<dataset>_<method> with --store)", resume=True,
                         resume_help="continue the run in the folder from its newest "
                                     "checkpoint, on the features it kept")
    return parser.parse_args(argv)


def _rows(args, attacks, seed, output: Path):
    """Features, labels and method: from the run's own copy, a store, or described now."""
    from data_retrieval import load_dataset, sample_records
    from extractor import load_store, save_store
    from hashing import parse_algorithm

    own = output / "features"
    # the model's own name (not the algorithm's, which may hold distance=...): what the head
    # applies to, and what a PCA fitted on these rows records
    label = args.store.partition("/")[2] if args.store else _model_label(args.model)
    with contextlib.suppress(FileNotFoundError):
        if args.resume:
            store = load_store("training", label, own)
            return (np.asarray(store.features), [r.source_id or r.image_id
                                                 for r in store.records], label)
    if args.store:
        store = _float_store(args)
        return (np.asarray(store.features), [r.source_id or r.image_id for r in store.records],
                args.store.partition("/")[2])
    from generator import AttackedImage
    from generator.pipeline import attacked_record
    from hashing import describe
    from helpers.descriptors import FloatFeatures

    algorithm = parse_algorithm(args.model)
    rng = np.random.default_rng(seed)  # the sample, then each original's attacks
    records = sample_records(load_dataset(args.dataset, args.data_root, subset=args.subset)
                             .records, args.count, rng, args.dataset)
    items = list(records)
    for record in records:
        for k in rng.choice(len(attacks), min(args.copies, len(attacks)), replace=False):
            items.append(AttackedImage(attacked_record(record, attacks[k]), record, attacks[k],
                                       seed))
    described = describe(items, algorithm)
    if not isinstance(described, FloatFeatures):
        raise ValueError(f"{algorithm.label} gives {type(described).__name__}: a head trains "
                         "on float features (a model)")
    save_store(described.values, list(described.records), "training", label, root=own,
               meta={"kind": "float", "metric": described.metric}, overwrite=True)
    return (described.values, [r.source_id or r.image_id for r in described.records], label)


def _model_label(spec: str) -> str:
    """The model's own name of ``--model`` (refused when it is no model)."""
    from hashing import parse_algorithm
    from hashing.methods.neural import algorithm_model_label

    label = algorithm_model_label(parse_algorithm(spec))
    if label is None:
        raise ValueError(f"--model {spec!r} is not a model: a head trains on a model's "
                         "float features")
    return label


def _float_store(args: argparse.Namespace):
    """The store of ``--store``, refused unless it holds float features (a head trains on a
    model's features, not on packed binary codes or local descriptors)."""
    from extractor import load_store

    dataset, slash, method = args.store.partition("/")
    if not slash:
        raise ValueError(f"--store must be DATASET/METHOD, got {args.store!r}")
    store = load_store(dataset, method, args.features_dir)
    kind = store.meta.get("kind", "float")  # stores of extraction are float features
    if kind != "float":
        raise ValueError(f"--store {args.store} holds {kind} descriptors"
                         + (" (packed binary codes)" if kind == "binary" else "")
                         + ", not float features: a head trains on a model's features "
                           "(a store of extract_features.py)")
    return store


#: The flags that choose the training rows: a resumed run must keep them.
DATA_FLAGS = ("model", "dataset", "subset", "count", "copies", "store", "features_dir")


def _check_same_data(output: Path, args: argparse.Namespace, attacks: list[str],
                     seed: int) -> None:
    """Refuse to resume a run that was made from other rows (the head's settings are checked
    against its checkpoint by `train_head`)."""
    from helpers.io import read_json

    record = output / "experiment.json"
    if not record.is_file():
        return
    before = read_json(record).get("config", {})
    now = {**{k: getattr(args, k) for k in DATA_FLAGS}, "attacks": attacks, "seed": seed}
    changed = [k for k, v in now.items() if k in before and before[k] != v]
    if changed:
        raise ValueError(f"{output} was trained on other rows ({', '.join(changed)} differ): "
                         "resume with the same flags, or start a new run (--name)")


def _plot(result: dict, folder: Path) -> None:
    from helpers import figure_style, new_figure, save_figure

    with figure_style():
        fig, ax = new_figure(figsize=(5, 3.4))
        epochs = np.arange(1, len(result["train_losses"]) + 1)
        ax.plot(epochs, result["train_losses"], label="train")
        if result["val_losses"]:
            ax.plot(epochs, result["val_losses"], label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.legend()
        save_figure(fig, folder, "loss")


@script_main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    config = HeadConfig(tuple(args.dims), args.loss, args.margin, args.pos_margin,
                        args.neg_margin, args.miner, args.epochs, args.batch_size,
                        args.per_source, args.optimizer, args.lr, args.weight_decay,
                        args.warmup_epochs, args.val_fraction, 0, args.device)
    attacks, seed, _ = attacks_from_args(args)
    config.seed = seed
    config.check()
    if args.store:  # refused before the folder is taken
        _float_store(args)
    else:
        _model_label(args.model)
    base = args.store.replace("/", "_") if args.store else args.model.split(":")[0]
    named = not args.store and not args.dataset.startswith("folder:")
    with experiment_run(args, SCRIPT, name=f"verifier_{base}",
                        inputs=[data_root(args.data_root)] if named else []) as run:
        output = run.folder
        if args.resume:
            _check_same_data(output, args, [a.id for a in attacks], seed)
        record = {**{k: v for k, v in vars(args).items() if k != "attacks"},
                  "attacks": [a.id for a in attacks], "seed": seed, "method": None}
        run.record(record)
        features, labels, method = _rows(args, attacks, seed, output)
        run.record({**record, "method": method})
        result = train_head(features, labels, config, output, method, args.resume)
        _plot(result, output / "figures")
        run.finish(**result)
    val = result["val_losses"]
    if not result["train_losses"]:
        print(f"nothing trained; head -> {result['head']}")
        return 0
    print(f"{result['rows']} rows of {result['sources']} source images, {result['steps']} "
          f"steps: train loss {result['train_losses'][0]:.4f} -> "
          f"{result['train_losses'][-1]:.4f}"
          + (f", validation {val[0]:.4f} -> {val[-1]:.4f}" if val else ""))
    if result["collapsed"]:
        print(f"COLLAPSED: {result['collapsed']}")
    print(f"head -> {result['head']} (method {method})")
    return 0


if __name__ == "__main__":
    run_script(main)
