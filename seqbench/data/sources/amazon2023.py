"""Amazon Reviews 2023: raw review files (``<Cat>.jsonl[.gz]``) and the 5-core benchmark CSVs.

Raw review files run to tens of millions of lines with long review text, so they are never turned into
one Python object per row: the file is read in blocks of a few tens of MB cut on newline boundaries, and
each block is parsed by pyarrow's JSON reader with an explicit schema holding only the fields we keep.
Only a block that pyarrow rejects (or that has rows missing a field) is re-parsed line by line with
``json`` to find, report and skip the bad lines, so one broken line costs one block's worth of slow
parsing, not the file's.

Items are identified by ``parent_asin``; titles (and the first description paragraph) come from the meta
file ``meta_<Cat>.jsonl[.gz]``, joined on ``parent_asin``.
"""

from __future__ import annotations

import gzip
import json
import queue
import threading
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from seqbench.data.raw import RawData
from seqbench.data.sources.common import (
    check_exists,
    note_malformed,
    read_delimited,
    require_ids,
    to_ms,
    unusable_rows,
)
from seqbench.data.sources.options import SourceOptions
from seqbench.errors import DataError

BLOCK_BYTES = 16 << 20  # bytes handed to pyarrow per call
POOL = 5  # reused block buffers: > prefetch queue (2) + the block being parsed + the one being read
PARSE_BLOCK = 2 << 20  # pyarrow's own block size inside a call (its unit of parallelism)
SPLITS = ("train", "valid", "test")

REVIEW_SCHEMA = pa.schema([("user_id", pa.string()), ("parent_asin", pa.string()), ("timestamp", pa.int64())])
META_SCHEMA = pa.schema(
    [("parent_asin", pa.string()), ("title", pa.string()), ("description", pa.list_(pa.string()))]
)
CSV_NEEDED = {"user_id": "user id", "parent_asin": "item id", "timestamp": "time (ms)"}


# ----------------------------------------------------------------------------------------------------
# Block reading


def _open_bytes(path: Path):
    """Binary stream of the file's content, gunzipped when it starts with the gzip magic bytes."""
    with open(path, "rb") as f:
        magic = f.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


def _fill(f, view: memoryview) -> int:
    """readinto until ``view`` is full or the stream ends (gzip streams return short reads)."""
    got = 0
    while got < len(view):
        n = f.readinto(view[got:])
        if not n:
            break
        got += n
    return got


def _count_newlines(block: memoryview, scratch: np.ndarray) -> int:
    """Newlines in ``block``, vectorised in slices so no block-sized temporary is allocated
    (numpy releases the GIL here, unlike ``bytes.count``)."""
    arr = np.frombuffer(block, dtype=np.uint8)
    step = len(scratch)
    return sum(
        int(np.count_nonzero(np.equal(arr[s : s + step], 10, out=scratch[: len(arr[s : s + step])])))
        for s in range(0, len(arr), step)
    )


def _line_blocks(path: Path) -> Iterator[tuple[memoryview, int, int]]:
    """Yield (block, number of its first line, newlines in it); all blocks but the last end on a newline.

    Blocks are views into a small pool of reused buffers (no fresh block-sized allocation, hence no
    page-fault churn); a view is valid until POOL more blocks have been read, and the prefetch queue is
    shorter than that. pyarrow copies what it parses, so parsed tables never point into the pool.
    """
    pool = [bytearray(BLOCK_BYTES) for _ in range(POOL)]
    scratch = np.empty(1 << 20, dtype=bool)
    slot, line, rest = 0, 1, b""
    with _open_bytes(path) as f:
        while True:
            buf = pool[slot]
            r = len(rest)
            buf[:r] = rest
            end = r + _fill(f, memoryview(buf)[r:])
            if end == 0:
                return
            if end < len(buf):  # end of stream: the rest is the last block
                cut = end
            else:
                cut = buf.rfind(b"\n", 0, end) + 1
                if cut == 0:  # a line longer than the buffer: grow this slot and read on
                    rest = bytes(buf[:end])
                    pool[slot] = bytearray(2 * len(buf))
                    continue
            rest = bytes(buf[cut:end])
            start = 3 if line == 1 and buf[:3] == b"\xef\xbb\xbf" else 0  # UTF-8 byte-order mark
            block = memoryview(buf)[start:cut]
            newlines = _count_newlines(block, scratch)
            yield block, line, newlines
            line += newlines
            slot = (slot + 1) % POOL
            if cut == end and end < len(buf):
                return


