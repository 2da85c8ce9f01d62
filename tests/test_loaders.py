"""Source loaders on tiny fixtures in every supported format, through prepare_source and load_dataset."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from seqbench.data import store
from seqbench.data.pipeline import prepare_source
from seqbench.data.preprocess import PrepareParams
from seqbench.data.sources import amazon2023
from seqbench.data.sources.options import SourceOptions
from seqbench.data.store import load_dataset
from seqbench.errors import DataError

PARAMS = PrepareParams(k=1, n_neg=3, n_neg_title=2)
N_USERS, N_ITEMS, PER_USER = 6, 12, 5
BASE_S = 1_600_000_000
REAL_BEAUTY = Path("/work/shared/data/amazon2023-all-beauty-5core/All_Beauty.csv")


def _rows() -> list[tuple[int, int, int]]:
    """(user, item, seconds) rows; each user rates PER_USER distinct items, written out of time order."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(1, N_USERS + 1):
        items = rng.choice(np.arange(1, N_ITEMS + 1), size=PER_USER, replace=False)
        times = BASE_S + u * 1000 + rng.permutation(PER_USER) * 60
        rows += [(u, int(i), int(t)) for i, t in zip(items, times, strict=True)]
    return rows


ROWS = _rows()
N_ROWS = len(ROWS)


def _title(i: int) -> str:
    return f"Caf\u00e9 Movie, part {i}: the sequel"


def _check(home: Path, name: str, n_rows: int = N_ROWS, titled: bool = True) -> None:
    ds = load_dataset(name, home)
    assert len(ds.user) == n_rows
    assert ds.n_users == N_USERS
    assert ds.timestamp.min() >= BASE_S * 1000  # seconds became milliseconds
    for u in range(1, ds.n_users + 1):  # time order within every user
        assert np.all(np.diff(ds.timestamp[ds.user == u]) >= 0)
    assert set(ds.split.tolist()) == {0, 1, 2}
    if titled:
        assert all(t.startswith("Caf\u00e9 Movie") for t in ds.titles[1:])
        assert ds.meta["counts"]["items_without_title"] == 0


def _prep(kind: str, source: Path, home: Path, name: str = "d", **opts) -> dict:
    _, report = prepare_source(kind, source, name, home, PARAMS, SourceOptions(**opts))
    return report


# --- MovieLens ---


def test_movielens_100k(tmp_path: Path) -> None:
    src = tmp_path / "ml-100k"
    src.mkdir()
    (src / "u.data").write_text("".join(f"{u}\t{i}\t4\t{t}\n" for u, i, t in ROWS))
    (src / "u.item").write_bytes("".join(
        f"{i}|{_title(i)}|01-Jan-1995||http://x|0|1\n" for i in range(1, N_ITEMS + 1)).encode("latin-1"))
    _prep("movielens", src, tmp_path / "home")
    _check(tmp_path / "home", "d")
    ds = load_dataset("d", tmp_path / "home")
    assert ds.meta["source"]["release"] == "ml-100k"


def test_movielens_1m_ratings_file(tmp_path: Path) -> None:
    (tmp_path / "ratings.dat").write_text("".join(f"{u}::{i}::4::{t}\n" for u, i, t in ROWS))
    (tmp_path / "movies.dat").write_bytes("".join(
        f"{i}::{_title(i)}::Drama|Comedy\n" for i in range(1, N_ITEMS + 1)).encode("latin-1"))
    _prep("movielens", tmp_path / "ratings.dat", tmp_path / "home")
    _check(tmp_path / "home", "d")


