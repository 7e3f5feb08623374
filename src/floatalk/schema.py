"""Plain dicts <-> config dataclasses: the one strict converter of the project.

Every config that crosses a file boundary goes through here: the model configs in a weights
folder's ``config.json`` (floatalk.weights), training YAML files and the configs stored in training
checkpoints (floatalk.train.config). The dataclass is the schema:

- an unknown key is an error that names it (and the valid keys at that level);
- values are type-checked against the field annotations (int, float, bool, str, Literal[...],
  tuple[...], list[...], dict[str, ...], Optional / unions of those, Any, nested dataclasses);
  lists become tuples where a tuple is declared, ints become floats where a float is;
- a value the dataclass's ``__post_init__`` rejects is reported the same way;
- keys missing from the dict keep their defaults, so files written before a field existed load.

Errors are one-line :class:`floatalk.errors.InputError` messages; callers that know the file add
its path.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar

from .errors import InputError

__all__ = ["config_from_dict", "config_to_dict"]

C = TypeVar("C")


# --------------------------------------------------------------------------------------------------


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain dict of a config dataclass: tuples become lists, nested dataclasses become dicts."""
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"config_to_dict expects a dataclass instance, got {type(config).__name__}")
    return _plain(dataclasses.asdict(config))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def config_from_dict(cls: type[C], data: dict[str, Any], *, where: str = "") -> C:
    """Build dataclass `cls` from a plain dict, checking keys and types.

    Keys missing from `data` take their defaults. Raises InputError (one line) on an unknown key,
    a value of the wrong type, or a value the dataclass's ``__post_init__`` rejects.
    """
    if not isinstance(data, dict):
        raise InputError(f"config {where or cls.__name__} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    unknown = [k for k in data if k not in names]
    if unknown:
        dotted = ", ".join(repr(f"{where}.{k}" if where else str(k)) for k in unknown)
        raise InputError(f"unknown config key {dotted}; valid keys here: {', '.join(names)}")
    kwargs = {k: _coerce(hints[k], v, f"{where}.{k}" if where else k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        raise InputError(f"invalid config {where or cls.__name__}: {exc}") from None


def _describe(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _coerce(hint: Any, value: Any, where: str) -> Any:
    """Check `value` against type `hint`; convert lists to tuples and ints to floats where declared."""
    if hint is Any:
        return value
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        return config_from_dict(hint, value, where=where)
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is Literal:
        if value in args and type(value) in {type(a) for a in args}:
            return value
        raise InputError(f"config {where} must be one of {', '.join(map(repr, args))}, got {value!r}")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, where)
            except InputError:
                pass
        raise InputError(f"config {where} must be {_describe(hint)}, got {value!r}")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise InputError(f"config {where} must be a list ({_describe(hint)}), got {value!r}")
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            items = [_coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
        elif origin is tuple and args:
            if len(args) != len(value):
                raise InputError(f"config {where} must have {len(args)} items, got {len(value)}: {value!r}")
            items = [_coerce(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value))]
        elif args:
            items = [_coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
        else:
            items = list(value)
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise InputError(f"config {where} must be a mapping, got {value!r}")
        if len(args) == 2:
            return {k: _coerce(args[1], v, f"{where}.{k}") for k, v in value.items()}
        return dict(value)
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif hint is str:
        if isinstance(value, str):
            return value
    elif isinstance(hint, type):
        if isinstance(value, hint):
            return value
    else:
        return value  # an annotation this checker does not know: accept as is
    raise InputError(f"config {where} must be {_describe(hint)}, got {value!r}")
