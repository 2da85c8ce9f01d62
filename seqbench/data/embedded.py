"""Datasets seqbench makes by itself on first use, so a fresh install shows the point in under a minute.

``quickstart`` is synthetic data with strong order (90 % of steps follow an item's successors): a model that
reads order loses most of its accuracy when the history is shuffled, so the first run shows a significant
effect. ``quickstart-control`` is the same generator at order 0: items within a history are exchangeable,
so shuffling must not matter; a significant effect there would mean the harness is broken.

Both are small (500 users, 200 items), so one epoch is a few optimizer steps. They carry ``run_defaults``
in their meta.json: settings a model gets on this dataset unless a config file or ``--set`` says otherwise
(here: at most 30 epochs, patience 3 checks), which keeps a run near 15 s of training on 2 CPU cores. The
models themselves are unchanged; on any other dataset their own defaults apply.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from seqbench.data.pipeline import prepare_source
from seqbench.data.preprocess import PrepareParams
from seqbench.data.sources.options import SourceOptions


@dataclass(frozen=True)
class Embedded:
    name: str
    order: float
    about: str
    users: int = 500
    items: int = 200
    seed: int = 0
    run_defaults: dict = field(default_factory=lambda: {"max_epochs": 30, "patience": 3})


EMBEDDED = {
    e.name: e
    for e in (
        Embedded("quickstart", 0.9, "synthetic, strong order: shuffling should hurt an order-aware model"),
        Embedded("quickstart-control", 0.0, "synthetic, no order (exchangeable items): shuffling must not matter"),
    )
}
DEFAULT_DATASET = "quickstart"


def prepare_embedded(name: str, home: Path) -> Path:
    """Write the embedded dataset ``name`` into ``home`` (same pipeline as `seqbench data prepare synthetic`)."""
    e = EMBEDDED[name]
    opts = SourceOptions(users=e.users, items=e.items, order=e.order, seed=e.seed)
    path, _ = prepare_source("synthetic", None, name, home, PrepareParams(), opts,
                             extra_meta={"run_defaults": e.run_defaults, "about": e.about})
    return path
