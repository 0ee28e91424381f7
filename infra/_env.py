"""One reader of environment variables for every settings struct, with one vocabulary.

A field that comes from an environment variable says so once, where it is declared,
with its constraints (``msgspec.Meta``)::

    partitions: Annotated[int, env("CRYPTOVIZ_KAFKA_PARTITIONS", "partitions per topic", ge=1)] = 3

:func:`read_env` builds a struct from a mapping (``os.environ`` at the process edges,
a plain dict in tests): each variable that is set is converted and checked, every
other field keeps its default; a field whose type is itself a settings struct is a
section, read the same way. The structs never read the environment themselves.
:func:`variables` lists the declarations, which is what the README's
"Configuration" tables are generated from (a test keeps them equal).

The vocabulary, the same for every variable:

* unset, empty or blank: the default;
* booleans: ``1``/``0``, ``true``/``false``, ``yes``/``no``, ``on``/``off``, in any case;
  anything else is refused;
* integers in decimal; numbers finite (``1.5``, ``2e3``); decimals likewise;
* a choice among listed words, in any case;
* lists: comma-separated, blanks dropped, each item read as its type says;
* values outside a field's ``ge``/``gt``/``le``/``lt`` bounds are refused.

Every refusal is a :class:`SettingsError` naming the variable, the value and what
it accepts.
"""

from __future__ import annotations

import math
import operator
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import cache
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

import msgspec

from handlers import ConfigError


class SettingsError(ConfigError):
    """A setting is missing or malformed; ``detail`` says which and how to fix it."""


TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")
BOOLEAN_WORDS = "1/0, true/false, yes/no or on/off"
_ENV = "cryptoviz.env"
S = TypeVar("S", bound=msgspec.Struct)


@dataclass(frozen=True, slots=True)
class Binding:
    """How one field is read: its variable, and what the docs say about it."""

    name: str
    doc: str
    parse: Callable[[str], Any] | None = None
    """Turns the raw text into the field's value (``ValueError`` for a bad one); by
    default the field's type decides (see the module docstring)."""
    fallback: Callable[[Mapping[str, str]], Any] | None = None
    """The value when the variable is unset, computed at read time (paths, files)."""
    shown_default: str | None = None
    """The default as the docs show it, when the field's own default does not say it."""


def env(
    name: str,
    doc: str,
    *,
    parse: Callable[[str], Any] | None = None,
    fallback: Callable[[Mapping[str, str]], Any] | None = None,
    default: str | None = None,
    **constraints: Any,
) -> msgspec.Meta:
    """The ``Annotated`` metadata binding a field to the environment variable ``name``."""
    binding = Binding(name, doc, parse, fallback, default)
    return msgspec.Meta(description=doc, extra={_ENV: binding}, **constraints)


@dataclass(frozen=True, slots=True)
class Variable:
    """One documented variable (see :func:`variables`)."""

    name: str
    default: str
    """As the docs show it (Markdown)."""
    doc: str


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    type: Any
    meta: msgspec.Meta | None
    binding: Binding | None
    default: Any


@cache
def _fields(cls: type[msgspec.Struct]) -> tuple[_Field, ...]:
    out = []
    for info in msgspec.structs.fields(cls):
        tp, meta = info.type, None
        if get_origin(tp) is typing.Annotated:
            tp, *extras = get_args(tp)
            meta = next((m for m in extras if isinstance(m, msgspec.Meta)), None)
        binding = (meta.extra or {}).get(_ENV) if meta is not None else None
        default = (
            info.default_factory()
            if info.default_factory is not msgspec.NODEFAULT
            else info.default
        )
        out.append(_Field(info.name, tp, meta, binding, default))
    return tuple(out)


def _section(tp: Any) -> type[msgspec.Struct] | None:
    return tp if isinstance(tp, type) and issubclass(tp, msgspec.Struct) else None


def read_env(cls: type[S], environ: Mapping[str, str]) -> S:
    """``cls`` built from the variables of ``environ`` that its fields (and sections) declare."""
    values: dict[str, Any] = {}
    for field in _fields(cls):
        if field.binding is not None:
            raw = environ.get(field.binding.name, "").strip()
            if raw:
                values[field.name] = _read(field, raw)
            elif field.binding.fallback is not None:
                values[field.name] = field.binding.fallback(environ)
        elif (section := _section(field.type)) is not None:
            values[field.name] = read_env(section, environ)
    return cls(**values)


def _read(field: _Field, raw: str) -> Any:
    binding = field.binding
    assert binding is not None
    name = binding.name
    try:
        value = binding.parse(raw) if binding.parse else _convert(name, raw, field.type)
    except ValueError as exc:  # a parse function's refusal; SettingsError passes as it is
        raise SettingsError(f"{name}={raw!r}: {exc}") from None
    if field.meta is not None and value is not None:
        problem = _out_of_bounds(value, field.meta)
        if problem:
            raise SettingsError(f"{name}={raw} {problem}")
    return value


