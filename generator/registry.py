"""Attack families by name, attack objects that know their id, and parsing ids back.

An attack family is one function ``f(image, *params, rng=..., **options) -> image`` registered
with an id template such as ``"rotation_{angle}_and_rescaling"``. Parameters named in the
template make the variant (and its id); keyword-only arguments are either ``rng`` (the family
is random) or options that do not change the id (a font file, a background image).

The families are a registry (`ATTACKS`, a `helpers.Registry` of `AttackFamily`) that follows the
library's one rule: ``attack_spec(name)`` (``ATTACKS.get``) returns the registered family,
``get_attack(name, **params)`` builds an attack; `list_attacks` and `families` keep the study's
order; an unknown name gets the one error that names the closest. ``get_family`` is the
deprecated name of ``attack_spec``.
"""

from __future__ import annotations

import difflib
import inspect
import math
import re
import typing
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from helpers import Registry, rng_for

AttackFunction = Callable[..., Image.Image]

_NUMBER = r"-?\d+(?:\.\d+)?(?:e-?\d+)?"
_WORD = r"[A-Za-z0-9#.\-]+"


def format_value(value: Any) -> str:
    """A parameter as it appears in ids: as Python writes it (``0.01``, ``1.2``, ``2``)."""
    return str(value)


def _parse_number(text: str, kind: type) -> int | float:
    if kind is int:
        return int(text)
    try:
        return int(text)  # keep "2" an int so that its id stays "2", not "2.0"
    except ValueError:
        return float(text)


@dataclass(frozen=True)
class Param:
    """One parameter of a family: its name, type (int, float or str) and default."""

    name: str
    kind: type
    default: Any = inspect.Parameter.empty

    @property
    def required(self) -> bool:
        return self.default is inspect.Parameter.empty

    def coerce(self, value: Any, family: str) -> Any:
        """Check and convert a value (strings from flags are parsed).

        Numbers must be finite (``nan`` and ``inf`` are refused); strings must be one word of
        letters, digits, ``#``, ``.`` and ``-``, since they become part of the attack id and
        of file names.
        """
        try:
            if isinstance(value, str) and self.kind is not str:
                value = _parse_number(value.strip(), self.kind)
            if self.kind is int:
                if isinstance(value, bool) or not float(value).is_integer():
                    raise ValueError
                return int(value)
            if self.kind is float:
                if isinstance(value, bool) or not math.isfinite(value):
                    raise ValueError
                return value if isinstance(value, int) else float(value)
            if not re.fullmatch(_WORD, str(value)):
                raise ValueError
            return str(value)
        except (TypeError, ValueError, OverflowError):
            what = {str: "one word of letters, digits, '#', '.' and '-'",
                    int: "an integer", float: "a finite number"}[self.kind]
            raise ValueError(
                f"attack {family!r}: parameter {self.name!r} must be {what}, got {value!r}"
            ) from None


@dataclass(frozen=True)
class AttackFamily:
    """A registered attack function and what is known about it."""

    name: str
    func: AttackFunction
    id_format: str
    params: tuple[Param, ...]
    options: tuple[str, ...]
    random: bool
    default_values: tuple[Any, ...]
    checks: dict[str, tuple[Callable[[Any], bool], str]] = field(default_factory=dict)

    @property
    def in_default_set(self) -> bool:
        return bool(self.default_values)

    def _pattern(self) -> re.Pattern[str]:
        regex, seen, pos = "", set(), 0
        for match in re.finditer(r"\{(\w+)\}", self.id_format):
            regex += re.escape(self.id_format[pos : match.start()])
            name = match.group(1)
            if name in seen:
                regex += f"(?P={name})"
            else:
                kind = next(p.kind for p in self.params if p.name == name)
                regex += f"(?P<{name}>{_NUMBER if kind is not str else _WORD})"
                seen.add(name)
            pos = match.end()
        return re.compile(regex + re.escape(self.id_format[pos:]) + "$")

    def make(self, *args: Any, **kwargs: Any) -> Attack:
        """Build one variant: ``family.make(20)`` or ``family.make(angle=20)``."""
        options = {k: kwargs.pop(k) for k in list(kwargs) if k in self.options}
        if len(args) > len(self.params):
            raise ValueError(f"attack {self.name!r} takes {len(self.params)} parameter(s)")
        values = dict(zip((p.name for p in self.params), args, strict=False))
        for key, value in kwargs.items():
            if key not in {p.name for p in self.params}:
                raise ValueError(
                    f"attack {self.name!r} has no parameter {key!r}; parameters: "
                    f"{', '.join(p.name for p in self.params) or 'none'}"
                    + (f"; options: {', '.join(self.options)}" if self.options else "")
                )
            if key in values:
                raise ValueError(f"attack {self.name!r}: {key!r} given twice")
            values[key] = value
        resolved = []
        for param in self.params:
            if param.name not in values:
                if param.required:
                    raise ValueError(
                        f"attack {self.name!r} needs parameter {param.name!r}"
                        + (f" (study values: {list(self.default_values)})"
                           if self.default_values else "")
                    )
                values[param.name] = param.default
            value = param.coerce(values[param.name], self.name)
            check = self.checks.get(param.name)
            if check is not None and not check[0](value):
                raise ValueError(
                    f"attack {self.name!r}: parameter {param.name!r} must be {check[1]}, "
                    f"got {value!r}"
                )
            resolved.append((param.name, value))
        return Attack(self.name, tuple(resolved), tuple(sorted(options.items())))

    def parse(self, attack_id: str) -> Attack | None:
        """The attack whose id is ``attack_id``, or ``None`` if the id is not of this family."""
        match = self._pattern().match(attack_id)
        if match is None:
            return None
        return self.make(**match.groupdict())

    def defaults(self, **options: Any) -> list[Attack]:
        """The family's variants in the study's default set (empty if none)."""
        main = self.params[0].name if self.params else None
        return [self.make(**{main: v}, **options) for v in self.default_values]


