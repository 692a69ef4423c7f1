"""Choosing attacks from flags and config files.

A spec is one of:

- ``default``: the study's 58 variants;
- ``FAMILY``: the family's default-set variants, or its single variant with default parameters;
- ``FAMILY:V1,V2``: the family with these values of its first parameter;
- ``FAMILY:P=V1,V2;Q=A,B``: every combination of the named parameters;
- an attack id, compositions included (``cropping_20_and_rescaling+jpg_compression_50``).

A TOML or YAML file holds the same under ``attacks`` (a list of specs, where a family may also
map to a list of values or to a table of parameter lists), plus optional ``seed`` and
``options`` (e.g. ``font``, ``background``).
"""

from __future__ import annotations

import itertools
import os
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from generator.registry import (
    AnyAttack,
    attack_spec,
    default_attacks,
    families,
    parse_attack_id,
    unique_attacks,
)


def _family_product(name: str, grid: Mapping[str, Iterable[Any]], options: dict) -> list[AnyAttack]:
    family = attack_spec(name)
    opts = {k: v for k, v in options.items() if k in family.options}
    keys = list(grid)
    values = [list(v) if isinstance(v, list | tuple) else [v] for v in grid.values()]
    return [family.make(**dict(zip(keys, combo, strict=True)), **opts)
            for combo in itertools.product(*values)]


def _family_spec(name: str, options: dict) -> list[AnyAttack]:
    family = attack_spec(name)
    opts = {k: v for k, v in options.items() if k in family.options}
    if family.in_default_set:
        return list(family.defaults(**opts))
    return [family.make(**opts)]


def _parse_text_spec(spec: str, options: dict) -> list[AnyAttack]:
    spec = spec.strip()
    if not spec:
        return []
    if spec == "default":
        return list(default_attacks(**options))
    if spec in families():
        return _family_spec(spec, options)
    if ":" in spec:
        name, _, rest = spec.partition(":")
        family = attack_spec(name.strip())
        if "=" in rest:
            grid = {}
            for part in rest.split(";"):
                key, _, vals = part.partition("=")
                grid[key.strip()] = [v.strip() for v in vals.split(",") if v.strip()]
        else:
            if not family.params:
                raise ValueError(f"attack {family.name!r} takes no parameters, got {spec!r}")
            grid = {family.params[0].name: [v.strip() for v in rest.split(",") if v.strip()]}
        return _family_product(family.name, grid, options)
    return [parse_attack_id(spec, **options)]


def parse_attack_specs(
    specs: Iterable[str | Mapping[str, Any]] | str, options: dict[str, Any] | None = None
) -> list[AnyAttack]:
    """Attacks from specs (see the module docstring), without repeats, in the given order.

    Parameters
    ----------
    specs : str or iterable of str or mapping
        Specs from flags (strings) or from a config file (strings or mappings).
    options : dict, optional
        Options for the families that take them (``font``, ``background``).

    Raises
    ------
    ValueError
        Unknown family or id, or a bad parameter; the message says what exists.
    """
    options = dict(options or {})
    if isinstance(specs, str):
        specs = [specs]
    attacks: list[AnyAttack] = []
    for spec in specs:
        if isinstance(spec, Mapping):
            for name, values in spec.items():
                if isinstance(values, Mapping):
                    attacks += _family_product(name, values, options)
                elif values is None:
                    attacks += _family_spec(name, options)
                else:
                    family = attack_spec(name)
                    if not family.params:
                        raise ValueError(f"attack {name!r} takes no parameters")
                    attacks += _family_product(name, {family.params[0].name: values}, options)
        else:
            attacks += _parse_text_spec(str(spec), options)
    if not attacks:
        raise ValueError("no attacks chosen")
    return unique_attacks(attacks)


#: Largest config file read (a config is a few lines; a huge one is a mistake or an attack).
MAX_CONFIG_BYTES = 1 << 20


class _NoAliasLoader(yaml.SafeLoader):
    """YAML without anchors and aliases: a config never needs them, and nested aliases
    ("billion laughs") expand a few hundred bytes into gigabytes."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed",
                                              event.start_mark)
        return super().compose_node(parent, index)


def load_attack_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read a TOML (``.toml``) or YAML (``.yaml``/``.yml``) attack configuration.

    Returns
    -------
    dict
        ``attacks`` (a non-empty list of specs), and ``seed`` (an integer) and ``options`` (a
        table of strings) when present.

    Raises
    ------
    ValueError
        Anything else, naming the file and the key.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"attack config {path} not found")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ValueError(f"{path}: a config file of {path.stat().st_size:,} bytes is too large")
    try:
        if path.suffix.lower() == ".toml":
            with open(path, "rb") as handle:
                data = tomllib.load(handle)
        elif path.suffix.lower() in (".yaml", ".yml"):
            with open(path, encoding="utf-8") as handle:
                data = yaml.load(handle, Loader=_NoAliasLoader) or {}  # noqa: S506 - safe
        else:
            raise ValueError(f"{path}: config files must end in .toml, .yaml or .yml")
    except (tomllib.TOMLDecodeError, yaml.YAMLError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{path}: cannot parse ({first})") from None
    if not isinstance(data, dict) or "attacks" not in data:
        raise ValueError(f"{path}: expected a top-level 'attacks' list")
    attacks = data["attacks"]
    if isinstance(attacks, str | Mapping):
        attacks = [attacks]
    if not isinstance(attacks, list) or not attacks:
        raise ValueError(f"{path}: 'attacks' must list at least one attack")
    unknown = set(data) - {"attacks", "seed", "options"}
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}; allowed: attacks, seed, options")
    seed = data.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ValueError(f"{path}: 'seed' must be an integer in [0, 2**63), got {seed!r}")
    options = data.get("options", {})
    if not isinstance(options, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in options.items()):
        raise ValueError(f"{path}: 'options' must be a table of names to strings (font, "
                         f"background), got {options!r}")
    return {"attacks": attacks, "seed": seed, "options": dict(options)}
