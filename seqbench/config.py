"""Layered configuration: dataclass defaults < config file < ``--set key=value`` (RecBole-style precedence).

Model configs declare each setting with :func:`setting`: its default, one line of meaning and, where one
exists, the allowed range or choices. :func:`resolve` checks every value (defaults, file and ``--set`` alike),
so a run with ``max_epochs=-3`` fails before any work instead of training nothing and logging a result;
:func:`describe` is what ``seqbench models --show NAME`` prints. A subclass may re-declare a field with a plain
default: the help and range of the base class's declaration still apply.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from seqbench.errors import SeqbenchError
from seqbench.space import Space
from seqbench.space import parse as parse_space

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Range:
    """A numeric interval; None is unbounded on that side."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def contains(self, v: float) -> bool:
        if self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo):
            return False
        return not (self.hi is not None and (v >= self.hi if self.hi_open else v > self.hi))

    def __str__(self) -> str:
        lo = "-inf" if self.lo is None else f"{self.lo:g}"
        hi = "inf" if self.hi is None else f"{self.hi:g}"
        left = "(" if self.lo_open or self.lo is None else "["
        right = ")" if self.hi_open or self.hi is None else "]"
        return f"{left}{lo}, {hi}{right}"


AT_LEAST_1 = Range(1)  # epochs, sizes, counts, patience
NON_NEGATIVE = Range(0)
POSITIVE = Range(0, lo_open=True)
RATE = Range(0, 1, lo_open=True, hi_open=True)  # learning rates, betas, probabilities that must act
DROPOUT = Range(0, 1, hi_open=True)
FRACTION = Range(0, 1, lo_open=True)  # (0, 1]
PROBABILITY = Range(0, 1)


def setting(default: Any, help: str, range: Range | None = None, choices: tuple | None = None,
            space: Space | None = None) -> Any:
    """A config field with its meaning, allowed values and, for a setting worth tuning, its default search space
    (read by :func:`resolve`, :func:`describe` and :func:`search_space`)."""
    return field(default=default, metadata={"help": help, "range": range, "choices": choices, "space": space})


def _meta(cfg_cls: type, name: str) -> dict:
    """A field's metadata, inherited from the nearest class in the MRO that declared it with :func:`setting`."""
    for klass in cfg_cls.__mro__:
        fields = getattr(klass, "__dataclass_fields__", {})
        if name in fields and fields[name].metadata:
            return dict(fields[name].metadata)
    return {}


def check_ranges(cfg: Any) -> None:
    """Raise naming the key, the value and the allowed range for the first value outside its range."""
    for f in dataclasses.fields(cfg):
        meta, value = _meta(type(cfg), f.name), getattr(cfg, f.name)
        rng, choices = meta.get("range"), meta.get("choices")
        if choices and value not in choices:
            raise SeqbenchError(f"config '{f.name}' = {value!r} is not allowed; choose one of "
                                f"{', '.join(map(str, choices))}")
        values = value if isinstance(value, tuple | list) else (value,)
        for v in values:
            if rng is not None and isinstance(v, int | float) and not isinstance(v, bool) and not rng.contains(v):
                raise SeqbenchError(f"config '{f.name}' = {v!r} is out of range; allowed: {rng}")


def describe(cfg_cls: type) -> list[dict[str, str]]:
    """One row per setting: name, type, default, allowed values and one line of meaning."""
    hints = typing.get_type_hints(cfg_cls)
    rows = []
    for f in dataclasses.fields(cfg_cls):
        meta = _meta(cfg_cls, f.name)
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        allowed = str(meta["range"]) if meta.get("range") else ""
        if meta.get("choices"):
            allowed = " | ".join(map(str, meta["choices"]))
        typ = hints[f.name]
        space = meta.get("space")
        rows.append({"name": f.name, "type": getattr(typ, "__name__", str(typ)), "default": str(default),
                     "allowed": allowed, "help": meta.get("help", ""), "space": str(space) if space else ""})
    return rows


def search_space(cfg_cls: type, overrides: dict[str, Space] | None = None) -> dict[str, Space]:
    """The settings `seqbench tune` samples: each declared default space, then ``overrides`` (a study's or
    ``--space``'s), every one checked against its setting (known key, values of its type and in its range)."""
    out = {f.name: _meta(cfg_cls, f.name)["space"] for f in dataclasses.fields(cfg_cls)
           if _meta(cfg_cls, f.name).get("space") is not None}
    for key, space in (overrides or {}).items():
        out[key] = check_space(cfg_cls, key, space)
    return out