def test_movielens_latest_csv(tmp_path: Path) -> None:
    with open(tmp_path / "ratings.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["userId", "movieId", "rating", "timestamp"])
        w.writerows([(u, i, 3.5, t) for u, i, t in ROWS])
    with open(tmp_path / "movies.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["movieId", "title", "genres"])
        w.writerows([(i, _title(i), "Drama") for i in range(1, N_ITEMS + 1)])
    _prep("movielens", tmp_path, tmp_path / "home")
    _check(tmp_path / "home", "d")
    titles = load_dataset("d", tmp_path / "home").titles
    assert any(", part " in t for t in titles)  # quoted comma kept inside the title


def test_movielens_bad_field_count(tmp_path: Path) -> None:
    lines = [f"{u}\t{i}\t4\t{t}\n" for u, i, t in ROWS]
    lines.insert(3, "7\t8\n")
    (tmp_path / "u.data").write_text("".join(lines))
    report = _prep("movielens", tmp_path, tmp_path / "home")
    assert report["malformed_lines"] == 1
    assert report["malformed_examples"] == ["u.data:4"]
    assert report["meta_file_missing"] == 1
    with pytest.raises(DataError, match=r"u\.data: line 4: expected 4 fields, got 2"):
        _prep("movielens", tmp_path, tmp_path / "home", name="strict", strict=True)


# --- Amazon ---


def _asin(i: int) -> str:
    return f"B{i:09d}"


def _review(u: int, i: int, t: int) -> str:
    return json.dumps({
        "rating": 4.0, "title": "Nice", "text": "Works as described, would buy again. " * 5, "images": [],
        "asin": _asin(i) + "X", "parent_asin": _asin(i), "user_id": f"AUSER{u:04d}", "timestamp": t * 1000,
        "helpful_vote": 0, "verified_purchase": True,
    })


def _meta_lines(titled: bool = True) -> list[str]:
    return [json.dumps({
        "main_category": "All Beauty", "title": _title(i) if titled or i % 2 else None,
        "features": [], "description": [f"First paragraph {i}.", "Second."] if i % 3 else [],
        "price": None, "parent_asin": _asin(i), "details": {"Brand": "X"},
    }) for i in range(1, N_ITEMS + 1)]


def _write(path: Path, lines: list[str]) -> None:
    data = "".join(line + "\n" for line in lines).encode()
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)


def test_amazon_raw_jsonl(tmp_path: Path) -> None:
    src = tmp_path / "raw"
    src.mkdir()
    _write(src / "All_Beauty.jsonl", [_review(*r) for r in ROWS])
    _write(src / "meta_All_Beauty.jsonl", _meta_lines())
    report = _prep("amazon2023", src, tmp_path / "home")
    assert report["lines_read"] == N_ROWS
    assert report["malformed_lines"] == 0  # always reported, zero here
    _check(tmp_path / "home", "d")
    ds = load_dataset("d", tmp_path / "home")
    assert ds.meta["source"]["format"] == "reviews jsonl"
    desc = set(ds.descriptions[1:].tolist())
    assert "Second." not in desc and any(d.startswith("First paragraph") for d in desc) and "" in desc


def test_amazon_raw_gzip_many_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny blocks force many block boundaries and pyarrow's long-line retry; line numbers must hold."""
    monkeypatch.setattr(amazon2023, "BLOCK_BYTES", 700)
    monkeypatch.setattr(amazon2023, "PARSE_BLOCK", 200)
    lines = [_review(*r) for r in ROWS]
    lines.insert(17, "")  # blank lines are skipped silently
    lines.insert(21, '{"user_id": "AUSER0001", "parent_asin": "B1", "timestamp": "yesterday"}')
    _write(tmp_path / "All_Beauty.jsonl.gz", lines)
    _write(tmp_path / "meta_All_Beauty.jsonl.gz", _meta_lines())
    report = _prep("amazon2023", tmp_path / "All_Beauty.jsonl.gz", tmp_path / "home")
    assert report["malformed_lines"] == 1
    assert report["malformed_examples"] == ["All_Beauty.jsonl.gz:22"]
    _check(tmp_path / "home", "d")


def test_amazon_malformed_json_line(tmp_path: Path) -> None:
    lines = [_review(*r) for r in ROWS]
    lines.insert(4, '{"user_id": "AUSER0001", "parent_asin": ')  # truncated JSON
    lines.insert(9, '{"parent_asin": "B000000001", "timestamp": 5}')  # no user_id
    _write(tmp_path / "Cat.jsonl", lines)
    report = _prep("amazon2023", tmp_path / "Cat.jsonl", tmp_path / "home")
    assert report["malformed_lines"] == 2
    assert report["malformed_examples"] == ["Cat.jsonl:5", "Cat.jsonl:10"]
    assert report["meta_file_missing"] == 1
    assert report["items_without_title"] == load_dataset("d", tmp_path / "home").n_items
    with pytest.raises(DataError, match=r"Cat\.jsonl: line 5: not valid JSON"):
        _prep("amazon2023", tmp_path / "Cat.jsonl", tmp_path / "home", name="s", strict=True)
    assert not (tmp_path / "home" / "s").exists()


def test_amazon_missing_titles_counted(tmp_path: Path) -> None:
    _write(tmp_path / "Cat.jsonl", [_review(*r) for r in ROWS])
    _write(tmp_path / "meta_Cat.jsonl", _meta_lines(titled=False))
    report = _prep("amazon2023", tmp_path, tmp_path / "home")
    ds = load_dataset("d", tmp_path / "home")
    untitled = sum(1 for t in ds.titles[1:] if t == "")
    assert untitled > 0 and report["items_without_title"] == untitled
    assert ds.meta["counts"]["items_without_title"] == untitled


def test_amazon_empty_file(tmp_path: Path) -> None:
    (tmp_path / "Cat.jsonl").write_bytes(b"\n\n")
    with pytest.raises(DataError, match=r"Cat\.jsonl: no reviews \(empty file\)"):
        _prep("amazon2023", tmp_path / "Cat.jsonl", tmp_path / "home")
    (tmp_path / "Cat.csv").write_text("")
    with pytest.raises(DataError, match=r"Cat\.csv: empty file"):
        _prep("amazon2023", tmp_path / "Cat.csv", tmp_path / "home")


def _five_core(path: Path, rows: list[tuple[int, int, int]], history: bool = False) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["user_id", "parent_asin", "rating", "timestamp"] + (["history"] if history else []))
        for u, i, t in rows:
            w.writerow([f"AUSER{u:04d}", _asin(i), 5.0, t * 1000] + (["B1 B2"] if history else []))


