"""Calibrated controls: does the harness call order-free data order-free, and strong order strong?

For each setting of the synthetic order knob (0 = exchangeable histories; a strong setting) and each of
N seeds, a synthetic dataset is generated with that seed, SASRec is trained with that seed, and the
shuffle-infer, shuffle-train and cosine probes run on it. Stores the run in benchmarks/results/controls.json
(the envelope of ``seqbench.benchinfo``: command, commit, machine; options that differ from the defaults are the
run's ``variant``), whose ``result`` is:

  {"order_0": {probe: {"significant_rate", "mean_relative_change", ...}, "dataset": {...}},
   "order_strong": {...same...}, "settings": {...}}

"significant" = that seed's own two-sided Wilcoxon p < alpha (unadjusted: each probe is judged on its own).

    python scripts/bench_controls.py                # 10 seeds, order 0 and 0.8, 2 parallel workers
    python scripts/bench_controls.py --seeds 3 --strong 0.9 --users 1000
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
from rich.console import Console

from seqbench.benchinfo import begin, find_run, record, result_file, store, variant_of
from seqbench.data.pipeline import prepare_source
from seqbench.data.preprocess import PrepareParams
from seqbench.data.sources.options import SourceOptions
from seqbench.data.stats import dataset_stats
from seqbench.data.store import load_dataset
from seqbench.probes.transition import t_scores
from seqbench.runner import RunSpec, run

PROBES = ["shuffle-infer", "shuffle-train", "cosine"]
ROOT = Path(__file__).resolve().parents[1]


def one(label: str, order: float, seed: int, users: int, items: int, overrides: dict, work: str,
        dataset_only: bool = False) -> tuple:
    """One replicate: generate the data with ``seed``, train SASRec with ``seed``, run the three probes."""
    import torch

    torch.set_num_threads(1)  # one core per worker; --jobs workers share the machine
    work_dir = Path(work)
    name = f"{label}-s{seed}"
    opts = SourceOptions(users=users, items=items, order=order, seed=seed)
    prepare_source("synthetic", None, name, work_dir, PrepareParams(), opts)
    data = load_dataset(name, work_dir)
    st = dataset_stats(data)
    data_row = {k: st[k] for k in st if k.startswith("rules_")}
    data_row["t_score_mean"] = float(t_scores(data.histories("train")).mean())
    if dataset_only:
        return label, seed, data_row, {}
    spec = RunSpec(model="sasrec", probes=PROBES, dataset=name, seeds=[seed], overrides=overrides,
                   data_home=work_dir, tracking_uri=f"sqlite:///{work_dir / f'mlflow-{name}.db'}", device="cpu")
    rows = {r["probe"]: {"seed": seed, "relative_change": r["test"]["relative_change"],
                         "p_value": r["test"]["p_value"], "original_ndcg@10": r["metrics"]["original"]["ndcg@10"],
                         "cosine_mean": r["probe_stats"].get("cosine_mean"), "best_epoch": r["fit"]["best_epoch"]}
            for r in run(spec, Console(file=io.StringIO()))["runs"]}
    return label, seed, data_row, rows


def summarize(rows: dict[str, list[dict]], data_rows: list[dict], alpha: float) -> dict:
    block: dict = {}
    for p, rs in rows.items():
        rs = sorted(rs, key=lambda r: r["seed"])
        rel = np.array([r["relative_change"] for r in rs])
        pv = np.array([r["p_value"] for r in rs])
        block[p] = {"significant_rate": float((pv < alpha).mean()),
                    "significant_drops": int(((pv < alpha) & (rel < 0)).sum()),
                    "mean_relative_change": float(rel.mean()), "median_relative_change": float(np.median(rel)),
                    "max_p_value": float(pv.max()), "per_seed": rs}
        if p == "cosine":
            block[p]["cosine_mean"] = float(np.mean([r["cosine_mean"] for r in rs]))
    block["dataset"] = {k: float(np.mean([d[k] for d in data_rows])) for k in data_rows[0]}
    return block


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--strong", type=float, default=0.8, help="order knob of the strong setting")
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--items", type=int, default=400)
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--jobs", type=int, default=2, help="replicates run in parallel processes (1 core each)")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="SASRec setting key=value")
    ap.add_argument("--out", type=Path, default=result_file("controls", ROOT))
    ap.add_argument("--dataset-only", action="store_true",
                    help="recompute only the dataset-level figures (rules ratio, t-score) of the stored run of "
                         "the same variant in --out")
    args = ap.parse_args(argv)
    from seqbench.config import parse_sets

    overrides = parse_sets(args.sets)
    run = begin("controls", __file__, argv, variant_of(ap, args, skip=("out", "dataset_only")))
    work = tempfile.mkdtemp(prefix="seqbench-controls-")
    settings = {"order_0": 0.0, "order_strong": args.strong}
    report: dict = {"settings": {"seeds": args.seeds, "order_strong": args.strong, "users": args.users,
                                 "items": args.items, "alpha": args.alpha, "model": "sasrec",
                                 "overrides": overrides, "probes": PROBES, "jobs": args.jobs}}
    start = time.perf_counter()
    rows = {label: {p: [] for p in PROBES} for label in settings}
    data_rows: dict[str, list[dict]] = {label: [] for label in settings}
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(one, label, order, seed, args.users, args.items, overrides, work, args.dataset_only)
                   for label, order in settings.items() for seed in range(args.seeds)]
        for fut in as_completed(futures):
            label, seed, data_row, probe_rows = fut.result()
            data_rows[label].append(data_row)
            for p, r in probe_rows.items():
                rows[label][p].append(r)
            print(f"{label} seed {seed}: " + ", ".join(
                f"{p} {r['relative_change']:+.1%} (p={r['p_value']:.2g})" for p, r in probe_rows.items()),
                flush=True)
    if args.dataset_only:  # keep the stored run's probe results, refresh its dataset block
        stored = find_run(args.out, run["variant"])
        if stored is None:
            raise SystemExit(f"--dataset-only: {args.out} holds no run of variant {run['variant']}")
        for label in settings:
            stored["result"][label]["dataset"] = {k: float(np.mean([d[k] for d in data_rows[label]]))
                                                  for k in data_rows[label][0]}
        store(stored, args.out)
        print(f"updated the dataset figures in {args.out}")
        return
    for label in settings:
        report[label] = summarize(rows[label], data_rows[label], args.alpha)
    report["seconds"] = round(time.perf_counter() - start, 1)
    record(run, report, args.out, device="cpu")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
