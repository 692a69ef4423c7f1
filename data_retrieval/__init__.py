"""Where images come from: records, manifests, named datasets, splits and the memes splitter.

Named datasets: ``dataset_spec(name)`` returns the registered entry, ``load_dataset(name)`` lists
the images (``get_dataset`` and ``dataset_info`` are deprecated names of ``dataset_spec``).
"""

from data_retrieval.bsds500 import BSDS500_URL, ArchiveError, download_bsds500, extract_bsds500
from data_retrieval.datasets import (
    DATA_ROOT_ENV,
    Dataset,
    DatasetInfo,
    DatasetNotFoundError,
    data_root,
    dataset_spec,
    list_datasets,
    load_dataset,
    load_images,
    register_dataset,
    sample_files,
)
from data_retrieval.datasets import (
    dataset_info as dataset_info,  # deprecated (warns); not in __all__
)
from data_retrieval.datasets import (
    get_dataset as get_dataset,  # deprecated (warns); not in __all__
)
from data_retrieval.items import as_record, load_item, loadable
from data_retrieval.listing import IMAGE_EXTENSIONS, BadImage, list_images
from data_retrieval.memes import MemeSplit, split_kaggle_memes
from data_retrieval.records import (
    MANIFEST_COLUMNS,
    ImageRecord,
    read_manifest,
    source_rows,
    write_manifest,
)
from data_retrieval.splits import CONTROL, EXPERIMENTAL, sample_records, split_groups

__all__ = [
    "as_record",
    "load_item",
    "sample_records",
    "loadable",
    "BSDS500_URL",
    "CONTROL",
    "DATA_ROOT_ENV",
    "EXPERIMENTAL",
    "IMAGE_EXTENSIONS",
    "MANIFEST_COLUMNS",
    "ArchiveError",
    "BadImage",
    "Dataset",
    "DatasetInfo",
    "DatasetNotFoundError",
    "ImageRecord",
    "MemeSplit",
    "data_root",
    "dataset_spec",
    "download_bsds500",
    "extract_bsds500",
    "list_datasets",
    "list_images",
    "load_dataset",
    "load_images",
    "read_manifest",
    "source_rows",
    "register_dataset",
    "sample_files",
    "split_groups",
    "split_kaggle_memes",
    "write_manifest",
]
