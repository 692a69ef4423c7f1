"""Attacking many images: on the fly (an iterable) or to disk (``write_attacks``).

Both paths run the same function per source image with randomness seeded by
``(seed, image_id, attack_id)``, so an image made on the fly and the same image read back from
a lossless file are pixel-identical.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import multiprocessing
import os
import secrets
import signal
import threading
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing import resource_tracker
from multiprocessing.shared_memory import SharedMemory
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from data_retrieval import BadImage, ImageRecord, write_manifest
from generator.registry import AnyAttack
from helpers import (
    DEFAULT_MAX_PIXELS,
    ImageLoadError,
    OutputError,
    atomic_write,
    available_cpus,
    check_relative_id,
    get_logger,
    load_image,
    progress,
    remove_stale_tmp,
    rng_for,
    safe_child,
    save_image,
    spreadsheet_escape,
)

logger = get_logger(__name__)

#: Formats attacked images can be written in (ones every image reader opens).
IMAGE_FORMATS = ("png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff")

#: Pillow save options per output format: fast lossless PNG, high-quality JPEG.
SAVE_DEFAULTS: dict[str, dict[str, Any]] = {
    "png": {"compress_level": 1},
    "jpg": {"quality": 95},
    "jpeg": {"quality": 95},
    "webp": {"lossless": True},
}


def attacked_record(
    record: ImageRecord, attack: AnyAttack, path: Path | None = None
) -> ImageRecord:
    """The record of ``attack`` applied to ``record``'s image (chained attacks join with ``+``)."""
    attack_id = attack.id if record.attack_id is None else f"{record.attack_id}+{attack.id}"
    return ImageRecord(
        image_id=f"{record.image_id}_{attack.id}",
        path=path,
        source_id=record.source_id,
        attack_id=attack_id,
        group=record.group,
    )


def apply_attack(attack: AnyAttack, image: Image.Image, seed: int, image_id: str) -> Image.Image:
    """``attack`` on ``image`` with randomness seeded by ``(seed, image_id, attack.id)``."""
    rng = rng_for(seed, image_id, attack.id) if attack.random else None
    return attack(image, rng)


@functools.lru_cache(maxsize=2)
def _source_image(path: str, max_pixels: int | None) -> Image.Image:
    # The attacks of one source come one after the other: it is decoded once for all of them.
    return load_image(path, max_pixels=max_pixels)


@dataclass(frozen=True)
class AttackedImage:
    """An attacked image made when it is loaded: nothing is decoded until `load`.

    `attacked_images` lists them for a whole dataset; a feature store of attacked queries is
    then extracted without writing any image (``extract_to_store(model, items, ...)``), each
    with its record (``source_id``, ``attack_id``, ``group``). The pixels equal
    `iter_attacks`' for the same seed.

    Attributes
    ----------
    record : ImageRecord
        The attacked image's record (``path`` is ``None``).
    source : ImageRecord
        The image it is made from.
    attack : Attack or ComposedAttack
    seed : int
    max_pixels : int or None
    """

    record: ImageRecord
    source: ImageRecord
    attack: AnyAttack
    seed: int = 0
    max_pixels: int | None = DEFAULT_MAX_PIXELS

    @property
    def image_id(self) -> str:
        return self.record.image_id

    def load(self) -> Image.Image:
        """The attacked image (RGB).

        Raises
        ------
        helpers.ImageLoadError
            The source cannot be read.
        """
        image = _source_image(str(self.source.path), self.max_pixels)
        return apply_attack(self.attack, image, self.seed, self.source.image_id)


def attacked_images(records: Sequence[ImageRecord], attacks: Sequence[AnyAttack],
                    seed: int = 0, max_pixels: int | None = DEFAULT_MAX_PIXELS
                    ) -> list[AttackedImage]:
    """Every attack of every record as an `AttackedImage`, in `iter_attacks`' order (for each
    record, each attack); made only when loaded."""
    return [AttackedImage(attacked_record(r, a), r, a, seed, max_pixels)
            for r in records for a in attacks]


