"""Search spaces of settings: what `seqbench tune` samples a setting from.

A model declares a default space beside the setting (``setting(1e-3, "...", RATE, space=loguniform(1e-4,
1e-2))``); a study's ``space`` table or ``seqbench tune --space key=SPEC`` overrides it. The syntax, one
``SPEC`` per setting:

* ``loguniform(lo,hi)``: a float, uniform on a log scale (learning rates, weight decay); ``0 < lo < hi``
* ``uniform(lo,hi)``: a float, uniform (dropout, masking shares); ``lo < hi``
* ``int(lo,hi)``: an integer from ``lo`` to ``hi``, both included (layers, heads)
* ``choice(a,b,...)``: one of the listed values, read as the setting's type (hidden sizes, loss names)

Spaces are plain data here; :meth:`Space.to_tune` turns one into Ray Tune's sampler (Ray is imported only then).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from seqbench.errors import SeqbenchError

KINDS = ("loguniform", "uniform", "int", "choice")
_CALL = re.compile(r"^\s*([a-z]+)\s*\((.*)\)\s*$")


@dataclass(frozen=True)
class Space:
    """One setting's search space: ``kind`` (one of :data:`KINDS`) and its arguments."""

    kind: str
    args: tuple

    def __str__(self) -> str:
        return f"{self.kind}({','.join(_fmt(a) for a in self.args)})"

    def contains(self, value: Any) -> bool:
        """Whether ``value`` is one this space can give (a model's default, evaluated as a tune's first trial)."""
        if self.kind == "choice":
            return value in self.args
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        return self.args[0] <= value <= self.args[1] and (self.kind != "int" or float(value).is_integer())

    def values(self) -> tuple:
        """The bounds (``lo``, ``hi``) or the choices: what the setting's range check must accept."""
        return self.args

    def to_tune(self) -> Any:
        """Ray Tune's sampler for this space (``int`` is inclusive here, Tune's ``randint`` is not)."""
        from ray import tune

        if self.kind == "loguniform":
            return tune.loguniform(*self.args)
        if self.kind == "uniform":
            return tune.uniform(*self.args)
        if self.kind == "int":
            return tune.randint(self.args[0], self.args[1] + 1)
        return tune.choice(list(self.args))


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _number(text: str, key: str, spec: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise SeqbenchError(f"space '{key}': '{text}' in '{spec}' is not a number") from None


def loguniform(lo: float, hi: float) -> Space:
    return check(Space("loguniform", (float(lo), float(hi))), "?")


def uniform(lo: float, hi: float) -> Space:
    return check(Space("uniform", (float(lo), float(hi))), "?")


def integer(lo: int, hi: int) -> Space:
    return check(Space("int", (int(lo), int(hi))), "?")


def choice(*values: Any) -> Space:
    return check(Space("choice", tuple(values)), "?")


def check(space: Space, key: str) -> Space:
    """Raise naming ``key`` and the bad value when the bounds cannot make a space."""
    if space.kind not in KINDS:
        raise SeqbenchError(f"space '{key}': unknown kind '{space.kind}'; use {', '.join(KINDS)}")
    if space.kind == "choice":
        if not space.args:
            raise SeqbenchError(f"space '{key}': choice() needs at least one value")
        return space
    if len(space.args) != 2:
        raise SeqbenchError(f"space '{key}': {space.kind}() takes two bounds (lo,hi), got {len(space.args)}")
    lo, hi = space.args
    if not lo < hi:
        raise SeqbenchError(f"space '{key}': {space}: the lower bound {_fmt(lo)} must be below the upper {_fmt(hi)}")
    if space.kind == "loguniform" and lo <= 0:
        raise SeqbenchError(f"space '{key}': {space}: loguniform needs a positive lower bound, got {_fmt(lo)}")
    return space


def parse(spec: str, key: str) -> Space:
    """``"loguniform(1e-4,1e-2)"`` -> the space; errors name the setting and the bad text."""
    m = _CALL.match(spec)
    if m is None:
        raise SeqbenchError(f"space '{key}': cannot read '{spec}'; write e.g. loguniform(1e-4,1e-2), "
                            "uniform(0,0.5), int(1,3) or choice(32,64)")
    kind, inner = m[1], [p.strip() for p in m[2].split(",") if p.strip()]
    if kind not in KINDS:
        raise SeqbenchError(f"space '{key}': unknown kind '{kind}' in '{spec}'; use {', '.join(KINDS)}")
    if kind == "choice":
        return check(Space(kind, tuple(inner)), key)
    numbers = [_number(p, key, spec) for p in inner]
    if kind == "int":
        if any(n != int(n) for n in numbers):
            raise SeqbenchError(f"space '{key}': int() bounds must be whole numbers, got '{spec}'")
        return check(Space(kind, tuple(int(n) for n in numbers)), key)
    return check(Space(kind, tuple(numbers)), key)