def _convert(name: str, raw: str, tp: Any) -> Any:
    origin, args = get_origin(tp), get_args(tp)
    if origin in (typing.Union, types.UnionType):
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(name, raw, inner)
    if origin is Literal:
        choices = {str(a).lower(): a for a in args}
        if raw.lower() not in choices:
            raise SettingsError(f"{name}={raw!r} must be {_alternatives(list(map(str, args)))}")
        return choices[raw.lower()]
    if origin is tuple and args[1:] == (Ellipsis,):
        items = tuple(item.strip() for item in raw.split(",") if item.strip())
        return items if args[0] is str else tuple(_convert(name, i, args[0]) for i in items)
    reader = _SCALARS.get(tp)
    if reader is None:
        raise TypeError(f"{name}: no reader for {tp!r}; give its field a parse function")
    return reader(name, raw)


def _bool(name: str, raw: str) -> bool:
    word = raw.lower()
    if word not in TRUE_WORDS + FALSE_WORDS:
        raise SettingsError(f"{name}={raw!r} must be one of {BOOLEAN_WORDS}")
    return word in TRUE_WORDS


def _int(name: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not an integer") from None


def _float(name: str, raw: str) -> float:
    try:
        number = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None
    if not math.isfinite(number):
        raise SettingsError(f"{name}={raw!r} must be a finite number")
    return number


def _decimal(name: str, raw: str) -> Decimal:
    try:
        number = Decimal(raw)
    except InvalidOperation:
        raise SettingsError(f"{name}={raw!r} is not a decimal number") from None
    if not number.is_finite():
        raise SettingsError(f"{name}={raw!r} must be a finite number")
    return number


_SCALARS: dict[Any, Callable[[str, str], Any]] = {
    bool: _bool,
    int: _int,
    float: _float,
    Decimal: _decimal,
    str: lambda _name, raw: raw,
    Path: lambda _name, raw: Path(raw),
}


def _out_of_bounds(value: Any, meta: msgspec.Meta) -> str | None:
    """What is wrong with ``value`` under ``meta``'s bounds, or ``None``."""
    if isinstance(value, str | tuple):
        if meta.min_length is not None and len(value) < meta.min_length:
            return "must not be empty" if meta.min_length == 1 else f"needs {meta.min_length}+"
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return "must be a finite number"
    if meta.ge is not None and meta.le is not None and not meta.ge <= value <= meta.le:
        return f"must be between {meta.ge:g} and {meta.le:g}"
    checks: tuple[tuple[float | None, str, Callable[[Any, Any], bool]], ...] = (
        (meta.ge, ">=", operator.ge),
        (meta.gt, ">", operator.gt),
        (meta.le, "<=", operator.le),
        (meta.lt, "<", operator.lt),
    )
    for bound, sign, holds in checks:
        if bound is not None and not holds(value, bound):
            return f"must be {sign} {bound:g}"
    return None


def check_bounds(settings: msgspec.Struct) -> None:
    """Apply the declared bounds of every field of ``settings`` (for ``__post_init__``)."""
    for field in _fields(type(settings)):
        value = getattr(settings, field.name)
        if field.meta is None or value is None:
            continue
        problem = _out_of_bounds(value, field.meta)
        if problem:
            where = field.binding.name if field.binding else field.name
            raise SettingsError(f"{where}={value} {problem}")


def environment_of(settings: msgspec.Struct) -> dict[str, str]:
    """The variables that make :func:`read_env` give back ``settings``' plain values.

    For handing settings to a child process (a renamed topic map, say); fields with a
    parse function or an unset value are left out.
    """
    out: dict[str, str] = {}
    for field in _fields(type(settings)):
        value = getattr(settings, field.name)
        if field.binding is None:
            if _section(field.type) is not None:
                out.update(environment_of(value))
        elif field.binding.parse is None and value is not None:
            out[field.binding.name] = (
                ("true" if value else "false")
                if isinstance(value, bool)
                else ",".join(map(str, value))
                if isinstance(value, tuple)
                else str(value)
            )
    return out


def _alternatives(words: list[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def _shown(value: Any) -> str:
    """A field's default as the docs show it."""
    if value is None:
        return "unset"
    if isinstance(value, tuple | frozenset | list | dict) and not value:
        return "none"
    if isinstance(value, tuple):
        return f"`{','.join(map(str, value))}`"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, float):
        return f"`{value:g}`"
    return f"`{value}`"


def variables(cls: type[msgspec.Struct]) -> Iterator[Variable]:
    """Every variable ``cls`` and its sections document, in declaration order.

    A second field read from the same variable (its ``doc`` left empty) is not listed
    again.
    """
    for field in _fields(cls):
        if field.binding is not None and field.binding.doc:
            b = field.binding
            shown = b.shown_default if b.shown_default is not None else _shown(field.default)
            yield Variable(b.name, shown, b.doc)
        elif field.binding is None and (section := _section(field.type)) is not None:
            yield from variables(section)


def markdown_table(rows: list[Variable]) -> str:
    """``rows`` as the README's configuration table."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    lines += [f"| `{v.name}` | {v.default} | {v.doc} |" for v in rows]
    return "\n".join(lines)
