"""Config fields that describe themselves: help text, type, allowed values, in one place.

A stage config is a frozen dataclass whose fields are declared with :func:`opt`::

    lr: float = opt(1e-3, "Peak learning rate.", gt=0)
    objective: Literal["sft", "kto"] = opt("sft", "What L_M learns from.")

From that one declaration come the TOML key (``lr``), the command-line option (``--lr``, with
``--x/--no-x`` for booleans), the parser of option text, the coercion of TOML values and the
check of the value (``Literal`` choices, numeric ranges, a ``check`` function). A plain field
(``x: int = 3``) works as well: it gets an option and a key with no help text and no range.
Nothing here imports more than the standard library, so ``lfft --help`` stays fast.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, dataclass
from typing import Any, Literal

from lfft.errors import ConfigError

TRUE = ("true", "1", "yes", "on")
FALSE = ("false", "0", "no", "off")


@dataclass(frozen=True)
class Spec:
    """What :func:`opt` records in a field's metadata."""

    help: str = ""
    short: str | None = None  # e.g. "-f"
    aliases: tuple[str, ...] = ()  # older or shorter option names, e.g. ("--map",)
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    check: Callable[[Any], str | None] | None = None  # returns a problem, or None when fine
    choices: Callable[[], Iterable[str]] | None = None  # for registries too big to import early


def opt(
    default: Any = MISSING,
    help: str = "",
    *,
    short: str | None = None,
    aliases: tuple[str, ...] = (),
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    check: Callable[[Any], str | None] | None = None,
    choices: Callable[[], Iterable[str]] | None = None,
) -> Any:
    """A dataclass field with its help text and allowed values (no default: a required key)."""
    spec = Spec(help, short, tuple(aliases), ge, gt, le, lt, check, choices)
    meta = {"lfft": spec}
    if isinstance(default, list | dict | set):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclass(frozen=True)
class Option:
    """One config field seen as an option: ``name`` in Python, ``key`` in TOML, ``flag`` on
    the command line."""

    name: str
    hint: Any
    default: Any  # MISSING when required
    spec: Spec

    @property
    def key(self) -> str:
        return self.name.rstrip("_")

    @property
    def flag(self) -> str:
        return "--" + self.key.replace("_", "-")

    @property
    def flags(self) -> tuple[str, ...]:
        return (self.flag, *self.spec.aliases)

    @property
    def required(self) -> bool:
        return self.default is MISSING

    @property
    def is_bool(self) -> bool:
        return _unwrap(self.hint)[0] is bool

    def help_text(self) -> str:
        """The option's help line: its text, then the range and the default."""
        notes = [n for n in (_range_text(self.spec),) if n]
        if self.required:
            notes.append("required")
        elif not self.is_bool or self.default:
            notes.append(f"default: {_show(self.default)}")
        tail = f" [{'; '.join(notes)}]" if notes else ""
        return f"{self.spec.help}{tail}".strip()

    def metavar(self) -> str:
        return _metavar(self.hint)

    def parse(self, text: str) -> Any:
        """Option or ``--set`` text -> a checked value (ValueError names the problem)."""
        value = parse_text(self.hint, text)
        self.check(value)
        return value

    def coerce(self, value: Any) -> Any:
        """A TOML or Python value -> a checked value of the field's type."""
        value = coerce(value, self.hint)
        self.check(value)
        return value

    def check(self, value: Any) -> None:
        problem = check_value(self.hint, self.spec, value)
        if problem:
            raise ValueError(problem)


@functools.cache
def options(cls: type) -> tuple[Option, ...]:
    """Every field of a config dataclass as an :class:`Option`, in declaration order."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default_factory is not MISSING else f.default
        out.append(Option(f.name, hints[f.name], default, f.metadata.get("lfft", Spec())))
    return tuple(out)


def option(cls: type, key: str) -> Option | None:
    """The field for a TOML key or option name: ``max-steps``, ``max_steps``, ``lambda``."""
    key = key.lstrip("-").replace("-", "_")
    for o in options(cls):
        if key in (o.name, o.key):
            return o
    return None


def make(cls: type, values: Mapping[str, Any], where: str) -> Any:
    """Build ``cls`` from ``{key: value}`` (keys in TOML or Python spelling); every value is
    coerced and checked; a problem is one ConfigError naming ``where`` and the key."""
    known = {}
    for key, value in values.items():
        o = option(cls, key)
        if o is None:
            raise ConfigError(f"{where}: unknown key {key}; known: {known_keys(cls)}")
        try:
            known[o.name] = o.coerce(value)
        except ValueError as e:
            raise ConfigError(f"{where} {o.key}: {e}") from None
    missing = [o.key for o in options(cls) if o.required and o.name not in known]
    if missing:
        raise ConfigError(f"{where}: missing {', '.join(missing)}")
    return cls(**known)


def validate(cfg: Any, where: str | None = None) -> None:
    """Check every value of a config instance (e.g. one built in Python, not from TOML)."""
    for o in options(type(cfg)):
        try:
            o.check(getattr(cfg, o.name))
        except ValueError as e:
            raise ConfigError(f"{where or type(cfg).__name__} {o.key}: {e}") from None


def known_keys(cls: type) -> str:
    return ", ".join(o.key for o in options(cls))


# --- types -----------------------------------------------------------------------------------


def _unwrap(hint: Any) -> tuple[Any, bool]:
    """``X | None`` -> ``(X, True)``; anything else -> ``(hint, False)``."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(hint)) == 2:
            return args[0], True
    return hint, False


