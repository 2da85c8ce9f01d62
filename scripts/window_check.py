"""Like-for-like shuffle-infer: every model with the same `window=10` and with its own window.

LLM-SRec's prompt shows 10 items while SASRec and GRU4Rec read 128, so "shuffle-infer" compares two
interventions unless the window is fixed. Each (dataset, model) is trained once (``create_model(...).fit``);
both windows (and, for ``--horizon-models``, the order-horizon curve) are probed on that one trained model.

    python scripts/window_check.py --datasets ml-100k,beauty-s05 --models sasrec,gru4rec
    python scripts/window_check.py --datasets beauty-s05 --models llmsrec \\
        --set llmsrec.batch_size=4,llmsrec.max_epochs=2,llmsrec.val_every_frac=0.5,llmsrec.max_valid_users=100
    python scripts/window_check.py --include /work/runs/ml100k_llmsrec_bf16.json   # merge an existing run

Rows already in ``--output`` are kept (a later call adds rows or replaces the same (dataset, model)), and
the file is rewritten atomically after every model, so a long queue of runs can be split over calls.
``--include`` merges a `seqbench run --probe shuffle-infer` result JSON whose model's own window is 10
(e.g. LLM-SRec): it is then both columns, and its provenance (path, sha256, MLflow run id) is recorded.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import torch

from seqbench.atomic import write_json_atomic
from seqbench.benchinfo import finish, machine_info
from seqbench.config import parse_model_sets
from seqbench.context import RunContext, resolve_device, seed_everything
from seqbench.data.store import data_home, load_dataset
from seqbench.errors import SeqbenchError
from seqbench.models import create_model, get_spec
from seqbench.probes import ProbeContext, get_probe

ROOT = Path(__file__).resolve().parents[1]
FIXED_WINDOW = 10


def overrides(sets: list[str] | None) -> dict[str, dict[str, str]]:
    """``["llmsrec.batch_size=4,sasrec.max_epochs=3"]`` -> {"llmsrec": {"batch_size": "4"}, ...}."""
    try:
        return parse_model_sets(sets)
    except SeqbenchError as e:
        raise SystemExit(str(e)) from e


def test_row(res) -> dict:
    t = res.test
    return {"relative_change": t.relative_change, "ci95": list(t.ci95), "p_value": t.p_value,
            "n_users": t.n_users, "n_nonzero": t.n_nonzero, "effect_size": t.effect_size,
            "original_ndcg@10": res.original.summary["ndcg@10"], "probed_ndcg@10": res.probed.summary["ndcg@10"]}


def check_one(dataset: str, name: str, home: Path, layers: dict[str, str], seed: int, device: str,
              horizon: bool) -> dict:
    data = load_dataset(dataset, home)
    seed_everything(seed)
    model = create_model(name, data.n_items, layers)
    ctx = RunContext(seed=seed, device=resolve_device(device))
    start = time.perf_counter()
    fit = model.fit(data, data.histories("train"), ctx)
    train_seconds = time.perf_counter() - start
    row = {"dataset": dataset, "model": name, "family": get_spec(name).family, "seed": seed,
           "dataset_hash": data.content_hash, "n_users": int(len(data.histories("test"))),
           "model_window": int(model.window), "config": dataclasses.asdict(model.config),
           "fit": {"best_epoch": fit.best_epoch, "best_valid_ndcg@10": fit.best_valid, "epochs_run": fit.epochs_run,
                   "seconds": round(train_seconds, 1)}}
    if name == "llmsrec":
        row["llm"] = {"name": model.config.llm, "dtype": str(getattr(model, "llm_dtype", model.config.dtype))}

    def probe(probe_name: str, options: dict[str, str]):
        pc = ProbeContext(model=model, data=data, run=ctx, fit=lambda *_: None,
                          load_dataset=lambda n: load_dataset(n, home), options=options)
        return get_probe(probe_name).run(pc)

    for label, options in ((f"window={FIXED_WINDOW}", {"window": str(FIXED_WINDOW)}), ("own_window", {})):
        res = probe("shuffle-infer", options)
        row[label] = {**test_row(res), "window": res.probe_stats["window"],
                      "share_items_moved": res.probe_stats["share_items_moved"]}
    if horizon:
        res = probe("order-horizon", {})
        row["order_horizon"] = {k: res.probe_stats[k] for k in ("grid", "horizon", "best_k", "smallest_significant_k")}
        row["order_horizon"]["test_p_holm_at_best_k"] = res.test.p_value
    return row


def included(path: Path) -> dict:
    """A `seqbench run --probe shuffle-infer` result whose model window equals the fixed window."""
    raw = path.read_bytes()
    r = json.loads(raw)
    r = r["runs"][0] if "runs" in r else r
    stats = r.get("probe_stats", {})
    if r.get("probe") != "shuffle-infer" or stats.get("window") != FIXED_WINDOW:
        raise SystemExit(f"{path}: need a shuffle-infer result with window {FIXED_WINDOW}; got probe "
                         f"{r.get('probe')!r}, window {stats.get('window')!r}")
    t = r["test"]
    cond = {"relative_change": t["relative_change"], "ci95": t["ci95"], "p_value": t["p_value"],
            "n_users": t["n_users"], "n_nonzero": t["n_nonzero"], "effect_size": t["effect_size"],
            "original_ndcg@10": r["metrics"]["original"]["ndcg@10"],
            "probed_ndcg@10": r["metrics"]["probed"]["ndcg@10"], "window": FIXED_WINDOW,
            "share_items_moved": stats.get("share_items_moved")}
    return {"dataset": r["dataset"], "model": r["model"], "seed": r["seed"], "model_window": FIXED_WINDOW,
            "fit": r.get("fit"), f"window={FIXED_WINDOW}": cond, "own_window": cond,
            "provenance": {"included_from": str(path), "sha256": hashlib.sha256(raw).hexdigest(),
                           "mlflow_run_id": r.get("mlflow_run_id"),
                           "note": f"the model's own window is {FIXED_WINDOW} and permute_tail with the default "
                                   f"seed is exactly the window={FIXED_WINDOW} permutation: one run, both columns"}}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="", help="comma-separated prepared dataset names")
    ap.add_argument("--models", default="sasrec,gru4rec")
    ap.add_argument("--horizon-models", default="sasrec", help="models that also get the order-horizon curve")
    ap.add_argument("--set", action="append", help="model.key=value (repeatable, comma-separated)")
    ap.add_argument("--include", action="append", type=Path, default=[], help="existing result JSON to merge")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--data-home", type=Path, default=None)
    ap.add_argument("--output", type=Path, default=ROOT / "reports" / "window_check.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    home = data_home(args.data_home)
    sets = overrides(args.set)
    report = json.loads(args.output.read_text()) if args.output.exists() else {"rows": []}
    horizon_models = {m for m in args.horizon_models.split(",") if m}

    def save(row: dict, info: dict) -> None:
        row["machine"] = finish(info)
        key = (row["dataset"], row["model"])
        report["rows"] = [r for r in report["rows"] if (r["dataset"], r["model"]) != key] + [row]
        report["fixed_window"] = FIXED_WINDOW
        report["command"] = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
        write_json_atomic(report, args.output)

    for path in args.include:
        save(included(path), machine_info())
    for dataset in [d for d in args.datasets.split(",") if d]:
        for name in [m for m in args.models.split(",") if m]:
            info = machine_info()
            print(f"[{time.strftime('%H:%M:%S')}] {dataset} / {name} (load {os.getloadavg()[0]:.2f})", flush=True)
            row = check_one(dataset, name, home, sets.get(name, {}), args.seed, args.device,
                            name in horizon_models)
            save(row, info)
            w, o = row[f"window={FIXED_WINDOW}"], row["own_window"]
            print(f"  window={FIXED_WINDOW}: {w['relative_change']:+.1%} p={w['p_value']:.2g}; own "
                  f"({o['window']}): {o['relative_change']:+.1%} p={o['p_value']:.2g}", flush=True)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
