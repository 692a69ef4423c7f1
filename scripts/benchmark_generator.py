#!/usr/bin/env python3
"""Time the attack generator: the study's 58 default attacks on N images, in memory and to
disk, per-family throughput, and the original study's implementations as the baseline where
ours differ (scikit-image's random_noise for the noises, Pillow's rotate and torchvision's
affine for rotation and shearing). Writes JSON.

Example
-------
python scripts/benchmark_generator.py --dataset bsds500 --n-images 100
"""

from __future__ import annotations

import argparse
import collections
import os
import platform
import tempfile

import numpy as np
from PIL import Image

from data_retrieval import load_dataset
from data_retrieval.cli import add_data_root_argument
from generator import default_attacks, iter_attacks, write_attacks
from generator.pipeline import apply_attack
from helpers import (
    Timer,
    add_output_file_arguments,
    available_cpus,
    load_image,
    now_iso,
    package_versions,
    result_file,
    setup_logging,
)
from helpers.cli import MAX_SEED, integer, run_script, script_main

SCRIPT = "benchmark_generator"


def study_baselines() -> dict[str, object]:
    """The original study's implementations of the families we implement differently."""
    import torchvision.transforms.functional as F
    from skimage.util import img_as_ubyte, random_noise

    def noise(mode: str, key: str):
        def run(image: Image.Image, value: float) -> Image.Image:
            out = random_noise(np.asarray(image), mode=mode, **{key: value})
            return Image.fromarray(img_as_ubyte(out))
        return run

    def rotate(image: Image.Image, angle: float) -> Image.Image:
        bicubic = Image.Resampling.BICUBIC
        return image.rotate(angle, expand=True, resample=bicubic).resize(image.size, bicubic)

    def shear(image: Image.Image, angle: float) -> Image.Image:
        return F.affine(image, angle=0, translate=(0, 0), scale=1, shear=(-angle, -angle),
                        interpolation=F.InterpolationMode.BICUBIC)

    return {
        "gaussian_noise": noise("gaussian", "var"),
        "salt_pepper_noise": noise("s&p", "amount"),
        "speckle_noise": noise("speckle", "var"),
        "rotation": rotate,
        "shearing": shear,
    }


@script_main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="bsds500", help="dataset to attack (default: bsds500)")
    add_data_root_argument(parser)
    parser.add_argument("--n-images", type=integer(1, 10_000), default=100,
                        help="images, all decoded in memory (default: 100)")
    parser.add_argument("--workers", type=integer(0, 1024), default=None,
                        help="worker processes for the full runs (default: one per core; "
                             "0: none)")
    parser.add_argument("--seed", type=integer(0, MAX_SEED), default=0,
                        help="attack seed (default: 0)")
    add_output_file_arguments(parser, "benchmarks/generator.json")
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    records = load_dataset(args.dataset, args.data_root, limit=args.n_images).records
    if not records:
        raise ValueError(f"{args.dataset}: no image to attack")
    with result_file(args, SCRIPT, "benchmarks/generator.json") as output:
        return _run(args, records, output)


def _run(args: argparse.Namespace, records, output) -> int:
    attacks = default_attacks()
    workers = args.workers if args.workers is not None else available_cpus()
    images = [load_image(r.path) for r in records]
    n = len(images)

    # Per family, one process, decoded images: our implementation and the study's.
    by_family: dict[str, list] = collections.defaultdict(list)
    for attack in attacks:
        by_family[attack.family].append(attack)
    baselines = study_baselines()
    families = {}
    for family, variants in by_family.items():
        with Timer() as ours:
            for record, image in zip(records, images, strict=True):
                for attack in variants:
                    apply_attack(attack, image, args.seed, record.image_id)
        entry = {"variants": len(variants), "seconds": round(ours.elapsed, 3),
                 "images_per_s": round(n * len(variants) / ours.elapsed, 1)}
        if family in baselines:
            value = lambda a: dict(a.params)[next(iter(dict(a.params)))]  # noqa: E731
            with Timer() as base:
                for image in images:
                    for attack in variants:
                        baselines[family](image, value(attack))
            entry["study_images_per_s"] = round(n * len(variants) / base.elapsed, 1)
            entry["speedup_vs_study"] = round(base.elapsed / ours.elapsed, 2)
        families[family] = entry
        print(f"{family:24s} {entry['images_per_s']:8.1f} img/s"
              + (f"   study {entry['study_images_per_s']:8.1f} img/s "
                 f"(x{entry['speedup_vs_study']})" if family in baselines else ""))

    # Whole runs, decode included, with worker processes.
    with Timer() as memory:
        count = sum(1 for _ in iter_attacks(records, attacks, seed=args.seed, workers=workers,
                                            show_progress=False))
    with tempfile.TemporaryDirectory() as folder, Timer() as disk:
        report = write_attacks(records, attacks, folder, seed=args.seed, workers=workers,
                               show_progress=False)
    result = {
        "benchmark": "generator",
        "when": now_iso(),
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpu_count": os.cpu_count()},
        "versions": package_versions(),
        "dataset": args.dataset,
        "n_images": n,
        "n_attacks": len(attacks),
        "workers": workers,
        "in_memory": {"images": count, "seconds": round(memory.elapsed, 2),
                      "images_per_s": round(count / memory.elapsed, 1), "target_seconds": 30},
        "to_disk_png": {"images": report.written, "seconds": round(disk.elapsed, 2),
                        "images_per_s": round(report.written / disk.elapsed, 1),
                        "target_seconds": 90},
        "per_family_one_process": families,
    }
    output.write(result)
    print(f"in memory: {count} images in {memory.elapsed:.1f} s; to disk: {report.written} "
          f"PNG + manifest in {disk.elapsed:.1f} s ({workers} workers) -> {output.path}")
    return 0


if __name__ == "__main__":
    run_script(main)
