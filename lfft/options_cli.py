"""Typer parameters generated from config fields, and the resolution of a command's config.

A :class:`Command` is ``fn(cfg, **run_args)`` plus the name of its command and config table.
:func:`generated` turns it into the function typer registers: ``fn``'s own parameters, then
``--config``, ``--set`` and one option per field of the config class (``--x/--no-x`` for
booleans; unset options stay None so the TOML table or the default applies). Option text is
parsed and checked by the field itself (:mod:`lfft.options`), so a bad value is a usage error
naming the option, and ``--set`` reuses the same parsing.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from lfft.config import STAGE_CONFIGS, load_toml
from lfft.errors import LfftError
from lfft.options import Option, make, option, options


class UsageError(LfftError):
    """A command line that cannot run as written: exit 2, like the parser's own errors."""


class _Unset:
    """An option given as ``none``: sets the field to None (a plain None means not given)."""


NONE = _Unset()


@dataclass(frozen=True)
class Command:
    name: str  # also its config table
    fn: Callable[..., Any]
    reads: Callable[[], tuple[str, ...]] | None = None  # tables --set may name; default: own


COMMANDS: list[Command] = []


def command(name: str, reads: Callable[[], tuple[str, ...]] | None = None):
    """Register ``fn(cfg, **run_args)`` as ``lfft NAME``, configured by ``[NAME]``."""

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        COMMANDS.append(Command(name, fn, reads))
        return fn

    return register


KW = inspect.Parameter.KEYWORD_ONLY


def _field_param(o: Option) -> inspect.Parameter:
    """The typer parameter of one config field."""
    if o.is_bool:
        decls = [f"{flag}/--no-{flag[2:]}" for flag in o.flags]
        info = typer.Option(*decls, help=o.help_text(), show_default=False)
        return inspect.Parameter(o.name, KW, default=None, annotation=Annotated[bool | None, info])

    def parse(text: Any) -> Any:
        try:
            value = o.parse(text) if isinstance(text, str) else text
        except ValueError as e:
            raise typer.BadParameter(str(e)) from None
        return NONE if value is None else value

    names = (*o.flags, o.spec.short) if o.spec.short else o.flags
    info = typer.Option(
        *names, help=o.help_text(), metavar=o.metavar(), parser=parse, show_default=False
    )
    return inspect.Parameter(o.name, KW, default=None, annotation=Annotated[Any, info])


def _common_params(cmd: Command) -> list[inspect.Parameter]:
    config = typer.Option(
        "--config", "-c", help=f"TOML file; its [{cmd.name}] table sets defaults.", metavar="FILE"
    )
    example = f"{cmd.name}.KEY=VALUE" if cmd.reads is None else "any stage it runs: train.lr=3e-4"
    sets = typer.Option(
        "--set",
        help=f"Set a config key (repeatable; wins over --config), {example}.",
        metavar="STAGE.KEY=VALUE",
    )
    return [
        inspect.Parameter("config", KW, default=None, annotation=Annotated[Path | None, config]),
        inspect.Parameter("sets", KW, default=[], annotation=Annotated[list[str], sets]),
    ]


def _set_value(text: str, cmd: Command) -> tuple[str, Option, Any]:
    """``--set [stage.]key=value`` -> (table, field, checked value)."""
    lhs, sep, rhs = text.partition("=")
    table, _, key = lhs.strip().rpartition(".")
    table = table or cmd.name
    if not sep or not key:
        raise UsageError(f"--set {text!r}: write stage.key=value, e.g. train.lr=3e-4")
    reads = cmd.reads() if cmd.reads else (cmd.name,)
    if table not in reads:
        raise UsageError(f"--set {lhs}: lfft {cmd.name} reads {', '.join(f'[{t}]' for t in reads)}")
    cls = STAGE_CONFIGS[table]
    o = option(cls, key)
    if o is None:
        known = ", ".join(x.key for x in options(cls))
        raise UsageError(f"--set {lhs}: unknown key {key}; known: {known}")
    try:
        return table, o, o.parse(rhs)
    except ValueError as e:
        raise UsageError(f"--set {lhs}: {e}") from None


def resolve(cmd: Command, config: Path | None, sets: list[str], given: dict[str, Any]):
    """The command's config and every table: default < ``--config`` < ``--set`` < option."""
    tables = {
        t: {option(STAGE_CONFIGS[t], k).name: v for k, v in table.items()}
        for t, table in load_toml(config).items()
    }
    for text in sets:
        table, o, value = _set_value(text, cmd)
        tables[table] = {**tables.get(table, {}), o.name: value}
    cls = STAGE_CONFIGS[cmd.name]
    values = {**tables.get(cmd.name, {}), **given}
    for o in options(cls):
        if o.required and o.name not in values:
            flag = f"{o.flag} / {o.spec.short}" if o.spec.short else o.flag
            raise UsageError(f"missing option {flag} (or [{cmd.name}] {o.key} in --config)")
    where = f"{config} [{cmd.name}]" if config else f"[{cmd.name}]"
    return make(cls, values, where), tables


def generated(cmd: Command) -> Callable[..., Any]:
    """The typer function of ``cmd``: its own parameters, --config, --set, one per field."""
    fields = options(STAGE_CONFIGS[cmd.name])
    own = [
        p.replace(kind=KW)
        for p in inspect.signature(cmd.fn, eval_str=True).parameters.values()
        if p.name not in ("cfg", "tables")
    ]
    clash = {p.name for p in own} & {o.name for o in fields}
    if clash:
        raise RuntimeError(f"lfft {cmd.name}: {clash} is both a run argument and a config key")
    wants_tables = "tables" in inspect.signature(cmd.fn).parameters

    def run(**kw: Any) -> Any:
        config, sets = kw.pop("config"), kw.pop("sets")
        given = {o.name: kw.pop(o.name) for o in fields}
        given = {k: None if v is NONE else v for k, v in given.items() if v is not None}
        cfg, tables = resolve(cmd, config, sets, given)
        return cmd.fn(cfg, tables, **kw) if wants_tables else cmd.fn(cfg, **kw)

    run.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [*own, *_common_params(cmd), *(_field_param(o) for o in fields)]
    )
    run.__name__, run.__doc__ = cmd.name, cmd.fn.__doc__
    return run
