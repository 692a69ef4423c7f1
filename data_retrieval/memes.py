"""The Kaggle Reddit memes: split into templates (database) and memes (queries).

As in the original study, the first meme of each template in ``reddit_posts.csv`` is taken as
that template's reference image, and one mislabelled image is relabelled. Unlike the original
script, nothing is renamed or moved: templates are copied and the memes are described by a
manifest whose ``source_id`` is their template.
"""

from __future__ import annotations

import csv
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from data_retrieval.listing import IMAGE_EXTENSIONS
from data_retrieval.records import ImageRecord, write_manifest
from helpers import get_logger

logger = get_logger(__name__)

#: Images the original study relabelled by hand: file stem -> template.
DEFAULT_RELABEL = {"EQKrGAq_imgr": "bad-luck-brian"}


def normalise_template(name: str) -> str:
    """Template names as the study wrote them: underscores become hyphens."""
    return name.strip().replace("_", "-")


@dataclass
class MemeSplit:
    """What :func:`split_kaggle_memes` wrote and what it skipped."""

    templates: dict[str, Path] = field(default_factory=dict)
    memes: list[ImageRecord] = field(default_factory=list)
    missing_images: list[str] = field(default_factory=list)
    unlabelled_images: list[Path] = field(default_factory=list)


def split_kaggle_memes(
    csv_path: str | os.PathLike,
    images_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    relabel: dict[str, str] | None = None,
    stem_column: int = 0,
    template_column: int = 1,
) -> MemeSplit:
    """Split the Kaggle memes into ``output_dir/templates/`` and ``output_dir/memes.csv``.

    Parameters
    ----------
    csv_path : str or PathLike
        ``reddit_posts.csv`` (header row, then one row per meme).
    images_dir : str or PathLike
        Folder of meme images (searched recursively); files are matched to rows by stem.
    output_dir : str or PathLike
        Receives ``templates/<template><ext>`` (copies) and ``memes.csv`` (a manifest:
        ``source_id`` is the template, ``attack_id`` is ``"meme"``).
    relabel : dict, optional
        File stem -> template for images missing from the CSV; defaults to the study's fix.
    stem_column, template_column : int
        Columns of the CSV holding the image's file stem and its template name.

    Returns
    -------
    MemeSplit
        Templates, meme records, CSV rows without an image, images without a label (both
        logged, none fatal).
    """
    csv_path, images_dir, output_dir = Path(csv_path), Path(images_dir), Path(output_dir)
    relabel = DEFAULT_RELABEL if relabel is None else relabel
    if not csv_path.is_file():
        raise FileNotFoundError(f"Kaggle memes CSV {csv_path} not found")
    if not images_dir.is_dir():
        raise FileNotFoundError(f"Kaggle memes image folder {images_dir} not found")

    by_stem = _images_by_stem(images_dir)
    split = MemeSplit()
    labelled = _labels(csv_path, by_stem, stem_column, template_column, split.missing_images)
    seen = {stem for stem, _ in labelled}
    for stem, template in relabel.items():
        if stem in by_stem and stem not in seen:
            labelled.append((stem, normalise_template(template)))
            seen.add(stem)
    split.unlabelled_images = [path for stem, path in by_stem.items() if stem not in seen]
    _write_split(split, labelled, by_stem, output_dir)
    if split.missing_images:
        logger.warning("%d CSV rows have no image file in %s (first: %s)",
                       len(split.missing_images), images_dir, split.missing_images[:5])
    for path in split.unlabelled_images:
        logger.warning("skipping %s: not in %s and not relabelled", path, csv_path.name)
    logger.info("%d templates, %d memes written to %s",
                len(split.templates), len(split.memes), output_dir)
    return split


def _images_by_stem(images_dir: Path) -> dict[str, Path]:
    """The image files under ``images_dir`` by file stem (the first in path order)."""
    by_stem: dict[str, Path] = {}
    for path in sorted(images_dir.rglob("*")):
        if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file():
            by_stem.setdefault(path.stem, path)
    return by_stem


def _labels(csv_path: Path, by_stem: dict[str, Path], stem_column: int, template_column: int,
            missing: list[str]) -> list[tuple[str, str]]:
    """``(stem, template)`` of the CSV's rows that have an image, in CSV order (a stem with
    a stray ``?`` matched without it); the stems without one are added to ``missing``."""
    labelled: list[tuple[str, str]] = []
    with open(csv_path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        next(reader, None)
        for line, row in enumerate(reader, start=2):
            if len(row) <= max(stem_column, template_column):
                raise ValueError(f"{csv_path}, line {line}: expected at least "
                                 f"{max(stem_column, template_column) + 1} columns, got {row}")
            stem, template = row[stem_column].strip(), normalise_template(row[template_column])
            if stem not in by_stem and stem.replace("?", "") in by_stem:
                stem = stem.replace("?", "")
            if stem not in by_stem:
                missing.append(stem)
                continue
            labelled.append((stem, template))
    return labelled


def _write_split(split: MemeSplit, labelled: list[tuple[str, str]], by_stem: dict[str, Path],
                 output_dir: Path) -> None:
    """Copy each template's first meme to ``templates/<template><ext>`` and write the memes'
    manifest ``memes.csv``, filling ``split``."""
    templates_dir = output_dir / "templates"
    templates_dir.mkdir(parents=True, exist_ok=True)
    for stem, template in labelled:
        if template not in split.templates:
            source = by_stem[stem]
            target = templates_dir / f"{template}{source.suffix.lower()}"
            shutil.copyfile(source, target)
            split.templates[template] = target
        split.memes.append(ImageRecord(stem, by_stem[stem], template, "meme"))
    write_manifest(split.memes, output_dir / "memes.csv")
