"""Raw interactions -> filtered, time-sorted, re-indexed, split (all vectorised).

Two splits (docs/protocols.md):

* ``leave-last-out`` (the paper's): every user's last item is the test target, the one before it the
  validation target, the rest is training data.
* ``temporal`` (Klenitskiy et al., RecSys'24, their ``preprocessing/splitter.py``): a global time boundary at the
  ``boundary`` quantile of all timestamps. Training users are those with at least two events up to the
  boundary, and those events are the training data; a user whose last event is after the boundary is a test
  user, its last event the target and every earlier event the input; ``valid_users`` training users are held
  out of training, their last event up to the boundary the validation target and the earlier ones its input.

Each row carries one split code: ``TRAIN`` (trained on), ``VALID`` / ``TEST`` (a target) or ``INPUT`` (read by a
model as history at evaluation, never trained on: a test user's events after the boundary, a validation user's
earlier events). A target's input is every earlier row of its user, whatever its code.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from seqbench.data.dataset import INPUT, TEST, TRAIN, VALID
from seqbench.data.raw import RawData, skipped_note
from seqbench.errors import DataError

SPLITS = ("leave-last-out", "temporal")
# leave-last-out: one train item, one validation item, one test item; temporal: one input item and a target
MIN_USER_LEN = {"leave-last-out": 3, "temporal": 2}
SAMPLE_STAGES = ("before", "after")
TIE_ORDERS = ("file", "random")


@dataclass(frozen=True)
class PrepareParams:
    k: int = 5
    kcore: str = "iterative"  # "iterative" (until stable) or "single" (the paper's one-pass rule)
    sample_users: float = 1.0  # fraction of users kept
    sample_seed: int = 0
    # "before": sample raw users, then k-core (a small sample of a k-core dataset collapses under k-core);
    # "after": sample users of the k-core result and keep their whole histories, without filtering again
    sample_stage: str = "before"
    neg_seed: int = 0
    n_neg: int = 99
    n_neg_title: int = 19
    split: str = "leave-last-out"  # or "temporal" (see the module docstring)
    boundary: float = 0.9  # temporal: quantile of all timestamps where the test period starts (after it)
    valid_users: int = 500  # temporal: users held out of training for validation
    split_seed: int = 0  # temporal: which users are held out for validation
    ties: str = "file"  # order of a user's events with equal timestamps: "file" (as read) or "random" (seeded)
    tie_seed: int = 0  # ties="random": the seed of that order

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Prepared:
    """Interactions sorted by (user, time), users and items re-indexed from 1."""

    user: np.ndarray  # int32
    item: np.ndarray  # int32
    timestamp: np.ndarray  # int64 ms
    split: np.ndarray  # int8: 0 train, 1 valid, 2 test
    user_ids: np.ndarray  # raw id of user u at [u-1]
    item_ids: np.ndarray  # raw id of item i at [i-1]
    titles: np.ndarray  # title of item i at [i-1] (object, "" when unknown)
    descriptions: np.ndarray | None
    report: dict


def _codes(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Dictionary-encode a string column into int64 codes (first-appearance order) and the uniques."""
    enc = pc.dictionary_encode(column).combine_chunks()
    return enc.indices.to_numpy(zero_copy_only=False).astype(np.int64), np.asarray(
        enc.dictionary.to_pylist(), dtype=object
    )


def _kcore(u: np.ndarray, i: np.ndarray, k: int, mode: str) -> np.ndarray:
    """Boolean mask of rows kept by k-core filtering on users and items."""
    keep = np.ones(len(u), dtype=bool)
    if k <= 1:
        return keep
    if mode == "single":
        uc = np.bincount(u)
        ic = np.bincount(i)
        return (uc[u] >= k) & (ic[i] >= k)
    if mode != "iterative":
        raise DataError(f"unknown k-core mode '{mode}' (use 'iterative' or 'single')")
    while True:
        uc = np.bincount(u[keep], minlength=u.max() + 1)
        ic = np.bincount(i[keep], minlength=i.max() + 1)
        new = keep & (uc[u] >= k) & (ic[i] >= k)
        if new.sum() == keep.sum():
            return new
        keep = new