def test_amazon_5core_csv_with_and_without_meta(tmp_path: Path) -> None:
    _five_core(tmp_path / "All_Beauty.csv", ROWS)
    report = _prep("amazon2023", tmp_path / "All_Beauty.csv", tmp_path / "home", name="bare")
    _check(tmp_path / "home", "bare", titled=False)
    assert report["meta_file_missing"] == 1
    assert report["items_without_title"] == load_dataset("bare", tmp_path / "home").n_items
    meta = tmp_path / "elsewhere" / "meta.jsonl.gz"
    meta.parent.mkdir()
    _write(meta, _meta_lines())
    _prep("amazon2023", tmp_path / "All_Beauty.csv", tmp_path / "home", name="titled", meta=meta)
    _check(tmp_path / "home", "titled")


def test_amazon_split_files(tmp_path: Path) -> None:
    by_user: dict[int, list] = {}
    for r in sorted(ROWS, key=lambda r: (r[0], r[2])):
        by_user.setdefault(r[0], []).append(r)
    parts = {"train": [r for rs in by_user.values() for r in rs[:-2]],
             "valid": [rs[-2] for rs in by_user.values()], "test": [rs[-1] for rs in by_user.values()]}
    for stage, rows in parts.items():
        _five_core(tmp_path / f"Cat.{stage}.csv", rows, history=True)
    _write(tmp_path / "meta_Cat.jsonl", _meta_lines())
    _prep("amazon2023", tmp_path, tmp_path / "home")
    _check(tmp_path / "home", "d")
    ds = load_dataset("d", tmp_path / "home")
    assert ds.meta["source"]["format"] == "5-core last-out split"
    names = [Path(f).name for f in ds.meta["source"]["files"]]
    assert names == ["Cat.train.csv", "Cat.valid.csv", "Cat.test.csv"]


