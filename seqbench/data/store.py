"""Prepared datasets on disk: one folder per dataset under the data home, written atomically."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from seqbench import __version__
from seqbench.atomic import umask_mode
from seqbench.data.dataset import STAGE_CODES, SeqDataset
from seqbench.data.negatives import (
    CANDIDATE_SETS,
    TITLE_SUFFIX,
    TitleCandidatesError,
    repeated_title_rows,
    sample_candidates,
)
from seqbench.data.preprocess import Prepared, PrepareParams
from seqbench.data.titles import title_keys
from seqbench.errors import DataError, UnknownNameError

FORMAT_VERSION = 1
FILES = ("interactions.parquet", "items.parquet", "users.parquet", "candidates.parquet", "meta.json")
# meta["title_candidates"] of a dataset whose *_title sets list 20 different normalised titles per row; a
# dataset that could not get them says "none: <why>" instead and has no *_title sets. Datasets prepared
# before the rule have no such entry: their title sets are checked when loaded.
TITLE_RULE = "distinct normalised titles"


class CandidateSets(dict):
    """The persisted candidate matrices by name; a set the dataset lacks raises a :class:`DataError` that says
    why (e.g. the title-generation sets of a catalogue without enough distinct titles)."""

    def __init__(self, sets: dict[str, np.ndarray], missing: dict[str, str] | None = None):
        super().__init__(sets)
        self.missing = dict(missing or {})

    def __missing__(self, key: str) -> np.ndarray:
        if key in self.missing:
            raise DataError(f"no '{key}' candidates: {self.missing[key]}")
        raise KeyError(key)


def data_home(override: str | Path | None = None) -> Path:
    """--data-home, else $SEQBENCH_DATA_HOME, else ~/.seqbench/data."""
    if override:
        return Path(override).expanduser()
    env = os.environ.get("SEQBENCH_DATA_HOME")
    return Path(env).expanduser() if env else Path.home() / ".seqbench" / "data"


def list_datasets(home: Path) -> list[str]:
    if not home.is_dir():
        return []
    return sorted(p.name for p in home.iterdir() if (p / "meta.json").is_file())


def dataset_path(name: str, home: Path) -> Path:
    path = home / name
    if not (path / "meta.json").is_file():
        raise UnknownNameError("dataset", name, list_datasets(home))
    return path


def remove_dataset(name: str, home: Path) -> Path:
    """Delete a prepared dataset; it is first renamed out of sight, so it never stays half-deleted."""
    path = dataset_path(name, home)
    trash = home / f".{name}.rm.{os.getpid()}"
    path.rename(trash)
    shutil.rmtree(trash)
    return path


def content_hash(arrays: list[np.ndarray]) -> str:
    """sha256 over the arrays that define the protocol (interactions, split, candidates)."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str(a.dtype).encode() + str(a.shape).encode())
        h.update(a)  # the buffer itself: same bytes as a.tobytes(), without the copy
    return h.hexdigest()


def write_dataset(
    prep: Prepared, params: PrepareParams, name: str, home: Path, source: dict, overwrite: bool = False,
    extra_meta: dict | None = None,
) -> Path:
    """Sample candidates, write every table into a temp folder, then rename it into place."""
    target = home / name
    if target.exists() and not overwrite:
        raise DataError(f"dataset '{name}' already exists at {target}; pass --overwrite to replace it")
    sizes = {"valid": params.n_neg, "test": params.n_neg,
             "valid_title": params.n_neg_title, "test_title": params.n_neg_title}
    home_existed = home.exists()
    home.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=home))
    tmp.chmod(umask_mode(folder=True))  # mkdtemp makes it 0700; a dataset folder is shared like any other folder
    n_users = len(prep.user_ids)
    try:
        # The plain tables do not depend on the candidates: a thread writes them (pyarrow releases the
        # GIL) while the candidates are drawn; later the hash runs beside the candidates' write.
        with ThreadPoolExecutor(max_workers=1) as pool:
            tables = pool.submit(_write_tables, prep, tmp)
            try:
                cands, title_note = _candidates(prep, params, sizes)
            except BaseException:
                wait([tables])
                raise
            tables.result()
            hashed = pool.submit(
                content_hash, [prep.user, prep.item, prep.timestamp, prep.split, *cands.values()]
            )
            cand_cols = {"user": np.arange(1, n_users + 1, dtype=np.int32)}
            for key, mat in cands.items():
                # one row per user; a user without a target in this stage (temporal split) has a row of zeros
                stage = STAGE_CODES["valid" if key.startswith("valid") else "test"]
                full = np.zeros((n_users, mat.shape[1]), dtype=np.int32)
                full[prep.user[prep.split == stage] - 1] = mat
                flat = pa.array(full.reshape(-1), type=pa.int32())
                cand_cols[key] = pa.FixedSizeListArray.from_arrays(flat, mat.shape[1])
            # Random item ids: dictionary pages cost twice the write time for little gain; zstd gets most
            # of the size back.
            pq.write_table(pa.table(cand_cols), tmp / "candidates.parquet", use_dictionary=False,
                           compression="zstd")
            digest = hashed.result()
        meta = {
            "name": name,
            "format_version": FORMAT_VERSION,
            "seqbench_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "source": source,
            "params": params.as_dict(),
            "counts": {k: v for k, v in prep.report.items()},
            "timestamp_unit": "ms",
            "candidates": {k: int(v.shape[1]) for k, v in cands.items()},
            "title_candidates": title_note,
            "content_hash": digest,
            **(extra_meta or {}),
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, default=_jsonable))
        if target.exists():
            old = home / f".{name}.old.{os.getpid()}"
            target.rename(old)
            tmp.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if not home_existed:  # leave no trace of a failed prepare, the data home included
            with contextlib.suppress(OSError):
                home.rmdir()
        raise
    return target


