"""Layered configuration: dataclass defaults < config file < ``--set key=value`` (RecBole-style precedence)."""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any

import tomllib

from seqbench.errors import SeqbenchError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def parse_sets(items: list[str] | None) -> dict[str, str]:
    """``["a=1", "b=x,c=false"]`` -> ``{"a": "1", "b": "x", "c": "false"}`` (commas split pairs too)."""
    out: dict[str, str] = {}
    for item in items or []:
        for pair in item.split(","):
            if not pair.strip():
                continue
            if "=" not in pair:
                raise SeqbenchError(f"--set expects key=value, got '{pair}'")
            k, v = pair.split("=", 1)
            out[k.strip()] = v.strip()
    return out


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
    return cfg_cls(**values)