def _sample_users(ucode: np.ndarray, rows: np.ndarray, params: PrepareParams, report: dict) -> np.ndarray:
    """Seeded sample of the users present in ``rows``, as a mask over user codes.

    Users are drawn from those present (sorted codes), so "after" draws from the k-core survivors and a
    5 % sample means 5 % of the users actually left."""
    present = np.unique(ucode[rows])
    n = max(1, round(len(present) * params.sample_users))
    rng = np.random.default_rng(params.sample_seed)
    chosen = np.zeros(int(ucode.max()) + 1, dtype=bool)
    chosen[rng.choice(present, size=n, replace=False)] = True
    report["users_sampled"] = int(n)
    return chosen


def _first_appearance_ids(codes: np.ndarray) -> np.ndarray:
    """Map codes to 1..n in order of first appearance in ``codes``.

    One O(n) pass for each code's first position (instead of sorting all rows), then a sort of the
    distinct codes only.
    """
    n = len(codes)
    first = np.full(int(codes.max()) + 1, n, dtype=np.int64)
    np.minimum.at(first, codes, np.arange(n, dtype=np.int64))
    present = np.flatnonzero(first < n)
    order = present[np.argsort(first[present], kind="stable")]
    remap = np.zeros(len(first), dtype=np.int64)
    remap[order] = np.arange(1, len(order) + 1)
    return remap