def test_amazon_csv_missing_column_and_bad_timestamp(tmp_path: Path) -> None:
    (tmp_path / "A.csv").write_text("user_id,asin,rating,timestamp\nu1,B1,5.0,1\n")
    with pytest.raises(DataError, match=r"A\.csv: missing column\(s\) 'parent_asin'.*found \['user_id', 'as"):
        _prep("amazon2023", tmp_path / "A.csv", tmp_path / "home")
    (tmp_path / "B.csv").write_text("user_id,parent_asin,rating,timestamp\nu1,B1,5.0,1\nu1,B2,5.0,soon\n")
    with pytest.raises(DataError, match=r"B\.csv: non-numeric timestamp 'soon' in line 3"):
        _prep("amazon2023", tmp_path / "B.csv", tmp_path / "home", strict=True)
    # not strict: the row is skipped and counted, and the error about the emptied data still says so
    with pytest.raises(DataError, match=r"no interactions left.*1 malformed line skipped \(e\.g\. B\.csv:3\)"):
        _prep("amazon2023", tmp_path / "B.csv", tmp_path / "home")


@pytest.mark.skipif(not REAL_BEAUTY.is_file(), reason=f"real 5-core file not present at {REAL_BEAUTY}")
def test_amazon_real_all_beauty(tmp_path: Path) -> None:
    n_lines = len(REAL_BEAUTY.read_text().splitlines()) - 1
    _, report = prepare_source("amazon2023", REAL_BEAUTY, "beauty", tmp_path,
                               PrepareParams(k=5, n_neg=99, n_neg_title=19), SourceOptions())
    assert report["rows_read"] == n_lines
    ds = load_dataset("beauty", tmp_path)
    assert ds.n_users > 100 and ds.n_items > 100
    assert 1_000_000_000_000 < ds.timestamp.min() < ds.timestamp.max() < 2_000_000_000_000  # ms


# --- generic ---


def _generic_rows(time_fmt) -> dict:
    return {"uid": [f"user{u}" for u, _, _ in ROWS], "iid": [f"item{i}" for _, i, _ in ROWS],
            "when": [time_fmt(t) for _, _, t in ROWS]}


def _generic_items(path: Path, sep: str = ",") -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f, delimiter=sep)
        w.writerow(["iid", "name", "blurb"])
        w.writerows([(f"item{i}", _title(i), f"about {i}") for i in range(1, N_ITEMS + 1)])


