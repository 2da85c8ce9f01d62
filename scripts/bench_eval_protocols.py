"""What full ranking costs against sampled ranking: one trained model, every test user, the three protocols timed
in the same process, one after the other (docs/protocols.md).

The model trains for ``--epochs`` epochs only: the cost of an evaluation does not depend on how well the model
learned. Each protocol is timed ``--repeats`` times; the run (the envelope of ``seqbench.benchinfo``: command,
commit, machine with CPU, flags, threads, load before and after) goes to ``benchmarks/results/eval_protocols.json``
and keeps every time, the median and the ratio of each median to the sampled one:

    python scripts/bench_eval_protocols.py --dataset beauty            # the committed figure (needs `beauty`)
    python scripts/bench_eval_protocols.py --dataset quickstart --repeats 1 --out /tmp/b.json   # smoke run
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from seqbench.benchinfo import begin, record, result_file, variant_of
from seqbench.context import RunContext, seed_everything
from seqbench.data.store import data_home
from seqbench.eval.evaluator import PROTOCOLS, evaluate
from seqbench.models import create_model
from seqbench.planner import ensure_dataset

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="beauty", help="prepared dataset (default: beauty)")
    ap.add_argument("--data-home", type=Path, default=None)
    ap.add_argument("--model", default="sasrec")
    ap.add_argument("--epochs", type=int, default=1, help="training epochs before timing (default 1)")
    ap.add_argument("--repeats", type=int, default=3, help="timings per protocol (default 3)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2: this machine's cores)")
    ap.add_argument("--out", type=Path, default=result_file("eval_protocols", ROOT))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    run = begin("eval_protocols", __file__, argv, variant_of(ap, args, skip=("out", "data_home")))
    data = ensure_dataset(args.dataset, data_home(args.data_home))
    seed_everything(0, torch.device("cpu"))
    model = create_model(args.model, data.n_items, {"max_epochs": args.epochs, "eval_every": args.epochs})
    t0 = time.perf_counter()
    model.fit(data, data.histories("train"), RunContext(seed=0))
    train_s = time.perf_counter() - t0
    hist, cands = data.histories("test"), data.candidates["test"]
    timings: dict[str, dict] = {}
    for protocol in PROTOCOLS:
        seconds, ndcg = [], None
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            res = evaluate(model, hist, cands, protocol=protocol)
            seconds.append(round(time.perf_counter() - t0, 4))
            ndcg = res.summary["ndcg@10"]
        timings[protocol] = {"seconds": seconds, "median_seconds": statistics.median(seconds),
                             "users_per_second": round(len(hist) / statistics.median(seconds), 1),
                             "ndcg@10": ndcg}
        print(f"{protocol:>12}: median {timings[protocol]['median_seconds']:.2f} s over {len(hist)} users "
              f"({args.repeats} runs)", file=sys.stderr)
    base = timings["sampled"]["median_seconds"]
    for t in timings.values():
        t["ratio_to_sampled"] = round(t["median_seconds"] / base, 2)
    result = {"dataset": data.name, "dataset_hash": data.content_hash, "users": len(hist), "items": data.n_items,
              "model": args.model, "train_epochs": args.epochs, "train_seconds": round(train_s, 2),
              "repeats": args.repeats, "protocols": timings}
    out = record(run, result, args.out, device="cpu")
    print(f"wrote {args.out}", file=sys.stderr)
    return out


if __name__ == "__main__":
    main()
