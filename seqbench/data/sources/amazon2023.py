"""Placeholder: implemented in the loaders work item."""

from __future__ import annotations

from pathlib import Path

from seqbench.data.raw import RawData
from seqbench.data.sources.options import SourceOptions


def load(path: Path | None, opts: SourceOptions) -> RawData:
    raise NotImplementedError("amazon2023 loader")
