"""Deterministic synthetic data with a known amount of order signal (the harness's own control).

Each user has a taste (a sparse Dirichlet mix over item groups). Each step of a sequence either follows a
sparse item->item transition table from the previous item (probability ``order``) or draws a fresh item
from the user's taste. Items never repeat within a user. The taste draws are made up front (a draw without
replacement from the user's distribution) and put in a uniformly random order before the walk reads them,
so at ``order=0`` a sequence's items are exchangeable: every order is equally likely and shuffling changes
nothing in distribution (the negative control). At ``order=1`` every next item is one of the previous item's few
successors (the positive control). Titles are built from the item's group, so text carries taste.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from seqbench.data.raw import RawData
from seqbench.data.sources.options import SourceOptions
from seqbench.errors import DataError

_ADJ = [
    "Amber",
    "Bold",
    "Calm",
    "Crimson",
    "Dusty",
    "Electric",
    "Frosted",
    "Golden",
    "Hidden",
    "Ivory",
    "Jade",
    "Lunar",
    "Misty",
    "Noble",
    "Olive",
    "Polar",
    "Quiet",
    "Rustic",
    "Silver",
    "Tidal",
    "Urban",
    "Velvet",
    "Wild",
    "Azure",
    "Brisk",
    "Cosmic",
    "Daring",
    "Ember",
    "Fabled",
    "Gentle",
    "Hollow",
    "Iron",
    "Jolly",
    "Keen",
    "Lucky",
    "Mellow",
    "Nimble",
    "Opal",
    "Primal",
    "Royal",
    "Solar",
    "Tender",
    "Vivid",
    "Woven",
    "Zesty",
]
_NOUN = [
    "Lantern",
    "Harbor",
    "Meadow",
    "Compass",
    "Falcon",
    "Garden",
    "Canyon",
    "Anchor",
    "Beacon",
    "Cascade",
    "Dune",
    "Echo",
    "Forge",
    "Glacier",
    "Horizon",
    "Island",
    "Journey",
    "Kettle",
    "Ledger",
    "Mosaic",
    "Nectar",
    "Orchard",
    "Prism",
    "Quartz",
    "Ripple",
    "Summit",
    "Thicket",
    "Voyage",
    "Willow",
    "Zephyr",
    "Atlas",
    "Bramble",
    "Cinder",
    "Delta",
    "Emblem",
    "Fable",
    "Grove",
    "Haven",
    "Ingot",
    "Jewel",
]

N_SUCCESSORS = 3
# Bumped whenever the same options start to give other data: a dataset prepared on demand with an older
# generator (the embedded ones, ``syn-…`` names) is prepared again instead of being reused.
GENERATOR_VERSION = 2


def _taste_pools(rng: np.random.Generator, lens: np.ndarray, max_len: int, items: int, taste_draw) -> np.ndarray:
    """Per user, ``len`` distinct items drawn from its taste, then put in a uniformly random order.

    Drawing without replacement with unequal weights fills the first places with the heavier items; the
    uniform permutation afterwards removes that, so at ``order=0`` every order of a history is equally
    likely (the items are exchangeable) and shuffling a history changes nothing in distribution.
    """
    users = len(lens)
    pool = np.full((users, max_len), -1, dtype=np.int64)
    for t in range(max_len):
        rows = np.flatnonzero(lens > t)
        nxt = taste_draw(rows)
        for _ in range(100):  # rejection for repeats, vectorised over the colliding rows
            used = (pool[rows, :t] == nxt[:, None]).any(1)
            if not used.any():
                break
            nxt[used] = taste_draw(rows[used])
        else:  # vanishingly rare: take any unused item
            for r_i in np.flatnonzero((pool[rows, :t] == nxt[:, None]).any(1)):
                nxt[r_i] = rng.choice(np.setdiff1d(np.arange(items), pool[rows[r_i], :t]))
        pool[rows, t] = nxt
    for u in range(users):
        pool[u, :lens[u]] = rng.permutation(pool[u, :lens[u]])
    return pool


def generate(
    users: int, items: int, order: float, seed: int = 0, min_len: int = 12, max_len: int = 40
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Returns (user, item, timestamp_ms) rows in time order per user, plus item groups and titles."""
    if not 0.0 <= order <= 1.0:
        raise DataError(f"--order must be between 0 and 1, got {order}")
    if users < 2 or items < 2 * max_len + 100:
        raise DataError(
            f"synthetic data needs >= 2 users and >= {2 * max_len + 100} items "
            f"(max_len {max_len} plus room for 99 negatives); got {users} users, {items} items"
        )
    if not 3 <= min_len <= max_len:
        raise DataError(f"need 3 <= min_len <= max_len, got {min_len}, {max_len}")
    rng = np.random.default_rng(seed)
    n_groups = max(4, min(len(_ADJ), items // 25))
    group = rng.permutation(np.arange(items) % n_groups)  # balanced random groups
    pop = 1.0 / (1.0 + rng.permutation(items)) ** 0.6  # mild popularity skew
    # Per-group categorical over items: cumulative sums for vectorised inverse-CDF sampling.
    members = [np.flatnonzero(group == g) for g in range(n_groups)]
    cdfs = [np.cumsum(pop[m]) / pop[m].sum() for m in members]
    taste = rng.dirichlet(np.full(n_groups, 0.3), size=users)
    taste_cdf = np.cumsum(taste, axis=1)
    succ = rng.integers(0, items, size=(items, N_SUCCESSORS))

    def taste_draw(rows: np.ndarray) -> np.ndarray:
        g = (rng.random(len(rows))[:, None] > taste_cdf[rows]).sum(1).clip(max=n_groups - 1)
        out = np.empty(len(rows), dtype=np.int64)
        r = rng.random(len(rows))
        for gi in np.unique(g):  # loop over groups, not items
            sel = g == gi
            out[sel] = members[gi][np.searchsorted(cdfs[gi], r[sel]).clip(max=len(members[gi]) - 1)]
        return out

    lens = rng.integers(min_len, max_len + 1, size=users)
    pool = _taste_pools(rng, lens, max_len, items, taste_draw)
    seq = np.full((users, max_len), -1, dtype=np.int64)
    cursor = np.zeros(users, dtype=np.int64)  # next unread position of each user's pool
    for t in range(max_len):
        rows = np.flatnonzero(lens > t)
        cand = np.full(len(rows), -1, dtype=np.int64)
        if t > 0 and order > 0:
            follow = rng.random(len(rows)) < order
            prev = seq[rows, t - 1]
            first = rng.integers(0, N_SUCCESSORS, size=len(rows))
            for s in range(N_SUCCESSORS):  # the drawn successor, else the next unused one
                alt = succ[prev, (first + s) % N_SUCCESSORS]
                free = follow & (cand < 0) & ~(seq[rows, :t] == alt[:, None]).any(1)
                cand = np.where(free, alt, cand)
        steps = np.flatnonzero(cand < 0)  # taste steps: the pool's next item not used yet
        while len(steps):
            u = rows[steps]
            pick = pool[u, cursor[u]]
            used = (seq[u, :t] == pick[:, None]).any(1)
            cand[steps[~used]] = pick[~used]
            cursor[u] += 1
            steps = steps[used]
        seq[rows, t] = cand

    user = np.repeat(np.arange(users), lens)
    item = seq[seq >= 0]
    start = rng.integers(1_514_764_800, 1_640_995_200, size=users).astype(np.int64) * 1000  # 2018..2022
    gaps = (rng.exponential(3 * 86_400, size=len(item)) + 1).astype(np.int64) * 1000
    off = np.concatenate([[0], np.cumsum(lens)[:-1]])
    cum = np.cumsum(gaps)
    ts = start[user] + cum - np.repeat(cum[off] - gaps[off], lens)
    titles = np.array(
        [f"{_ADJ[group[i] % len(_ADJ)]} {_NOUN[(group[i] * 7 + i) % len(_NOUN)]} No.{i + 1}" for i in range(items)],
        dtype=object,
    )
    return user, item, ts, group, titles


def load(path: Path | None, opts: SourceOptions) -> RawData:
    user, item, ts, group, titles = generate(opts.users, opts.items, opts.order, opts.seed, opts.min_len, opts.max_len)
    interactions = pa.table(
        {
            "user": pa.array([f"u{u + 1}" for u in range(opts.users)]).take(pa.array(user)),
            "item": pa.array([f"i{i + 1}" for i in range(opts.items)]).take(pa.array(item)),
            "timestamp": pa.array(ts, type=pa.int64()),
        }
    )
    items = pd.DataFrame(
        {
            "item": [f"i{i + 1}" for i in range(opts.items)],
            "title": titles,
            "description": [f"group {g}" for g in group],
        }
    )
    source = {
        "kind": "synthetic",
        "generator": GENERATOR_VERSION,
        "users": opts.users,
        "items": opts.items,
        "order": opts.order,
        "seed": opts.seed,
        "min_len": opts.min_len,
        "max_len": opts.max_len,
    }
    return RawData(interactions=interactions, items=items, source=source)
