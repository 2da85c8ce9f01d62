"""The contract between source loaders and preprocessing."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
import pyarrow as pa


@dataclass
class RawData:
    """What a loader returns: raw interactions in file order plus an optional item table.

    ``interactions`` is a pyarrow table with columns ``user`` (string), ``item`` (string) and
    ``timestamp`` (int64, **milliseconds** since the epoch, UTC). Row order is file order, which the
    stable time sort uses to break ties. ``items`` has columns ``item`` (string), ``title`` (string or
    null) and optionally ``description``. ``report`` carries counters worth showing the user (e.g.
    malformed lines skipped); ``source`` describes where the data came from for meta.json.
    """

    interactions: pa.Table
    items: pd.DataFrame | None = None
    source: dict = field(default_factory=dict)
    report: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        expected = {"user", "item", "timestamp"}
        missing = expected - set(self.interactions.column_names)
        if missing:  # a loader bug, not user input: loaders raise DataError for user input first
            raise ValueError(f"loader returned interactions without columns {sorted(missing)}")


def skipped_note(report: dict, lead: str = "; ") -> str:
    """``lead`` + how many malformed lines a loader skipped (with examples), or "" when none: errors about
    empty or filtered-away data must still say what was skipped on the way."""
    n = report.get("malformed_lines", 0)
    if not n:
        return ""
    examples = ", ".join(report.get("malformed_examples", []))
    return f"{lead}{n:,} malformed line{'s' if n != 1 else ''} skipped" + (f" (e.g. {examples})" if examples else "")
