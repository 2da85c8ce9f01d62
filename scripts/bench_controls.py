"""Calibrated controls: does the harness call order-free data order-free, and strong order strong?

For each setting of the synthetic order knob (0 = exchangeable histories; a strong setting) and each of
N seeds, a synthetic dataset is generated with that seed, SASRec is trained with that seed, and the
shuffle-infer, shuffle-train and cosine probes run on it. Writes reports/bench_controls.json:

  {"order_0": {probe: {"significant_rate", "mean_relative_change", ...}, "dataset": {...}},
   "order_strong": {...same...}, "settings": {...}}

"significant" = that seed's own two-sided Wilcoxon p < alpha (unadjusted: each probe is judged on its own).

    python scripts/bench_controls.py                # 10 seeds, order 0 and 0.8
    python scripts/bench_controls.py --seeds 3 --strong 0.9
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from seqbench.data.pipeline import prepare_source
from seqbench.data.preprocess import PrepareParams
from seqbench.data.sources.options import SourceOptions
from seqbench.data.stats import dataset_stats
from seqbench.data.store import load_dataset
from seqbench.probes.transition import t_scores
from seqbench.runner import RunSpec, run, write_json_atomic

PROBES = ["shuffle-infer", "shuffle-train", "cosine"]
ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--strong", type=float, default=0.8, help="order knob of the strong setting")
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--items", type=int, default=400)
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--set", dest="sets", action="append", default=[], help="SASRec setting key=value")
    ap.add_argument("--out", type=Path, default=ROOT / "reports" / "bench_controls.json")
    args = ap.parse_args()
    from seqbench.config import parse_sets

    overrides = parse_sets(args.sets)
    work = Path(tempfile.mkdtemp(prefix="seqbench-controls-"))
    report: dict = {"settings": {"seeds": args.seeds, "order_strong": args.strong, "users": args.users,
                                 "items": args.items, "alpha": args.alpha, "model": "sasrec",
                                 "overrides": overrides, "probes": PROBES,
                                 "command": "python scripts/bench_controls.py"}}
    start = time.perf_counter()
    for label, order in (("order_0", 0.0), ("order_strong", args.strong)):
        rows: dict[str, list[dict]] = {p: [] for p in PROBES}
        data_rows = []
        for seed in range(args.seeds):
            name = f"{label}-s{seed}"
            opts = SourceOptions(users=args.users, items=args.items, order=order, seed=seed)
            prepare_source("synthetic", None, name, work, PrepareParams(), opts)
            data = load_dataset(name, work)
            st = dataset_stats(data)
            data_rows.append({"rules_2gram_ratio": st["rules_2gram_ratio"], "rules_3gram_ratio":
                              st["rules_3gram_ratio"], "t_score_mean": float(t_scores(data.histories("train")).mean())})
            spec = RunSpec(model="sasrec", probes=PROBES, dataset=name, seeds=[seed], overrides=overrides,
                           data_home=work, tracking_uri=f"sqlite:///{work / 'mlflow.db'}", device="cpu")
            for r in run(spec)["runs"]:
                rows[r["probe"]].append({"seed": seed, "relative_change": r["test"]["relative_change"],
                                         "p_value": r["test"]["p_value"], "original_ndcg@10":
                                         r["metrics"]["original"]["ndcg@10"], "cosine_mean":
                                         r["probe_stats"].get("cosine_mean"), "best_epoch": r["fit"]["best_epoch"]})
            print(f"{label} seed {seed}: " + ", ".join(
                f"{p} {rows[p][-1]['relative_change']:+.1%} (p={rows[p][-1]['p_value']:.2g})" for p in PROBES),
                flush=True)
        block: dict = {}
        for p, rs in rows.items():
            rel = np.array([r["relative_change"] for r in rs])
            pv = np.array([r["p_value"] for r in rs])
            block[p] = {"significant_rate": float((pv < args.alpha).mean()),
                        "significant_drops": int(((pv < args.alpha) & (rel < 0)).sum()),
                        "mean_relative_change": float(rel.mean()), "median_relative_change": float(np.median(rel)),
                        "max_p_value": float(pv.max()), "per_seed": rs}
            if p == "cosine":
                block[p]["cosine_mean"] = float(np.mean([r["cosine_mean"] for r in rs]))
        block["dataset"] = {k: float(np.mean([d[k] for d in data_rows])) for k in data_rows[0]}
        report[label] = block
    report["seconds"] = round(time.perf_counter() - start, 1)
    write_json_atomic(report, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