def check_space(cfg_cls: type, key: str, space: Space) -> Space:
    """``space`` with its values read as the setting's type; raises naming the key and the bad value."""
    fields = {f.name for f in dataclasses.fields(cfg_cls)}
    if key not in fields:
        raise SeqbenchError(f"space for unknown setting '{key}' of {cfg_cls.__name__}; "
                            f"valid: {', '.join(sorted(fields))}")
    typ = typing.get_type_hints(cfg_cls)[key]
    if space.kind in ("uniform", "loguniform") and typ is not float:
        raise SeqbenchError(f"space '{key}': {space.kind}() samples floats but '{key}' is "
                            f"{getattr(typ, '__name__', typ)}; use int(lo,hi) or choice(...)")
    values = tuple(_coerce(v, typ, key) for v in space.values())
    meta = _meta(cfg_cls, key)
    for v in values:
        if meta.get("choices") and v not in meta["choices"]:
            raise SeqbenchError(f"space '{key}': {v!r} is not allowed; choose among "
                                f"{', '.join(map(str, meta['choices']))}")
        rng = meta.get("range")
        if rng is not None and isinstance(v, int | float) and not isinstance(v, bool) and not rng.contains(v):
            raise SeqbenchError(f"space '{key}': {v!r} is out of range; allowed: {rng}")
    return Space(space.kind, values)


def key_value_pairs(items: list[str] | None, sep: str, option: str, value: str = "value") -> list[tuple[str, str]]:
    """``--option k=v`` values, each possibly several pairs joined by ``sep``, as (key, value) pairs in order."""
    pairs = []
    for item in items or []:
        for pair in item.split(sep):
            if not pair.strip():
                continue
            if "=" not in pair:
                raise SeqbenchError(f"{option} expects key={value}, got '{pair}'")
            k, v = pair.split("=", 1)
            pairs.append((k.strip(), v.strip()))
    return pairs


def parse_sets(items: list[str] | None) -> dict[str, str]:
    """``["a=1", "b=x,c=false"]`` -> ``{"a": "1", "b": "x", "c": "false"}`` (commas split pairs too)."""
    return dict(key_value_pairs(items, ",", "--set"))


def parse_spaces(items: list[str] | None) -> dict[str, Space]:
    """``["lr=loguniform(1e-4,1e-2)", "d=choice(32,64)"]`` -> setting -> space (commas inside the
    parentheses belong to the space; repeat the option for several settings, or separate them with ``;``)."""
    return {key: parse_space(spec, key) for key, spec in key_value_pairs(items, ";", "--space", "SPEC")}


def load_config_file(path: Path | None) -> dict[str, Any]:
    """Read a TOML, JSON or YAML file into a dict; errors name the file."""
    if path is None:
        return {}
    path = Path(path)
    if not path.is_file():
        raise SeqbenchError(f"{path}: config file not found")
    text = path.read_text()
    try:
        if path.suffix == ".toml":
            return tomllib.loads(text)
        if path.suffix == ".json":
            return json.loads(text)
        if path.suffix in (".yaml", ".yml"):
            import yaml

            return yaml.safe_load(text) or {}
    except Exception as e:  # each parser raises its own error type
        raise SeqbenchError(f"{path}: cannot parse config ({e})") from e
    raise SeqbenchError(f"{path}: config must be .toml, .json or .yaml")


def _coerce(value: Any, typ: Any, key: str) -> Any:
    origin = typing.get_origin(typ)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        for a in args:
            try:
                return _coerce(value, a, key)
            except SeqbenchError:
                continue
        raise SeqbenchError(f"config '{key}': cannot read {value!r} as {typ}")
    if origin in (tuple, list):
        parts = value if isinstance(value, list | tuple) else str(value).strip("()[] ").split(";")
        (inner, *_) = typing.get_args(typ) or (str,)
        return tuple(_coerce(p, inner, key) for p in parts if str(p).strip())
    if typ is bool:
        if isinstance(value, bool):
            return value
        s = str(value).lower()
        if s in _TRUE | _FALSE:
            return s in _TRUE
        raise SeqbenchError(f"config '{key}': expected true/false, got {value!r}")
    if typ in (int, float):
        try:
            return typ(value) if not (typ is int and isinstance(value, str) and "." in value) else int(float(value))
        except (TypeError, ValueError):
            raise SeqbenchError(f"config '{key}': expected {typ.__name__}, got {value!r}") from None
    if typ is str:
        return str(value)
    return value


def resolve(cfg_cls: type, *layers: dict[str, Any]) -> Any:
    """Build ``cfg_cls`` from its defaults with each layer applied in order; unknown keys are errors."""
    fields = {f.name: f for f in dataclasses.fields(cfg_cls)}
    hints = typing.get_type_hints(cfg_cls)
    values: dict[str, Any] = {}
    for layer in layers:
        for key, value in (layer or {}).items():
            if key not in fields:
                raise SeqbenchError(
                    f"unknown setting '{key}' for {cfg_cls.__name__}; valid: {', '.join(sorted(fields))}"
                )
            values[key] = _coerce(value, hints[key], key)
    cfg = cfg_cls(**values)
    check_ranges(cfg)
    return cfg
