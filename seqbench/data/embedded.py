"""Datasets seqbench makes by itself on first use, so a fresh install shows the point in under a minute.

``quickstart`` is synthetic data with strong order (90 % of steps follow an item's successors): a model that
reads order loses most of its accuracy when the history is shuffled, so the first run shows a significant
effect. ``quickstart-control`` is the same generator at order 0: items within a history are exchangeable,
so shuffling must not matter; a significant effect there would mean the harness is broken.

Both are small (500 users, 200 items), so one epoch is a few optimizer steps. They carry ``run_defaults``
in their meta.json: settings a model gets on this dataset unless a config file or ``--set`` says otherwise
(here: at most 30 epochs, patience 3 checks), which keeps a run near 15 s of training on 2 CPU cores. The
models themselves are unchanged; on any other dataset their own defaults apply.

Any name of the form ``syn-order<order>-u<users>-i<items>[-s<seed>]`` (e.g. ``syn-order0-u1000-i300-s3``) is
also made on first use: the synthetic generator with those options and no run defaults. Studies use these
names to sweep over order strengths, sizes and dataset seeds without a prepare step per dataset.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from seqbench.data.pipeline import prepare_source
from seqbench.data.preprocess import PrepareParams
from seqbench.data.sources.options import SourceOptions
from seqbench.data.sources.synthetic import GENERATOR_VERSION
from seqbench.data.store import list_datasets


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
SYNTHETIC_NAME = re.compile(r"syn-order(?P<order>[01](?:\.\d+)?)-u(?P<users>\d+)-i(?P<items>\d+)(?:-s(?P<seed>\d+))?")


def synthetic_options(name: str) -> SourceOptions | None:
    """The generator options a ``syn-…`` name stands for; None for any other name."""
    m = SYNTHETIC_NAME.fullmatch(name)
    if m is None:
        return None
    return SourceOptions(users=int(m["users"]), items=int(m["items"]), order=float(m["order"]),
                         seed=int(m["seed"] or 0))


def on_demand(name: str) -> bool:
    """Whether seqbench can make dataset ``name`` itself (embedded or a ``syn-…`` name)."""
    return name in EMBEDDED or synthetic_options(name) is not None


def prepare_embedded(name: str, home: Path, overwrite: bool = False) -> Path:
    """Write the on-demand dataset ``name`` into ``home`` (same pipeline as `seqbench data prepare synthetic`)."""
    if name in EMBEDDED:
        e = EMBEDDED[name]
        opts = SourceOptions(users=e.users, items=e.items, order=e.order, seed=e.seed)
        extra = {"run_defaults": e.run_defaults, "about": e.about}
    else:
        opts, extra = synthetic_options(name), {}
    path, _ = prepare_source("synthetic", None, name, home, PrepareParams(), opts, overwrite=overwrite,
                              extra_meta=extra)
    return path


def _stale(name: str, home: Path) -> bool:
    source = json.loads((home / name / "meta.json").read_text()).get("source", {})
    return source.get("generator", 1) != GENERATOR_VERSION


def ensure_prepared(name: str, home: Path, announce: Callable[[str], None] | None = None) -> None:
    """Prepare an on-demand dataset that is missing, or was made by an older generator; others are left as
    they are (loading them later fails with the list of prepared datasets when the name is unknown)."""
    if not on_demand(name):
        return
    present = name in list_datasets(home)
    if present and not _stale(name, home):
        return
    if announce:
        why = "made by an older synthetic generator: preparing it again" if present else "preparing it"
        about = EMBEDDED[name].about if name in EMBEDDED else "synthetic"
        announce(f"dataset '{name}' ({about}): {why} in {home / name}")
    prepare_embedded(name, home, overwrite=present)
