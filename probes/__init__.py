"""Probe registry: each probe measures one behaviour of a trained model (`seqbench probes` lists them)."""

from __future__ import annotations

from seqbench.errors import UnknownNameError

from .base import Probe, ProbeContext, ProbeResult, probe_tasks
from .cosine import Cosine
from .cross_domain import CrossDomain
from .jaccard import Jaccard
from .options import validate_probe_options
from .order_horizon import OrderHorizon
from .shuffle_infer import Recency, Reverse, ShuffleInfer, TieShuffle
from .shuffle_train import ShuffleTrain
from .transition import Transition
from .warm_cold import WarmCold

PROBES: dict[str, type] = {
    cls.name: cls
    for cls in (ShuffleInfer, ShuffleTrain, Cosine, Transition, WarmCold, CrossDomain, Reverse, Recency, TieShuffle,
                Jaccard, OrderHorizon)
}


def get_probe(name: str) -> Probe:
    if name not in PROBES:
        raise UnknownNameError("probe", name, list(PROBES))
    return PROBES[name]()


__all__ = ["PROBES", "Probe", "ProbeContext", "ProbeResult", "get_probe", "probe_tasks", "validate_probe_options"]