Block = tuple[memoryview, int, int]


def _prefetched(blocks: Iterator[Block], path: Path) -> Iterator[Block]:
    """Read (and gunzip) the next blocks in a thread while the caller parses: file I/O and zlib release
    the GIL, so this overlaps with pyarrow's parsing."""
    q: queue.Queue = queue.Queue(maxsize=2)
    done = object()
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in blocks:
                if not put(item):
                    return
            put(done)
        except BaseException as e:  # handed to the consumer, which re-raises it
            put(e)
        finally:
            close = getattr(blocks, "close", None)
            if close is not None:
                close()

    t = threading.Thread(target=work, name=f"read-{path.name}", daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                if isinstance(item, (EOFError, gzip.BadGzipFile, zlib.error)):
                    raise DataError(f"{path}: damaged or truncated gzip file ({item})") from item
                raise item
            yield item
    finally:
        stop.set()
        t.join()


def _arrow_parse(block: memoryview, schema: pa.Schema) -> pa.Table | None:
    """pyarrow's parse of one block restricted to ``schema``; None when pyarrow rejects the block."""
    parse = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    for size in (PARSE_BLOCK, len(block) + 1):  # a second try for lines longer than PARSE_BLOCK
        try:
            return pj.read_json(
                pa.BufferReader(pa.py_buffer(block)),
                read_options=pj.ReadOptions(block_size=size, use_threads=True),
                parse_options=parse,
            ).select(schema.names)
        except pa.ArrowInvalid as e:
            if "straddl" not in str(e) or size > len(block):
                return None
    return None


def _read_jsonl(
    path: Path,
    schema: pa.Schema,
    required: tuple[str, ...],
    parse_line: Callable[[dict], tuple | str],
    opts: SourceOptions,
    report: dict,
    reduce: Callable[[pa.Table], pa.Table] | None = None,
) -> tuple[list[pa.Table], int]:
    """Parse a JSON-lines file block by block; returns the per-block tables and the line count.

    A block pyarrow rejects, or whose rows miss a ``required`` field, is re-parsed with ``parse_line``
    (a dict -> tuple of values in schema order, or a reason string for a malformed line). ``reduce`` is
    applied to every block (e.g. to drop columns early and keep memory flat).
    """
    tables: list[pa.Table] = []
    n_lines = 0
    for block, first, newlines in _prefetched(_line_blocks(path), path):
        if not len(block):
            continue
        tab = _arrow_parse(block, schema)
        if tab is None or not _complete(tab, required):
            tab = _parse_lines(bytes(block), first, path, schema, parse_line, opts, report)
        n_lines = first - 1 + newlines + (0 if block[-1] == 0x0A else 1)
        if reduce is not None:
            tab = reduce(tab)
        tables.append(tab)
    return tables, n_lines


def _complete(tab: pa.Table, required: tuple[str, ...]) -> bool:
    """No nulls (and no empty strings) in the required columns of a fast-parsed block."""
    for c in required:
        col = tab.column(c)
        if col.null_count:
            return False
        if pa.types.is_string(col.type) and len(col) and pc.min(pc.binary_length(col)).as_py() == 0:
            return False
    return True


def _parse_lines(
    block: bytes,
    first: int,
    path: Path,
    schema: pa.Schema,
    parse_line: Callable[[dict], tuple | str],
    opts: SourceOptions,
    report: dict,
) -> pa.Table:
    """Slow path for one block: parse each line with ``json``, skipping (or raising on) bad lines."""
    rows: list[tuple] = []
    for n, raw in enumerate(block.split(b"\n"), first):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            note_malformed(report, path, n, f"not valid JSON ({e.msg if hasattr(e, 'msg') else e})",
                           opts.strict)
            continue
        got = parse_line(obj) if isinstance(obj, dict) else "not a JSON object"
        if isinstance(got, str):
            note_malformed(report, path, n, got, opts.strict)
            continue
        rows.append(got)
    cols = list(zip(*rows, strict=True)) if rows else [[] for _ in schema]
    return pa.table({f.name: pa.array(list(c), type=f.type) for f, c in zip(schema, cols, strict=True)})


def _review_fields(obj: dict) -> tuple | str:
    user, item, ts = obj.get("user_id"), obj.get("parent_asin"), obj.get("timestamp")
    for name, v in (("user_id", user), ("parent_asin", item)):
        if not isinstance(v, str) or not v:
            return f"missing or empty '{name}'" if v in (None, "") else f"'{name}' is not a string: {v!r}"
    if ts is None:
        return "missing 'timestamp'"
    if isinstance(ts, bool) or not (isinstance(ts, int) or (isinstance(ts, float) and ts.is_integer())):
        return f"'timestamp' is not an integer (ms): {ts!r}"
    return user, item, int(ts)


def _meta_fields(obj: dict) -> tuple | str:
    item = obj.get("parent_asin")
    if not isinstance(item, str) or not item:
        return "missing or empty 'parent_asin'"
    title = obj.get("title")
    desc = obj.get("description")
    if isinstance(desc, str):
        desc = [desc]
    elif not isinstance(desc, list):
        desc = None
    else:
        desc = [d if isinstance(d, str) else json.dumps(d) for d in desc[:1]]
    return item, title if isinstance(title, str) else None, desc


# ----------------------------------------------------------------------------------------------------
# Raw review + meta files


def _read_reviews(path: Path, opts: SourceOptions, report: dict) -> pa.Table:
    tables, n_lines = _read_jsonl(path, REVIEW_SCHEMA, ("user_id", "parent_asin", "timestamp"),
                                  _review_fields, opts, report)
    tab = pa.concat_tables(tables) if tables else pa.Table.from_batches([], REVIEW_SCHEMA)
    report["lines_read"] = n_lines
    if tab.num_rows == 0:
        bad = report.get("malformed_lines", 0)
        why = f"all {bad} non-empty lines are malformed" if bad else "empty file"
        raise DataError(f"{path}: no reviews ({why})")
    return tab.rename_columns(["user", "item", "timestamp"])


def _first_paragraph(desc: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """First element of each description list (null for an empty or missing list)."""
    first = pc.binary_join(pc.list_slice(desc, 0, 1), "")
    return pc.if_else(pc.equal(first, ""), pa.scalar(None, pa.string()), first)


def _read_meta(path: Path, wanted: pa.Array, opts: SourceOptions, report: dict) -> pd.DataFrame:
    """Titles and first description paragraphs of the items in ``wanted`` (other items are dropped per
    block, so a meta file with millions of items never sits in memory whole)."""

    def reduce(tab: pa.Table) -> pa.Table:
        tab = tab.filter(pc.is_in(tab.column("parent_asin"), value_set=wanted))
        return pa.table({"item": tab.column("parent_asin"), "title": tab.column("title"),
                         "description": _first_paragraph(tab.column("description"))})

    meta_report: dict = {}
    tables, _ = _read_jsonl(path, META_SCHEMA, ("parent_asin",), _meta_fields, opts, meta_report, reduce)
    if meta_report.get("malformed_lines"):
        report["meta_malformed_lines"] = meta_report["malformed_lines"]
        report["meta_malformed_examples"] = meta_report["malformed_examples"]
    if not tables:
        return pd.DataFrame({"item": [], "title": [], "description": []}, dtype=object)
    return pa.concat_tables(tables).to_pandas()


def _review_files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir()
        if p.is_file() and not p.name.startswith("meta_") and p.name.endswith((".jsonl", ".jsonl.gz"))
    )


def _category(path: Path) -> str:
    name = path.name
    for suffix in (".jsonl.gz", ".jsonl", *(f".{s}.csv" for s in SPLITS), ".csv"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _meta_beside(path: Path) -> Path | None:
    cat = _category(path)
    for name in (f"meta_{cat}.jsonl", f"meta_{cat}.jsonl.gz"):
        if (path.parent / name).is_file():
            return path.parent / name
    return None


# ----------------------------------------------------------------------------------------------------
# 5-core benchmark CSVs


def _read_csv(path: Path, opts: SourceOptions, report: dict) -> pa.Table:
    data = read_delimited(path, ",", list(CSV_NEEDED), CSV_NEEDED, opts.strict, report)
    if data.table.num_rows == 0:
        raise DataError(f"{path}: no rows after the header")
    ids = {"user_id": "user_id", "parent_asin": "parent_asin"}
    if not opts.strict:  # skip and count rows with empty ids or unreadable times, as malformed lines
        data = data.drop_rows(*unusable_rows(data, ids, "timestamp", "ms"), report)
    require_ids(data, ids)
    ts = to_ms(data.table.column("timestamp"), "ms", path, "timestamp", where=data.where)
    return pa.table({"user": data.table.column("user_id"), "item": data.table.column("parent_asin"),
                     "timestamp": ts})


def _split_files(folder: Path) -> list[Path] | None:
    """``<Cat>.train.csv``, ``.valid.csv``, ``.test.csv`` of the one category in ``folder``, if any."""
    trains = sorted(folder.glob("*.train.csv"))
    if not trains:
        return None
    if len(trains) > 1:
        raise DataError(f"{folder}: split files of several categories ({[p.name for p in trains]}); "
                        "pass one of them with --source")
    cat = trains[0].name[: -len(".train.csv")]
    files = [folder / f"{cat}.{s}.csv" for s in SPLITS]
    missing = [p.name for p in files if not p.is_file()]
    if missing:
        raise DataError(f"{folder}: last-out split files incomplete, missing {missing}")
    return files


def _resolve(path: Path) -> tuple[str, list[Path]]:
    """(mode, files): mode is 'raw' (one review file), 'csv' (one 5-core CSV) or 'split' (three CSVs)."""
    if path.is_file():
        name = path.name
        if name.startswith("meta_"):
            raise DataError(f"{path}: this is an item meta file; pass the review file (or its folder) "
                            "with --source and the meta file with --meta")
        if name.endswith((".jsonl", ".jsonl.gz")):
            return "raw", [path]
        if any(name.endswith(f".{s}.csv") for s in SPLITS):
            files = _split_files(path.parent)
            assert files is not None
            return "split", files
        if name.endswith(".csv"):
            return "csv", [path]
        raise DataError(f"{path}: not an Amazon Reviews 2023 file (expected <Category>.jsonl[.gz] "
                        "or a 5-core <Category>.csv)")
    reviews = _review_files(path)
    if len(reviews) > 1:
        raise DataError(f"{path}: several review files ({[p.name for p in reviews]}); "
                        "pass one of them with --source")
    if reviews:
        return "raw", reviews
    split = _split_files(path)
    if split:
        return "split", split
    csvs = sorted(p for p in path.glob("*.csv") if not any(p.name.endswith(f".{s}.csv") for s in SPLITS))
    if len(csvs) > 1:
        raise DataError(f"{path}: several CSV files ({[p.name for p in csvs]}); pass one with --source")
    if csvs:
        return "csv", csvs
    raise DataError(f"{path}: no Amazon Reviews 2023 files here (expected <Category>.jsonl[.gz], "
                    "<Category>.csv or <Category>.train/valid/test.csv)")


def load(path: Path | None, opts: SourceOptions) -> RawData:
    path = check_exists(path, "amazon2023")
    mode, files = _resolve(path)
    report: dict = {}
    if mode == "raw":
        interactions = _read_reviews(files[0], opts, report)
    else:
        interactions = pa.concat_tables([_read_csv(f, opts, report) for f in files])
    if opts.meta:
        meta_path: Path | None = Path(opts.meta)
        if not meta_path.is_file():
            raise DataError(f"{meta_path}: no such meta file (--meta)")
    else:
        meta_path = _meta_beside(files[0])
    items = None
    if meta_path is None:
        report["meta_file_missing"] = 1
    else:
        wanted = pc.unique(interactions.column("item"))
        items = _read_meta(meta_path, wanted, opts, report)
    source = {
        "kind": "amazon2023",
        "format": {"raw": "reviews jsonl", "csv": "5-core csv", "split": "5-core last-out split"}[mode],
        "category": _category(files[0]),
        "path": str(files[0].resolve()),
        "files": [str(f.resolve()) for f in files],
        "meta_path": str(meta_path.resolve()) if meta_path else None,
    }
    return RawData(interactions=interactions, items=items, source=source, report=report)