def _report_bad(problem: BadImage, on_error: str, bad: list[BadImage]) -> None:
    """Raise, or log once and keep, an input that could not be loaded."""
    if on_error == "raise":
        raise ImageLoadError(problem.path, problem.reason)
    logger.warning("skipping %s: %s", problem.path, problem.reason)
    bad.append(problem)


def _init_worker() -> None:
    cv2.setNumThreads(1)  # one process per core already; threads would oversubscribe
    # Ctrl-C reaches the whole process group: the parent stops the pool and reports once,
    # the workers must not each print a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _pool(workers: int) -> multiprocessing.pool.Pool:
    # "spawn", not "fork": a forked child inherits OpenCV's (or torch's) thread pool in
    # whatever state the parent left it and can deadlock on its first call. The cost is that
    # attack families must be importable (defined in a module, not in __main__ of a notebook)
    # to be used with workers.
    # SIGINT is ignored while the workers start: an ignored signal stays ignored across the
    # spawn's exec, so a Ctrl-C that lands while a worker is still importing (before its
    # initializer runs) cannot print that worker's traceback. The parent's handler returns.
    context = multiprocessing.get_context("spawn")
    if threading.current_thread() is not threading.main_thread():
        return context.Pool(workers, initializer=_init_worker)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return context.Pool(workers, initializer=_init_worker)
    finally:
        signal.signal(signal.SIGINT, previous)


def _resolve_workers(workers: int | None) -> int:
    if workers is None:
        return min(available_cpus(), 8)
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    return workers


# --- on the fly ---------------------------------------------------------------------------------


def _attack_one(
    task: tuple[ImageRecord, Sequence[AnyAttack], int, bool, int | None],
) -> list[tuple[ImageRecord, Image.Image]] | BadImage:
    record, attacks, seed, include_original, max_pixels = task
    try:
        image = load_image(record.path, max_pixels=max_pixels)
    except ImageLoadError as exc:
        return BadImage(exc.path, exc.reason)
    out = [(record, image)] if include_original else []
    for attack in attacks:
        out.append((attacked_record(record, attack),
                    apply_attack(attack, image, seed, record.image_id)))
    return out


def _untrack(shm: SharedMemory) -> None:
    # The creating worker hands the block over: the consumer attaches (registering it with
    # the resource tracker) and unlinks it (unregistering it).
    with contextlib.suppress(AttributeError, KeyError):  # other Python versions
        resource_tracker.unregister(shm._name, "shared_memory")


def _attack_one_shared(task: tuple) -> tuple[str, list[tuple]] | BadImage:
    """Like :func:`_attack_one`, but the pixels travel through one shared-memory block.

    Pickling ~60 images per source through a pipe costs more than making them; a shared
    block costs one copy on each side.
    """
    block_name, inner = task
    result = _attack_one(inner)
    if isinstance(result, BadImage):
        return result
    arrays = [np.asarray(image) for _, image in result]
    shm = SharedMemory(name=block_name, create=True, size=max(1, sum(a.nbytes for a in arrays)))
    _untrack(shm)
    metas, offset = [], 0
    for (record, image), array in zip(result, arrays, strict=True):
        np.ndarray(array.shape, np.uint8, shm.buf, offset)[...] = array
        metas.append((record, image.mode, array.shape, offset))
        offset += array.nbytes
    shm.close()
    return block_name, metas


def _read_shared(block_name: str, metas: list[tuple]) -> list[tuple[ImageRecord, Image.Image]]:
    shm = SharedMemory(name=block_name)  # attaching registers it, unlink() unregisters
    try:
        out = []
        for record, mode, shape, offset in metas:
            view = np.ndarray(shape, np.uint8, shm.buf, offset)
            # Pillow copies 3-byte RGB pixels into its own layout; other modes may share the
            # buffer, which is about to go, so they are copied first.
            out.append((record, Image.fromarray(view if mode == "RGB" else view.copy(), mode)))
        return out
    finally:
        shm.close()
        shm.unlink()


