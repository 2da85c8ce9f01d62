"""Evaluation candidates: drawn once per dataset with a fixed seed, persisted, shared by every model/probe."""

from __future__ import annotations

import numpy as np

from seqbench.errors import DataError

# Candidate sets stored per dataset; column 0 is always the target.
CANDIDATE_SETS = {"valid": 99, "test": 99, "valid_title": 19, "test_title": 19}
CHUNK_DRAWS = 1 << 20  # draws per slice of users: bounds memory and keeps the lookups cache-resident


def _draw_distinct_excluding(
    rng: np.random.Generator,
    n_items: int,
    n_neg: int,
    forbidden_keys: np.ndarray,
    n_users: int,
) -> np.ndarray:
    """For every user draw ``n_neg`` distinct items uniformly from 1..n_items outside the user's items.

    ``forbidden_keys`` is the sorted array of ``user * (n_items + 1) + item`` for every interaction.
    Works in rounds over whole arrays: oversample, reject interacted items and repeats, keep the first
    ``n_neg`` survivors in draw order, and redraw only the rows that came up short.

    Each round's draws are taken in slices of consecutive users. The generator's stream does not depend
    on how a request is sliced, so the result equals one draw for all users at once, while memory stays
    at a few slices and each slice only searches its own users' (contiguous) forbidden keys.
    """
    out = np.zeros((n_users, n_neg), dtype=np.int32)
    todo = np.arange(n_users)
    # forbidden_keys[bounds[u]:bounds[u + 1]] are user u's keys.
    bounds = np.searchsorted(forbidden_keys, np.arange(n_users + 1, dtype=np.int64) * (n_items + 1))
    m = n_neg * 2 + 8
    while len(todo):
        short = []
        step = max(1, CHUNK_DRAWS // m)
        for s in range(0, len(todo), step):
            rows = todo[s : s + step]
            draws = rng.integers(1, n_items + 1, size=(len(rows), m))
            keys = rows[:, None].astype(np.int64) * (n_items + 1) + draws
            sub = forbidden_keys[bounds[rows[0]] : bounds[rows[-1] + 1]]  # rows ascend
            if len(sub):
                pos = np.minimum(np.searchsorted(sub, keys), len(sub) - 1)
                ok = sub[pos] != keys
            else:
                ok = np.ones(keys.shape, dtype=bool)
            # Mark repeats within a row (keep the first occurrence in draw order).
            order = np.argsort(draws, axis=1, kind="stable")
            srt = np.take_along_axis(draws, order, axis=1)
            rep = np.zeros_like(ok)
            np.put_along_axis(rep, order[:, 1:], srt[:, 1:] == srt[:, :-1], axis=1)
            ok &= ~rep
            rank = np.cumsum(ok, axis=1)
            full = rank[:, -1] >= n_neg
            sel = ok & (rank <= n_neg)
            rows_full = np.flatnonzero(full)
            out[rows[rows_full]] = draws[rows_full][sel[rows_full]].reshape(len(rows_full), n_neg)
            short.append(rows[~full])
        todo = np.concatenate(short)
        m *= 2
    return out


def sample_candidates(
    user: np.ndarray, item: np.ndarray, split: np.ndarray, n_items: int, seed: int, sizes: dict | None = None
) -> dict[str, np.ndarray]:
    """Candidate matrices (n_users, 1 + n_neg) with the target in column 0.

    Negatives come uniformly from items the user never interacted with (train ∪ valid ∪ test), so they
    never contain the target; each set is drawn separately, in a fixed order, from one seeded generator.
    """
    sizes = sizes or CANDIDATE_SETS
    n_users = int(user.max())
    u0 = user.astype(np.int64) - 1
    per_user = np.bincount(u0, minlength=n_users)
    need = max(sizes.values())
    forbidden = np.unique(u0 * (n_items + 1) + item)
    free = n_items - np.bincount(forbidden // (n_items + 1), minlength=n_users)
    if (free < need).any():
        bad = int(np.flatnonzero(free < need)[0]) + 1
        raise DataError(
            f"user {bad} has interacted with {per_user[bad - 1]} of {n_items} items, leaving fewer than "
            f"{need} items to sample evaluation negatives from; the dataset is too small"
        )
    rng = np.random.default_rng(seed)
    target_valid = item[split == 1]
    target_test = item[split == 2]
    out = {}
    for name, n_neg in sizes.items():
        target = target_valid if name.startswith("valid") else target_test
        neg = _draw_distinct_excluding(rng, n_items, n_neg, forbidden, n_users)
        out[name] = np.concatenate([target[:, None].astype(np.int32), neg], axis=1)
    return out