#: Every attack family by name.
ATTACKS: Registry[AttackFamily] = Registry("attack family")
#: The families' names in registration order (the study's first): the registry lists sorted.
_ORDER: list[str] = []


def _param_kind(hint: Any) -> type:
    if hint in (int, float, str):
        return hint
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if float in args:
        return float
    if len(args) == 1 and args[0] in (int, str):
        return args[0]
    raise TypeError(f"attack parameters must be int, float or str, got {hint!r}")


def register_attack(
    id_format: str,
    default_set: Sequence[Any] = (),
    checks: dict[str, tuple[Callable[[Any], bool], str]] | None = None,
    name: str | None = None,
) -> Callable[[AttackFunction], AttackFunction]:
    """Register an attack function as a family.

    Parameters
    ----------
    id_format : str
        Id template; ``{param}`` placeholders name the function's parameters.
    default_set : sequence
        Values of the first parameter that belong to the study's default set.
    checks : dict, optional
        ``param -> (predicate, description)`` validated when an attack is built.
    name : str, optional
        Family name; the function's name by default.
    """

    def decorate(func: AttackFunction) -> AttackFunction:
        family_name = name or func.__name__
        hints = typing.get_type_hints(func)
        signature = inspect.signature(func)
        parameters = list(signature.parameters.values())[1:]  # after the image
        params = tuple(
            Param(p.name, _param_kind(hints.get(p.name, float)), p.default)
            for p in parameters
            if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
        )
        keyword_only = [p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY]
        placeholders = set(re.findall(r"\{(\w+)\}", id_format))
        if placeholders != {p.name for p in params}:
            raise ValueError(
                f"{family_name}: id template {id_format!r} must name exactly the parameters "
                f"{[p.name for p in params]}"
            )
        ATTACKS.add(family_name, AttackFamily(
            name=family_name,
            func=func,
            id_format=id_format,
            params=params,
            options=tuple(k for k in keyword_only if k != "rng"),
            random="rng" in keyword_only,
            default_values=tuple(default_set),
            checks=dict(checks or {}),
        ))
        _ORDER.append(family_name)
        return func

    return decorate


def list_attacks() -> list[str]:
    """Names of the registered attack families (the study's order first)."""
    return list(_ORDER)


def families() -> dict[str, AttackFamily]:
    """All registered families by name (registration order: the study's order first)."""
    return {name: ATTACKS.get(name) for name in _ORDER}


def attack_spec(name: str) -> AttackFamily:
    """The registered family ``name`` (`get_attack` builds an attack of it).

    Raises
    ------
    ValueError
        Unknown name: the message names the closest and lists the known ones.
    """
    return ATTACKS.get(name)


def get_family(name: str) -> AttackFamily:
    """Deprecated: the registered family, now `attack_spec` (``get_attack`` builds)."""
    warnings.warn("get_family is deprecated: use attack_spec", DeprecationWarning, stacklevel=2)
    return attack_spec(name)


@dataclass(frozen=True)
class Attack:
    """One attack variant: a family with its parameters. Calling it attacks an image.

    Attributes
    ----------
    family : str
        Family name.
    params : tuple of (name, value)
        Parameters that define the variant (they make the id).
    options : tuple of (name, value)
        Extra keyword options (font, background) that do not change the id.
    """

    family: str
    params: tuple[tuple[str, Any], ...] = ()
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def id(self) -> str:
        """The attack id, e.g. ``"jpg_compression_50"``."""
        fmt = ATTACKS.get(self.family).id_format
        return fmt.format(**{k: format_value(v) for k, v in self.params})

    @property
    def random(self) -> bool:
        """Whether the attack draws random numbers."""
        return ATTACKS.get(self.family).random

    @property
    def steps(self) -> tuple[Attack, ...]:
        return (self,)

    def describe(self) -> dict[str, Any]:
        """Metadata: id, family, parameters and options."""
        return {
            "id": self.id,
            "family": self.family,
            "params": dict(self.params),
            "options": {k: str(v) for k, v in self.options},
        }

    def __call__(self, image: Image.Image, rng: np.random.Generator | None = None) -> Image.Image:
        """Attack ``image`` (RGB). ``rng`` feeds random families; seeded by the id if omitted."""
        family = ATTACKS.get(self.family)
        kwargs: dict[str, Any] = dict(self.params)
        kwargs.update(self.options)
        if family.random:
            kwargs["rng"] = rng if rng is not None else rng_for(0, "", self.id)
        return family.func(image, **kwargs)

    def apply(self, image: Image.Image, seed: int = 0, image_id: str = "") -> Image.Image:
        """Attack ``image`` with randomness seeded by ``(seed, image_id, attack id)``."""
        return self(image, rng_for(seed, image_id, self.id))

    def __str__(self) -> str:
        return self.id