def test_generic_csv_iso_times(tmp_path: Path) -> None:
    import datetime as dt

    def iso(t: int) -> str:
        return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    cols = _generic_rows(iso)
    with open(tmp_path / "x.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["uid", "iid", "when", "extra"])
        w.writerows(zip(cols["uid"], cols["iid"], cols["when"], ["z"] * N_ROWS, strict=True))
    _generic_items(tmp_path / "items.csv")
    _prep("csv", tmp_path / "x.csv", tmp_path / "home", user_col="uid", item_col="iid", time_col="when",
          time_unit="iso", meta=tmp_path / "items.csv", title_col="name", description_col="blurb")
    _check(tmp_path / "home", "d")
    ds = load_dataset("d", tmp_path / "home")
    expected = sorted(t * 1000 for _, _, t in ROWS)
    assert sorted(ds.timestamp.tolist()) == expected
    assert all(d.startswith("about ") for d in ds.descriptions[1:])


def test_generic_parquet(tmp_path: Path) -> None:
    cols = _generic_rows(lambda t: t * 1000)
    pq.write_table(pa.table(cols), tmp_path / "x.parquet")
    ids = range(1, N_ITEMS + 1)
    items = pa.table({"iid": [f"item{i}" for i in ids], "title": [_title(i) for i in ids]})
    pq.write_table(items, tmp_path / "items.parquet")
    _prep("csv", tmp_path / "x.parquet", tmp_path / "home", user_col="uid", item_col="iid", time_col="when",
          time_unit="ms", meta=tmp_path / "items.parquet")
    _check(tmp_path / "home", "d")


def test_generic_tsv(tmp_path: Path) -> None:
    cols = _generic_rows(str)
    lines = ["uid\tiid\twhen"] + [f"{a}\t{b}\t{c}" for a, b, c in zip(*cols.values(), strict=True)]
    lines.insert(5, "user1\titem1")  # wrong field count: line 6
    (tmp_path / "x.tsv").write_text("\n".join(lines) + "\n")
    _generic_items(tmp_path / "items.tsv", sep="\t")
    opts = {"user_col": "uid", "item_col": "iid", "time_col": "when", "meta": tmp_path / "items.tsv",
            "title_col": "name"}
    report = _prep("csv", tmp_path / "x.tsv", tmp_path / "home", **opts)
    assert report["malformed_lines"] == 1 and report["malformed_examples"] == ["x.tsv:6"]
    _check(tmp_path / "home", "d")
    with pytest.raises(DataError, match=r"x\.tsv: line 6: expected 3 fields, got 2"):
        _prep("csv", tmp_path / "x.tsv", tmp_path / "home", name="s", strict=True, **opts)


def test_generic_errors(tmp_path: Path) -> None:
    (tmp_path / "x.csv").write_text("user,item,ts\nu1,i1,100\n\nu1,i2,1e\n")
    with pytest.raises(DataError, match=r"x\.csv: missing column\(s\) 'user_id'.*found \['user', 'item'"):
        _prep("csv", tmp_path / "x.csv", tmp_path / "home")
    cols = {"user_col": "user", "item_col": "item", "time_col": "ts"}
    with pytest.raises(DataError, match=r"non-numeric 'ts' '1e' in line 4"):
        _prep("csv", tmp_path / "x.csv", tmp_path / "home", strict=True, **cols)
    with pytest.raises(DataError, match=r"'ts' 'yesterday' in line 3 is not an ISO"):
        (tmp_path / "y.csv").write_text("user,item,ts\nu1,i1,2020-01-01\nu1,i2,yesterday\n")
        _prep("csv", tmp_path / "y.csv", tmp_path / "home", time_unit="iso", strict=True, **cols)


def test_csv_unreadable_values_are_skipped_and_counted(tmp_path: Path) -> None:
    """Not strict: a row with a non-numeric time or an empty id is a malformed line like a wrong field count."""
    rows = [f"u{u},i{(u * 7 + k) % 150 + 1},{1000 + k}" for u in range(20) for k in range(6)]
    bad = ["u1,i2,notanumber", ",i3,1005", "u2,i4", "u3,,1007"]
    (tmp_path / "m.csv").write_text("\n".join(["user_id,item_id,timestamp", *rows[:10], *bad, *rows[10:]]) + "\n")
    report = _prep("csv", tmp_path / "m.csv", tmp_path / "home")
    assert report["malformed_lines"] == 4 and report["rows_read"] == len(rows)
    assert sorted(report["malformed_examples"]) == ["m.csv:12", "m.csv:13", "m.csv:14", "m.csv:15"]
    assert report["interactions"] == len(rows)
    (tmp_path / "s.csv").write_text("\n".join(["user_id,item_id,timestamp", *rows[:10], bad[0], *rows[10:]]))
    with pytest.raises(DataError, match=r"s\.csv: non-numeric 'timestamp' 'notanumber' in line 12"):
        _prep("csv", tmp_path / "s.csv", tmp_path / "home2", strict=True)


# --- atomicity ---


def test_failed_prepare_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "Cat.jsonl").write_text("{not json}\n")
    with pytest.raises(DataError):
        _prep("amazon2023", tmp_path / "Cat.jsonl", home)
    assert list(home.iterdir()) == []
    # A failure while writing the tables (after the temp folder exists) must remove it too.
    _write(tmp_path / "Cat.jsonl", [_review(*r) for r in ROWS])
    calls = {"n": 0}
    real = store.pq.write_table

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(store.pq, "write_table", flaky)
    with pytest.raises(OSError, match="disk full"):
        _prep("amazon2023", tmp_path / "Cat.jsonl", home)
    assert list(home.iterdir()) == []
