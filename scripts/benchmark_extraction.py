#!/usr/bin/env python3
"""Feature extraction throughput: the whole pipeline (decode, transform, model) against the
model alone on ready batches, in the same run; writes JSON. On CPU, for models that run
channels-last (NHWC), also the same network on the same batches in the plain NCHW layout.

The pipeline is `extractor.extract` over image files (DataLoader workers decode and transform
while the model runs); the baseline runs the model's forward pass on batches that are already
decoded, transformed and stacked, the most the pipeline could reach.

python scripts/benchmark_extraction.py --model efficientnet_lite0 --dataset bsds500 \\
    --batch-size 32 --n-images 320
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from data_retrieval import load_dataset
from data_retrieval.cli import add_data_root_argument
from extractor import extract, get_model
from helpers import (
    add_output_file_arguments,
    available_cpus,
    load_image,
    resolve_device,
    result_file,
    setup_logging,
    time_repeated,
)
from helpers.cli import fail, integer, run_script, script_main

SCRIPT = "benchmark_extraction"


@script_main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="efficientnet_lite0",
                        help="extractor model to time (default: %(default)s)")
    parser.add_argument("--dataset", default="bsds500",
                        help="photos to extract (a dataset name or folder:<path>) (default: "
                             "%(default)s)")
    add_data_root_argument(parser)
    parser.add_argument("--n-images", type=integer(1, 10_000), default=320,
                        help="images, decoded and transformed in memory (default: 320)")
    parser.add_argument("--batch-size", type=integer(1, 65_536), default=32,
                        help="default: 32")
    parser.add_argument("--workers", type=integer(0, 1024), default=None,
                        help="DataLoader workers (default: 1 on CPU, the cores on GPU; 0: "
                             "none, in the main process)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--repeats", type=integer(1, 1000), default=3,
                        help="timed runs, best kept")
    add_output_file_arguments(parser, "benchmarks/extraction_<device>.json")
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    device = resolve_device(args.device)
    records = load_dataset(args.dataset, args.data_root, limit=args.n_images).records
    if not records:
        raise ValueError(f"{args.dataset}: no image to extract")
    default = f"benchmarks/extraction_{device.split(':')[0]}.json"
    with result_file(args, SCRIPT, default) as output:  # checked before the model loads
        try:
            model = get_model(args.model, device=device)
        except ImportError as exc:  # a model's optional package is not installed
            return fail(exc)
        return _run(args, device, records, model, output)


def _run(args: argparse.Namespace, device: str, records, model, output) -> int:
    workers = args.workers if args.workers is not None else (
        1 if device == "cpu" else available_cpus())
    paths = [r.path for r in records]
    n = len(paths)

    # Ready batches: decoded, transformed and stacked before the clock starts.
    tic = time.perf_counter()
    images = [load_image(p) for p in paths]
    decode_s = time.perf_counter() - tic
    tic = time.perf_counter()
    inputs = [model.transform(im) for im in images]
    transform_s = time.perf_counter() - tic
    batches = [model.collate(inputs[i:i + args.batch_size])
               for i in range(0, n, args.batch_size)]

    def model_only() -> None:
        for batch in batches:
            model.forward(batch)  # returns CPU tensors: includes the copy back

    def pipeline() -> None:
        out = extract(model, paths, batch_size=args.batch_size, workers=workers,
                      show_progress=False)
        assert len(out.ids) == n

    timed = {"model_only": model_only, "pipeline": pipeline}
    channels_last = bool(getattr(model, "channels_last", False)) and device == "cpu"
    if channels_last:  # the same network on the same batches, in the plain NCHW layout
        import copy

        from extractor.models import TorchFeatureModel

        plain = TorchFeatureModel(copy.deepcopy(model.module).to(
            memory_format=torch.contiguous_format), model.transform, model.dim, model.name)

        def model_only_nchw() -> None:
            for batch in batches:
                plain.forward(batch)

        timed["model_only_nchw"] = model_only_nchw
    # one warm-up each (allocations, cuDNN autotuning), then interleaved timed runs
    timings = time_repeated(timed,
                            repeats=args.repeats, warmup=1,
                            sync=torch.cuda.synchronize if device.startswith("cuda") else None)
    runs = {k: t.runs for k, t in timings.items()}
    best = {k: t.best for k, t in timings.items()}
    result = {
        "machine": {"platform": platform.platform(), "cpus": available_cpus(),
                    "processor": platform.processor(), "device": device,
                    "gpu": torch.cuda.get_device_name(0) if device.startswith("cuda") else None,
                    "torch_threads": torch.get_num_threads()},
        "model": args.model, "dataset": args.dataset, "images": n,
        "batch_size": args.batch_size, "workers": workers,
        "model_only_images_per_s": n / best["model_only"],
        "pipeline_images_per_s": n / best["pipeline"],
        "pipeline_over_model_only": best["model_only"] / best["pipeline"],
        "seconds": runs,
        "channels_last": channels_last,
        "single_thread_decode_ms_per_image": 1000 * decode_s / n,
        "single_thread_transform_ms_per_image": 1000 * transform_s / n,
    }
    if channels_last:
        result["model_only_nchw_images_per_s"] = n / best["model_only_nchw"]
        result["channels_last_speedup"] = best["model_only_nchw"] / best["model_only"]
    output.write(result)
    print(f"wrote {output.path}")
    print(f"{args.model} batch {args.batch_size} on {device}: model only "
          f"{result['model_only_images_per_s']:.1f} images/s, pipeline "
          f"{result['pipeline_images_per_s']:.1f} images/s "
          f"({100 * result['pipeline_over_model_only']:.1f}%)")
    if channels_last:
        print(f"channels-last {result['model_only_images_per_s']:.1f} images/s against NCHW "
              f"{result['model_only_nchw_images_per_s']:.1f} "
              f"({result['channels_last_speedup']:.2f}x)")
    return 0


if __name__ == "__main__":
    run_script(main)
