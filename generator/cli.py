"""Command-line flags for choosing attacks, shared by the scripts."""

from __future__ import annotations

import argparse
from typing import Any

from PIL import ImageFont

from generator.attacks import default_background
from generator.config import load_attack_config, parse_attack_specs
from generator.registry import AnyAttack, families
from generator.text import default_font_path
from helpers import ImageLoadError, load_image
from helpers.cli import MAX_SEED, integer


def add_attack_arguments(parser: argparse.ArgumentParser, title: str = "attacks") -> None:
    """Add ``--attacks``, ``--attack-config``, ``--seed``, ``--font`` and ``--background``."""
    group = parser.add_argument_group(title)
    group.add_argument(
        "--attacks",
        nargs="+",
        default=None,
        metavar="SPEC",
        help="attacks to make: 'default' (the study's 58 variants), a family name "
        "(its study variants), FAMILY:V1,V2 (values of its first parameter), "
        "FAMILY:P=V1,V2;Q=A,B, or attack ids such as jpg_compression_50 or "
        "cropping_20_and_rescaling+jpg_compression_50. Families: "
        + ", ".join(families()) + ". Default: default",
    )
    group.add_argument("--attack-config", default=None, metavar="FILE",
                       help="TOML or YAML file with 'attacks' (and optionally 'seed', "
                            "'options'); --attacks adds to it")
    group.add_argument("--seed", type=integer(0, MAX_SEED), default=None,
                       help="global seed of the random attacks (default: the config's, else 0)")
    group.add_argument("--font", default=None,
                       help="font file for the text attacks (default: Impact if installed, "
                            "else DejaVu Sans Bold)")
    group.add_argument("--background", default=None,
                       help="image for the overlay attack (default: scikit-image's cameraman)")


def attacks_from_args(args: argparse.Namespace) -> tuple[list[AnyAttack], int, dict[str, Any]]:
    """The attacks, seed and options the flags choose.

    Returns
    -------
    attacks, seed, options
    """
    specs: list[Any] = []
    seed, options = 0, {}
    if args.attack_config:
        config = load_attack_config(args.attack_config)
        specs += config["attacks"]
        seed = config["seed"]
        options.update(config.get("options", {}))
    if args.attacks:
        specs += args.attacks
    if not specs:
        specs = ["default"]
    if args.seed is not None:
        seed = args.seed
    for key in ("font", "background"):
        if getattr(args, key, None):
            options[key] = getattr(args, key)
    attacks = parse_attack_specs(specs, options)
    check_attack_options(attacks, options)
    return attacks, seed, options


def resolved_options(attacks: list[AnyAttack], options: dict[str, Any]) -> dict[str, str]:
    """The options the chosen attacks run with, defaults resolved: what a store records so
    that its images made on the fly can be made again elsewhere (the default font depends on
    the machine: Impact where installed, else DejaVu Sans Bold)."""
    used = {step.family for attack in attacks for step in attack.steps}
    out = {key: str(value) for key, value in options.items()}
    if "text" in used:
        out.setdefault("font", default_font_path())
    if "overlay" in used:
        out.setdefault("background", default_background())
    return out


def check_attack_options(attacks: list[AnyAttack], options: dict[str, Any]) -> None:
    """The font and background files the chosen attacks will use open now, not on the first
    image of a long run.

    Raises
    ------
    ValueError
        A font Pillow cannot read, or a background that is not a readable image.
    """
    used = {step.family for attack in attacks for step in attack.steps}
    font = options.get("font")
    if font and "text" in used:
        try:
            ImageFont.truetype(str(font), 20)
        except (OSError, ValueError) as exc:
            raise ValueError(f"--font {font}: not a font Pillow can read ({exc})") from None
    background = options.get("background")
    if background and "overlay" in used:
        try:
            load_image(background)
        except ImageLoadError as exc:
            raise ValueError(f"--background {background}: {exc.reason}") from None
