"""Options a loader may read; the CLI fills them from `seqbench data prepare` flags."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class SourceOptions:
    strict: bool = False  # fail on the first malformed line instead of skipping and counting it
    meta: Path | None = None  # item metadata file (amazon2023 5-core CSV, csv items table)
    # generic csv/tsv/parquet
    user_col: str = "user_id"
    item_col: str = "item_id"
    time_col: str = "timestamp"
    title_col: str = "title"
    description_col: str | None = None
    item_key_col: str | None = None  # item id column of the items table (defaults to item_col)
    sep: str | None = None  # None: ',' for .csv, '\t' for .tsv/.txt
    time_unit: str = "s"  # s | ms | iso (for csv); recbole assumes s
    # synthetic
    users: int = 2000
    items: int = 400
    order: float = 0.0
    seed: int = 0
    min_len: int = 12
    max_len: int = 40
