"""Probe options (`--probe-set key=value`): every probe declares the keys it reads, with one line of help.

Keys are checked before any training: a key that none of the requested probes declares is an error naming
those probes and their valid keys (it used to be ignored silently), and values are parsed here, once, so a
bad value fails early too. One `--probe-set` applies to every probe of a run; a probe ignores keys it does
not declare but another requested probe does (e.g. `window` with `--probe shuffle-infer,transition`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping

from seqbench.errors import OptionError


def _positive_int(key: str, value: str) -> int:
    try:
        k = int(value)
    except ValueError:
        k = 0
    if k < 1:
        raise OptionError(f"--probe-set {key}={value}: expected a positive integer")
    return k


def _int_list(key: str, value: str) -> list[int]:
    """``2/3/5/10`` (also ``:``/``;``/space separated: a comma would split --probe-set pairs)."""
    parts = [p for p in re.split(r"[/:; ]+", value.strip()) if p]
    if not parts:
        raise OptionError(f"--probe-set {key}={value}: expected positive integers separated by '/'")
    return sorted({_positive_int(key, p) for p in parts})


def _name(key: str, value: str) -> str:
    if not value:
        raise OptionError(f"--probe-set {key}=: expected a name")
    return value


def _user_rep(key: str, value: str) -> str:
    if value not in ("probed", "original"):
        raise OptionError(f"--probe-set {key}={value}: expected 'probed' or 'original'")
    return value


def _window(key: str, value: str) -> int | str:
    """A positive integer, or ``all``: the whole input history (Klenitskiy et al.'s shuffle scope)."""
    return "all" if value.strip().lower() == "all" else _positive_int(key, value)


PARSERS: dict[str, Callable[[str, str], object]] = {"window": _window, "grid": _int_list, "target": _name,
                                                    "user_rep": _user_rep}


def declared(probe) -> dict[str, str]:
    """The option keys a probe reads, with their help (none when the class declares nothing)."""
    return dict(getattr(probe, "option_help", {}) or {})


def validate_probe_options(probes: Iterable, options: Mapping[str, str]) -> dict[str, object]:
    """Check every key against the requested probes' declared keys and parse every value; returns the
    parsed values. Raises OptionError (exit 2) naming the probes and their valid keys."""
    probes = list(probes)
    valid = {p.name: declared(p) for p in probes}
    known = {k for keys in valid.values() for k in keys}
    unknown = sorted(set(options) - known)
    if unknown:
        listing = "; ".join(f"{name}: {', '.join(sorted(keys)) or '(none)'}" for name, keys in valid.items())
        raise OptionError(f"unknown probe option{'s' if len(unknown) > 1 else ''} "
                          f"{', '.join(repr(k) for k in unknown)}; valid keys per probe: {listing}")
    return {k: parse_option(k, v) for k, v in options.items()}


def parse_option(key: str, value: str):
    parser = PARSERS.get(key)
    return parser(key, str(value)) if parser else value


def get_option(options: Mapping[str, str], key: str, default=None):
    """The parsed value of ``key`` in a probe's options, or ``default`` when it is absent."""
    return parse_option(key, options[key]) if key in options else default