def _discard_blocks(names: list[str]) -> None:
    """Unlink blocks that workers made but nobody read (the iteration stopped early)."""
    for name in names:
        try:
            shm = SharedMemory(name=name)
        except FileNotFoundError:
            continue
        shm.close()
        shm.unlink()


@dataclass
class AttackStream:
    """Iterable of ``(record, attacked image)``; ``bad`` fills with skipped inputs as it runs.

    Use :func:`iter_attacks` to make one.
    """

    records: Sequence[ImageRecord]
    attacks: Sequence[AnyAttack]
    seed: int = 0
    workers: int = 0
    include_originals: bool = False
    on_error: str = "skip"
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    show_progress: bool | None = None
    bad: list[BadImage] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records) * (len(self.attacks) + int(self.include_originals))

    def _tasks(self) -> Iterator[tuple]:
        for record in self.records:
            yield (record, tuple(self.attacks), self.seed, self.include_originals,
                   self.max_pixels)

    def __iter__(self) -> Iterator[tuple[ImageRecord, Image.Image]]:
        self.bad.clear()
        bar = progress(total=len(self.records), desc="attacking", unit="img",
                       disable=None if self.show_progress is None else not self.show_progress)
        try:
            if self.workers:
                yield from self._parallel(bar)
            else:
                yield from self._collect(map(_attack_one, self._tasks()), bar)
        finally:
            bar.close()

    def _parallel(self, bar) -> Iterator[tuple[ImageRecord, Image.Image]]:
        prefix = f"isl_{os.getpid()}_{secrets.token_hex(4)}_"
        names = [f"{prefix}{i}" for i in range(len(self.records))]
        pool = _pool(self.workers)
        try:
            shared = pool.imap(_attack_one_shared, zip(names, self._tasks(), strict=True))
            results = (r if isinstance(r, BadImage) else _read_shared(*r) for r in shared)
            yield from self._collect(results, bar)
        finally:
            pool.terminate()
            pool.join()
            _discard_blocks(names)

    def _collect(self, results: Iterable, bar) -> Iterator[tuple[ImageRecord, Image.Image]]:
        for result in results:
            bar.update(1)
            if isinstance(result, BadImage):
                _report_bad(result, self.on_error, self.bad)
                continue
            yield from result


def iter_attacks(
    records: Sequence[ImageRecord],
    attacks: Sequence[AnyAttack],
    seed: int = 0,
    workers: int = 0,
    include_originals: bool = False,
    on_error: str = "skip",
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    show_progress: bool | None = None,
) -> AttackStream:
    """Attacked images made on the fly, in order: for each record, each attack.

    Parameters
    ----------
    records : sequence of ImageRecord
        Images to attack (their files are loaded with :func:`helpers.load_image`).
    attacks : sequence of Attack
        Attacks to apply to each image.
    seed : int
        Global seed; each image's randomness comes from ``(seed, image_id, attack_id)``.
    workers : int
        Worker processes (0: in this process).
    include_originals : bool
        Also yield each unattacked image, before its attacks.
    on_error : {"skip", "raise"}
        A bad image is logged once and listed in ``stream.bad``, or raised.
    max_pixels : int or None
        Pixel limit for loading.
    show_progress : bool or None
        Progress bar (``None``: on terminals).

    Returns
    -------
    AttackStream
        Iterate it for ``(record, image)`` pairs; the record's ``path`` is ``None``.
    """
    if on_error not in ("skip", "raise"):
        raise ValueError(f"on_error must be 'skip' or 'raise', got {on_error!r}")
    return AttackStream(list(records), list(attacks), seed, _resolve_workers(workers),
                        include_originals, on_error, max_pixels, show_progress)


# --- to disk ------------------------------------------------------------------------------------


