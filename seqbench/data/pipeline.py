"""One call from a source on disk to a prepared dataset folder (used by the CLI and the benchmarks)."""

from __future__ import annotations

from pathlib import Path

from seqbench.data.preprocess import PrepareParams, prepare
from seqbench.data.sources import get_loader
from seqbench.data.sources.options import SourceOptions
from seqbench.data.store import write_dataset


def prepare_source(
    kind: str,
    source: Path | None,
    name: str,
    home: Path,
    params: PrepareParams | None = None,
    opts: SourceOptions | None = None,
    overwrite: bool = False,
    extra_meta: dict | None = None,
) -> tuple[Path, dict]:
    """Load, preprocess, sample candidates and write ``home/name``; returns the path and the report."""
    params = params or PrepareParams()
    opts = opts or SourceOptions()
    raw = get_loader(kind)(source, opts)
    prep = prepare(raw, params, strict=opts.strict)
    path = write_dataset(prep, params, name, home, raw.source, overwrite=overwrite, extra_meta=extra_meta)
    return path, prep.report
