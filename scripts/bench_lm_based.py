"""LM-based recommenders (CTRL, RECFORMER) next to SASRec and pop (issue 10, paper Table 6's middle group).

Per prepared dataset and model, through the runner (so every number is also an MLflow run):
1. ``shuffle-infer`` + ``cosine`` with the common ``window=10`` (every model's shuffle moves the same items;
   this run trains the model, or takes it from the trained-model store);
2. ``shuffle-infer`` with the model's own window (the store hands back the model trained in 1);
3. unless ``--no-other-probes``: every other inference probe on the same trained model (reverse, recency,
   jaccard, transition, warm-cold, order-horizon), and with ``--shuffle-train`` the retraining probe too.
Each row also gets a paired Wilcoxon test of its original per-user NDCG@10 against ``pop`` on the same users
(``seqbench compare``'s statistics), Holm over the rows of a dataset.

Writes ``reports/bench_lm_based.json`` after every row. ``--resume`` keeps rows whose dataset hash and
settings match, so a model added later (``--models recformer``) is measured without re-running the others;
each row records its own machine load and code version. ``fit`` is the training run's own report (the store keeps
it with the model, so a model the store already held shows its original fit seconds);
``first_run_wall_seconds`` is run 1's wall time here, small when the store held the model. The default model
store is a fresh temporary one, so every fit is timed in this run.

    python scripts/bench_lm_based.py --datasets ml-100k,beauty-s05 --models sasrec,ctrl,recformer \\
        --tracking-uri sqlite:////work/runs/lm_based.db
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console

from seqbench.atomic import write_json_atomic
from seqbench.benchinfo import finish, machine_info
from seqbench.compare import compare_runs
from seqbench.config import parse_model_sets, parse_sets
from seqbench.data.store import data_home, load_dataset
from seqbench.errors import SeqbenchError
from seqbench.models import get_spec
from seqbench.runner import RunSpec, run
from seqbench.stats.multiple import holm
from seqbench.version import code_version

ROOT = Path(__file__).resolve().parents[1]
COMMON_WINDOW = 10
ALPHA = 0.05
OTHER_PROBES = ["reverse", "recency", "jaccard", "transition", "warm-cold", "order-horizon"]


def test_summary(r: dict) -> dict:
    t = r["test"]
    return {"relative_change": t["relative_change"], "ci95": t["ci95"], "p_value": t["p_value"],
            "metric": t.get("metric"), "n_users": t["n_users"]}


def one_model(label: str, model: str, dataset: str, over: dict[str, str], home: Path, uri: str, other: bool,
              shuffle_train: bool, console: Console) -> dict:
    def go(probes: list[str], options: dict[str, str] | None = None) -> dict[str, dict]:
        result = run(RunSpec(model=model, probes=probes, dataset=dataset, overrides=over,
                             probe_options=options or {}, data_home=home, tracking_uri=uri), console)
        return {r["probe"]: r for r in result["runs"]}

    info = machine_info()
    t0 = time.perf_counter()
    if model == "pop":  # reads no history: no representation, nothing to shuffle; its original run is the floor
        common = go(["shuffle-infer"])
    else:
        common = go(["shuffle-infer", "cosine"], {"window": str(COMMON_WINDOW)})
    fit_wall = time.perf_counter() - t0
    shuffle = common["shuffle-infer"]
    own = go(["shuffle-infer"])["shuffle-infer"] if model != "pop" else shuffle
    row = {"label": label, "model": model, "family": get_spec(model).family, "settings": over,
           "code_version": code_version(),
           "model_window": own["probe_stats"]["window"],
           "ndcg@10": shuffle["metrics"]["original"]["ndcg@10"], "hr@10": shuffle["metrics"]["original"]["hr@10"],
           "fit": shuffle["fit"], "first_run_wall_seconds": round(fit_wall, 1),
           f"shuffle_window={COMMON_WINDOW}": {**test_summary(shuffle), "window": shuffle["probe_stats"]["window"]},
           "shuffle_own_window": {**test_summary(own), "window": own["probe_stats"]["window"]},
           "cosine_mean": common["cosine"]["probe_stats"].get("cosine_mean") if "cosine" in common else None,
           "mlflow_run_id": shuffle.get("mlflow_run_id")}
    probes = [*(OTHER_PROBES if other else []), *(["shuffle-train"] if shuffle_train else [])]
    if probes and model != "pop":
        row["other_probes"] = {name: test_summary(r) for name, r in go(probes).items()}
    row["machine"] = finish(info)
    return row


def summarise(rows: dict[str, dict], pop_id: str | None, uri: str) -> list[dict]:
    """Each row against pop (paired Wilcoxon on original per-user NDCG@10), Holm over the dataset's rows."""
    out = sorted(rows.values(), key=lambda r: r["label"])
    scored = [r for r in out if r["model"] != "pop" and pop_id]
    for r in scored:
        if "vs_pop" not in r:
            t = compare_runs([pop_id, r["mlflow_run_id"]], "ndcg@10", "original", uri)["comparisons"][0]["test"]
            r["vs_pop"] = {"pop_ndcg@10": t["mean_reference"], "relative_change": t["relative_change"],
                           "ci95": t["ci95"], "p_value": t["p_value"]}
    for r, p in zip(scored, holm([r["vs_pop"]["p_value"] for r in scored]), strict=True):
        r["vs_pop"]["p_holm"] = float(p)
        r["vs_pop"]["beats_pop"] = bool(p < ALPHA and r["vs_pop"]["relative_change"] > 0)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", default="ml-100k,beauty-s05", help="comma-separated prepared dataset names")
    ap.add_argument("--models", default="sasrec,ctrl,recformer", help="pop is always added")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="model.key=value, comma-separated")
    ap.add_argument("--row", action="append", default=[], metavar="LABEL=MODEL:K=V,...",
                    help="an extra row under its own label, e.g. ctrl-contrastive=ctrl:variant=contrastive")
    ap.add_argument("--no-other-probes", action="store_true", help="only shuffle-infer and cosine")
    ap.add_argument("--shuffle-train", action="store_true", help="also the shuffle-train probe (retrains)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data-home", type=Path, default=None)
    ap.add_argument("--tracking-uri", default=None, help="default: --resume's store, else a temporary one")
    ap.add_argument("--out", type=Path, default=ROOT / "reports" / "bench_lm_based.json")
    ap.add_argument("--resume", action="store_true", help="keep matching rows already in --out, run the rest")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    os.environ.setdefault("SEQBENCH_MODEL_STORE", tempfile.mkdtemp(prefix="bench-lm-store-"))
    console = Console(stderr=True, width=160)
    home = data_home(args.data_home)
    over = parse_model_sets(args.sets)
    todo = {m: (m, over.get(m, {})) for m in ["pop", *[m for m in args.models.split(",") if m and m != "pop"]]}
    for spec in args.row:
        label, eq, rest = spec.partition("=")
        model, _, sets = rest.partition(":")
        if not eq or not model:
            raise SystemExit(f"--row expects LABEL=MODEL[:key=value,...]; got '{spec}'")
        get_spec(model)
        todo[label] = (model, {**over.get(model, {}), **parse_sets([sets] if sets else [])})
    out = json.loads(args.out.read_text()) if args.resume and args.out.exists() else {"datasets": {}}
    # kept rows are compared with pop's run in the store they were logged to: resume in that store
    uri = args.tracking_uri or out.get("tracking_uri") or f"sqlite:///{tempfile.mkdtemp()}/mlflow.db"
    out.update({"common_window": COMMON_WINDOW, "alpha": ALPHA, "tracking_uri": uri,
                "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])})
    for name in [d for d in args.datasets.split(",") if d]:
        data_hash = load_dataset(name, home).content_hash
        old = out["datasets"].get(name, {})
        same = old.get("dataset_hash") == data_hash
        rows = {r.get("label", r["model"]): r for r in old.get("rows", [])} if same else {}
        for label, (model, settings) in todo.items():
            kept = rows.get(label)
            if kept and kept.get("model") == model and kept.get("settings") == settings:
                console.print(f"[dim]{name}: {label} kept from {args.out}[/dim]")
                continue
            console.print(f"[bold]{name} / {label}[/bold] (load {os.getloadavg()[0]:.2f})")
            rows[label] = one_model(label, model, name, settings, home, uri, not args.no_other_probes,
                                    args.shuffle_train, console)
            pop_id = rows["pop"]["mlflow_run_id"] if "pop" in rows else None
            out["datasets"][name] = {"dataset": name, "dataset_hash": data_hash, "pop_run_id": pop_id,
                                     "rows": summarise(rows, pop_id, uri)}
            write_json_atomic(out, args.out)
    for name, d in out["datasets"].items():
        console.print(f"{name}:")
        for r in d["rows"]:
            w, o, pop = r[f"shuffle_window={COMMON_WINDOW}"], r["shuffle_own_window"], r.get("vs_pop", {})
            console.print(f"  {r['label']:<16} ndcg@10 {r['ndcg@10']:.4f}  fit {r['fit']['seconds']:.0f}s  "
                          f"shuffle@10 {w['relative_change']:+.1%} p {w['p_value']:.2g}  own({o['window']}) "
                          f"{o['relative_change']:+.1%} p {o['p_value']:.2g}  vs pop "
                          f"{pop.get('relative_change', float('nan')):+.1%} "
                          f"p_holm {pop.get('p_holm', float('nan')):.2g}")
    console.print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SeqbenchError as e:
        sys.exit(f"error: {e}")
