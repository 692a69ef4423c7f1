"""`describe` and `describe_all`: the one way to turn images into descriptors, and the
`Algorithm` they describe with (`get_algorithm`, `parse_algorithm`: a registered name and its
checked parameters).

Every method (a perceptual hash, a neural model with its distance or SimHash bits) is called the
same way, and every result is a descriptor object that knows its rows (``ids``, and
``records`` when it got them), the method that made it, and how it is compared::

    codes = describe("folder:/data/photos", "phash:hash_size=16")
    feats = describe(load_dataset("sample"), "efficientnet_lite0")
    nearest(codes[:5], codes, k=3)        # distances take descriptor objects as they are
"""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, JpegImagePlugin
from threadpoolctl import threadpool_limits

from data_retrieval import BadImage, Dataset, ImageRecord, load_images, read_manifest
from data_retrieval.items import as_record, load_item, loadable
from data_retrieval.listing import make_image_ids
from hashing.methods.gray import GrayBatch
from hashing.methods.registry import ALGORITHMS
from helpers import (
    ImageLoadError,
    available_cpus,
    check_param_type,
    get_logger,
    method_label,
    parse_key_values,
    progress,
)
from helpers.descriptors import BinaryCodes, FloatFeatures, LocalDescriptors, MultiCodes
from helpers.display import plural
from helpers.images import is_draftable, is_jpeg_file

logger = get_logger(__name__)


#: How an algorithm's images are decoded: ``exact`` (the default: every pixel, bits equal to
#: imagehash's) or ``draft`` (a JPEG file decoded by libjpeg at 1/2, 1/4 or 1/8 scale, its
#: short side kept >= the algorithm's draft side; see `Algorithm.draft_side`).
DECODES = ("exact", "draft")


@dataclass(frozen=True)
class Algorithm:
    """A named algorithm with its parameters; ``describe(images)`` gives descriptors.

    ``params`` holds the non-default parameters, ``decode='draft'`` among them when asked: the
    decode mode is part of the method's identity (its label, so its stores and results).
    """

    name: str
    params: tuple[tuple[str, Any], ...] = ()

    @property
    def label(self) -> str:
        """The name with its non-default parameters, e.g. ``phash`` or ``phash_hash_size=16``
        (``phash_decode=draft`` with a draft decode): how results name this algorithm."""
        return method_label(self.name, dict(self.params))

    @property
    def whole_batch(self) -> bool:
        """Runs on whole batches of PIL images (neural), not on per-thread `GrayBatch` slices."""
        return ALGORITHMS.get(self.name).whole_batch

    @property
    def decode(self) -> str:
        """``exact`` or ``draft`` (see `DECODES`)."""
        return dict(self.params).get("decode", "exact")

    @property
    def draft_side(self) -> int | None:
        """With ``decode='draft'``, the short side (pixels) a JPEG file keeps when `describe`
        decodes it at reduced scale for this algorithm: at least 16 pixels per cell of the
        hash grid and at least the side the algorithm resizes to (the rule each hash
        registers: 128 for the 8 x 8 hashes, 256 for block_mean, 300 for crop_resistant at
        their defaults; colorhash, which has no grid, 400, measured). ``None`` with the exact
        decode."""
        if self.decode != "draft":
            return None
        entry = ALGORITHMS.get(self.name)
        signature = list(inspect.signature(entry.function).parameters.values())[1:]
        params = {p.name: p.default for p in signature}
        params.update(self.function_params)
        return int(entry.draft(params))

    @property
    def function_params(self) -> dict[str, Any]:
        """The parameters the algorithm's function takes (the decode mode is not one)."""
        return {k: v for k, v in self.params if k != "decode"}

    def describe(self, images: Sequence[Image.Image] | Any) -> Any:
        """Descriptors of a list of PIL images (or of a prepared ``GrayBatch``): the building
        block, no ids attached; images in memory are hashed as they are, whatever the decode
        mode. Anything else `hashing.describe` takes (paths, records, a dataset, a
        manifest...) goes through `hashing.describe` and gets its ids (and a draft decode
        where the algorithm asks for one)."""
        if not isinstance(images, GrayBatch) and not (
                isinstance(images, list | tuple)
                and all(isinstance(im, Image.Image) for im in images)):
            return describe(images, self)
        if self.whole_batch:
            batch = images.images if isinstance(images, GrayBatch) else list(images)
        else:
            batch = images if isinstance(images, GrayBatch) else GrayBatch(images)
        out = ALGORITHMS.get(self.name).function(batch, **self.function_params)
        if not isinstance(out, BinaryCodes | MultiCodes | FloatFeatures | LocalDescriptors):
            raise TypeError(f"algorithm {self.name!r} returned a {type(out).__name__}; an "
                            "algorithm returns BinaryCodes, MultiCodes, FloatFeatures or "
                            "LocalDescriptors (e.g. BinaryCodes.from_bits(bits))")
        return out.with_identity(method=self.label)


