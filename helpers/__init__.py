"""The bottom layer every package stands on: plumbing, plus the few shared types.

Plumbing: atomic files and JSON/NumPy/CSV I/O, robust image loading, experiment records and
result folders (`experiment_run`, `result_file`, the script front `helpers.cli`), devices,
seeds, timing, logging, progress bars, downloads, the matplotlib style.

Shared types, here because every layer passes them: the descriptor containers
(`helpers.descriptors`: `BinaryCodes`, `FloatFeatures`, `MultiCodes`, `LocalDescriptors`, and
the metric names `METRICS`), a method's identity (`method_label`, `weights_tag`), and the one
registry pattern (`Registry`). They are data and rules, not methods: nothing here computes a
hash, runs a model or makes an attack.
"""

from helpers.device import available_cpus, available_memory, resolve_device
from helpers.distributed import Distributed, distributed
from helpers.download import DownloadError, download_file
from helpers.experiment import (
    experiment_record,
    now_iso,
    package_versions,
    write_experiment_json,
)
from helpers.images import DEFAULT_MAX_PIXELS, ImageLoadError, load_image, to_rgb
from helpers.io import (
    atomic_path,
    atomic_write,
    load_npy,
    read_json,
    save_image,
    save_npy,
    save_torch,
    spreadsheet_escape,
    spreadsheet_unescape,
    write_csv,
    write_json,
)
from helpers.logs import get_logger, setup_logging
from helpers.outputs import (
    FolderLock,
    OutputError,
    check_name,
    check_output_file,
    check_relative_id,
    file_name,
    is_within,
    output_dir,
    remove_stale_tmp,
    safe_child,
)
from helpers.params import (
    check_param_type,
    method_label,
    parse_key_values,
    unknown_name,
    weights_tag,
)
from helpers.paths import printable, project_root, results_root
from helpers.plotting import figure_style, new_figure, save_figure
from helpers.progress import progress
from helpers.registry import Registry
from helpers.runs import (
    ResultFile,
    Run,
    add_log_level_argument,
    add_output_arguments,
    add_output_file_arguments,
    add_store_arguments,
    experiment_run,
    path_inputs,
    result_file,
    result_folder,
)
from helpers.seeding import derive_seed, rng_for
from helpers.timing import Timer, Timing, time_repeated

__all__ = [
    "Run",
    "ResultFile",
    "add_output_arguments",
    "add_log_level_argument",
    "add_output_file_arguments",
    "add_store_arguments",
    "experiment_run",
    "path_inputs",
    "result_file",
    "result_folder",
    "Distributed",
    "distributed",
    "DEFAULT_MAX_PIXELS",
    "DownloadError",
    "ImageLoadError",
    "Timer",
    "Timing",
    "time_repeated",
    "atomic_path",
    "available_cpus",
    "available_memory",
    "atomic_write",
    "derive_seed",
    "download_file",
    "get_logger",
    "load_image",
    "now_iso",
    "experiment_record",
    "package_versions",
    "parse_key_values",
    "output_dir",
    "remove_stale_tmp",
    "safe_child",
    "check_name",
    "check_output_file",
    "check_relative_id",
    "file_name",
    "is_within",
    "FolderLock",
    "OutputError",
    "progress",
    "printable",
    "project_root",
    "read_json",
    "resolve_device",
    "results_root",
    "rng_for",
    "load_npy",
    "figure_style",
    "new_figure",
    "save_figure",
    "save_image",
    "save_npy",
    "save_torch",
    "setup_logging",
    "to_rgb",
    "unknown_name",
    "Registry",
    "method_label",
    "weights_tag",
    "check_param_type",
    "write_experiment_json",
    "write_json",
    "write_csv",
    "spreadsheet_escape",
    "spreadsheet_unescape",
]
