"""Helpers shared by loaders: time-unit conversion and column checks with file-naming errors."""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from seqbench.errors import DataError

_UNIT_TO_MS = {"s": 1000, "ms": 1}


def to_ms(
    col: pa.ChunkedArray | pa.Array,
    unit: str,
    path: Path,
    name: str,
    where: Callable[[int], str] | None = None,
) -> pa.Array:
    """Convert a timestamp column to int64 milliseconds; name the first bad value and where it is.

    ``where(k)`` turns a 0-based row index into a location for messages (e.g. ``"line 7"``); loaders that
    know line numbers pass it, the default says ``data row k+1``.
    """
    where = where or (lambda k: f"data row {k + 1}")
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if unit == "iso":
        return _iso_to_ms(col, path, name, where)
    if unit not in _UNIT_TO_MS:
        raise DataError(f"unknown time unit '{unit}' (use s, ms or iso)")
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        text = col.to_pandas()
        arr = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64)
        bad = np.flatnonzero(np.isnan(arr) & text.notna().to_numpy())
        if len(bad):
            raise DataError(
                f"{path}: non-numeric {name} {text.iloc[bad[0]]!r} in {where(int(bad[0]))} "
                f"({len(bad)} such rows)"
            )
    elif pa.types.is_timestamp(col.type) or pa.types.is_date(col.type):
        return _iso_to_ms(col, path, name, where)
    else:
        arr = col.to_numpy(zero_copy_only=False).astype(np.float64)
    if np.isnan(arr).any():
        k = int(np.flatnonzero(np.isnan(arr))[0])
        raise DataError(f"{path}: missing {name} in {where(k)}")
    return pa.array((arr * _UNIT_TO_MS[unit]).astype(np.int64))


def _iso_to_ms(col: pa.Array, path: Path, name: str, where: Callable[[int], str]) -> pa.Array:
    """ISO 8601 text (or a timestamp/date column) to ms; times without a zone offset are taken as UTC."""
    if pa.types.is_timestamp(col.type) or pa.types.is_date(col.type):
        values = pd.Series(col.to_pandas())
        parsed = pd.to_datetime(values, utc=True)
    else:
        values = col.cast(pa.string()).to_pandas()
        parsed = pd.to_datetime(values, utc=True, format="ISO8601", errors="coerce")
    bad = np.flatnonzero(parsed.isna().to_numpy() & values.notna().to_numpy())
    if len(bad):
        raise DataError(
            f"{path}: {name} {values.iloc[bad[0]]!r} in {where(int(bad[0]))} is not an ISO date/time "
            f"({len(bad)} such rows)"
        )
    if values.isna().any():
        k = int(np.flatnonzero(values.isna().to_numpy())[0])
        raise DataError(f"{path}: missing {name} in {where(k)}")
    return pa.array(parsed.dt.as_unit("ms").astype("int64").to_numpy(), type=pa.int64())


def require_columns(names: list[str], needed: dict[str, str], path: Path) -> None:
    """``needed`` maps a column name to what it is for; raise naming the file and the columns found."""
    missing = [f"'{c}' ({why})" for c, why in needed.items() if c not in names]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; found {names}")


def check_exists(path: Path | None, what: str) -> Path:
    if path is None:
        raise DataError(f"--source is required for {what}")
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    return path


def note_malformed(report: dict, path: Path, line: int | None, reason: str, strict: bool) -> None:
    """One malformed input line: raise under --strict, else count it and keep a few examples."""
    where = f"line {line}" if line is not None else "a row"
    if strict:
        raise DataError(f"{path}: {where}: {reason}")
    report["malformed_lines"] = report.get("malformed_lines", 0) + 1
    examples = report.setdefault("malformed_examples", [])
    if len(examples) < MAX_EXAMPLES:
        examples.append(f"{path.name}:{line if line is not None else '?'}")


MAX_EXAMPLES = 5


@dataclass
class Delimited:
    """A delimited file read as string columns, with what is needed to map rows back to lines."""

    table: pa.Table
    path: Path
    header: bool
    encoding: str
    skipped_lines: list[int]  # 1-based lines dropped (wrong field count, unusable values)

    def line_of(self, row: int) -> int:
        """1-based file line of data row ``row`` (0-based); only called on the error path.

        Scans the file, skipping the header, blank lines and dropped lines (quoted newlines inside a
        field are not accounted for)."""
        skipped = set(self.skipped_lines)
        seen = -1
        with open(self.path, encoding=self.encoding, errors="replace", newline="") as f:
            for n, text in enumerate(f, 1):
                if (n == 1 and self.header) or n in skipped or not text.strip("\r\n"):
                    continue
                seen += 1
                if seen == row:
                    return n
        return row + 1 + int(self.header)

    def where(self, row: int) -> str:
        return f"line {self.line_of(row)}"

    def lines_of(self, rows: np.ndarray) -> list[int]:
        """1-based file lines of several data rows (ascending) in one scan of the file."""
        wanted = iter(sorted(int(r) for r in rows))
        target = next(wanted, None)
        skipped, seen, out = set(self.skipped_lines), -1, []
        with open(self.path, encoding=self.encoding, errors="replace", newline="") as f:
            for n, text in enumerate(f, 1):
                if target is None:
                    break
                if (n == 1 and self.header) or n in skipped or not text.strip("\r\n"):
                    continue
                seen += 1
                if seen == target:
                    out.append(n)
                    target = next(wanted, None)
        return out

    def drop_rows(self, bad: np.ndarray, reasons: list[str], report: dict) -> Delimited:
        """Skip data rows flagged in ``bad`` and count each as a malformed line (the non-strict path)."""
        rows = np.flatnonzero(bad)
        if not len(rows):
            return self
        lines = self.lines_of(rows)
        for line, reason in zip(lines, (reasons[int(r)] for r in rows), strict=False):
            note_malformed(report, self.path, line, reason, strict=False)
        table = self.table.filter(pa.array(~bad))
        return Delimited(table=table, path=self.path, header=self.header, encoding=self.encoding,
                         skipped_lines=sorted(set(self.skipped_lines) | set(lines)))


