"""Probe registry: each probe measures one behaviour of a trained model (`seqbench probes` lists them)."""

from __future__ import annotations

from seqbench.errors import UnknownNameError

from .base import Probe, ProbeResult
from .shuffle_infer import ShuffleInfer

PROBES: dict[str, type] = {cls.name: cls for cls in (ShuffleInfer,)}


def get_probe(name: str) -> Probe:
    if name not in PROBES:
        raise UnknownNameError("probe", name, list(PROBES))
    return PROBES[name]()


__all__ = ["PROBES", "Probe", "ProbeResult", "get_probe"]
