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
order-blind and SASRec / LLM-SRec order-sensitive (significant drop at alpha 0.05 after Holm). A row without
such a drop counts as order-blind only if it beats pop; one that does not is ``undecided`` (it learned too
little to show it), and so is the verdict while such a row is in it, unless another row already contradicts it.

Each dataset also gets a ``pop`` run, and every row a paired Wilcoxon test of its original per-user NDCG@10
against pop's (``seqbench compare``'s statistics, Holm over the rows of the dataset): the "beats pop" check.

The output is rewritten after every row. ``--resume`` keeps the rows already there whose settings match (same
dataset hash and model settings; each row records its code version, listed per dataset in ``code_versions``)
and runs only the missing ones (``--rerun sasrec``: that model's rows too), so the hours of LLM runs can be
split over several sessions (``--models tallrec`` now, ``--models llara`` later; use one ``--tracking-uri``).
A row killed mid-fit resumes from its last checkpoint (every validation check and every ``--checkpoint-minutes``)
when run again with the same code version.
A dataset's Holm adjustment and pattern verdict cover the rows present; ``complete`` says whether every model
of ``EXPECTED`` is there. The table holds one recipe: a kept row made under other settings than this
invocation's for its model (its ``--set`` / ``--model-set`` / ``--sasrec-set``, whether or not ``--models`` names
it: keep passing a recipe's ``--model-set`` in every later invocation) moves to the dataset's ``stale_rows``, out
of the Holm adjustment and the verdict, and comes back when an invocation uses its settings again. A
``--tracking-uri`` that lacks the kept pop run (a new store) gets a fresh pop run: pop is deterministic, so its
per-user numbers are the same.

Usage (real data, run with the machine otherwise quiet): a Beauty LLM row takes 50-65 min on a 2-core Xeon with
AMX bf16 (LLM-SRec 42 min of training + 6 min of probes, LLaRA 57 + 8, TALLRec 57 + 8), about 1 h 35 min on a
2-core CPU with avx512_bf16 only, 3 h 30 min to 4 h 30 min in fp32 on an AVX2-only one. ``--recipe cpu`` is the
committed table's recipe (``RECIPES``; it equals the ``--set`` and ``--model-set`` the table's rows were made
with, which earlier invocations spelled out):
  python scripts/paper_pattern.py --beauty beauty-s05 --tracking-uri sqlite:///$HOME/paper_pattern.db --resume \\
    --recipe cpu
Smoke (seconds): python scripts/paper_pattern.py --llm tiny-random --dtype fp32 --syn-users 150 --syn-items 200 \\
  --no-beauty --set teacher_epochs=1,max_epochs=1,batch_size=32,max_valid_users=4,val_every_frac=1.0,\\
  text_encoder=tiny-random,stage1_epochs=1 --sasrec-set max_epochs=2 --out /tmp/pp.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console

from seqbench.atomic import write_json_atomic
from seqbench.benchinfo import finish, machine_info
from seqbench.compare import compare_runs
from seqbench.config import parse_model_sets, parse_sets, resolve
from seqbench.data.pipeline import prepare_source
from seqbench.data.preprocess import PrepareParams
from seqbench.data.sources.options import SourceOptions
from seqbench.data.store import data_home, list_datasets, load_dataset
from seqbench.errors import SeqbenchError
from seqbench.llm.backbone import resolve_dtype
from seqbench.models import get_spec, settings_per_model
from seqbench.models.llm.recipes import is_proxy, recipe_of
from seqbench.runner import RunSpec, run
from seqbench.stats.multiple import holm
from seqbench.version import code_version

