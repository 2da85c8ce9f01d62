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


def compares_trained_models(name: str) -> bool:
    """Whether probe ``name`` compares two separately trained models (``compares_trained_models = True``, as
    shuffle-train): its per-user test sees the test users' noise but not the training run's, so one seed gives
    no verdict; the paired t-test over seeds, with the training run as the unit, does."""
    return bool(getattr(PROBES.get(name), "compares_trained_models", False))


__all__ = ["PROBES", "Probe", "ProbeContext", "ProbeResult", "compares_trained_models", "get_probe", "probe_tasks",
           "validate_probe_options"]