@dataclass(frozen=True)
class ComposedAttack:
    """Attacks applied one after the other; its id joins theirs with ``+``."""

    attacks: tuple[Attack, ...]

    def __post_init__(self) -> None:
        if len(self.attacks) < 2:
            raise ValueError("a composition needs at least two attacks")

    @property
    def id(self) -> str:
        return "+".join(a.id for a in self.attacks)

    @property
    def random(self) -> bool:
        return any(a.random for a in self.attacks)

    @property
    def steps(self) -> tuple[Attack, ...]:
        return self.attacks

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "family": "compose", "steps": [a.describe() for a in self.attacks]}

    def __call__(self, image: Image.Image, rng: np.random.Generator | None = None) -> Image.Image:
        rng = rng if rng is not None else rng_for(0, "", self.id)
        for attack in self.attacks:
            image = attack(image, rng)
        return image

    def apply(self, image: Image.Image, seed: int = 0, image_id: str = "") -> Image.Image:
        return self(image, rng_for(seed, image_id, self.id))

    def __str__(self) -> str:
        return self.id


AnyAttack = Attack | ComposedAttack


def compose(*attacks: AnyAttack | str) -> ComposedAttack:
    """Chain attacks: ``compose("cropping_20_and_rescaling", "jpg_compression_50")``."""
    steps: list[Attack] = []
    for attack in attacks:
        attack = parse_attack_id(attack) if isinstance(attack, str) else attack
        steps.extend(attack.steps)
    return ComposedAttack(tuple(steps))


def parse_attack_id(attack_id: str, **options: Any) -> AnyAttack:
    """The attack whose id is ``attack_id`` (compositions joined with ``+`` included).

    Raises
    ------
    ValueError
        No family recognises the id; the message lists the families and example ids.
    """
    parts = attack_id.strip().split("+")
    if len(parts) > 1:
        return compose(*(parse_attack_id(p, **options) for p in parts))
    text = parts[0]
    for family in families().values():
        try:
            attack = family.parse(text)
        except ValueError as exc:
            raise ValueError(f"attack id {text!r}: {exc}") from None
        if attack is not None:
            opts = {k: v for k, v in options.items() if k in family.options}
            return family.make(**dict(attack.params), **opts) if opts else attack
    examples = ", ".join(
        f.id_format.replace("{", "<").replace("}", ">") for f in families().values()
    )
    known = [*families(), *(a.id for a in default_attacks())]
    close = difflib.get_close_matches(text, known, n=1, cutoff=0.6)
    hint = f" (closest: {close[0]!r})" if close else ""
    raise ValueError(f"unknown attack id {text!r}{hint}; ids look like: {examples}")


def get_attack(name: str, *args: Any, **params: Any) -> AnyAttack:
    """An attack by family name and parameters, or by id.

    ``get_attack("rotation", angle=20)``, ``get_attack("rotation", 20)`` and
    ``get_attack("rotation_20_and_rescaling")`` are the same attack.

    Raises
    ------
    ValueError
        An unknown family given with parameters (the registry's error, naming the closest),
        an id no family recognises, or bad parameters.
    """
    if name in ATTACKS or args or any(k not in _option_names() for k in params):
        return attack_spec(name).make(*args, **params)
    return parse_attack_id(name, **params)


def _option_names() -> set[str]:
    return {o for f in families().values() for o in f.options}


def default_attacks(**options: Any) -> list[Attack]:
    """The original study's 58 default variants, in its order.

    Parameters
    ----------
    **options
        Options passed to the families that take them (e.g. ``font=`` for text).
    """
    out: list[Attack] = []
    for family in families().values():
        opts = {k: v for k, v in options.items() if k in family.options}
        out.extend(family.defaults(**opts))
    return out


def unique_attacks(attacks: Iterable[AnyAttack]) -> list[AnyAttack]:
    """Drop repeated ids, keeping the first occurrence and the order."""
    seen: set[str] = set()
    out = []
    for attack in attacks:
        if attack.id not in seen:
            seen.add(attack.id)
            out.append(attack)
    return out