BASELINES = ["tallrec", "llara", "collm", "a-llmrec"]
SENSITIVE = ["sasrec", "llmsrec"]
EXPECTED = ["sasrec", "sasrec (own window)", *BASELINES, "llmsrec"]
COMMON_WINDOW = 10
# The table's recipe, so an invocation cannot drop part of it and send rows to ``stale_rows`` by accident:
# ``--recipe cpu`` stands for this ``--set`` and ``--model-set``; any given explicitly go on top. 560 steps of
# batch 4 over every train position, a check on 300 seeded validation users every 140 steps (0.0838 of
# beauty-s05's 1,672 steps an epoch), centred heads, in-batch negatives, and LLaRA with TALLRec's and CoLLM's
# q/v LoRA instead of its official all-linear one (docs/models.md, "Learning under a CPU budget").
RECIPES = {
    "cpu": {
        "set": "batch_size=4,max_epochs=1,max_steps=560,val_every_frac=0.0838,max_valid_users=300,"
               "head_init=centred,in_batch_negatives=true,autoregressive=true",
        "model_set": "llara.lora_targets=q_proj;v_proj,llara.lora_alpha=16,llara.lora_dropout=0.05",
    },
}
ALPHA = 0.05


def llm_recipe(llm_over: dict[str, str], model_over: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """Every LLM model's settings: the shared ``--set`` keys its config has, then its own ``--model-set`` keys on
    top (a recipe may give one model, e.g. LLaRA, another LoRA). Unknown models or keys are errors."""
    llm_models = [*BASELINES, "llmsrec"]
    unknown = sorted(set(model_over) - set(llm_models))
    if unknown:
        raise SeqbenchError(f"--model-set {unknown[0]}: not an LLM model of the table ({', '.join(llm_models)})")
    recipe = settings_per_model(llm_models, llm_over)
    for model, sets in model_over.items():
        recipe[model] = {**recipe[model], **settings_per_model([model], sets)[model]}
    return recipe


def with_recipe(name: str | None, sets: list[str], model_sets: list[str]) -> tuple[list[str], list[str]]:
    """``--set`` / ``--model-set`` lists with the named recipe's first, so explicit ones override its keys."""
    if name is None:
        return sets, model_sets
    recipe = RECIPES[name]
    return [recipe["set"], *sets], [recipe["model_set"], *model_sets]


def synthetic_control(home: Path, users: int, items: int, order: float) -> str:
    name = f"syn-order{order:g}-u{users}-i{items}"
    if name not in list_datasets(home):
        prepare_source("synthetic", None, name, home, PrepareParams(),
                       SourceOptions(users=users, items=items, order=order, seed=0))
    return name


def run_in_store(run_id: str | None, uri: str) -> bool:
    """Whether ``run_id`` is in this tracking store (a kept row's pop run is not when the store is new)."""
    if run_id is None:
        return False
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        MlflowClient(tracking_uri=uri).get_run(run_id)
    except MlflowException:
        return False
    return True


def pop_run(dataset: str, home: Path, uri: str, console: Console) -> str:
    """MLflow run id of pop's shuffle-infer run on ``dataset`` (its original per-user NDCG@10 is the baseline)."""
    result = run(RunSpec(model="pop", probes=["shuffle-infer"], dataset=dataset, data_home=home, tracking_uri=uri),
                 console)
    return result["runs"][0]["mlflow_run_id"]


def against_pop(row: dict, pop_id: str, uri: str) -> dict:
    """Paired Wilcoxon of the row's original per-user NDCG@10 against pop's, same users and data."""
    t = compare_runs([pop_id, row["mlflow_run_id"]], "ndcg@10", "original", uri)["comparisons"][0]["test"]
    return {"pop_ndcg@10": t["mean_reference"], "relative_change": t["relative_change"], "ci95": t["ci95"],
            "p_value": t["p_value"]}


def one_model(label: str, model: str, dataset: str, overrides: dict[str, str], window: int | None,
              home: Path, uri: str, console: Console, checkpoint_every_s: float = 0.0) -> dict:
    options = {"window": str(window)} if window is not None else {}
    t0 = time.perf_counter()
    result = run(RunSpec(model=model, probes=["shuffle-infer", "cosine"], dataset=dataset, overrides=overrides,
                         probe_options=options, data_home=home, tracking_uri=uri,
                         checkpoint_every_s=checkpoint_every_s), console)
    runs = {r["probe"]: r for r in result["runs"]}
    shuffle, cosine = runs["shuffle-infer"], runs["cosine"]
    return {"label": label, "model": model, "settings": overrides, "code_version": code_version(),
            "window_asked": window, "window_used": shuffle["probe_stats"]["window"],
            "ndcg@10": shuffle["metrics"]["original"]["ndcg@10"],
            "ndcg@10_shuffled": shuffle["metrics"]["probed"]["ndcg@10"],
            "relative_change": shuffle["test"]["relative_change"], "ci95": shuffle["test"]["ci95"],
            "p_value": shuffle["test"]["p_value"], "n_users": shuffle["test"]["n_users"],
            "cosine_mean": cosine["probe_stats"].get("cosine_mean"),
            "fit_seconds": shuffle["fit"]["seconds"], "wall_seconds": time.perf_counter() - t0,
            "mlflow_run_id": shuffle.get("mlflow_run_id")}


def order_sensitive(r: dict) -> bool | None:
    """True: a significant (Holm over this dataset's rows) drop of NDCG@10 under shuffle-infer. False: no such
    drop from a model that beats pop. None (undecided): no drop from a model that does not beat pop, which has
    learned too little to show that it ignores order (a drop shows use of order whatever the model learned)."""
    if r["p_holm"] < ALPHA and r["relative_change"] < 0:
        return True
    return False if r.get("vs_pop", {}).get("beats_pop") else None


def verdict(rows: list[dict]) -> dict:
    """The paper's pattern: every LLM4Rec baseline order-blind, SASRec and LLM-SRec order-sensitive. ``holds``
    is False when a decided row contradicts it, None while a row is undecided, True only when every row agrees."""
    by = {r["label"]: r for r in rows}
    flip = {True: False, False: True, None: None}  # order-blind is the negation; undecided stays undecided
    blind = {m: flip[order_sensitive(by[m])] for m in BASELINES if m in by}
    sens = {lab: order_sensitive(r) for lab, r in by.items() if r["model"] in SENSITIVE}
    calls = [*blind.values(), *sens.values()]
    if False in calls:
        holds = False
    elif None in calls or not blind or not sens:
        holds = None
    else:
        holds = True
    return {"llm4rec_order_blind": blind, "order_sensitive": sens, "holds": holds,
            "undecided": [lab for lab, v in [*blind.items(), *sens.items()] if v is None]}


def row_recipe(model: str, settings: dict[str, str]) -> dict:
    """The row's training recipe (``models/llm/recipes.py``: official, cpu-proxy, custom; None for SASRec) named
    from its settings, and whether the row is a proxy for the official recipe. Settings this code no longer
    reads name no recipe: ``unrecorded``, a proxy."""
    try:
        config = dataclasses.asdict(resolve(get_spec(model).load_class().config_cls, settings))
    except SeqbenchError:
        return {"recipe": "unrecorded", "proxy": True}
    recipe = recipe_of(model, config)
    return {"recipe": recipe, "proxy": is_proxy(recipe)}


def summarise(name: str, data_hash: str, pop_id: str, rows: list[dict], stale: list[dict]) -> dict:
    """Holm over the rows present (shuffle-infer p, and each row's test against pop), the pattern verdict, each
    row's recipe and the proxy rows (``proxy_rows``: LLM rows trained with a non-official recipe, whose verdict
    stands in for the official recipe's)."""
    rows = sorted(rows, key=lambda r: EXPECTED.index(r["label"]) if r["label"] in EXPECTED else len(EXPECTED))
    for r in [*rows, *stale]:
        r.update(row_recipe(r["model"], r.get("settings") or {}))
    for r, p in zip(rows, holm([r["p_value"] for r in rows]), strict=True):
        r["p_holm"] = float(p)
    with_pop = [r for r in rows if "vs_pop" in r]
    for r, p in zip(with_pop, holm([r["vs_pop"]["p_value"] for r in with_pop]), strict=True):
        r["vs_pop"]["p_holm"] = float(p)
        r["vs_pop"]["beats_pop"] = bool(p < ALPHA and r["vs_pop"]["relative_change"] > 0)
    present = {r["label"] for r in rows}
    complete = all(label in present for label in EXPECTED)
    pattern = verdict(rows)
    if not complete and pattern["holds"] is not False:  # a verdict on part of the models would overstate it
        pattern["holds"] = None
    return {"dataset": name, "dataset_hash": data_hash, "pop_run_id": pop_id, "rows": rows,
            "complete": complete, "pattern": pattern, "proxy_rows": [r["label"] for r in rows if r["proxy"]],
            "code_versions": sorted({r.get("code_version", "?") for r in rows}),
            "stale_rows": stale}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="sasrec,tallrec,llara,collm,a-llmrec,llmsrec")
    ap.add_argument("--llm", default=None, help="LLM for the LLM models (default: the models' own, smollm2-135m)")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="LLM models' settings, k=v,...")
    ap.add_argument("--model-set", action="append", default=[],
                    help="one LLM model's settings over --set, model.k=v,... (e.g. llara.lora_alpha=16)")
    ap.add_argument("--sasrec-set", action="append", default=[], help="SASRec settings, k=v,...")
    ap.add_argument("--recipe", choices=sorted(RECIPES), default=None,
                    help="the table's LLM recipe as one flag (cpu: RECIPES['cpu'], the committed table's); "
                         "--set / --model-set go on top")
    ap.add_argument("--beauty", default="beauty-s05", help="prepared Beauty sample (skipped with a note if absent)")
    ap.add_argument("--no-beauty", action="store_true")
    ap.add_argument("--no-synthetic", action="store_true",
                    help="skip the synthetic control this time (its kept rows stay in --out)")
    ap.add_argument("--syn-users", type=int, default=400)
    ap.add_argument("--syn-items", type=int, default=200)
    ap.add_argument("--syn-order", type=float, default=0.9)
    ap.add_argument("--data-home", type=Path, default=None)
    ap.add_argument("--tracking-uri", default=None, help="default: a temporary sqlite store")
    ap.add_argument("--out", type=Path, default=Path("reports/paper_pattern.json"))
    ap.add_argument("--resume", action="store_true", help="keep matching rows already in --out, run the rest")
    ap.add_argument("--rerun", default="", help="with --resume: models whose kept rows run again anyway "
                                               "(comma-separated, e.g. sasrec after a change to its code)")
    ap.add_argument("--checkpoint-minutes", type=float, default=10.0,
                    help="LLM fits also checkpoint at most this far apart, not only at validation checks, so a "
                         "killed row loses at most this much training (0: only at checks)")
    args = ap.parse_args(argv)
    console = Console(stderr=True, width=160)
    info = machine_info()
    home = data_home(args.data_home)
    uri = args.tracking_uri or f"sqlite:///{tempfile.mkdtemp()}/mlflow.db"
    sets, model_sets = with_recipe(args.recipe, args.sets, args.model_set)
    llm_over = {**({"llm": args.llm} if args.llm else {}), "dtype": args.dtype, **parse_sets(sets)}
    sasrec_over = parse_sets(args.sasrec_set)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    rerun = {m.strip() for m in args.rerun.split(",") if m.strip()}
    if rerun - set(models):
        raise SystemExit(f"--rerun {', '.join(sorted(rerun - set(models)))}: not among --models {args.models}")
    try:
        model_over = parse_model_sets(model_sets)
        settings_per_model([m for m in models if m != "sasrec"], llm_over)  # a --set key no model run has
        # every LLM model's settings under this invocation, those it does not run too: rows made under other
        # settings (an earlier recipe) leave the table instead of mixing into its Holm adjustment and verdict
        expected = {**llm_recipe(llm_over, model_over), "sasrec": sasrec_over}
    except SeqbenchError as e:
        raise SystemExit(str(e)) from None

    datasets = {}
    if not args.no_synthetic:
        datasets["synthetic_control"] = synthetic_control(home, args.syn_users, args.syn_items, args.syn_order)
    notes = []
    if not args.no_beauty:
        if args.beauty in list_datasets(home):
            datasets["beauty_sample"] = args.beauty
        else:
            notes.append(f"dataset '{args.beauty}' is not prepared in {home}; Beauty rows skipped")
    previous = json.loads(args.out.read_text()) if args.resume and args.out.exists() else {}
    # machine, llm_settings, model_settings, sasrec_settings: this invocation's; each row records its own settings
    out: dict = {"machine": info, "llm_settings": llm_over, "model_settings": model_over,
                 "sasrec_settings": sasrec_over,
                 "dtype_resolved": str(resolve_dtype(args.dtype, torch.device("cpu"))),
                 "common_window": COMMON_WINDOW, "alpha": ALPHA, "tracking_uri": uri,
                 "datasets": previous.get("datasets", {}), "notes": notes}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for key, name in datasets.items():
        data_hash = load_dataset(name, home).content_hash
        old = out["datasets"].get(key, {})
        pool = [*old.get("rows", []), *old.get("stale_rows", [])] if old.get("dataset_hash") == data_hash else []
        rows = {r["label"]: r for r in pool if r.get("settings") == expected.get(r["model"])}
        stale = [r for r in pool if rows.get(r["label"]) is not r]
        if stale:
            console.print(f"[yellow]{key}: {len(stale)} row(s) made under other settings set aside in "
                          f"stale_rows: {', '.join(r['label'] for r in stale)}[/yellow]")
        pop_id = old.get("pop_run_id") if rows else None
        if not run_in_store(pop_id, uri):  # pop is deterministic: a new store gets the same per-user numbers
            pop_id = pop_run(name, home, uri, console)
        todo = [(m, w) for m in models for w in ([COMMON_WINDOW, None] if m == "sasrec" else [COMMON_WINDOW])]
        for model, window in todo:
            label = model if window is not None else f"{model} (own window)"
            over = expected[model]
            kept = rows.get(label)
            if kept and model not in rerun:  # settings match (above); each row records its code version
                console.print(f"[dim]{key}: {label} kept from {args.out}[/dim]")
                continue
            row = one_model(label, model, name, over, window, home, uri, console, args.checkpoint_minutes * 60)
            row["vs_pop"] = against_pop(row, pop_id, uri)
            row["machine"] = {k: info[k] for k in ("cpu_model", "cpu_flags", "native_bf16", "torch_threads")}
            row["dtype_resolved"] = out["dtype_resolved"]  # rows of several sessions may come from other CPUs
            rows[label] = row
            out["datasets"][key] = summarise(name, data_hash, pop_id, list(rows.values()), stale)
            write_json_atomic(out, args.out)  # after every row: a long queue can stop and resume
        out["datasets"][key] = summarise(name, data_hash, pop_id, list(rows.values()), stale)
        if any(r["window_used"] != r["window_asked"] for r in rows.values() if r["window_asked"] is not None):
            notes.append(f"{key}: the probe ignored window={COMMON_WINDOW} for some models (runner without the "
                         "probe window option); compare window_used")
    out["machine"] = finish(info)
    write_json_atomic(out, args.out)
    for key, d in out["datasets"].items():
        undecided = d["pattern"].get("undecided") or []
        console.print(f"{key} ({d['dataset']}): pattern holds = {d['pattern']['holds']}"
                      + (f" (undecided, not above pop: {', '.join(undecided)})" if undecided else ""))
        for r in d["rows"]:
            pop = r.get("vs_pop", {})
            label = f"{r['label']} (proxy)" if r.get("proxy") else r["label"]
            console.print(f"  {label:<28} ndcg@10 {r['ndcg@10']:.4f}  shuffle {r['relative_change']:+.1%} "
                          f"[{r['ci95'][0]:+.1%}, {r['ci95'][1]:+.1%}] p_holm {r['p_holm']:.2g}  "
                          f"cos {r['cosine_mean']:.3f}  window {r['window_used']}  vs pop "
                          f"{pop.get('relative_change', float('nan')):+.1%} "
                          f"p_holm {pop.get('p_holm', float('nan')):.2g}")
    console.print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
