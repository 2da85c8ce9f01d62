"""Benchmark the CF-SRec models (docs/models/*.md) and the popularity floor on MovieLens-100k.

Prepares ``../shared/data/ml-100k`` (relative to the repo root) into a data home, trains every selected
model with each seed through ``create_model(...).fit`` (early stopping on validation NDCG@10), evaluates
on the shared test candidates and stores the run in ``benchmarks/results/cf.json`` (the benchmark envelope
of ``seqbench.benchinfo``: command, commit, machine with CPU flags, threads and load before and after; options
that differ from the defaults are the run's ``variant``), whose ``result`` is:

    {model: {"best_epoch", "seconds_to_best", "seconds_per_epoch", "test_ndcg@10", "test_hr@10",
             "epochs_run", "curve": [[epoch, train_loss, valid_ndcg], ...], "config", "per_seed": {...}}}

Scalars are medians over seeds; ``curve`` is the first seed's; ``per_seed`` holds every seed's values.

    python scripts/bench_cf.py                                   # all models, seed 0 (long on CPU)
    python scripts/bench_cf.py --models gru4rec,pop --seeds 0,1,2
    python scripts/bench_cf.py --set bert4rec.lr=3e-3 --set nextitnet.dropout=0.1
    python scripts/bench_cf.py --max-epochs 2                    # smoke run
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from seqbench.benchinfo import begin, device_name, record, result_file, variant_of
from seqbench.config import parse_sets
from seqbench.context import RunContext, resolve_device, seed_everything
from seqbench.data.dataset import SeqDataset
from seqbench.data.pipeline import prepare_source
from seqbench.data.store import load_dataset
from seqbench.eval.evaluator import evaluate
from seqbench.models import MODELS, create_model, get_spec

ROOT = Path(__file__).resolve().parents[1]
RAW = ROOT.parent / "shared" / "data" / "ml-100k"
DATASET = "ml-100k"
DEFAULT_MODELS = ("sasrec", "gru4rec", "bert4rec", "nextitnet", "pop")
SCALARS = ("best_epoch", "seconds_to_best", "seconds_per_epoch", "test_ndcg@10", "test_hr@10", "epochs_run")


def overrides(sets: list[str] | None, models: list[str]) -> dict[str, dict[str, str]]:
    """``["bert4rec.lr=3e-3,gru4rec.dropout=0.1"]`` -> {"bert4rec": {"lr": "3e-3"}, "gru4rec": {...}}."""
    out: dict[str, dict[str, str]] = {m: {} for m in models}
    for key, value in parse_sets(sets).items():
        model, dot, field = key.partition(".")
        if not dot or model not in out:
            raise SystemExit(f"--set expects model.key=value with model in {', '.join(models)}; got '{key}'")
        out[model][field] = value
    return out


def load_data(home: Path) -> SeqDataset:
    if not (home / DATASET).exists():
        prepare_source("recbole", RAW, DATASET, home)
    return load_dataset(DATASET, home)


def run_one(name: str, data: SeqDataset, layers: list[dict[str, Any]], seed: int, device: str) -> dict:
    seed_everything(seed)
    model = create_model(name, data.n_items, *layers)
    start = time.perf_counter()
    fit = model.fit(data, data.histories("train"), RunContext(seed=seed, device=resolve_device(device)))
    seconds = time.perf_counter() - start
    test = evaluate(model, data.histories("test"), data.candidates["test"]).summary
    return {
        "best_epoch": fit.best_epoch,
        "seconds_to_best": round(fit.seconds_to_best, 3),
        "seconds_per_epoch": round(fit.seconds / fit.epochs_run, 4) if fit.epochs_run else 0.0,
        "test_ndcg@10": test["ndcg@10"],
        "test_hr@10": test["hr@10"],
        "epochs_run": fit.epochs_run,
        "seconds": round(seconds, 3),
        "best_valid_ndcg@10": fit.best_valid,
        "curve": [[e, loss, v] for e, loss, v in fit.curve],
        "config": dataclasses.asdict(model.config),
    }


def summarize(per_seed: dict[int, dict]) -> dict:
    first = next(iter(per_seed.values()))
    out: dict[str, Any] = {k: float(np.median([r[k] for r in per_seed.values()])) for k in SCALARS}
    out.update(curve=first["curve"], config=first["config"], seeds=list(per_seed),
               per_seed={str(s): {k: v for k, v in r.items() if k != "config"} for s, r in per_seed.items()})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(DEFAULT_MODELS), help="comma list of registered models")
    ap.add_argument("--seeds", default="0", help="comma list of seeds (medians are reported)")
    ap.add_argument("--set", action="append", dest="sets", metavar="MODEL.KEY=VALUE", help="config override")
    ap.add_argument("--max-epochs", type=int, default=None, help="cap every trained model's max_epochs")
    ap.add_argument("--data-home", type=Path, default=None, help="where ml-100k is prepared (default: temp)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", type=Path, default=result_file("cf", ROOT))
    args = ap.parse_args(argv)

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise SystemExit(f"unknown model(s) {', '.join(unknown)}; registered: {', '.join(MODELS)}")
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    sets = overrides(args.sets, models)
    prepared = args.data_home is not None and (args.data_home / DATASET / "meta.json").exists()
    if not prepared and not (RAW / "ml-100k.inter").exists():
        print(f"skipped: MovieLens-100k not found at {RAW} (expected ml-100k.inter there)", file=sys.stderr)
        return 0

    run = begin("cf", __file__, argv, variant_of(ap, args, skip=("out", "data_home")))
    with tempfile.TemporaryDirectory(prefix="bench_cf_") as tmp:
        data = load_data(args.data_home or Path(tmp))
        print(f"{DATASET}: {data.n_users} users, {data.n_items} items", file=sys.stderr)
        result: dict[str, dict] = {}
        for name in models:
            fields = {f.name for f in dataclasses.fields(get_spec(name).load_class().config_cls)}
            cap = {"max_epochs": args.max_epochs} if args.max_epochs and "max_epochs" in fields else {}
            per_seed = {seed: run_one(name, data, [cap, sets[name]], seed, args.device) for seed in seeds}
            result[name] = summarize(per_seed)
            r = result[name]
            print(f"{name:10s} test ndcg@10 {r['test_ndcg@10']:.4f} hr@10 {r['test_hr@10']:.4f} "
                  f"best epoch {r['best_epoch']:.0f}/{r['epochs_run']:.0f} "
                  f"{r['seconds_per_epoch']:.2f} s/epoch {r['seconds_to_best']:.0f} s to best", file=sys.stderr)
            # after every model, so a long run leaves partial results
            record(run, result, args.out, device=device_name(resolve_device(args.device)))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