@dataclass
class WriteReport:
    """What :func:`write_attacks` did."""

    output_dir: Path
    manifest: Path
    records: list[ImageRecord]
    written: int
    skipped: int
    bad: list[BadImage]


def output_format(name: str) -> tuple[str, str]:
    """``(extension, Pillow format)`` of an output format name such as ``png`` or ``jpg``.

    Raises
    ------
    ValueError
        Pillow cannot write that format.
    """
    ext = str(name).lower().lstrip(".")
    fmt = Image.registered_extensions().get(f".{ext}")
    if ext not in IMAGE_FORMATS or fmt is None or fmt not in Image.SAVE:
        raise ValueError(f"cannot write images as {name!r}; formats: "
                         f"{', '.join(IMAGE_FORMATS)}")
    return ext, fmt


def attack_path(output_dir: Path, record: ImageRecord, attack: AnyAttack, ext: str) -> Path:
    """Where ``write_attacks`` puts ``attack`` of ``record``: ``<image_id>_<attack_id>.<ext>``.

    Raises
    ------
    helpers.OutputError
        The id would put the file outside ``output_dir`` (``../x``, an absolute path).
    """
    check_relative_id(record.image_id)
    return safe_child(output_dir, f"{record.image_id}_{attack.id}.{ext}")


def is_complete_image(path: Path) -> bool:
    """Whether a file kept from an earlier run is a whole image: not empty, and its data
    checks out (PNG chunk checksums, or a full decode for other formats)."""
    try:
        if path.stat().st_size == 0:
            return False
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                if image.format == "PNG":
                    image.verify()
                else:
                    image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return False
    return True


def _write_one(task: tuple) -> tuple[list[ImageRecord], int, int, BadImage | None]:
    record, attacks, seed, output_dir, ext, fmt, save_options, max_pixels = task
    targets = [attack_path(output_dir, record, a, ext) for a in attacks]
    records = [attacked_record(record, a, t) for a, t in zip(attacks, targets, strict=True)]
    todo = [(a, t) for a, t in zip(attacks, targets, strict=True) if not is_complete_image(t)]
    if not todo:
        return records, 0, len(attacks), None
    try:
        image = load_image(record.path, max_pixels=max_pixels)
    except ImageLoadError as exc:
        return [], 0, 0, BadImage(exc.path, exc.reason)
    for attack, target in todo:
        save_image(apply_attack(attack, image, seed, record.image_id), target, fmt, **save_options)
    return records, len(todo), len(attacks) - len(todo), None