def _choices(hint: Any) -> tuple[Any, ...] | None:
    return typing.get_args(hint) if typing.get_origin(hint) is Literal else None


def parse_text(hint: Any, text: str) -> Any:
    """Command-line text -> a value of type ``hint``: ``none`` for an optional field (also
    ``auto`` when it is not text), ``a,b,c`` for tuples and lists, ``k=v,...`` for tables."""
    base, optional = _unwrap(hint)
    word = text.strip().lower()
    if optional and (word == "none" or (word == "auto" and base is not str)):
        return None
    origin, args = typing.get_origin(base), typing.get_args(base)
    if base is bool:
        if word in TRUE or word in FALSE:
            return word in TRUE
        raise ValueError(f"expected true or false, got {text!r}")
    if base in (int, float):
        try:
            return base(text)
        except ValueError:
            raise ValueError(f"expected {_NAMES[base]}, got {text!r}") from None
    if origin in (tuple, list):
        items = [s.strip() for s in text.strip().strip("[]").split(",")] if text.strip() else []
        if origin is tuple:
            if len(items) != len(args):
                raise ValueError(f"expected {len(args)} comma-separated values, got {text!r}")
            return tuple(parse_text(a, s) for a, s in zip(args, items, strict=True))
        return [parse_text(args[0], s) if args else s for s in items]
    if origin is dict:
        table: dict[str, Any] = {}
        for item in filter(None, (s.strip() for s in text.split(","))):
            key, sep, value = (s.strip() for s in item.partition("="))
            if not sep or not key:
                raise ValueError(f"bad item {item!r}: write key=value, comma-separated")
            if key in table:
                raise ValueError(f"names {key!r} twice")
            table[key] = parse_text(args[1], value) if args else value
        return table
    return text


_NAMES = {int: "an integer", float: "a number", str: "text", bool: "true or false"}


def coerce(value: Any, hint: Any) -> Any:
    """A TOML (or Python) value -> type ``hint``; ValueError says what was expected."""
    base, optional = _unwrap(hint)
    if value is None:
        if optional:
            return None
        raise ValueError("expected a value, got none")
    origin, args = typing.get_origin(base), typing.get_args(base)
    if origin is Literal:
        base = type(args[0])
    if base is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if base is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if base is bool and isinstance(value, str) and value.lower() in TRUE + FALSE:
        return value.lower() in TRUE
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            raise ValueError(f"expected a list, got {value!r}")
        if origin is tuple:
            if len(value) != len(args):
                raise ValueError(f"expected a list of {len(args)} values, got {value!r}")
            return tuple(coerce(v, a) for v, a in zip(value, args, strict=True))
        return [coerce(v, args[0]) for v in value] if args else list(value)
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"expected a table, got {value!r}")
        return {k: coerce(v, args[1]) for k, v in value.items()} if args else dict(value)
    if isinstance(base, type) and (
        not isinstance(value, base) or (base is not bool and isinstance(value, bool))
    ):
        raise ValueError(f"expected {base.__name__}, got {value!r}")
    return value


def check_value(hint: Any, spec: Spec, value: Any) -> str | None:
    """The problem with ``value`` for a field, or None: choices, range, the field's check."""
    base, _ = _unwrap(hint)
    if value is None:
        return None
    choices = _choices(base) or (tuple(spec.choices()) if spec.choices else None)
    item_choices = _choices(typing.get_args(base)[0]) if typing.get_origin(base) is list else None
    if choices and value not in choices:
        return f"expected one of {', '.join(map(str, choices))}, got {value!r}"
    if item_choices:
        bad = [v for v in value if v not in item_choices]
        if bad:
            return f"unknown {', '.join(map(str, bad))}; known: {', '.join(item_choices)}"
    if (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and not _in_range(spec, value)
    ):
        return f"must be {_range_text(spec)}, got {value!r}"
    return spec.check(value) if spec.check else None


def _in_range(spec: Spec, x: float) -> bool:
    return (
        (spec.ge is None or x >= spec.ge)
        and (spec.gt is None or x > spec.gt)
        and (spec.le is None or x <= spec.le)
        and (spec.lt is None or x < spec.lt)
    )


def _range_text(spec: Spec) -> str:
    bounds = ((">=", spec.ge), (">", spec.gt), ("<=", spec.le), ("<", spec.lt))
    return " and ".join(f"{sign} {bound:g}" for sign, bound in bounds if bound is not None)


def _metavar(hint: Any) -> str:
    base, optional = _unwrap(hint)
    origin, args = typing.get_origin(base), typing.get_args(base)
    if origin is Literal:
        text = "|".join(map(str, args))
    elif origin is tuple:
        text = ",".join(_metavar(a) for a in args)
    elif origin is list:
        text = f"{_metavar(args[0]) if args else 'TEXT'},..."
    elif origin is dict:
        text = "KEY=VALUE,..."
    else:
        text = {int: "INT", float: "FLOAT", str: "TEXT", bool: "BOOL"}.get(base, "TEXT")
    return f"{text}|none" if optional else text


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple | list):
        return ",".join(map(str, value)) or "(empty)"
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "(empty)"
    return str(value)
