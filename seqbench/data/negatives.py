"""Evaluation candidates: drawn once per dataset with a fixed seed, persisted, shared by every model/probe."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from seqbench.data.dataset import STAGE_CODES
from seqbench.errors import DataError

# Candidate sets stored per dataset; column 0 is always the target.
CANDIDATE_SETS = {"valid": 99, "test": 99, "valid_title": 19, "test_title": 19}
CHUNK_DRAWS = 1 << 20  # draws per slice of users: bounds memory and keeps the lookups cache-resident


def _sorted_unique(a: np.ndarray) -> np.ndarray:
    """``np.unique(a)`` for int64 keys via one sort (numpy 2's hash-based unique is slower here)."""
    a = np.sort(a)
    return a[np.concatenate([[True], a[1:] != a[:-1]])] if len(a) else a


def _usable(draws: np.ndarray, rows: np.ndarray, forbidden: np.ndarray, n_items: int) -> np.ndarray:
    """ok[r, j]: draw j of row r is neither an item of user ``rows[r]`` nor a repeat of an earlier draw.

    Each row is sorted once as (item, column) pairs: repeats are then neighbours (the first occurrence
    sorts first), and the sorted (user, item) keys are ascending overall, so each of the few forbidden
    keys is found with one binary search instead of one search per draw. Only the bad positions are
    mapped back to draw order. ``forbidden`` holds the sorted keys of (at least) ``rows``' users.
    """
    n_rows, n_cols = draws.shape
    bits = max(1, (n_cols - 1).bit_length())
    packed = np.sort((draws.astype(np.int64) << bits) | np.arange(n_cols), axis=1)
    items = packed >> bits
    bad = np.zeros((n_rows, n_cols), dtype=bool)
    bad[:, 1:] = items[:, 1:] == items[:, :-1]
    flat_bad = bad.reshape(-1)
    if len(forbidden):
        keys = (rows[:, None].astype(np.int64) * (n_items + 1) + items).reshape(-1)
        pos = np.searchsorted(keys, forbidden)  # first occurrence; later ones are repeats already
        inside = pos < len(keys)
        pos = pos[inside]
        flat_bad[pos[keys[pos] == forbidden[inside]]] = True
    where = np.flatnonzero(flat_bad)
    ok = np.ones((n_rows, n_cols), dtype=bool)
    ok[where // n_cols, packed.reshape(-1)[where] & ((1 << bits) - 1)] = False
    return ok


def _take_first(ok: np.ndarray, draws: np.ndarray, n_neg: int) -> tuple[np.ndarray, np.ndarray]:
    """(full, picks): rows with >= n_neg usable draws, and their first n_neg usable draws in order."""
    rank = np.cumsum(ok, axis=1, dtype=np.int32)
    full = rank[:, -1] >= n_neg
    sel = ok[full] & (rank[full] <= n_neg)
    return full, draws[full][sel].reshape(-1, n_neg)


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

    Each round's draws are taken in slices of consecutive users; the generator's stream does not depend
    on how a request is sliced, so the draws equal one request for all users at once while memory stays
    at one slice. Whether a draw survives depends only on the draws before it in its row, so a row is
    first checked on a short prefix (enough in all but rare rows) and on all its draws only if short.
    """
    out = np.zeros((n_users, n_neg), dtype=np.int32)
    todo = np.arange(n_users)
    # forbidden_keys[bounds[u]:bounds[u + 1]] are user u's keys.
    bounds = np.searchsorted(forbidden_keys, np.arange(n_users + 1, dtype=np.int64) * (n_items + 1))
    m = n_neg * 2 + 8

    def check(rows: np.ndarray, draws: np.ndarray, prefix: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """(rows, picks) for the rows that got n_neg survivors, then the short rows last."""
        sub = forbidden_keys[bounds[rows[0]] : bounds[rows[-1] + 1]]  # rows ascend
        head = draws[:, :prefix]
        full, picks = _take_first(_usable(head, rows, sub, n_items), head, n_neg)
        done = [(rows[full], picks)]
        if prefix < draws.shape[1] and not full.all():
            rows, draws = rows[~full], draws[~full]
            full, picks = _take_first(_usable(draws, rows, sub, n_items), draws, n_neg)
            done.append((rows[full], picks))
        return [*done, (rows[~full], picks[:0])]

    # The generator is used by this thread only, in order; checking a slice (mostly numpy work that
    # releases the GIL) runs in a second thread, overlapping the next slice's draws and checks.
    with ThreadPoolExecutor(max_workers=2) as pool:
        while len(todo):
            step = max(1, CHUNK_DRAWS // m)
            prefix = min(m, n_neg + max(8, n_neg // 8))
            pending: list[Future] = []
            short = []
            for s in range(0, len(todo), step):
                rows = todo[s : s + step]
                draws = rng.integers(1, n_items + 1, size=(len(rows), m))
                pending.append(pool.submit(check, rows, draws, prefix))
                while len(pending) > 3 or (pending and pending[0].done()):
                    *done, (left, _) = pending.pop(0).result()
                    for r, picks in done:
                        out[r] = picks
                    short.append(left)
            for f in pending:
                *done, (left, _) = f.result()
                for r, picks in done:
                    out[r] = picks
                short.append(left)
            todo = np.concatenate(short)
            m *= 2
    return out


def sample_candidates(
    user: np.ndarray, item: np.ndarray, split: np.ndarray, n_items: int, seed: int, sizes: dict | None = None,
    title_keys: np.ndarray | None = None, report: dict | None = None,
) -> dict[str, np.ndarray]:
    """Candidate matrices (users with a target in the stage, 1 + n_neg) with the target in column 0, rows in
    ascending user order (every user under leave-last-out).

    Negatives come uniformly from items the user never interacted with (train ∪ valid ∪ test), so they
    never contain the target; each set is drawn separately, in a fixed order, from one seeded generator.

    With ``title_keys`` (one integer per item id 0..n_items, equal exactly when two items' normalised prompt
    titles are equal: ``seqbench.data.titles.title_keys``) the title-generation sets (``*_title``) are then
    made distinct-titled: :func:`distinct_titles` redraws every negative whose title repeats the target's or
    an earlier candidate's, from the same generator after all sets are drawn. The retrieval sets and every
    title row without a repeat stay exactly as drawn, so a catalogue whose titles all differ gets the same
    candidates (and content hash) as before the rule existed. Raises :class:`TitleCandidatesError` when some
    user has too few distinct titles left; ``report["title_negatives_redrawn"]`` counts the redrawn ones.
    """
    sizes = sizes or CANDIDATE_SETS
    n_users = int(user.max())
    u0 = user.astype(np.int64) - 1
    per_user = np.bincount(u0, minlength=n_users)
    need = max(sizes.values())
    forbidden = _sorted_unique(u0 * (n_items + 1) + item)
    free = n_items - np.bincount(forbidden // (n_items + 1), minlength=n_users)
    if (free < need).any():
        bad = int(np.flatnonzero(free < need)[0]) + 1
        raise DataError(
            f"user {bad} has interacted with {per_user[bad - 1]} of {n_items} items, leaving fewer than "
            f"{need} items to sample evaluation negatives from; the dataset is too small"
        )
    rng = np.random.default_rng(seed)
    targets = {stage: np.flatnonzero(split == code) for stage, code in STAGE_CODES.items()}
    out = {}
    for name, n_neg in sizes.items():
        rows = targets["valid" if name.startswith("valid") else "test"]
        neg = _draw_distinct_excluding(rng, n_items, n_neg, forbidden, n_users)[user[rows] - 1]
        out[name] = np.concatenate([item[rows][:, None].astype(np.int32), neg], axis=1)
    if title_keys is not None:
        redrawn = 0
        for name in [n for n in out if n.endswith(TITLE_SUFFIX)]:
            rows = targets["valid" if name.startswith("valid") else "test"]
            out[name], n_redrawn = distinct_titles(out[name], user[rows] - 1, title_keys, forbidden, n_items, rng)
            redrawn += n_redrawn
        if report is not None:
            report["title_negatives_redrawn"] = redrawn
    return out


TITLE_SUFFIX = "_title"  # candidate sets of the title-generation task
DRAW_ROUNDS = 64  # vectorised redraw rounds before the few rows left are completed one by one


class TitleCandidatesError(DataError):
    """The title-generation candidates cannot be built: too few distinct titles for some user."""


def distinct_titles(cands: np.ndarray, users0: np.ndarray, keys: np.ndarray, forbidden: np.ndarray, n_items: int,
                    rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """(candidates, how many negatives were redrawn): ``cands`` (target first) with every negative whose title
    key repeats the target's or an earlier column's replaced by a uniform draw from the user's non-interacted
    items whose key is not yet in the row. ``users0`` are the rows' 0-based users, ``forbidden`` the sorted
    ``user0 * (n_items + 1) + item`` keys of every interaction.

    Kept candidates never change: each round draws one item per open slot for all rows at once and keeps the
    draws that are not interacted and whose key is new to the row (of two new draws with one key, the earlier
    column wins); after ``DRAW_ROUNDS`` rounds the rows still open are completed exactly, one at a time.
    """
    keys = np.asarray(keys, dtype=np.int64)
    out = np.array(cands, dtype=np.int32, copy=True)
    n_rows, width = out.shape
    if n_rows == 0 or width < 2:
        return out, 0
    if len(np.unique(keys[1:])) < width:
        raise TitleCandidatesError(
            f"the catalogue has {len(np.unique(keys[1:]))} distinct titles (normalised as the prompts show them, a "
            f"missing title reading 'Empty title'); a title-generation row needs {width} different ones")
    users0 = np.asarray(users0, dtype=np.int64)
    target_only = np.zeros(out.shape, dtype=bool)
    target_only[:, 0] = True
    open_ = _repeated_keys(keys[out], target_only)
    redrawn = int(open_.sum())
    for _ in range(DRAW_ROUNDS):
        r, c = np.nonzero(open_)
        if not len(r):
            return out, redrawn
        draws = rng.integers(1, n_items + 1, size=len(r))
        out[r, c] = draws
        seen = _in_sorted(forbidden, users0[r] * (n_items + 1) + draws)
        rows = np.unique(r)
        at = np.searchsorted(rows, r)
        k = keys[out[rows]]
        k[at[seen], c[seen]] = -1 - np.arange(int(seen.sum()))  # an interacted draw competes for no title
        still = _repeated_keys(k, ~open_[rows])
        still[at[seen], c[seen]] = True
        open_[rows] = still
    for row in np.flatnonzero(open_.any(axis=1)):
        _complete_row(out, open_, int(row), int(users0[row]), keys, forbidden, n_items, rng)
    return out, redrawn


def repeated_title_rows(cands: np.ndarray, keys: np.ndarray) -> int:
    """How many rows of ``cands`` list two items with the same title key."""
    k = np.sort(np.asarray(keys, dtype=np.int64)[np.asarray(cands, dtype=np.int64)], axis=1)
    return int((k[:, 1:] == k[:, :-1]).any(axis=1).sum()) if k.size else 0


def _repeated_keys(k: np.ndarray, fixed: np.ndarray) -> np.ndarray:
    """open[r, j]: column j of row r must be (re)drawn: it is not fixed and its key occurs in a fixed column or
    in an earlier non-fixed column of the row. Column 0 (the target) is always fixed. ``fixed`` columns have
    distinct keys among themselves, so they are never opened."""
    col = np.broadcast_to(np.arange(k.shape[1]), k.shape)
    order = np.lexsort((col, ~fixed, k), axis=1)
    sk = np.take_along_axis(k, order, axis=1)
    dup = np.zeros(k.shape, dtype=bool)
    dup[:, 1:] = sk[:, 1:] == sk[:, :-1]  # within a run of equal keys: fixed first, then by column
    out = np.zeros(k.shape, dtype=bool)
    np.put_along_axis(out, order, dup, axis=1)
    return out & ~fixed


def _in_sorted(sorted_keys: np.ndarray, q: np.ndarray) -> np.ndarray:
    pos = np.searchsorted(sorted_keys, q)
    pos = np.minimum(pos, len(sorted_keys) - 1)
    return (sorted_keys[pos] == q) if len(sorted_keys) else np.zeros(len(q), dtype=bool)


def _complete_row(out: np.ndarray, open_: np.ndarray, row: int, user0: int, keys: np.ndarray,
                  forbidden: np.ndarray, n_items: int, rng: np.random.Generator) -> None:
    """Fill row ``row``'s open slots exactly: uniform over the non-interacted items with a key new to the row."""
    lo, hi = np.searchsorted(forbidden, [user0 * (n_items + 1), (user0 + 1) * (n_items + 1)])
    seen = forbidden[lo:hi] - user0 * (n_items + 1)
    allowed = np.ones(n_items + 1, dtype=bool)
    allowed[0] = False
    allowed[seen] = False
    used = set(keys[out[row, ~open_[row]]].tolist())
    pool = np.flatnonzero(allowed & ~np.isin(keys, list(used)))
    need = np.flatnonzero(open_[row])
    if len(np.unique(keys[pool])) < len(need):
        raise TitleCandidatesError(
            f"user {user0 + 1} has {len(np.unique(keys[pool])) + len(used) - 1} distinct titles (normalised as the "
            f"prompts show them) among the items it never interacted with, other than its target's; a "
            f"title-generation row needs {out.shape[1] - 1}")
    for j in need:
        pick = int(pool[rng.integers(len(pool))])
        out[row, j] = pick
        pool = pool[keys[pool] != keys[pick]]
    open_[row] = False
