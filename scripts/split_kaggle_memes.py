#!/usr/bin/env python3
"""Split the Kaggle Reddit memes into templates and memes, as the original study did.

The first meme of each template in reddit_posts.csv becomes that template's reference image
(copied to OUTPUT/templates/); every meme is listed in OUTPUT/memes.csv with its template as
source_id. Nothing is renamed or moved.

Example
-------
python scripts/split_kaggle_memes.py archive/reddit_posts.csv archive/images/kaggle_images \
    Datasets/kaggle_memes
"""

from __future__ import annotations

import argparse

from data_retrieval import split_kaggle_memes
from helpers import setup_logging
from helpers.cli import integer, run_script, script_main
from helpers.runs import folder_type


@script_main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csv_path", help="reddit_posts.csv from the Kaggle archive")
    parser.add_argument("images_dir", help="folder of the meme images")
    parser.add_argument("output", type=folder_type,
                        help="folder for templates/ and memes.csv "
                             "(use <data root>/kaggle_memes for the named dataset)")
    parser.add_argument("--stem-column", type=integer(0, 10_000), default=0,
                        help="CSV column of the image file stem (default: 0)")
    parser.add_argument("--template-column", type=integer(0, 10_000), default=1,
                        help="CSV column of the template name (default: 1)")
    args = parser.parse_args(argv)
    setup_logging("INFO")
    if args.stem_column == args.template_column:
        raise ValueError(f"--stem-column and --template-column are both {args.stem_column}: "
                         "the stem and the template are different columns")
    split = split_kaggle_memes(args.csv_path, args.images_dir, args.output,
                               stem_column=args.stem_column,
                               template_column=args.template_column)
    print(f"{len(split.templates)} templates and {len(split.memes)} memes in {args.output}; "
          f"{len(split.missing_images)} CSV rows without image, "
          f"{len(split.unlabelled_images)} images without label")
    return 0


if __name__ == "__main__":
    run_script(main)