def unusable_rows(
    data: Delimited, ids: dict[str, str], time_col: str | None, unit: str
) -> tuple[np.ndarray, list[str]]:
    """Rows whose ids are empty or whose time cannot be read in ``unit`` (a mask and one reason per row),
    so non-strict loaders skip and count them like lines with a wrong field count."""
    n = data.table.num_rows
    bad = np.zeros(n, dtype=bool)
    reasons = [""] * n
    for col, what in ids.items():
        arr = data.table.column(col)
        empty = pc.or_(pc.is_null(arr), pc.equal(pc.utf8_length(arr), 0)).to_numpy(zero_copy_only=False)
        for k in np.flatnonzero(empty & ~bad):
            reasons[k] = f"empty {what}"
        bad |= empty
    if time_col is not None and unit in ("s", "ms", "iso"):
        text = data.table.column(time_col).to_pandas()
        if unit == "iso":
            unreadable = pd.to_datetime(text, utc=True, format="ISO8601", errors="coerce").isna().to_numpy()
        else:
            unreadable = np.isnan(pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64))
        for k in np.flatnonzero(unreadable & ~bad):
            reasons[k] = f"unreadable {time_col} {text.iloc[k]!r} (time unit {unit})"
        bad |= unreadable
    return bad, reasons


def header_names(path: Path, delimiter: str, encoding: str = "utf-8", quote: bool = True) -> list[str]:
    """Column names from the first line (quote-aware); an empty file is a DataError."""
    with open(path, encoding=encoding, errors="replace", newline="") as f:
        first = f.readline()
    if not first.strip("\r\n\ufeff"):
        raise DataError(f"{path}: empty file (expected a header line)")
    first = first.lstrip("\ufeff").rstrip("\r\n")
    if quote:
        return next(csv.reader([first], delimiter=delimiter))
    return first.split(delimiter)


def read_delimited(
    path: Path,
    delimiter: str,
    columns: list[str],
    needed: dict[str, str],
    strict: bool,
    report: dict,
    names: list[str] | None = None,
    encoding: str = "utf-8",
    quote: bool = True,
) -> Delimited:
    """Read ``columns`` of a CSV/TSV-like file as strings with pyarrow.

    ``names`` given means the file has no header. ``needed`` (column -> purpose) is checked against the
    header first so a missing column names the file and the columns found. Rows with the wrong number of
    fields raise with their line number under ``strict``; otherwise they are skipped and counted.
    """
    header = names is None
    if header:
        names = header_names(path, delimiter, encoding, quote)
        require_columns(names, needed, path)
    elif path.stat().st_size == 0:
        raise DataError(f"{path}: empty file")
    assert names is not None
    invalid: list[tuple[int | None, int, int]] = []

    def on_invalid(row: pcsv.InvalidRow) -> str:
        invalid.append((row.number, row.expected_columns, row.actual_columns))
        return "error" if strict else "skip"

    def read(use_threads: bool) -> pa.Table:
        invalid.clear()
        return pcsv.read_csv(
            path,
            read_options=pcsv.ReadOptions(
                column_names=None if header else names,
                encoding=encoding,
                use_threads=use_threads,
                block_size=1 << 24,
            ),
            parse_options=pcsv.ParseOptions(
                delimiter=delimiter,
                quote_char='"' if quote else False,
                invalid_row_handler=on_invalid,
            ),
            convert_options=pcsv.ConvertOptions(
                column_types={c: pa.string() for c in columns},
                include_columns=columns,
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )

    try:
        try:
            table = read(use_threads=True)
            if any(n is None for n, _, _ in invalid):  # line numbers are only known single-threaded
                table = read(use_threads=False)
        except pa.ArrowInvalid:
            if not invalid:
                raise
            table = read(use_threads=False)  # raises again, now with the line number recorded
    except pa.ArrowInvalid as e:
        if invalid:
            n, exp, got = invalid[0]
            raise DataError(
                f"{path}: line {n if n is not None else '?'}: expected {exp} fields, got {got} "
                f"(separator {delimiter!r})"
            ) from e
        raise DataError(f"{path}: cannot parse as delimited text ({e})") from e
    skipped = sorted(n for n, _, _ in invalid if n is not None)
    for n, exp, got in invalid:
        note_malformed(report, path, n, f"expected {exp} fields, got {got}", strict=False)
    return Delimited(table=table, path=path, header=header, encoding=encoding, skipped_lines=skipped)


def require_ids(data: Delimited, cols: dict[str, str]) -> None:
    """Empty user/item ids are unusable: name the first offending line."""
    for col, what in cols.items():
        arr = data.table.column(col)
        empty = pc.or_(pc.is_null(arr), pc.equal(pc.utf8_length(arr), 0))
        if pc.any(empty).as_py():
            k = int(np.flatnonzero(empty.to_numpy(zero_copy_only=False))[0])
            raise DataError(f"{data.path}: empty {what} in {data.where(k)}")
