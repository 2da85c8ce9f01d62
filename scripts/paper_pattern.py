"""The paper's comparison on this project's data (issue 9, paper Tables 3-6, Fig. 1): does shuffling the
history move SASRec and LLM-SRec but not TALLRec, LLaRA, CoLLM and A-LLMRec?

For each dataset ((a) the synthetic control ``--order 0.9 --users 400 --items 200``, (b) the Beauty sample
prepared with ``seqbench data prepare ... --sample-users 0.05 --sample-stage after``) and each model, one run of
``shuffle-infer`` + ``cosine`` (the same trained model) through the runner, so every number is also in MLflow.
Every model's shuffle moves the same items: the probe window is set to 10 for all (``--probe-set window=10``,
the probe option of the probe issue); SASRec is also reported with its own window (128). ``window_used`` records
the window each probe reports, so a runner without the window option shows up instead of passing silently.

Writes ``reports/paper_pattern.json``: per dataset and model the original NDCG@10, shuffle-infer relative change
with its bootstrap 95 % CI and Wilcoxon p (raw and Holm-adjusted over the models of that dataset), cosine mean,
fit seconds and the MLflow run id; a per-dataset ``pattern`` block says whether LLM4Rec baselines are
order-blind and SASRec / LLM-SRec order-sensitive (significant drop at alpha 0.05 after Holm).

Usage (real data, hours on a CPU; run with the machine otherwise quiet):
  python scripts/paper_pattern.py --beauty beauty-s005 \\
    --set batch_size=4,max_epochs=2,val_every_frac=0.5,max_valid_users=100
Smoke (seconds): python scripts/paper_pattern.py --llm tiny-random --dtype fp32 --syn-users 150 --syn-items 200 \\
  --no-beauty --set teacher_epochs=1,max_epochs=1,batch_size=32,max_valid_users=4,val_every_frac=1.0,\\
  text_encoder=tiny-random,stage1_epochs=1 --sasrec-set max_epochs=2 --out /tmp/pp.json
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console

from seqbench.atomic import write_json_atomic
from seqbench.benchinfo import finish, machine_info
from seqbench.config import parse_sets
from seqbench.data.pipeline import prepare_source
from seqbench.data.preprocess import PrepareParams
from seqbench.data.sources.options import SourceOptions
from seqbench.data.store import data_home, list_datasets
from seqbench.llm.backbone import resolve_dtype
from seqbench.models import get_spec
from seqbench.runner import RunSpec, run
from seqbench.stats.multiple import holm

BASELINES = ["tallrec", "llara", "collm", "a-llmrec"]
SENSITIVE = ["sasrec", "llmsrec"]
COMMON_WINDOW = 10
ALPHA = 0.05


def synthetic_control(home: Path, users: int, items: int, order: float) -> str:
    name = f"syn-order{order:g}-u{users}-i{items}"
    if name not in list_datasets(home):
        prepare_source("synthetic", None, name, home, PrepareParams(),
                       SourceOptions(users=users, items=items, order=order, seed=0))
    return name


def one_model(label: str, model: str, dataset: str, overrides: dict[str, str], window: int | None,
              home: Path, uri: str, console: Console) -> dict:
    options = {"window": str(window)} if window is not None else {}
    t0 = time.perf_counter()
    result = run(RunSpec(model=model, probes=["shuffle-infer", "cosine"], dataset=dataset, overrides=overrides,
                         probe_options=options, data_home=home, tracking_uri=uri), console)
    runs = {r["probe"]: r for r in result["runs"]}
    shuffle, cosine = runs["shuffle-infer"], runs["cosine"]
    return {"label": label, "model": model, "window_asked": window, "window_used": shuffle["probe_stats"]["window"],
            "ndcg@10": shuffle["metrics"]["original"]["ndcg@10"],
            "ndcg@10_shuffled": shuffle["metrics"]["probed"]["ndcg@10"],
            "relative_change": shuffle["test"]["relative_change"], "ci95": shuffle["test"]["ci95"],
            "p_value": shuffle["test"]["p_value"], "n_users": shuffle["test"]["n_users"],
            "cosine_mean": cosine["probe_stats"].get("cosine_mean"),
            "fit_seconds": shuffle["fit"]["seconds"], "wall_seconds": time.perf_counter() - t0,
            "mlflow_run_id": shuffle.get("mlflow_run_id")}


def settings_for(models: list[str], settings: dict[str, str]) -> dict[str, dict[str, str]]:
    """Each LLM model gets the ``--set`` keys its config has (text_encoder is A-LLMRec's, distill LLM-SRec's);
    a key no model has is an error, so a typo never passes silently."""
    fields = {m: {f.name for f in dataclasses.fields(get_spec(m).load_class().config_cls)} for m in models}
    unknown = [k for k in settings if not any(k in f for f in fields.values())]
    if unknown:
        raise SystemExit(f"--set {unknown[0]}: no model among {models} has this setting")
    return {m: {k: v for k, v in settings.items() if k in fields[m]} for m in models}


def verdict(rows: list[dict]) -> dict:
    """Order-sensitive = significant (Holm over this dataset's rows) drop of NDCG@10 under shuffle-infer."""
    def sensitive(r: dict) -> bool:
        return r["p_holm"] < ALPHA and r["relative_change"] < 0

    by = {r["label"]: r for r in rows}
    blind = {m: not sensitive(by[m]) for m in BASELINES if m in by}
    sens = {lab: sensitive(r) for lab, r in by.items() if r["model"] in SENSITIVE}
    return {"llm4rec_order_blind": blind, "order_sensitive": sens,
            "holds": bool(blind) and all(blind.values()) and bool(sens) and all(sens.values())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="sasrec,tallrec,llara,collm,a-llmrec,llmsrec")
    ap.add_argument("--llm", default=None, help="LLM for the LLM models (default: the models' own, smollm2-135m)")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="LLM models' settings, k=v,...")
    ap.add_argument("--sasrec-set", action="append", default=[], help="SASRec settings, k=v,...")
    ap.add_argument("--beauty", default="beauty-s005", help="prepared Beauty sample (skipped with a note if absent)")
    ap.add_argument("--no-beauty", action="store_true")
    ap.add_argument("--syn-users", type=int, default=400)
    ap.add_argument("--syn-items", type=int, default=200)
    ap.add_argument("--syn-order", type=float, default=0.9)
    ap.add_argument("--data-home", type=Path, default=None)
    ap.add_argument("--tracking-uri", default=None, help="default: a temporary sqlite store")
    ap.add_argument("--out", type=Path, default=Path("reports/paper_pattern.json"))
    args = ap.parse_args(argv)
    console = Console(stderr=True, width=160)
    info = machine_info()
    home = data_home(args.data_home)
    uri = args.tracking_uri or f"sqlite:///{tempfile.mkdtemp()}/mlflow.db"
    llm_over = {**({"llm": args.llm} if args.llm else {}), "dtype": args.dtype, **parse_sets(args.sets)}
    sasrec_over = parse_sets(args.sasrec_set)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    per_model = settings_for([m for m in models if m != "sasrec"], llm_over)

    datasets = {"synthetic_control": synthetic_control(home, args.syn_users, args.syn_items, args.syn_order)}
    notes = []
    if not args.no_beauty:
        if args.beauty in list_datasets(home):
            datasets["beauty_sample"] = args.beauty
        else:
            notes.append(f"dataset '{args.beauty}' is not prepared in {home}; Beauty rows skipped")
    out: dict = {"machine": info, "llm_settings": llm_over, "sasrec_settings": sasrec_over,
                 "dtype_resolved": str(resolve_dtype(args.dtype, torch.device("cpu"))),
                 "common_window": COMMON_WINDOW, "alpha": ALPHA, "datasets": {}, "notes": notes}
    for key, name in datasets.items():
        rows = []
        for model in models:
            over = sasrec_over if model == "sasrec" else per_model[model]
            rows.append(one_model(model, model, name, over, COMMON_WINDOW, home, uri, console))
            if model == "sasrec":
                rows.append(one_model("sasrec (own window)", model, name, over, None, home, uri, console))
        for r, p in zip(rows, holm([r["p_value"] for r in rows]), strict=True):
            r["p_holm"] = float(p)
        out["datasets"][key] = {"dataset": name, "rows": rows, "pattern": verdict(rows)}
        if any(r["window_used"] != r["window_asked"] for r in rows if r["window_asked"] is not None):
            notes.append(f"{key}: the probe ignored window={COMMON_WINDOW} for some models (runner without the "
                         "probe window option); compare window_used")
    out["machine"] = finish(info)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out, args.out)
    for key, d in out["datasets"].items():
        console.print(f"{key} ({d['dataset']}): pattern holds = {d['pattern']['holds']}")
        for r in d["rows"]:
            console.print(f"  {r['label']:<20} ndcg@10 {r['ndcg@10']:.4f}  shuffle {r['relative_change']:+.1%} "
                          f"[{r['ci95'][0]:+.1%}, {r['ci95'][1]:+.1%}] p_holm {r['p_holm']:.2g}  "
                          f"cos {r['cosine_mean']:.3f}  window {r['window_used']}")
    console.print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