def get_algorithm(name: str, **params: Any) -> Algorithm:
    """An algorithm by name, its parameters checked against the function's signature.

    ``decode`` (``'exact'`` or ``'draft'``, see `DECODES`) is a parameter of every algorithm
    that registers a draft rule (the classical hashes but hist_hash).

    Raises
    ------
    ValueError
        Unknown name (the message lists the known ones) or parameter, or a decode mode the
        algorithm does not have.
    """
    entry = ALGORITHMS.get(name)
    decode = params.pop("decode", "exact")
    _check_decode(name, entry, decode)
    accepted = list(inspect.signature(entry.function).parameters)[1:]
    unknown = set(params) - set(accepted)
    if unknown:
        raise ValueError(f"algorithm {name!r} has no parameter(s) {sorted(unknown)}; "
                         f"parameters: {', '.join(accepted)}"
                         + (", decode" if entry.draft is not None else ""))
    signature = inspect.signature(entry.function).parameters
    for key, value in params.items():
        check_param_type(f"algorithm {name!r}", key, value, signature[key].default)
    if entry.normalise is not None:
        params = entry.normalise(dict(params))
    explicit = {k: v for k, v in params.items() if signature[k].default != v}
    if decode != "exact":
        explicit["decode"] = decode
    return Algorithm(name, tuple(sorted(explicit.items())))


def _check_decode(name: str, entry: Any, decode: Any) -> None:
    """``decode`` must be one of `DECODES`, and ``draft`` one the algorithm registered."""
    if not isinstance(decode, str) or decode not in DECODES:
        raise ValueError(f"algorithm {name!r}: decode must be one of "
                         f"{', '.join(map(repr, DECODES))}, got {decode!r}")
    if decode != "exact" and entry.draft is None:
        drafts = [n for n, e in ALGORITHMS.items() if e.draft is not None]
        raise ValueError(f"algorithm {name!r} has no draft decode (decode={decode!r}); "
                         f"algorithms with one: {', '.join(drafts)}")


def parse_algorithm(spec: str | Algorithm) -> Algorithm:
    """An algorithm from a spec string: ``name`` or ``name:key=value,key=value`` (values as
    Python literals: ``phash:hash_size=16``, ``efficientnet_lite0:distance='l2'``), as scripts,
    config files and notebooks write it. An `Algorithm` is returned as it is.

    Raises
    ------
    ValueError
        Unknown name or parameter, a value of the wrong type, or an item without ``=``.
    """
    if isinstance(spec, Algorithm):
        return spec
    name, _, rest = str(spec).partition(":")
    params = parse_key_values(filter(None, rest.split(",")), f"algorithm parameter in {spec!r}:")
    return get_algorithm(name.strip(), **params)


def concat_descriptors(parts: Sequence[Any]) -> Any:
    """Descriptors of consecutive batches joined in order (of one kind)."""
    if not len(parts):
        raise ValueError("no descriptors to join (an empty list of batches)")
    return type(parts[0]).concat(list(parts))


