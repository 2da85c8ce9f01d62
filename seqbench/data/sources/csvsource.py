"""A generic interactions table (CSV, TSV or Parquet) plus an optional items table (``--meta``).

Column names come from the options (``user_col``, ``item_col``, ``time_col``; ``title_col``,
``description_col`` and ``item_key_col`` for the items table) so any export can be read without
converting it first. Text columns are read as strings so a bad value can be shown as written.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from seqbench.data.raw import RawData, skipped_note
from seqbench.data.sources.common import (
    check_exists,
    read_delimited,
    require_columns,
    require_ids,
    to_ms,
    unusable_rows,
)
from seqbench.data.sources.options import SourceOptions
from seqbench.errors import DataError

PARQUET_SUFFIXES = (".parquet", ".pq")
SEPARATORS = {".csv": ",", ".tsv": "\t", ".txt": "\t"}


def _separator(path: Path, sep: str | None) -> str:
    if sep:
        return "\t" if sep in ("\\t", "tab") else sep
    suffix = path.suffix.lower()
    if suffix not in SEPARATORS:
        raise DataError(f"{path}: cannot tell the separator from the extension '{suffix}'; pass --sep")
    return SEPARATORS[suffix]


def _read_parquet(path: Path, needed: dict[str, str]) -> pa.Table:
    try:
        names = pq.read_schema(path).names
    except (pa.ArrowInvalid, OSError) as e:
        raise DataError(f"{path}: not a readable Parquet file ({e})") from e
    require_columns(names, needed, path)
    return pq.read_table(path, columns=list(needed))


def _as_string(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """Ids may be stored as integers in Parquet; seqbench keys everything by string."""
    return col if pa.types.is_string(col.type) else pc.cast(col, pa.string())


def _read_table(path: Path, needed: dict[str, str], opts: SourceOptions, report: dict):
    """(string-or-typed table, row -> location function) for a CSV/TSV/Parquet file."""
    if path.suffix.lower() in PARQUET_SUFFIXES:
        tab = _read_parquet(path, needed)
        return tab, (lambda k: f"row {k + 1}")
    data = read_delimited(path, _separator(path, opts.sep), list(needed), needed, opts.strict, report)
    return data, data.where


def _interactions(path: Path, opts: SourceOptions, report: dict) -> pa.Table:
    u, i, t = opts.user_col, opts.item_col, opts.time_col
    needed = {u: "user id (--user-col)", i: "item id (--item-col)", t: "time (--time-col)"}
    if len({u, i, t}) < 3:
        raise DataError(f"user, item and time columns must differ; got {u!r}, {i!r}, {t!r}")
    got, where = _read_table(path, needed, opts, report)
    if isinstance(got, pa.Table):
        tab = got
        for col, what in ((u, "user id"), (i, "item id")):
            if tab.column(col).null_count:
                k = int(pc.index(pc.is_null(tab.column(col)), True).as_py())
                raise DataError(f"{path}: empty {what} in {where(k)}")
    else:
        ids = {u: f"user id ('{u}')", i: f"item id ('{i}')"}
        if not opts.strict:  # skip and count rows with empty ids or unreadable times, as malformed lines
            got = got.drop_rows(*unusable_rows(got, ids, t, opts.time_unit), report)
            where = got.where
        require_ids(got, ids)
        tab = got.table
    if tab.num_rows == 0:
        raise DataError(f"{path}: no interactions in this file{skipped_note(report)}")
    ts = to_ms(tab.column(t), opts.time_unit, path, f"'{t}'", where=where)
    return pa.table({"user": _as_string(tab.column(u)), "item": _as_string(tab.column(i)), "timestamp": ts})


def _items(path: Path, opts: SourceOptions, report: dict) -> pd.DataFrame:
    key = opts.item_key_col or opts.item_col
    needed = {key: "item id (--item-key-col)", opts.title_col: "title (--title-col)"}
    if opts.description_col:
        needed[opts.description_col] = "description (--description-col)"
    got, _ = _read_table(path, needed, opts, report)
    tab = got if isinstance(got, pa.Table) else got.table
    out = {"item": _as_string(tab.column(key)).to_pandas(), "title": tab.column(opts.title_col).to_pandas()}
    if opts.description_col:
        out["description"] = _as_string(tab.column(opts.description_col)).to_pandas()
    return pd.DataFrame(out)


def load(path: Path | None, opts: SourceOptions) -> RawData:
    path = check_exists(path, "csv")
    if path.is_dir():
        raise DataError(f"{path}: is a folder; pass the interactions file (CSV, TSV, Parquet) with --source")
    report: dict = {}
    interactions = _interactions(path, opts, report)
    items = None
    if opts.meta:
        meta = Path(opts.meta)
        if not meta.is_file():
            raise DataError(f"{meta}: no such items file (--meta)")
        item_report: dict = {}
        items = _items(meta, opts, item_report)
        if item_report.get("malformed_lines"):
            report["meta_malformed_lines"] = item_report["malformed_lines"]
    source = {
        "kind": "csv",
        "path": str(path.resolve()),
        "item_path": str(Path(opts.meta).resolve()) if opts.meta else None,
        "columns": {"user": opts.user_col, "item": opts.item_col, "time": opts.time_col},
        "time_unit": opts.time_unit,
    }
    return RawData(interactions=interactions, items=items, source=source, report=report)
