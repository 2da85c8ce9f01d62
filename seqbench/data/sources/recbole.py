"""RecBole atomic files: ``NAME.inter`` (+ optional ``NAME.item``), tab-separated, ``field:type`` headers."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pcsv

from seqbench.data.raw import RawData
from seqbench.data.sources.common import check_exists, to_ms
from seqbench.data.sources.options import SourceOptions
from seqbench.errors import DataError

USER_FIELDS = ("user_id", "user", "session_id")
ITEM_FIELDS = ("item_id", "item", "parent_asin", "business_id")
TIME_FIELDS = ("timestamp", "time")
TITLE_FIELDS = ("title", "movie_title", "item_title", "name", "book_title")
DESC_FIELDS = ("description", "desc", "overview")


def _find_files(path: Path) -> tuple[Path, Path | None]:
    if path.is_file():
        inter = path
    else:
        found = sorted(path.glob("*.inter"))
        if not found:
            raise DataError(f"{path}: no .inter file in this folder (RecBole atomic format)")
        if len(found) > 1:
            raise DataError(f"{path}: several .inter files ({[f.name for f in found]}); pass one with --source")
        inter = found[0]
    item = inter.with_suffix(".item")
    return inter, item if item.exists() else None


def _read_atomic(path: Path) -> tuple[pa.Table, dict[str, str]]:
    """Read an atomic file as all-string columns; returns the table (columns = bare field names)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        header = f.readline().rstrip("\n\r")
    if not header:
        raise DataError(f"{path}: empty file (expected a 'field:type' header line)")
    fields = header.split("\t")
    names, types = [], {}
    for col, h in enumerate(fields, 1):
        if ":" not in h:
            raise DataError(f"{path}: line 1, column {col}: header '{h}' is not 'name:type' (RecBole atomic)")
        name, typ = h.rsplit(":", 1)
        names.append(name)
        types[name] = typ
    bad_rows: list[str] = []

    def on_invalid(row: pcsv.InvalidRow) -> str:
        bad_rows.append(f"line {row.number or '?'}: expected {row.expected_columns} fields, got {row.actual_columns}")
        return "error"

    try:
        tab = pcsv.read_csv(
            path,
            read_options=pcsv.ReadOptions(column_names=names, skip_rows=1),
            parse_options=pcsv.ParseOptions(delimiter="\t", quote_char=False, invalid_row_handler=on_invalid),
            convert_options=pcsv.ConvertOptions(column_types={n: pa.string() for n in names}),
        )
    except pa.ArrowInvalid as e:
        where = bad_rows[0] if bad_rows else str(e)
        raise DataError(f"{path}: malformed row ({where})") from e
    return tab, types


def _pick(names: list[str], candidates: tuple[str, ...], path: Path, what: str, required: bool = True):
    for c in candidates:
        if c in names:
            return c
    if required:
        raise DataError(f"{path}: no {what} column (looked for {list(candidates)}); found {names}")
    return None


def load(path: Path | None, opts: SourceOptions) -> RawData:
    path = check_exists(path, "recbole")
    inter_path, item_path = _find_files(path)
    tab, _ = _read_atomic(inter_path)
    names = tab.column_names
    u = _pick(names, USER_FIELDS, inter_path, "user")
    i = _pick(names, ITEM_FIELDS, inter_path, "item")
    t = _pick(names, TIME_FIELDS, inter_path, "timestamp")
    for col, what in ((u, "user id"), (i, "item id")):
        if tab.column(col).null_count:
            raise DataError(f"{inter_path}: empty {what} in some rows")
    ts = to_ms(tab.column(t), "s" if opts.time_unit == "s" else opts.time_unit, inter_path, t)
    interactions = pa.table({"user": tab.column(u), "item": tab.column(i), "timestamp": ts})
    items = None
    if item_path is not None:
        itab, _ = _read_atomic(item_path)
        inames = itab.column_names
        key = _pick(inames, ITEM_FIELDS, item_path, "item")
        title = _pick(inames, TITLE_FIELDS, item_path, "title", required=False)
        desc = _pick(inames, DESC_FIELDS, item_path, "description", required=False)
        cols = {"item": itab.column(key).to_pandas()}
        cols["title"] = itab.column(title).to_pandas() if title else pd.Series([None] * itab.num_rows)
        if desc:
            cols["description"] = itab.column(desc).to_pandas()
        items = pd.DataFrame(cols)
    source = {"kind": "recbole", "path": str(inter_path.resolve()),
              "item_path": str(item_path.resolve()) if item_path else None}
    return RawData(interactions=interactions, items=items, source=source)