def _describe_images(
    algorithms: Sequence[Algorithm],
    images: Sequence[Image.Image],
    workers: int | None = None,
    seconds: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Descriptors of every algorithm for the same images, sharing decode and resizes.

    Parameters
    ----------
    algorithms : sequence of Algorithm
    images : sequence of PIL.Image.Image
    workers : int, optional
        Threads, each on a contiguous slice of the images (Pillow, NumPy and OpenCV release
        the GIL in their loops). Default: the usable cores.
    seconds : dict, optional
        Adds each algorithm's time to ``seconds[label]``, summed over threads. The gray
        conversion is shared out evenly; a shared resize is charged to the first algorithm
        that needs it.

    Returns
    -------
    dict
        ``{algorithm label: descriptors}`` (see `Algorithm.label`), in image order.
    """
    images = list(images)
    whole = [a for a in algorithms if a.whole_batch]
    sliced = [a for a in algorithms if not a.whole_batch]
    result: dict[str, Any] = {}
    for a in whole:  # neural networks: one call on the whole batch (they use every core)
        tic = time.perf_counter()
        result[a.label] = a.describe(images)
        if seconds is not None:
            seconds[a.label] = seconds.get(a.label, 0.0) + time.perf_counter() - tic
    if not sliced:
        return result
    workers = max(1, min(workers or available_cpus(), len(images) or 1))
    bounds = [len(images) * k // workers for k in range(workers + 1)]

    def run(k: int) -> tuple[dict[str, Any], dict[str, float]]:
        out, spent = {}, {}
        tic = time.perf_counter()
        batch = GrayBatch(images[bounds[k]:bounds[k + 1]])
        shared = time.perf_counter() - tic
        for a in sliced:
            tic = time.perf_counter()
            out[a.label] = a.describe(batch)
            spent[a.label] = time.perf_counter() - tic + shared / len(sliced)
        return out, spent

    if workers == 1:
        parts = [run(0)]
    else:
        # Each thread's small matrix products get one BLAS thread: nested BLAS threads would
        # oversubscribe the cores (the exact resizes slowed down with 2 workers without this).
        with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(workers) as pool:
            parts = list(pool.map(run, range(workers)))
    if seconds is not None:
        for _, spent in parts:
            for label, value in spent.items():
                seconds[label] = seconds.get(label, 0.0) + value
    outputs = [out for out, _ in parts]
    if len(outputs) == 1:
        result.update(outputs[0])
    else:
        result.update({a.label: concat_descriptors([o[a.label] for o in outputs])
                       for a in sliced})
    return {a.label: result[a.label] for a in algorithms}


def _has_record(item: Any) -> bool:
    """A record, an attacked image, or a (record, image) pair: an item that knows its source."""
    return (isinstance(item, ImageRecord) or (hasattr(item, "record") and hasattr(item, "load"))
            or (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], ImageRecord)))


def _entries(items: Any) -> tuple[list[tuple[Any, Any]], bool, list[BadImage]]:
    """``[(record, source)]``, whether records were given, and files skipped at listing."""
    bad: list[BadImage] = []
    if isinstance(items, str | os.PathLike):
        spec = os.fspath(items)
        if spec.endswith(".csv") and Path(spec).is_file():
            items = read_manifest(spec)
        elif Path(spec).is_file():
            items = [Path(spec)]
        else:  # a dataset name, folder:<path>, or a folder
            items = load_images(spec)
    if isinstance(items, Dataset):
        bad = list(items.bad)
        items = items.records
    if not isinstance(items, Sequence):
        items = list(items)  # an iterator, e.g. generator.iter_attacks
    records_given = bool(items) and all(_has_record(i) for i in items)
    entries = []
    for index, item in enumerate(items):
        entries.append((as_record(item, index), loadable(item, index)[1]))
    return _unique_ids(entries, items), records_given, bad


def _unique_ids(entries: list, items: Sequence) -> list:
    """Paths in several folders may share a file name: their ids become their paths relative
    to the common folder (``a/x``, ``b/x``), as a folder listing names them. Other repeats are
    an error: a row would stand for two images."""
    ids = [record.image_id for record, _ in entries]
    if len(set(ids)) == len(ids):
        return entries
    if all(isinstance(i, str | os.PathLike) for i in items):
        paths = [Path(os.path.abspath(record.path)) for record, _ in entries]
        root = Path(os.path.commonpath(paths)) if len(paths) > 1 else paths[0].parent
        if root in paths:
            root = root.parent
        ids = make_image_ids(paths, root)
        entries = [(record.replace(image_id=i, source_id=i), source)
                   for (record, source), i in zip(entries, ids, strict=True)]
    seen, repeated = set(), []
    for record, _ in entries:
        if record.image_id in seen:
            repeated.append(record.image_id)
        seen.add(record.image_id)
    if repeated:
        raise ValueError(f"image ids repeat ({', '.join(map(repr, repeated[:3]))}): a row would "
                         "stand for two images; give records with unique ids")
    return entries


def _load(source: Any, sides: Sequence[int | None] = (None,)
          ) -> tuple[dict[int | None, Any] | None, ImageLoadError | None]:
    """An item's image for each decode (``None``: exact; a number: a draft decode keeping
    that short side), or the error that names why it cannot be read. Only a JPEG file is
    decoded once per size; anything else is loaded once and serves every side as it is."""
    try:
        if any(sides) and isinstance(source, str | os.PathLike) and is_jpeg_file(source):
            return _jpeg_decodes(source, sides), None
        return dict.fromkeys(sides, load_item(source)), None
    except ImageLoadError as exc:
        return None, exc


def _jpeg_decodes(path: str | os.PathLike, sides: Sequence[int | None]
                  ) -> dict[int | None, Image.Image]:
    """A JPEG file decoded once per distinct size that Pillow's draft gives its sides (a side
    that leaves the image whole shares the exact decode): each side gets the pixels that
    ``load_item(path, draft=side)`` gives, whatever other sides are asked with it."""
    decoded: dict[Any, Image.Image] = {}
    out = {}
    for side in sides:
        key = _draft_size(path, side)
        if key not in decoded:
            decoded[key] = load_item(path, draft=None if key is None else side)
        out[side] = decoded[key]
    return out


def _draft_size(path: str | os.PathLike, side: int | None) -> Any:
    """The size a draft decode for ``side`` gives (Pillow's own choice, from the header), or
    ``None`` when the file is decoded whole (no side, or too small to draft)."""
    if side is None:
        return None
    try:
        with Image.open(path) as image:
            if not is_draftable(image, side):
                return None
            image.draft("RGB", (side, side))
            return image.size
    except Exception:  # an unreadable header: load_item then names the reason
        return ("unread", side)


def _batches(entries: list, size: int) -> Iterator[list]:
    iterator = iter(entries)
    while batch := list(islice(iterator, size)):
        yield batch


def describe(
    items: Any,
    method: str | Algorithm,
    batch_size: int = 256,
    workers: int | None = None,
    on_error: str = "skip",
    show_progress: bool | None = None,
) -> Any:
    """Descriptors of images by one method.

    Parameters
    ----------
    items : sequence, iterable, Dataset, or str
        Image paths, `ImageRecord` objects, PIL images, ``(id, image)`` or ``(record,
        image)`` pairs (what `generator.iter_attacks` yields), `generator.AttackedImage`
        objects; or a `Dataset`; or a string: a manifest ``.csv``, a dataset name,
        ``folder:<path>``, a folder, or one image file.
    method : str or Algorithm
        A name or spec (``"phash"``, ``"phash:hash_size=16"``,
        ``"efficientnet_lite0:distance='jensenshannon'"``), or an `Algorithm`. A classical
        hash with ``decode='draft'`` (``"phash:decode='draft'"``) has the JPEG files it reads
        decoded at reduced scale (`Algorithm.draft_side`); everything else is decoded whole.
    batch_size : int
        Images decoded and described at once (memory stays bounded by it).
    workers : int, optional
        Threads of the classical hashes (default: the usable cores).
    on_error : {"skip", "raise"}
        An image that cannot be read is logged and skipped, or raised.
    show_progress : bool, optional
        Progress bar (default: on terminals).

    Returns
    -------
    BinaryCodes, MultiCodes, LocalDescriptors or FloatFeatures
        One row per readable image, in input order (for a keypoint method, an image without
        keypoints too: it is logged and is at an infinite distance from every image), with
        ``ids``, ``method`` (the method's identity), ``bad`` (``(image id, path, reason)``
        of each image skipped, at listing or at decoding) and, when records were given,
        ``records``.

    Raises
    ------
    ValueError
        Unknown method or parameter, or no readable image.
    helpers.ImageLoadError
        With ``on_error="raise"``, the first unreadable image.
    """
    algorithm = parse_algorithm(method)
    return describe_all(items, [algorithm], batch_size, workers, on_error,
                        show_progress)[algorithm.label]


def describe_all(
    items: Any,
    methods: Sequence[str | Algorithm],
    batch_size: int = 256,
    workers: int | None = None,
    on_error: str = "skip",
    show_progress: bool | None = None,
    seconds: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Descriptors of images by several methods, each image decoded once for all of them
    (and a network shared by several methods, e.g. a model with and without a reducer, run
    once per batch).

    Parameters
    ----------
    items, batch_size, workers, on_error, show_progress
        As in `describe`.
    methods : sequence of str or Algorithm
        Names, specs or algorithms, of distinct labels.
    seconds : dict, optional
        Adds each method's time to ``seconds[label]`` (decoding excluded; summed over
        threads; a shared gray conversion or resize is charged as `GrayBatch` shares it).

    Returns
    -------
    dict
        ``{label: descriptors}`` in the order of ``methods``, each as `describe` returns it.

    Raises
    ------
    ValueError
        No method, two methods of one label, an unknown method, or no readable image.
    helpers.ImageLoadError
        With ``on_error="raise"``, the first unreadable image.
    """
    if on_error not in ("skip", "raise"):
        raise ValueError(f"on_error must be 'skip' or 'raise', got {on_error!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    algorithms = _distinct_algorithms(methods)
    labels = [a.label for a in algorithms]
    entries, records_given, bad = _entries(items)
    skipped = [("", os.fspath(b.path), b.reason) for b in bad]  # no id was given to them
    title = labels[0] if len(labels) == 1 else f"{labels[0]} +{len(labels) - 1}"
    bar = progress(total=len(entries), desc=title, unit="img",
                   disable=None if show_progress is None else not show_progress)
    try:
        parts, kept = _describe_entries(entries, algorithms, batch_size, workers, on_error,
                                        skipped, seconds, bar)
    finally:
        bar.close()
    if not kept:
        raise ValueError(f"no readable image to describe ({len(skipped)} skipped)")
    out = {}
    for label in labels:
        out[label] = concat_descriptors(parts[label]).with_identity(
            ids=tuple(r.image_id for r in kept),
            records=tuple(kept) if records_given else None, method=label,
            bad=tuple(skipped))
        _report_empty(out[label])
    return out


def _distinct_algorithms(methods: Sequence[str | Algorithm]) -> list[Algorithm]:
    """The algorithms of ``methods``: at least one, of distinct labels."""
    if isinstance(methods, str):
        raise TypeError(f"methods is a list of methods; for one, describe(items, {methods!r})")
    algorithms = [parse_algorithm(m) for m in methods]
    labels = [a.label for a in algorithms]
    if not labels:
        raise ValueError("no method to describe with")
    if len(set(labels)) != len(labels):
        raise ValueError(f"methods repeat: {labels}")
    return algorithms


def _describe_entries(entries: list, algorithms: list[Algorithm], batch_size: int,
                      workers: int | None, on_error: str, skipped: list,
                      seconds: dict[str, float] | None, bar: Any
                      ) -> tuple[dict[str, list], list]:
    """Each batch of (record, source) entries loaded (in threads, in order) and described by
    every algorithm: the descriptors of each batch by label, and the records kept. Unreadable
    images are appended to ``skipped`` (or raised with ``on_error="raise"``). A JPEG file is
    decoded once for the exact algorithms and once per draft side (`Algorithm.draft_side`)."""
    parts: dict[str, list] = {a.label: [] for a in algorithms}
    kept = []
    sides = sorted({a.draft_side for a in algorithms}, key=lambda s: -1 if s is None else s)
    given = 0  # images handed over decoded already from a JPEG file: no draft possible
    threads = workers if workers is not None else available_cpus()
    # decoding (and attacking) images releases the GIL for most of its time: a batch loads in
    # threads, in order
    pool = ThreadPoolExecutor(max_workers=threads) if threads > 1 else None
    try:
        for batch in _batches(entries, batch_size):
            images: dict[int | None, list] = {side: [] for side in sides}
            sources = [source for _, source in batch]
            if any(sides):
                given += sum(isinstance(s, JpegImagePlugin.JpegImageFile)
                             and bool(getattr(s, "filename", "")) for s in sources)
            loaded = (pool.map(_load, sources, [sides] * len(sources)) if pool is not None
                      else map(_load, sources, [sides] * len(sources)))
            for (record, _), (decoded, exc) in zip(batch, loaded, strict=True):
                if exc is not None:
                    if on_error == "raise":
                        raise exc
                    logger.warning("skipping %s: %s", exc.path, exc.reason)
                    skipped.append((record.image_id, os.fsdecode(exc.path or ""), exc.reason))
                    continue
                for side in sides:
                    images[side].append(decoded[side])
                kept.append(record)
            _describe_decodes(algorithms, images, workers, seconds, parts)
            bar.update(len(batch))
    finally:
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
    if given:
        logger.warning("%s: %s came decoded already from JPEG files and %s hashed as given; "
                       "a draft decode applies where describe reads the file itself (give "
                       "paths or records)", ", ".join(a.label for a in algorithms
                                                      if a.draft_side),
                       plural(given, "image"), "was" if given == 1 else "were")
    return parts, kept


def _describe_decodes(algorithms: list[Algorithm], images: dict[int | None, list],
                      workers: int | None, seconds: dict[str, float] | None,
                      parts: dict[str, list]) -> None:
    """One batch described by every algorithm, each on the images of its own decode
    (``images[side]``); the descriptors are appended to ``parts[label]``."""
    for side, decoded in images.items():
        if not decoded:
            continue
        group = [a for a in algorithms if a.draft_side == side]
        for label, found in _describe_images(group, decoded, workers, seconds).items():
            parts[label].append(found)


def _report_empty(descriptors: Any) -> None:
    """Log the images a keypoint method found no keypoint in: they stay (one row each), at an
    infinite distance from every image."""
    counts = getattr(descriptors, "counts", None)
    if counts is None or counts.all():
        return
    empty = [descriptors.ids[i] for i in np.flatnonzero(counts == 0)]
    logger.warning("%s found no keypoint in %d of %d images (infinite distance to every "
                   "image): %s%s", descriptors.method, len(empty), len(counts),
                   ", ".join(empty[:5]), ", ..." if len(empty) > 5 else "")


def load_descriptors(dataset: str, method: str | Algorithm, root: str | Path | None = None,
                     mmap: bool = True, metric: str | None = None) -> Any:
    """A stored method's rows as the descriptor object `describe` made (ids, records, method):
    `extractor.store.load_descriptors`, the method given as `describe` takes it.

    Parameters
    ----------
    dataset : str
        The store folder.
    method : str or Algorithm
        The method's identity (``efficientnet_lite0``, ``phash_hash_size=16``), or a spec or
        algorithm as `describe` takes it (``phash:hash_size=16``).
    root, mmap, metric
        As in `extractor.store.load_descriptors`.
    """
    from extractor import store  # on use: `import hashing` imports nothing of extractor

    if isinstance(method, Algorithm) or ":" in method:
        method = parse_algorithm(method).label
    return store.load_descriptors(dataset, method, root, mmap=mmap, metric=metric)


def save_descriptors(descriptors: Any, dataset: str, root: str | Path | None = None,
                     overwrite: bool = False, meta: dict[str, Any] | None = None) -> Path:
    """Store what `describe` made as ``<root>/<dataset>/<method>.npy``, in the feature store's
    layout: `extractor.store.save_descriptors` (see there)."""
    from extractor import store  # on use: `import hashing` imports nothing of extractor

    return store.save_descriptors(descriptors, dataset, root, overwrite=overwrite, meta=meta)
