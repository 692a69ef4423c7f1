"""Named datasets: where each lives under the data root, how to get it, how to list it.

The registry (`DATASETS`, a `helpers.Registry` of `DatasetInfo`) follows the library's one rule:
``dataset_spec(name)`` (``DATASETS.get``) returns the registered entry (folder, description,
how to get it, lister), ``load_dataset(name)`` lists the images (a `Dataset`).
``register_dataset(DatasetInfo(...))`` adds one; ``folder:<path>`` names any folder of images
(a family of names the registry finds, not lists); an unknown name gets the one error that
names the closest. ``get_dataset`` and ``dataset_info`` are the deprecated names of
``dataset_spec``.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from data_retrieval import bsds500
from data_retrieval.listing import BadImage, list_images
from data_retrieval.records import ImageRecord, read_manifest
from data_retrieval.roots import DATA_ROOT_ENV, data_root
from helpers import Registry, get_logger

logger = get_logger(__name__)

class DatasetNotFoundError(FileNotFoundError):
    """A named dataset is not where it should be; the message says how to get it."""


@dataclass
class Dataset:
    """Images of a dataset, listed.

    Attributes
    ----------
    name : str
        Dataset name (``"bsds500"``, ``"folder:/some/path"``...).
    root : Path or None
        Its folder (``None`` for ``sample``, whose files live inside installed packages).
    records : list of ImageRecord
        Usable images.
    bad : list of BadImage
        Files that were skipped, with the reason.
    """

    name: str
    root: Path | None
    records: list[ImageRecord]
    bad: list[BadImage] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)


@dataclass(frozen=True)
class DatasetInfo:
    """What the library knows about a named dataset."""

    name: str
    folder: str
    description: str
    how_to_get: str
    subsets: tuple[str, ...] = ()
    #: ``lister(root, subset, check) -> Dataset``; default: every image of ``root/folder``
    #: (of ``root/folder/subset`` for a subset), listed and checked as ``folder:<path>`` is.
    lister: Callable[[Path, str | None, bool], Dataset] | None = None
    downloader: Callable[..., Path] | None = None

    def path(self, root: str | os.PathLike | None = None) -> Path:
        """The dataset's folder under the data root."""
        return data_root(root) / self.folder


#: Every named dataset, and ``folder:<path>`` for any folder of images.
DATASETS: Registry[DatasetInfo] = Registry("dataset")


def register_dataset(info: DatasetInfo) -> DatasetInfo:
    """Add a named dataset to the registry (used by this module and by plug-ins); a name
    taken already is refused."""
    return DATASETS.add(info.name, info)


def list_datasets() -> list[str]:
    """Names accepted by :func:`load_dataset` (plus ``folder:<path>``)."""
    return [name for name, _ in DATASETS.items()]


def dataset_spec(name: str) -> DatasetInfo:
    """The registry entry of a named dataset or ``folder:<path>`` (`load_dataset` lists its
    images).

    Raises
    ------
    ValueError
        Unknown name; the message lists the known ones and the closest.
    """
    return DATASETS.get(name)


def get_dataset(name: str) -> DatasetInfo:
    """Deprecated: the registry entry, now `dataset_spec` (``get_*`` functions build objects
    elsewhere; `load_dataset` lists the images)."""
    warnings.warn("get_dataset is deprecated: use dataset_spec (the entry) or load_dataset "
                  "(the images)", DeprecationWarning, stacklevel=2)
    return dataset_spec(name)


def dataset_info(name: str) -> DatasetInfo:
    """Deprecated: the older name of `dataset_spec`."""
    warnings.warn("dataset_info is deprecated: use dataset_spec", DeprecationWarning,
                  stacklevel=2)
    return dataset_spec(name)


# --- sample: photos bundled inside installed packages ---------------------------------------

_SAMPLE_FILES = {
    "astronaut": ("skimage", "data/astronaut.png"),
    "chelsea": ("skimage", "data/chelsea.png"),
    "coffee": ("skimage", "data/coffee.png"),
    "hubble_deep_field": ("skimage", "data/hubble_deep_field.jpg"),
    "immunohistochemistry": ("skimage", "data/ihc.png"),
    "motorcycle": ("skimage", "data/motorcycle_left.png"),
    "retina": ("skimage", "data/retina.jpg"),
    "rocket": ("skimage", "data/rocket.jpg"),
    "china": ("sklearn", "datasets/images/china.jpg"),
    "flower": ("sklearn", "datasets/images/flower.jpg"),
    "grace_hopper": ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
}


