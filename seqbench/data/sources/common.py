"""Helpers shared by loaders: time-unit conversion and column checks with file-naming errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from seqbench.errors import DataError

_UNIT_TO_MS = {"s": 1000, "ms": 1}


def to_ms(col: pa.ChunkedArray | pa.Array, unit: str, path: Path, name: str) -> pa.Array:
    """Convert a timestamp column to int64 milliseconds; name the first bad value and its data row."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if unit == "iso":
        try:
            parsed = pc.cast(col.cast(pa.string()), pa.timestamp("ms", tz="UTC"))
        except pa.ArrowInvalid as e:
            raise DataError(f"{path}: column '{name}' has a value that is not an ISO date/time ({e})") from e
        return pc.cast(parsed, pa.int64())
    if unit not in _UNIT_TO_MS:
        raise DataError(f"unknown time unit '{unit}' (use s, ms or iso)")
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        text = col.to_pandas()
        arr = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64)
        bad = np.flatnonzero(np.isnan(arr) & text.notna().to_numpy())
        if len(bad):
            raise DataError(
                f"{path}: non-numeric {name} {text.iloc[bad[0]]!r} in data row {bad[0] + 1} "
                f"({len(bad)} such rows)"
            )
    else:
        arr = col.to_numpy(zero_copy_only=False).astype(np.float64)
    if np.isnan(arr).any():
        k = int(np.flatnonzero(np.isnan(arr))[0])
        raise DataError(f"{path}: missing {name} in data row {k + 1}")
    return pa.array((arr * _UNIT_TO_MS[unit]).astype(np.int64))


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
