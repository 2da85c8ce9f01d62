"""Benchmark ``prepare_source("amazon2023", ...)`` end to end on a synthetic raw review file.

Writes a raw Amazon Reviews 2023 file (every published field, realistic review text) and its meta file
into a temp folder, then runs parse -> filter -> split -> negatives -> write in a child process so its
peak RSS can be read on its own, and stores the run in ``benchmarks/results/prepare.json`` (the envelope of
``seqbench.benchinfo``: command, commit, machine with the load average just before and after the prepare step;
options that differ from the defaults are the run's ``variant``).

    python scripts/bench_prepare.py                  # 5,000,000 lines
    python scripts/bench_prepare.py --lines 200000   # quick check
"""

from __future__ import annotations

import argparse
import gzip
import json
import multiprocessing as mp
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from seqbench.benchinfo import begin, record, result_file, variant_of

CHUNK = 250_000
WORDS_TEXT = (
    "great product works well quality price cheap broke after two weeks love it would buy again "
    "color smaller than expected fits perfectly the battery lasts long shipping was fast package arrived "
    "damaged customer service replaced it quickly easy to install instructions were unclear my daughter "
    "uses it every day smells nice skin feels soft not worth the money returned exactly as described "
    "sturdy lightweight comfortable noisy bright cable charger screen handle lid bottle brush"
)
LINE = ('{"rating": %d.0, "title": "%s", "text": "%s", "images": [], "asin": "%s", "parent_asin": "%s", '
        '"user_id": "%s", "timestamp": %d, "helpful_vote": %d, "verified_purchase": %s}\n')


def _ids(rng: np.random.Generator, n: int, prefix: str, length: int) -> np.ndarray:
    """n distinct-enough random upper-case ids like the dataset's (AGKHLEW2SOWHNMFQIJGBECAF7INQ)."""
    alphabet = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", dtype=np.uint8)
    body = alphabet[rng.integers(0, len(alphabet), size=(n, length - len(prefix)))]
    raw = np.concatenate([np.frombuffer(prefix.encode() * n, np.uint8).reshape(n, -1), body], axis=1)
    return raw.view(f"S{length}").ravel().astype(str)


