"""Raw GroupLens MovieLens releases: ml-100k (u.data), ml-1m (ratings.dat), ml-latest (ratings.csv).

``--source`` is the release folder or its ratings file. Timestamps are seconds in every release. Item titles
come from the release's movie file (``u.item``, ``movies.dat`` or ``movies.csv``) when it is present.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa

from seqbench.data.raw import RawData
from seqbench.data.sources.common import check_exists, note_malformed, read_delimited, require_ids, to_ms
from seqbench.data.sources.options import SourceOptions
from seqbench.errors import DataError


@dataclass(frozen=True)
class _Release:
    name: str
    ratings: str
    movies: str


# Checked in this order when --source is a folder.
RELEASES = (
    _Release("ml-100k", "u.data", "u.item"),
    _Release("ml-1m", "ratings.dat", "movies.dat"),
    _Release("ml-latest", "ratings.csv", "movies.csv"),
)


def _detect(path: Path) -> tuple[_Release, Path]:
    """Pick the release layout from the folder's files (or the ratings file's name)."""
    if path.is_file():
        for rel in RELEASES:
            if path.name == rel.ratings:
                return rel, path
        raise DataError(
            f"{path}: not a MovieLens ratings file (expected one of {[r.ratings for r in RELEASES]}); "
            "use --kind csv for other tables"
        )
    for rel in RELEASES:
        if (path / rel.ratings).is_file():
            return rel, path / rel.ratings
    raise DataError(
        f"{path}: no MovieLens ratings file here (looked for {[r.ratings for r in RELEASES]})"
    )


def _read_ratings(rel: _Release, path: Path, opts: SourceOptions, report: dict) -> pa.Table:
    """Ratings as a (user, item, timestamp ms) table; wrong field counts follow the strict policy."""
    if rel.name == "ml-100k":
        data = read_delimited(path, "\t", ["u", "i", "t"], {}, opts.strict, report,
                              names=["u", "i", "r", "t"], encoding="latin-1", quote=False)
    elif rel.name == "ml-1m":
        # '::' separated; splitting on ':' leaves empty fields between the values (ids never hold ':').
        data = read_delimited(path, ":", ["u", "i", "t"], {}, opts.strict, report,
                              names=["u", "_1", "i", "_2", "r", "_3", "t"], encoding="latin-1", quote=False)
    else:
        needed = {"userId": "user id", "movieId": "item id", "timestamp": "time (seconds)"}
        data = read_delimited(path, ",", list(needed), needed, opts.strict, report)
        data.table = data.table.rename_columns({"userId": "u", "movieId": "i", "timestamp": "t"})
    if data.table.num_rows == 0:
        raise DataError(f"{path}: no ratings in this file")
    require_ids(data, {"u": "user id", "i": "movie id"})
    ts = to_ms(data.table.column("t"), "s", path, "timestamp", where=data.where)
    return pa.table({"user": data.table.column("u"), "item": data.table.column("i"), "timestamp": ts})


def _read_movies(rel: _Release, path: Path, opts: SourceOptions, report: dict) -> pd.DataFrame:
    """Movie id and title; small files, so plain Python parsing is fine here."""
    ids: list[str] = []
    titles: list[str | None] = []
    if rel.name == "ml-latest":
        data = read_delimited(path, ",", ["movieId", "title"], {"movieId": "item id", "title": "title"},
                              opts.strict, report)
        return pd.DataFrame({"item": data.table.column("movieId").to_pandas(),
                             "title": data.table.column("title").to_pandas()})
    sep = "|" if rel.name == "ml-100k" else "::"
    with open(path, encoding="latin-1", newline="") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line:
                continue
            fields = line.split(sep)
            if len(fields) < 2 or not fields[0]:
                note_malformed(report, path, n, f"expected at least 2 {sep!r}-separated fields", opts.strict)
                continue
            ids.append(fields[0])
            # movies.dat is id::title::genres; a title could only hold '::' if genres follow it.
            title = sep.join(fields[1:-1]) if rel.name == "ml-1m" and len(fields) > 3 else fields[1]
            titles.append(title or None)
    return pd.DataFrame({"item": ids, "title": titles}, dtype=object)


def load(path: Path | None, opts: SourceOptions) -> RawData:
    path = check_exists(path, "movielens")
    rel, ratings = _detect(path)
    report: dict = {}
    interactions = _read_ratings(rel, ratings, opts, report)
    movies_path = Path(opts.meta) if opts.meta else ratings.parent / rel.movies
    items = None
    if movies_path.is_file():
        items = _read_movies(rel, movies_path, opts, report)
    elif opts.meta:
        raise DataError(f"{movies_path}: no such file (--meta)")
    else:
        report["meta_file_missing"] = 1
    source = {
        "kind": "movielens",
        "release": rel.name,
        "path": str(ratings.resolve()),
        "item_path": str(movies_path.resolve()) if items is not None else None,
    }
    return RawData(interactions=interactions, items=items, source=source, report=report)

