#!/usr/bin/env python3
"""Look at search results: for chosen queries, or the worst ones, an image grid of the query,
its true source and its k nearest database images (green: the source, red: another image),
each with its distance. Exact search (Flat) by default, or any Faiss factory string.

Images come from the stores' records: files by their path; attacked queries made on the fly
(no path) are made again from their source's file (found in --images) with the attack and
seed the query store's sidecar records; distractor views from their recipe.

Examples
--------
python scripts/explore_neighbors.py --database bsds500_database/sscd_distilled \\
    --queries bsds500_queries/sscd_distilled --images bsds500 --worst 8
python scripts/explore_neighbors.py --database db/dhash --queries q/dhash \\
    --query-id 100075_jpg_compression_10 --k 5
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from data_retrieval import ImageRecord, load_dataset
from data_retrieval.cli import add_data_root_argument
from extractor.store import default_features_dir
from fast_search import load_search_set, prepare_index, source_ranks
from helpers import (
    add_output_arguments,
    experiment_run,
    figure_style,
    get_logger,
    load_image,
    new_figure,
    read_json,
    save_figure,
    setup_logging,
)
from helpers.cli import integer, run_script, script_main

SCRIPT = "explore_neighbors"
logger = get_logger(SCRIPT)
#: Columns and rows of the grid: a larger figure is unreadable (and slow to draw).
MAX_K, MAX_QUERIES = 100, 200


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", nargs="+", required=True, metavar="STORE",
                        help="database stores (dataset/method)")
    parser.add_argument("--distractors", nargs="*", default=[], metavar="STORE",
                        help="distractor stores (dataset/method; default: none)")
    parser.add_argument("--queries", required=True, metavar="STORE",
                        help="query store (dataset/method)")
    parser.add_argument("--features-dir", default=None,
                        help="feature stores' folder (default: Results/features)")
    parser.add_argument("--images", default=None,
                        help="dataset or folder holding the originals (to remake attacked "
                             "queries and find sources by id)")
    add_data_root_argument(parser)
    parser.add_argument("--index", default="Flat", help="Faiss factory string (Flat)")
    parser.add_argument("--param", default=None, help="search parameters, e.g. nprobe=8")
    parser.add_argument("--k", type=integer(1, MAX_K), default=5,
                        help="neighbours shown (5; at most the database's rows)")
    parser.add_argument("--query-id", nargs="*", default=[], help="queries to show")
    parser.add_argument("--worst", type=integer(1, MAX_QUERIES), default=8,
                        help="without --query-id: the N positive queries whose source ranks "
                             "lowest (8)")
    add_output_arguments(parser, f"Results/<name> (default: {SCRIPT})", default_name=SCRIPT)
    return parser.parse_args(argv)


class Images:
    """Pixels of database and query rows from their records."""

    def __init__(self, args: argparse.Namespace, search_set):
        self.by_id: dict[str, ImageRecord] = {}
        self.root: Path | None = None  # the folder of --images (an input of the run)
        if args.images:
            dataset = load_dataset(args.images, args.data_root)
            self.root = dataset.root
            for record in dataset.records:
                self.by_id.setdefault(record.image_id, record)
        self.query_meta = _sidecar(search_set.query_store)
        self.views: dict[str, Any] = {}
        for part in search_set.parts:  # distractor views of make_distractors.py stores
            self.add_views(_sidecar(part.name), args.data_root)

    def add_views(self, meta: dict[str, Any], data_root: str | None) -> None:
        """Distractor views of a store made by make_distractors.py, remade from their
        recipe."""
        from data_retrieval import load_images
        from fast_search.distractors import distractor_views

        spec = meta.get("distractor_views")
        if not spec:
            return
        try:
            photos = load_images(spec["photos"], data_root).records
            recipe = {k: v for k, v in spec["recipe"].items()}
            for view in distractor_views(photos, spec["count"], spec["seed"], **recipe):
                self.views[view.record.image_id] = view
        except (ValueError, FileNotFoundError, KeyError) as exc:
            logger.warning("cannot remake the distractor views: %s", exc)

    def load(self, record: ImageRecord) -> Image.Image | None:
        try:
            if record.path and Path(record.path).is_file():
                return load_image(record.path)
            if record.image_id in self.views:
                return self.views[record.image_id].load()
            if record.attack_id and record.source_id in self.by_id:
                return self._attacked(record)
            if record.image_id in self.by_id:
                return load_image(self.by_id[record.image_id].path)
        except Exception as exc:  # a picture we cannot show is left blank, not fatal
            logger.warning("cannot show %s: %s", record.image_id, exc)
        return None

    def _attacked(self, record: ImageRecord) -> Image.Image:
        from generator import get_attack
        from generator.pipeline import AttackedImage

        meta = self.query_meta.get("protocol", self.query_meta)
        seed = int(meta.get("seed", 0))
        attack = get_attack(record.attack_id)
        return AttackedImage(record, self.by_id[record.source_id], attack, seed).load()


def _tile(ax, image: Image.Image | None, title: str, colour: str | None) -> None:
    if image is not None:
        image = image.copy()
        image.thumbnail((256, 256))
        ax.imshow(np.asarray(image))
    ax.set_title(title, fontsize=7)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    if colour:
        for spine in ax.spines.values():
            spine.set_edgecolor(colour)
            spine.set_linewidth(3)


@script_main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    root = Path(args.features_dir) if args.features_dir else default_features_dir()
    search_set = load_search_set(args.database, args.queries, args.distractors, root)
    k = min(args.k, search_set.n_database)
    if k < args.k:
        print(f"note: --k {args.k} is more than the {search_set.n_database} database rows: "
              f"showing {k} neighbours")
    index, _ = prepare_index(search_set, args.index, show_progress=False)
    index.set_params(args.param)
    distances, rows = index.search(search_set.queries, k)
    ranks = source_ranks(rows, search_set.truth)
    if args.query_id:
        missing = [q for q in args.query_id if q not in search_set.query_ids]
        if missing:
            raise ValueError(f"no query {missing[0]!r} in {args.queries}")
        if len(args.query_id) > MAX_QUERIES:
            raise ValueError(f"--query-id names {len(args.query_id)} queries: at most "
                             f"{MAX_QUERIES} fit in one figure")
        chosen = [search_set.query_ids.index(q) for q in args.query_id]
    else:
        positive = np.flatnonzero(search_set.truth >= 0)
        order = sorted(positive, key=lambda q: (ranks[q] == 1, -ranks[q] if ranks[q]
                                                else -10**9, distances[q, 0]))
        chosen = order[: args.worst]
        if not chosen:
            raise ValueError(f"no query of {args.queries} has its source in the "
                             "database: give --query-id to look at controls")
    images = Images(args, search_set)
    # the image files drawn (records may point anywhere, the result folder included)
    drawn = [search_set.query_records[q].path for q in chosen]
    drawn += [search_set.database_record(int(r)).path for q in chosen for r in rows[q]
              if r >= 0]
    with experiment_run(args, SCRIPT, inputs=[images.root, *drawn], roots=[root]) as run:
        output = run.folder
        run.record({**vars(args), "k_shown": k})
        cols = k + 2
        with figure_style():
            fig, axes = new_figure(len(chosen), cols, figsize=(1.8 * cols, 1.9 * len(chosen)),
                                   squeeze=False)
            for row, q in enumerate(chosen):
                record = search_set.query_records[q]
                _tile(axes[row, 0], images.load(record), f"query\n{record.image_id}"[:60], None)
                truth = int(search_set.truth[q])
                if truth >= 0:
                    _tile(axes[row, 1], images.load(search_set.database_record(truth)),
                          f"source (rank {ranks[q] or '>' + str(k)})", "tab:blue")
                else:
                    _tile(axes[row, 1], None, "control: no source", None)
                for j in range(k):
                    r = int(rows[q, j])
                    if r < 0:
                        _tile(axes[row, j + 2], None, "none", None)
                        continue
                    good = r == truth
                    _tile(axes[row, j + 2], images.load(search_set.database_record(r)),
                          f"{j + 1}: {search_set.database_ids[r]}"[:28]
                          + f"\nd={distances[q, j]:.4f}", "tab:green" if good else "tab:red")
            written = save_figure(fig, output, "neighbours")
        run.finish(queries=[search_set.query_ids[q] for q in chosen])
    print(f"wrote {written[0]} ({len(chosen)} queries)")
    return 0


def _sidecar(store: str) -> dict[str, Any]:
    """The JSON sidecar of a store's ``.npy`` (empty for arrays and synthetic rows)."""
    path = Path(store).with_suffix(".json")
    if Path(store).suffix != ".npy" or not path.is_file():
        return {}
    try:
        return read_json(path)
    except (OSError, ValueError):
        return {}


if __name__ == "__main__":
    run_script(main)