def _duplicate_rows(ucode: np.ndarray, icode: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """Rows repeating an earlier row's (user, item, time) exactly, as a boolean mask.

    Only rows whose (user, item) pair occurs more than once can be duplicates, so one unstable sort of a
    packed pair key finds them and the exact (pair, time, file order) sort runs on that subset alone.
    """
    n = len(ucode)
    dup = np.zeros(n, dtype=bool)
    n_i = int(icode.max()) + 1
    if (int(ucode.max()) + 1) * n_i >= 2**62:  # cannot pack the pair: sort all rows on the full key
        key = np.lexsort((np.arange(n), ts, icode, ucode))
        su, si, st = ucode[key], icode[key], ts[key]
        dup[key[1:]] = (su[1:] == su[:-1]) & (si[1:] == si[:-1]) & (st[1:] == st[:-1])
        return dup
    pair = ucode * n_i + icode
    by_pair = _stable_argsort(pair)
    sp = pair[by_pair]
    same = sp[1:] == sp[:-1]
    if not same.any():
        return dup
    repeated = np.zeros(n, dtype=bool)
    repeated[1:] |= same
    repeated[:-1] |= same
    cand = np.sort(by_pair[repeated])  # file order
    c = cand[np.lexsort((cand, ts[cand], pair[cand]))]
    dup[c[1:]] = (pair[c[1:]] == pair[c[:-1]]) & (ts[c[1:]] == ts[c[:-1]])
    return dup


def _stable_argsort(key: np.ndarray) -> np.ndarray:
    """``np.argsort(key, kind="stable")`` for non-negative integer keys.

    When key and row number fit in 63 bits together, sorting the packed values is several times faster
    than an argsort and gives the same permutation (ties are ordered by row number).
    """
    n = len(key)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    idx_bits = max(1, (n - 1).bit_length())
    if int(key.min()) >= 0 and int(key.max()).bit_length() + idx_bits <= 63:
        packed = np.sort((key.astype(np.int64) << idx_bits) | np.arange(n, dtype=np.int64))
        return packed & ((1 << idx_bits) - 1)
    return np.argsort(key, kind="stable")


def _user_time_order(user: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """Stable argsort by (user, time): ties keep their current (file) order.

    Two stable passes, least significant key first (as in a radix sort): by time, then by user.
    """
    if len(ts) == 0:
        return np.zeros(0, dtype=np.int64)
    if int(ts.max()) - int(ts.min()) >= 2**63:  # the offset below would overflow
        return np.lexsort((ts, user))
    by_time = _stable_argsort(ts - ts.min())
    return by_time[_stable_argsort(user[by_time])]


def prepare(raw: RawData, params: PrepareParams, strict: bool = False) -> Prepared:
    """Deduplicate, sort by time (stable), sample users, k-core filter, split leave-last-out."""
    tab = raw.interactions
    report = dict(raw.report)
    report.setdefault("malformed_lines", 0)  # always in the summary, even when nothing was skipped
    n_rows = tab.num_rows
    if n_rows == 0:
        raise DataError(f"no interactions found in {raw.source.get('path', 'the source')}{skipped_note(report)}")
    if tab.column("timestamp").null_count:
        raise DataError("some interactions have no timestamp")  # loaders should have said which line
    with ThreadPoolExecutor(max_workers=2) as pool:  # pyarrow's hashing releases the GIL: both at once
        users, items = pool.map(_codes, [tab.column("user"), tab.column("item")])
    ucode, uraw = users
    icode, iraw = items
    ts = tab.column("timestamp").to_numpy().astype(np.int64)
    report["rows_read"] = int(n_rows)

    # Exact duplicate rows (same user, item and time) are dropped, keeping the first in file order.
    keep = ~_duplicate_rows(ucode, icode, ts)
    report["duplicates_dropped"] = int(n_rows - keep.sum())

    if params.split not in SPLITS:
        raise DataError(f"unknown --split '{params.split}' (use one of {', '.join(SPLITS)})")
    if params.split == "temporal" and not 0.0 < params.boundary < 1.0:
        raise DataError(f"--boundary must be in (0, 1), got {params.boundary}")
    if params.split == "temporal" and params.valid_users < 1:
        raise DataError(f"--valid-users must be at least 1, got {params.valid_users}")
    if params.ties not in TIE_ORDERS:
        raise DataError(f"unknown --ties '{params.ties}' (use one of {', '.join(TIE_ORDERS)})")
    if params.sample_stage not in SAMPLE_STAGES:
        raise DataError(f"unknown --sample-stage '{params.sample_stage}' (use one of {', '.join(SAMPLE_STAGES)})")
    if not 0.0 < params.sample_users <= 1.0:
        raise DataError(f"--sample-users must be in (0, 1], got {params.sample_users}")
    sampling = params.sample_users < 1.0
    if sampling and params.sample_stage == "before":
        keep &= _sample_users(ucode, np.flatnonzero(keep), params, report)[ucode]

    idx = np.flatnonzero(keep)
    kmask = _kcore(ucode[idx], icode[idx], params.k, params.kcore)
    idx = idx[kmask]
    if sampling and params.sample_stage == "after":  # whole histories of the sampled users, no second k-core
        report["users_after_kcore"] = int(len(np.unique(ucode[idx])))
        idx = idx[_sample_users(ucode, idx, params, report)[ucode[idx]]]
    # Users with too few interactions for the split (possible with the single-pass rule).
    min_len = MIN_USER_LEN[params.split]
    counts = np.bincount(ucode[idx], minlength=int(ucode.max()) + 1)
    short = counts[ucode[idx]] < min_len
    n_short = int(len(np.unique(ucode[idx][short])))
    if n_short:
        if strict:
            example = uraw[ucode[idx][short][0]]
            raise DataError(
                f"{n_short} users have fewer than {min_len} interactions after filtering "
                f"(e.g. user '{example}'); drop --strict to skip them"
            )
        idx = idx[~short]
    report["short_users_dropped"] = n_short
    if len(idx) == 0:
        raise DataError(
            f"no interactions left after {params.kcore} {params.k}-core filtering "
            f"({n_rows} rows read{skipped_note(report, ', ')}); lower --k or check the source"
        )

    # Users numbered by first appearance in the file; rows sorted by (new user id, time), ties in file
    # order (idx is increasing = file order), so user u's rows are contiguous and users ascend.
    u_kept = ucode[idx]
    user_map = _first_appearance_ids(u_kept)
    user_kept = user_map[u_kept]
    if params.ties == "random":  # a user's events with equal timestamps in a seeded random order, not the file's
        shuffled = np.random.default_rng(params.tie_seed).permutation(len(idx))
        perm = shuffled[_user_time_order(user_kept[shuffled], ts[idx][shuffled])]
    else:
        perm = _user_time_order(user_kept, ts[idx])
    order = idx[perm]
    u_c, i_c, t = ucode[order], icode[order], ts[order]
    user = user_kept[perm]
    same_user = user[1:] == user[:-1]
    report["tied_adjacent_pairs"] = round(float((same_user & (t[1:] == t[:-1])).sum() / max(same_user.sum(), 1)), 4)

    split = temporal_split(user, t, params, report) if params.split == "temporal" else leave_last_out(user)

    # Items numbered by first appearance in train sequences, then valid, then test (as the official code).
    stage_order = np.argsort(split, kind="stable")
    item_map = _first_appearance_ids(i_c[stage_order])
    item = item_map[i_c]

    n_items = int(item.max())
    item_ids = np.empty(n_items, dtype=object)
    used = np.flatnonzero(np.bincount(i_c))  # == np.unique(i_c), without sorting every row
    item_ids[item_map[used] - 1] = iraw[used]
    n_users = int(user.max())
    user_ids = np.empty(n_users, dtype=object)
    used_u = np.flatnonzero(np.bincount(u_c))
    user_ids[user_map[used_u] - 1] = uraw[used_u]

    titles, descriptions = _item_text(raw.items, item_ids, report, strict)
    report.update(users=n_users, items=n_items, interactions=int(len(user)))
    return Prepared(
        user=user.astype(np.int32),
        item=item.astype(np.int32),
        timestamp=t,
        split=split,
        user_ids=user_ids,
        item_ids=item_ids,
        titles=titles,
        descriptions=descriptions,
        report=report,
    )


def leave_last_out(user: np.ndarray) -> np.ndarray:
    """Split codes for rows sorted by (user, time): last row of a user TEST, the one before VALID."""
    starts = np.flatnonzero(np.r_[True, user[1:] != user[:-1]])
    ends = np.r_[starts[1:], len(user)]
    split = np.zeros(len(user), dtype=np.int8)
    split[ends - 1] = TEST
    split[ends - 2] = VALID
    return split


def temporal_split(user: np.ndarray, ts: np.ndarray, params: PrepareParams, report: dict) -> np.ndarray:
    """Split codes of the global temporal split for rows sorted by (user, time) (module docstring).

    The boundary is ``np.quantile`` (linear) of all timestamps; the test period is strictly after it. Each test
    user's last row is its target and its other rows after the boundary are ``INPUT``. A user with a single row up
    to the boundary is no training user: that row is ``INPUT`` too (it forms no next-item pair). Validation
    users are drawn (seeded) from the training users; their rows leave training: the last one up to the
    boundary is the validation target, the others ``INPUT``.
    """
    boundary = float(np.quantile(ts, params.boundary))
    after = ts > boundary
    before = np.bincount(user[~after], minlength=int(user.max()) + 1)
    split = np.where(after | (before[user] < 2), INPUT, TRAIN).astype(np.int8)
    starts = np.flatnonzero(np.r_[True, user[1:] != user[:-1]])
    ends = np.r_[starts[1:], len(user)]
    test_users = after[ends - 1]  # rows are time-sorted per user: a user with any test-period row ends in one
    split[(ends - 1)[test_users]] = TEST
    eligible = np.flatnonzero(before >= 2)
    if len(eligible) <= params.valid_users:
        raise DataError(f"--valid-users {params.valid_users}: only {len(eligible)} users have two or more events "
                        f"up to the boundary ({params.boundary} quantile); lower --valid-users or --boundary")
    rng = np.random.default_rng(params.split_seed)
    held = np.zeros(int(user.max()) + 1, dtype=bool)
    held[np.sort(rng.choice(eligible, size=params.valid_users, replace=False))] = True
    pre = held[user] & ~after
    split[pre] = INPUT
    last_pre = starts + before[user[starts]] - 1  # each user's last row up to the boundary
    split[last_pre[held[user[starts]]]] = VALID
    if not test_users.any():
        raise DataError(f"no event after the {params.boundary} quantile of the timestamps ({boundary:.0f} ms)")
    report.update(split="temporal", boundary_timestamp_ms=int(boundary), test_users=int(test_users.sum()),
                  valid_users=int(params.valid_users), train_interactions=int((split == TRAIN).sum()),
                  test_period_interactions=int(after.sum()))
    return split


def _item_text(
    items: pd.DataFrame | None, item_ids: np.ndarray, report: dict, strict: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """Join titles (and descriptions) onto the kept items; count the ones without a title."""
    n = len(item_ids)
    if items is None:
        report["items_without_title"] = n
        return np.full(n, "", dtype=object), None
    table = items.drop_duplicates("item", keep="first").set_index("item")
    keys = pd.Index(item_ids.astype(str))
    titles = table["title"].reindex(keys) if "title" in table else pd.Series(index=keys, dtype=object)
    titles = titles.astype(object).where(titles.notna() & (titles.astype(str).str.strip() != ""), None)
    missing = int(titles.isna().sum())
    report["items_without_title"] = missing
    if missing and strict:
        first = keys[titles.isna().to_numpy()][0]
        raise DataError(f"{missing} of {n} items have no title (e.g. item '{first}'); drop --strict to allow")
    desc = None
    if "description" in table:
        d = table["description"].reindex(keys)
        desc = d.where(d.notna(), "").astype(str).to_numpy(dtype=object)
    return titles.fillna("").astype(str).to_numpy(dtype=object), desc