def write_attacks(
    records: Sequence[ImageRecord], attacks: Sequence[AnyAttack], output_dir: str | os.PathLike,
    seed: int = 0, image_format: str = "png", workers: int | None = None,
    include_originals: bool = False, save_options: dict[str, Any] | None = None,
    on_error: str = "skip", max_pixels: int | None = DEFAULT_MAX_PIXELS,
    show_progress: bool | None = None, known_bad: Sequence[BadImage] = (),
) -> WriteReport:
    """Attack images and save them with a manifest; whole files already there are kept
    (resume).

    Files are ``output_dir/<image_id>_<attack_id>.<ext>``, each written atomically, so a
    re-run after an interruption only makes what is missing; a kept file is checked first
    (`is_complete_image`) and made again when empty or damaged. Temporary files of an
    interrupted write are removed. The manifest (``manifest.csv``) is written last; bad
    inputs are logged and listed in ``bad_images.csv``.

    Parameters
    ----------
    records : sequence of ImageRecord
        Images to attack.
    attacks : sequence of Attack
        Attacks to apply to each.
    output_dir : str or PathLike
        Destination folder.
    seed : int
        Global seed (see :func:`iter_attacks`).
    image_format : str
        ``png`` (default, lossless: reading back gives the on-the-fly pixels), ``jpg``,
        ``webp``, ``bmp``, ``tiff``...
    workers : int or None
        Worker processes; ``None`` uses every core (at most 8), 0 works in this process.
    include_originals : bool
        Also list the originals (at their own paths) in the manifest.
    save_options : dict, optional
        Pillow save options, replacing :data:`SAVE_DEFAULTS` for the format.
    on_error : {"skip", "raise"}
        What to do with an unreadable input image.
    max_pixels : int or None
        Pixel limit for loading.
    show_progress : bool or None
        Progress bar (``None``: on terminals).
    known_bad : sequence of BadImage
        Inputs already skipped before (when the images were listed): reported in
        ``bad_images.csv`` and ``WriteReport.bad`` with the ones found here.

    Returns
    -------
    WriteReport

    An image whose id cannot name a file inside ``output_dir`` (``../x``, a backslash, a
    200-byte name) is reported and skipped like an unreadable one.
    """
    if on_error not in ("skip", "raise"):
        raise ValueError(f"on_error must be 'skip' or 'raise', got {on_error!r}")
    ext, fmt = output_format(image_format)
    options = dict(SAVE_DEFAULTS.get(ext, {}) if save_options is None else save_options)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    workers = _resolve_workers(workers)
    attacks = list(attacks)
    bad: list[BadImage] = list(known_bad)
    records = _nameable(records, attacks, output_dir, ext, on_error, bad)
    tasks = [(r, attacks, seed, output_dir, ext, fmt, options, max_pixels) for r in records]
    out_records, written, skipped = _write_all(tasks, output_dir, workers, include_originals,
                                               on_error, bad, show_progress)
    manifest = write_manifest(out_records, output_dir / "manifest.csv")
    _write_bad_list(output_dir / "bad_images.csv", bad)
    return WriteReport(output_dir, manifest, out_records, written, skipped, bad)


def _nameable(records: Sequence[ImageRecord], attacks: list[AnyAttack], output_dir: Path,
              ext: str, on_error: str, bad: list[BadImage]) -> list[ImageRecord]:
    """The records whose ids name an output file of every attack inside ``output_dir``
    (checked before the first image is written); the others are reported as bad."""
    usable = []
    for record in records:
        try:
            for attack in attacks:
                attack_path(output_dir, record, attack, ext)
        except OutputError as exc:  # a file name that cannot name an output: reported
            _report_bad(BadImage(record.path or Path(record.image_id),
                                 f"cannot name an output file: {exc}"), on_error, bad)
            continue
        usable.append(record)
    return usable


def _write_all(tasks: list[tuple], output_dir: Path, workers: int, include_originals: bool,
               on_error: str, bad: list[BadImage], show_progress: bool | None
               ) -> tuple[list[ImageRecord], int, int]:
    """Run `_write_one` on every task (in worker processes when ``workers``): the records of
    the images there now (each original first when ``include_originals``), how many were
    written and how many kept. Temporary files of writes cut short are removed."""
    out_records: list[ImageRecord] = []
    written = skipped = 0
    bar = progress(total=len(tasks), desc="writing attacks", unit="img",
                   disable=None if show_progress is None else not show_progress)
    pool = _pool(workers) if workers else None
    try:
        results = pool.imap(_write_one, tasks) if pool else map(_write_one, tasks)
        for task, (made, n_written, n_skipped, problem) in zip(tasks, results, strict=True):
            bar.update(1)
            if problem is not None:
                _report_bad(problem, on_error, bad)
                continue
            if include_originals:
                out_records.append(task[0])
            out_records.extend(made)
            written += n_written
            skipped += n_skipped
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
            pool.join()
        remove_stale_tmp(output_dir)  # of writes the pool's end cut short
    return out_records, written, skipped


def _write_bad_list(path: Path, bad: list[BadImage]) -> None:
    """``bad_images.csv`` (path, reason) when there are bad inputs; else no such file."""
    if bad:
        with atomic_write(path, "w", newline="", errors="surrogateescape") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path", "reason"])
            writer.writerows([spreadsheet_escape(str(b.path)), spreadsheet_escape(b.reason)]
                             for b in bad)
    elif path.exists():
        path.unlink()
