"""Attacks: named, parameterised, deterministic edits of images, and ways to apply them at scale.

Attack families: ``attack_spec(name)`` returns the registered family, ``get_attack(name,
**params)`` builds an attack (``get_family`` is the deprecated name of ``attack_spec``).
"""

from generator import attacks as _attacks  # noqa: F401  (registers the families)
from generator.config import load_attack_config, parse_attack_specs
from generator.pipeline import (
    AttackedImage,
    AttackStream,
    WriteReport,
    apply_attack,
    attack_path,
    attacked_images,
    attacked_record,
    iter_attacks,
    write_attacks,
)
from generator.registry import (
    Attack,
    AttackFamily,
    ComposedAttack,
    attack_spec,
    compose,
    default_attacks,
    families,
    get_attack,
    list_attacks,
    parse_attack_id,
    register_attack,
)
from generator.registry import (
    get_family as get_family,  # deprecated (warns); not in __all__
)
from generator.text import default_font_path

__all__ = [
    "Attack",
    "AttackFamily",
    "AttackStream",
    "AttackedImage",
    "ComposedAttack",
    "WriteReport",
    "apply_attack",
    "attack_path",
    "attack_spec",
    "attacked_images",
    "attacked_record",
    "compose",
    "default_attacks",
    "default_font_path",
    "families",
    "get_attack",
    "iter_attacks",
    "list_attacks",
    "load_attack_config",
    "parse_attack_id",
    "parse_attack_specs",
    "register_attack",
    "write_attacks",
]
