#!/usr/bin/env python3
"""Download a published SimCLR checkpoint and convert it to PyTorch.

The TensorFlow files (checkpoint, .index, .data) are downloaded with resume and a size check,
then converted (TensorFlow is needed to read them: pip install tensorflow-cpu) into
<output-dir>/simclr_<version>_<model>_<category>[_ema].pth holding {"encoder", "head",
"supervised_head"}; every checkpoint variable must map onto the model. The extractor finds the
file there: extractor.get_model("simclr_v2_r50_1x_sk1").

Examples
--------
python scripts/download_simclr.py --list
python scripts/download_simclr.py --version v2 --model r50_1x_sk1 --category pretrained
python scripts/download_simclr.py --version v1 --model 4x --category pretrain --ema
"""

from __future__ import annotations

import argparse
from pathlib import Path

from helpers import DownloadError, FolderLock, add_log_level_argument, setup_logging
from helpers.cli import run_script, script_main
from helpers.runs import folder_type
from SimCLRv2.checkpoints import find_checkpoint, list_checkpoints
from SimCLRv2.download import converted_path, default_dir, download_and_convert


@script_main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--list", action="store_true", help="list the published checkpoints")
    parser.add_argument("--version", default="v2", choices=["v1", "v2"],
                        help="SimCLR v1 or v2 checkpoints (default: %(default)s)")
    parser.add_argument("--model", default="r50_1x_sk1",
                        help="v2: r50_1x_sk0 ... r152_3x_sk1; v1: 1x, 2x, 4x (default: "
                             "%(default)s)")
    parser.add_argument("--category", default=None,
                        help="v2: pretrained (default), finetuned_100pct, finetuned_10pct, "
                             "finetuned_1pct, supervised; v1: pretrain (default), "
                             "finetune_100pct, finetune_10pct")
    parser.add_argument("--ema", action="store_true",
                        help="convert the exponential-moving-average weights")
    parser.add_argument("--output-dir", type=folder_type, default=str(default_dir()),
                        help="where the .pth goes (default: %(default)s)")
    parser.add_argument("--tf-dir", type=folder_type, default=None,
                        help="where the TensorFlow files go (default: <output-dir>/tf/...)")
    parser.add_argument("--base-url", default=None, help="a mirror of the checkpoint folder")
    add_log_level_argument(parser)
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    if args.list:
        for c in list_checkpoints():
            print(f"{c.version}  {c.model:12s} {c.category:17s} {c.url}")
        return 0
    category = args.category or ("pretrained" if args.version == "v2" else "pretrain")
    checkpoint = find_checkpoint(args.version, args.model, category)
    output = converted_path(checkpoint, args.ema, Path(args.output_dir))
    tf_dir = Path(args.tf_dir) if args.tf_dir else (
        Path(args.output_dir) / "tf" / checkpoint.version / checkpoint.category /
        checkpoint.model)
    tf_dir.mkdir(parents=True, exist_ok=True)
    # one run downloads into a folder at a time (two would append to the same partial files)
    with FolderLock(tf_dir, ".download.lock"):
        try:
            path = download_and_convert(checkpoint, args.ema, output, args.base_url, tf_dir)
        except (DownloadError, ImportError) as exc:  # the network, or TensorFlow not installed
            raise ValueError(str(exc)) from exc
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    run_script(main)