def _candidates(prep: Prepared, params: PrepareParams, sizes: dict) -> tuple[dict[str, np.ndarray], str]:
    """The candidate sets and meta["title_candidates"]. The title sets list distinct normalised titles; when
    the catalogue cannot give every user that, they are left out (retrieval needs no titles) and the note says
    why, which is what `seqbench run --task generation` then reports."""
    n_items = len(prep.item_ids)
    keys = title_keys(np.concatenate([np.array([""], dtype=object), np.asarray(prep.titles, dtype=object)]))
    try:
        cands = sample_candidates(prep.user, prep.item, prep.split, n_items, params.neg_seed, sizes, keys,
                                  prep.report)
        return cands, TITLE_RULE
    except TitleCandidatesError as e:
        retrieval = {k: v for k, v in sizes.items() if not k.endswith(TITLE_SUFFIX)}
        # the retrieval sets are drawn first from the same generator: identical to the ones drawn above
        cands = sample_candidates(prep.user, prep.item, prep.split, n_items, params.neg_seed, retrieval)
        prep.report["title_candidates"] = f"none ({e})"
        return cands, f"none: {e}"


def _write_tables(prep: Prepared, tmp: Path) -> None:
    """interactions, items and users parquet files (everything but the candidates)."""
    inter = pa.table({"user": prep.user, "item": prep.item, "timestamp": prep.timestamp, "split": prep.split})
    pq.write_table(inter, tmp / "interactions.parquet")
    n_items = len(prep.item_ids)
    items = {"item": np.arange(1, n_items + 1, dtype=np.int32),
             "item_id": prep.item_ids.astype(str), "title": prep.titles.astype(str)}
    if prep.descriptions is not None:
        items["description"] = prep.descriptions.astype(str)
    pq.write_table(pa.table(items), tmp / "items.parquet")
    n_users = len(prep.user_ids)
    pq.write_table(pa.table({"user": np.arange(1, n_users + 1, dtype=np.int32),
                             "user_id": prep.user_ids.astype(str)}), tmp / "users.parquet")


def _jsonable(x):
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.floating):
        return float(x)
    return str(x)


def load_dataset(name: str, home: Path) -> SeqDataset:
    path = dataset_path(name, home)
    meta = json.loads((path / "meta.json").read_text())
    if meta.get("format_version") != FORMAT_VERSION:
        raise DataError(f"{path}: dataset format {meta.get('format_version')} is not {FORMAT_VERSION}; "
                        "prepare it again")
    inter = pq.read_table(path / "interactions.parquet")
    items = pq.read_table(path / "items.parquet").to_pandas()
    cands = pq.read_table(path / "candidates.parquet")
    candidates = {}
    for key in CANDIDATE_SETS:
        if key in cands.column_names:
            col = cands.column(key).combine_chunks()
            mat = col.flatten().to_numpy().reshape(len(col), -1).astype(np.int64)
            candidates[key] = mat[mat[:, 0] != 0]  # users with a target in this stage (all: leave-last-out)
    titles = np.concatenate([[""], items["title"].to_numpy(dtype=object)])
    candidates = CandidateSets(candidates, _missing_title_sets(meta, candidates, titles))
    for key in candidates.missing:
        candidates.pop(key, None)
    desc = None
    if "description" in items:
        desc = np.concatenate([[""], items["description"].to_numpy(dtype=object)])
    return SeqDataset(
        name=name,
        meta=meta,
        user=inter.column("user").to_numpy().astype(np.int64),
        item=inter.column("item").to_numpy().astype(np.int64),
        timestamp=inter.column("timestamp").to_numpy().astype(np.int64),
        split=inter.column("split").to_numpy().astype(np.int8),
        titles=titles,
        descriptions=desc,
        item_ids=np.concatenate([[""], items["item_id"].to_numpy(dtype=object)]),
        candidates=candidates,
    )


def _missing_title_sets(meta: dict, candidates: dict[str, np.ndarray], titles: np.ndarray) -> dict[str, str]:
    """Title sets a loaded dataset must not offer, with the reason: none were built, or they come from a
    version that let two candidates of a row share a normalised title (checked here, as such datasets carry no
    ``title_candidates`` entry)."""
    names = [k for k in CANDIDATE_SETS if k.endswith(TITLE_SUFFIX)]
    note = meta.get("title_candidates")
    if isinstance(note, str) and note.startswith("none"):
        return dict.fromkeys(names, f"dataset '{meta.get('name')}' has no title-generation candidates ({note})")
    if note is not None:
        return {}
    keys = title_keys(titles)
    stale = {k: repeated_title_rows(candidates[k], keys) for k in names if k in candidates}
    if not any(stale.values()):
        return {}
    detail = ", ".join(f"{k}: {n} of {len(candidates[k])} rows" for k, n in stale.items() if n)
    reason = (f"dataset '{meta.get('name')}' was prepared by an older seqbench whose title candidates could repeat a "
              f"normalised title within a row ({detail}), which makes any answer naming it invalid; prepare it "
              "again (its interactions, split and retrieval candidates stay the same; the title sets and so the "
              "content hash change)")
    return dict.fromkeys(names, reason)
