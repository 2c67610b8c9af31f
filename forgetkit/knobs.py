"""The value types a spec's knobs take, and the one place a mapping becomes a checked dataclass.

A dataclass field declares its knob once: its type here carries the check (a positive count, a finite rate,
a real YAML bool), so `steps: 2.9`, `devices: "2"`, `bf16: "no"` or `lr: .nan` stop at load time with one
line naming the key, instead of crashing a stage or reaching LLaMA-Factory as something else.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from enum import Enum
from typing import Annotated, Any

import pydantic
from pydantic import PlainValidator

from forgetkit.errors import ForgetkitError

SHOWN = 60
"""How much of a bad value an error echoes: specs are user input of any size."""


def _whole(least: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"must be a whole number of at least {least}")
        return value

    return check


def _number(value: Any) -> float:
    """A YAML number, or the string PyYAML leaves for `1e-6`."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError("must be a number")
    try:
        return float(value)
    except ValueError:
        raise ValueError("must be a number") from None


def _rate(value: Any) -> float:
    number = _number(value)
    if not (math.isfinite(number) and number > 0):
        raise ValueError("must be a positive finite number")
    return number


def _fraction(value: Any) -> float:
    number = _number(value)
    if not 0 <= number < 1:
        raise ValueError("must be a ratio in [0, 1)")
    return number


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("must be true or false (unquoted)")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    return value


Count = Annotated[int, PlainValidator(_whole(1))]
"""A positive whole number (`steps`, `devices`, `batch_size`, pixel and token limits); `2.9` and `true` are not."""
Size = Annotated[int, PlainValidator(_whole(0))]
"""A whole number, 0 allowed (`seed`, worker counts)."""
Rate = Annotated[float, PlainValidator(_rate)]
"""A positive finite number; YAML's `1e-6` (a string to PyYAML) is read as the number it spells."""
Fraction = Annotated[float, PlainValidator(_fraction)]
"""A ratio in [0, 1) (`warmup`)."""
Flag = Annotated[bool, PlainValidator(_flag)]
"""A YAML `true`/`false`; a quoted "no" is refused rather than read as on."""
Text = Annotated[str, PlainValidator(_text)]


def shown(value: Any) -> str:
    """`repr(value)`, cut to a readable length."""
    text = repr(value)
    return text if len(text) <= SHOWN else f"{text[:SHOWN]}... ({len(text)} characters)"


def checked(kind: Any, values: Any, where: str) -> Any:
    """`values` validated as `kind` (a dataclass, or one of the types above); the first problem becomes one
    `ForgetkitError` line: `<where>.<key>: <what is wrong>, got <value>` (`<where>: ...` for a check across
    fields)."""
    try:
        return _adapter(kind).validate_python(values)
    except pydantic.ValidationError as err:
        first = err.errors(include_url=False)[0]
        location = ".".join([where, *(str(part) for part in first["loc"])]) if first["loc"] else where
        message = first["msg"].removeprefix("Value error, ")
        message = message[:1].lower() + message[1:]
        got = f", got {shown(first['input'])}" if first["type"] != "missing" else ""
        raise ForgetkitError(f"{location}: {message}{got}") from None
    except ForgetkitError as err:  # a check across fields, in the dataclass's __post_init__
        raise ForgetkitError(f"{where}: {err}") from None


_ADAPTERS: dict[int, tuple[Any, pydantic.TypeAdapter]] = {}


def _adapter(kind: Any) -> pydantic.TypeAdapter:
    """One adapter per kind (building one compiles its validator); keyed by identity, since an `Annotated`
    type holding `Field` metadata need not hash."""
    if id(kind) not in _ADAPTERS:
        _ADAPTERS[id(kind)] = (kind, pydantic.TypeAdapter(kind))
    return _ADAPTERS[id(kind)][1]


def knob(default: Any, help: str) -> Any:
    """A dataclass field that declares its knob once: its default and the help `--help` prints for it."""
    return dataclasses.field(default=default, metadata={"help": help})


def help_of(field: dataclasses.Field) -> str:
    """A knob's help with its default, e.g. `Global batch size (default 16).`"""
    text, default = field.metadata["help"], field.default
    if default is None:
        return text
    return f"{text.removesuffix('.')} (default {default.value if isinstance(default, Enum) else default})."