def _texts(rng: np.random.Generator, n: int, lo: int, hi: int) -> list[str]:
    out = []
    words_all = np.array(WORDS_TEXT.split())
    for _ in range(n):
        target = int(rng.integers(lo, hi))
        words = rng.choice(words_all, size=target // 5 + 8)
        text = " ".join(words)[:target].rstrip()
        out.append(text[0].upper() + text[1:] + ".")
    return out


def _zipf(rng: np.random.Generator, n: int, size: int, a: float, shift: float) -> np.ndarray:
    """Draw ranks 0..n-1 with P(r) ~ 1/(r+shift)^a, shuffled so rank is not id order."""
    p = 1.0 / (np.arange(n) + shift) ** a
    cdf = np.cumsum(p / p.sum())
    return rng.permutation(n)[np.searchsorted(cdf, rng.random(size)).clip(max=n - 1)]


def generate(folder: Path, lines: int, users: int, items: int, seed: int, gz: bool) -> tuple[Path, Path]:
    """Write ``Bench.jsonl[.gz]`` and ``meta_Bench.jsonl`` into ``folder``, in chunks of vectorised draws."""
    rng = np.random.default_rng(seed)
    user_ids = _ids(rng, users, "A", 28)
    item_ids = _ids(rng, items, "B0", 10)
    texts = _texts(rng, 4096, 200, 400)
    titles = _texts(rng, 512, 10, 40)
    suffix = ".jsonl.gz" if gz else ".jsonl"
    review_path = folder / f"Bench{suffix}"
    t0, t1 = 1_262_304_000_000, 1_693_526_400_000  # 2010-01-01 .. 2023-09-01, ms
    with gzip.open(review_path, "wb", compresslevel=1) if gz else open(review_path, "wb") as f:
        for start in range(0, lines, CHUNK):
            n = min(CHUNK, lines - start)
            u = _zipf(rng, users, n, 0.6, 50.0)
            i = _zipf(rng, items, n, 0.9, 20.0)
            cols = zip(
                rng.integers(1, 6, n).tolist(),
                [titles[k] for k in rng.integers(0, len(titles), n)],
                [texts[k] for k in rng.integers(0, len(texts), n)],
                item_ids[rng.integers(0, items, n)].tolist(),
                item_ids[i].tolist(),
                user_ids[u].tolist(),
                rng.integers(t0, t1, n).tolist(),
                rng.geometric(0.5, n).tolist(),
                np.where(rng.random(n) < 0.9, "true", "false").tolist(),
                strict=True,
            )
            f.write("".join([LINE % row for row in cols]).encode())
    meta_path = folder / "meta_Bench.jsonl"
    with open(meta_path, "w") as f:
        for k, asin in enumerate(item_ids):
            f.write(json.dumps({
                "main_category": "All Beauty", "title": titles[k % len(titles)] + f" #{k}",
                "average_rating": 4.2, "rating_number": 17, "features": [texts[k % 4096][:80]],
                "description": [texts[(k * 7) % 4096], texts[(k * 13) % 4096]], "price": None, "images": [],
                "videos": [], "store": "Acme", "categories": [], "details": {"Brand": "Acme"},
                "parent_asin": asin, "bought_together": None,
            }) + "\n")
    return review_path, meta_path


def _open_any(path: Path):
    return gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")


def _child(review: str, home: str, k: int, conn) -> None:
    """Runs in a fresh process so its peak RSS is the prepare step's alone."""
    from seqbench.data.pipeline import prepare_source
    from seqbench.data.preprocess import PrepareParams

    t = time.perf_counter()
    _, report = prepare_source("amazon2023", Path(review), "bench", Path(home), PrepareParams(k=k))
    conn.send((time.perf_counter() - t, {k: v for k, v in report.items() if isinstance(v, int)}))
    conn.close()


def measure(review: Path, home: Path, k: int) -> tuple[float, dict, float, float]:
    """(seconds, report, peak RSS MB, CPU seconds) of prepare_source run in a fresh child process."""
    ctx = mp.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(str(review), str(home), k, send))
    proc.start()
    send.close()
    try:
        seconds, report = recv.recv()
    except EOFError:
        proc.join()
        raise SystemExit(f"prepare failed in the child process (exit code {proc.exitcode})") from None
    proc.join()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    # ru_maxrss is KiB on Linux; CPU time includes the child's imports (a second or so).
    return seconds, report, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=5_000_000)
    ap.add_argument("--users", type=int, default=300_000)
    ap.add_argument("--items", type=int, default=50_000)
    ap.add_argument("--k", type=int, default=5, help="k-core threshold used by prepare")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--gzip", action="store_true", help="write the review file gzipped")
    ap.add_argument("--workdir", type=Path, default=None, help="where the temp folder goes")
    ap.add_argument("--keep", action="store_true", help="keep the generated files")
    ap.add_argument("--review", type=Path, default=None,
                    help="measure an existing raw review file (meta_ file beside it) instead of generating")
    ap.add_argument("--out", type=Path, default=result_file("prepare", Path(__file__).resolve().parents[1]))
    args = ap.parse_args(argv)

    folder = Path(tempfile.mkdtemp(prefix="seqbench-bench-", dir=args.workdir))
    try:
        t = time.perf_counter()
        if args.review:
            review = args.review
            with _open_any(review) as f:
                args.lines = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 24), b""))
        else:
            review, _ = generate(folder, args.lines, args.users, args.items, args.seed, args.gzip)
        gen_s = time.perf_counter() - t
        file_mb = review.stat().st_size / 2**20
        print(f"{args.lines:,} lines, {file_mb:,.0f} MB ready in {gen_s:.1f}s: {review}", flush=True)
        # started, and the load average before, at the prepare step itself (generating the file is not timed)
        run = begin("prepare", __file__, argv, variant_of(ap, args, skip=("out", "workdir", "keep")))
        seconds, report, peak_mb, cpu_s = measure(review, folder / "home", args.k)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    result = {
        "lines": args.lines,
        "seconds": round(seconds, 3),
        "lines_per_s": round(args.lines / seconds),
        "peak_rss_mb": round(peak_mb, 1),
        "users": report.get("users"),
        "items": report.get("items"),
        "interactions": report.get("interactions"),
        "file_mb": round(file_mb, 1),
        "gzip": review.name.endswith(".gz"),
        "k": args.k,
        "generated_users": args.users,
        "generated_items": args.items,
        "rows_read": report.get("rows_read"),
        "malformed_lines": report.get("malformed_lines", 0),
        "generate_seconds": round(gen_s, 1),
        "cpu_seconds": round(cpu_s, 1),
    }
    # other work on the machine slows the wall clock: the machine's load average before and after shows how much
    record(run, result, args.out)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