def package_dir(name: str) -> Path:
    """Folder of an installed package, found without importing it (scikit-learn takes a
    second to import)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise DatasetNotFoundError(f"package {name!r} is not installed; the sample dataset "
                                   "needs scikit-image, scikit-learn and matplotlib")
    return Path(next(iter(spec.submodule_search_locations)))


def sample_files() -> dict[str, Path]:
    """Image id -> file of the ``sample`` dataset (11 colour photos from installed packages)."""
    return {
        image_id: package_dir(package) / relative
        for image_id, (package, relative) in _SAMPLE_FILES.items()
    }


def _list_sample(root: Path, subset: str | None, check: bool) -> Dataset:
    records, bad = [], []
    for image_id, path in sample_files().items():
        if path.is_file():
            records.append(ImageRecord(image_id, path))
        else:
            reason = "bundled photo missing from its package (a partial install?)"
            bad.append(BadImage(path, reason))
            logger.warning("skipping %s: %s", path, reason)
    if not records:
        raise DatasetNotFoundError(
            "none of the sample photos were found inside scikit-image, scikit-learn and "
            "matplotlib; reinstall them (pip install --force-reinstall scikit-image "
            "scikit-learn matplotlib)"
        )
    return Dataset("sample", None, records, bad)


# --- folder-based datasets ---------------------------------------------------------------------


def _skipped_summary(bad: list[BadImage]) -> str:
    """`` (3 files skipped: a.jpg: empty file (0 bytes); ...)`` or nothing."""
    if not bad:
        return ""
    shown = "; ".join(f"{b.path.name}: {b.reason}" for b in bad[:3])
    return f" ({len(bad)} file(s) skipped: {shown}{' ...' if len(bad) > 3 else ''})"


def _require_folder(info: DatasetInfo, folder: Path) -> None:
    if not folder.is_dir():
        raise DatasetNotFoundError(
            f"dataset {info.name!r} not found: looked for {folder} "
            f"(data root: --data-root, else ${DATA_ROOT_ENV}, else Datasets/). {info.how_to_get}"
        )


def _folder_lister(info_name: str) -> Callable[[Path, str | None, bool], Dataset]:
    def lister(root: Path, subset: str | None, check: bool) -> Dataset:
        info = DATASETS.get(info_name)
        folder = root / info.folder
        _require_folder(info, folder)
        if subset is not None:
            if subset not in info.subsets:
                raise ValueError(
                    f"dataset {info.name!r} has no subset {subset!r}; subsets: "
                    f"{', '.join(info.subsets) or 'none'}"
                )
            sub = folder / subset
            _require_folder(info, sub)
            records, bad = list_images(sub, check=check, id_prefix=f"{subset}/")
        else:
            records, bad = list_images(folder, check=check)
        if not records:
            raise DatasetNotFoundError(
                f"dataset {info.name!r}: no readable image in {folder}{_skipped_summary(bad)}. "
                f"{info.how_to_get}"
            )
        return Dataset(info.name, folder, records, bad)

    return lister


def _list_kaggle_memes(root: Path, subset: str | None, check: bool) -> Dataset:
    info = DATASETS.get("kaggle_memes")
    folder = root / info.folder
    _require_folder(info, folder)
    templates_dir = folder / "templates"
    manifest = folder / "memes.csv"
    if not templates_dir.is_dir() or not manifest.is_file():
        raise DatasetNotFoundError(
            f"dataset 'kaggle_memes' in {folder} has not been split yet: expected "
            f"{templates_dir} and {manifest}. {info.how_to_get}"
        )
    records: list[ImageRecord] = []
    bad: list[BadImage] = []
    if subset in (None, "templates"):
        records, bad = list_images(templates_dir, recursive=False, check=check)
    if subset in (None, "memes"):
        records += read_manifest(manifest)
    elif subset != "templates":
        raise ValueError(
            f"dataset 'kaggle_memes' has no subset {subset!r}; subsets: templates, memes"
        )
    ids = [r.image_id for r in records]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{folder}: a meme id equals a template id; ids must be unique")
    return Dataset("kaggle_memes", folder, records, bad)


def _folder_dataset(name: str) -> DatasetInfo | None:
    """The entry of ``folder:<path>`` (any folder of images, relative to the working
    directory), or None for another name."""
    if not name.startswith("folder:"):
        return None
    folder = Path(name[len("folder:"):]).expanduser()

    def lister(root: Path, subset: str | None, check: bool) -> Dataset:
        if not folder.is_dir():
            raise DatasetNotFoundError(f"{name}: folder {folder} does not exist")
        records, bad = list_images(folder, check=check)
        if not records:
            raise DatasetNotFoundError(f"{name}: no readable image in {folder}"
                                       + _skipped_summary(bad))
        return Dataset(name, folder, records, bad)

    return DatasetInfo(name, str(folder.absolute()), f"the images under {folder}",
                       f"Put images in {folder}.", lister=lister)


def _register_builtin() -> None:
    register_dataset(
        DatasetInfo(
            "sample",
            "",
            "11 colour photos bundled inside scikit-image, scikit-learn and matplotlib "
            "(works offline on any install)",
            "It comes with the dependencies: reinstall scikit-image, scikit-learn and matplotlib.",
            lister=_list_sample,
        )
    )
    register_dataset(
        DatasetInfo(
            "bsds500",
            "BSDS500",
            "Berkeley Segmentation Data Set 500: 500 natural photos in train/val/test "
            "(the original study's main dataset)",
            "Get it with `python scripts/download_datasets.py bsds500` (downloads the official "
            "Berkeley archive and lays it out as BSDS500/{train,val,test}/*.jpg).",
            subsets=("train", "val", "test"),
            lister=_folder_lister("bsds500"),
            downloader=bsds500.download_bsds500,
        )
    )
    register_dataset(
        DatasetInfo(
            "kaggle_memes",
            "kaggle_memes",
            "Reddit memes from Kaggle (about 6.9k memes of about 100 templates), split into "
            "templates and memes as in the original study",
            "Download the 'Reddit memes dataset' archive from Kaggle, then run "
            "`python scripts/split_kaggle_memes.py reddit_posts.csv IMAGES_DIR "
            "<data root>/kaggle_memes`.",
            subsets=("templates", "memes"),
            lister=_list_kaggle_memes,
        )
    )
    folder_sets = [
        (
            "flickr500k",
            "Flickr500K",
            "500k Flickr photos used as distractors in the original study",
            "It has no public download: place the JPEGs under <data root>/Flickr500K/.",
        ),
        (
            "cartoons",
            "cartoons",
            "Cartoon images used in the original study's clustering experiments",
            "It has no public download: place the images under <data root>/cartoons/.",
        ),
        (
            "meme_templates",
            "meme_templates",
            "Meme template images from memegen (github.com/jacebrowning/memegen, templates/)",
            "Copy templates/<id>/default.* from github.com/jacebrowning/memegen into "
            "<data root>/meme_templates/ as <id>.<ext>.",
        ),
        (
            "imagenet_samples",
            "imagenet_samples",
            "One ImageNet (ILSVRC-2012) image per class, 1000 JPEGs",
            "Clone github.com/EliSchwartz/imagenet-sample-images and copy its *.JPEG into "
            "<data root>/imagenet_samples/.",
        ),
    ]
    for name, folder, description, how in folder_sets:
        register_dataset(DatasetInfo(name, folder, description, how, lister=_folder_lister(name)))


_register_builtin()
DATASETS.add_finder(_folder_dataset, lambda: ["folder:<path>"])


def load_dataset(
    name: str,
    data_root_dir: str | os.PathLike | None = None,
    subset: str | None = None,
    check: bool = True,
    limit: int | None = None,
) -> Dataset:
    """List a dataset by name.

    Parameters
    ----------
    name : str
        A registered name (see :func:`list_datasets`) or ``folder:<path>``.
    data_root_dir : str or PathLike, optional
        Overrides ``$DATASETS_DIR`` and the default ``Datasets/``.
    subset : str, optional
        E.g. ``"train"`` for ``bsds500``, ``"templates"`` for ``kaggle_memes``.
    check : bool
        Check every file's header; bad files are reported and skipped.
    limit : int, optional
        Keep the first ``limit`` images (in sorted order).

    Returns
    -------
    Dataset

    Raises
    ------
    ValueError
        Unknown name.
    DatasetNotFoundError
        The dataset is not on disk; the message says where it looked and how to get it.
    """
    info = dataset_spec(name)
    # without a lister of its own, a dataset is the images of its folder (and subset folders)
    lister = info.lister or _folder_lister(info.name)
    dataset = lister(data_root(data_root_dir), subset, check)
    if limit is not None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        dataset.records = dataset.records[:limit]
    return dataset


def load_images(
    spec: str,
    data_root_dir: str | os.PathLike | None = None,
    check: bool = True,
) -> Dataset:
    """Images from a dataset name, ``folder:<path>``, an existing folder, or a manifest CSV.

    This is what scripts accept as their INPUT argument.
    """
    path = Path(spec).expanduser()
    if spec.endswith(".csv") and path.is_file():
        return Dataset(spec, path.parent, read_manifest(path))
    if spec in DATASETS:
        return load_dataset(spec, data_root_dir, check=check)
    if path.is_dir():
        return load_dataset(f"folder:{path}", check=check)
    close = difflib.get_close_matches(spec, list_datasets(), n=1, cutoff=0.6)
    hint = f" (closest: {close[0]!r})" if close else ""
    raise ValueError(
        f"{spec!r}{hint} is neither a dataset name ({', '.join(list_datasets())}), "
        "folder:<path>, an existing folder, nor a manifest .csv"
    )
