"""`seqbench sweep` vs the same grid run serially with `seqbench run`, then the identical sweep again.

Grid: {pop, sasrec, gru4rec} x {shuffle-infer, cosine, shuffle-train} x seeds {0, 1} on a prepared ml-100k.
1. serial: one `seqbench run --probe shuffle-infer,cosine,shuffle-train --seeds 0,1` per model (the workflow
   before sweeps: each model trains once per seed, shuffle-train trains a second one), 2 torch threads;
2. sweep: `seqbench sweep` on local Ray, one task per (model, seed), 1 CPU (= 1 torch thread) per task;
3. the identical sweep again: it must find every result logged and train nothing.
Serial and sweep use separate empty model stores and tracking stores, so neither reuses the other's work.
Training is capped (``--epochs``, default 10) so the comparison fits a shared 2-core machine; it measures the
harness (parallelism, reuse), not model quality. Stores the run in ``benchmarks/results/sweep.json`` (the
envelope of ``seqbench.benchinfo``: command, commit, machine; options that differ from the defaults are the run's
``variant``).

    SEQBENCH_DATA_HOME=/work/data flock /work/compute.lock python scripts/bench_sweep.py
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mlflow

from seqbench.benchinfo import begin, record, result_file, variant_of

MODELS = ["pop", "sasrec", "gru4rec"]
PROBES = ["shuffle-infer", "cosine", "shuffle-train"]
SEEDS = [0, 1]


def timed(cmd: list[str], env: dict) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    secs = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return secs, proc.stdout


def probe_runs(uri: str, experiment: str) -> list[dict]:
    mlflow.set_tracking_uri(uri)
    df = mlflow.search_runs(experiment_names=[experiment], filter_string="tags.run_kind = 'probe'")
    return [{"model": r["params.model"], "probe": r["params.probe"], "seed": int(r["params.seed"]),
             "ndcg": r["metrics.original_ndcg_at_10"], "result_id": r.get("tags.result_id")}
            for _, r in df.iterrows()]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--output", type=Path, default=result_file("sweep", Path(__file__).resolve().parents[1]))
    args = ap.parse_args(argv)
    run = begin("sweep", __file__, argv, variant_of(ap, args, skip=("output",)))
    work = Path(tempfile.mkdtemp(prefix="bench_sweep-"))
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    sets = f"max_epochs={args.epochs}"
    seqbench = [sys.executable, "-m", "seqbench.cli"]

    serial_uri = f"sqlite:///{work / 'serial.db'}"
    serial_env = {**env, "SEQBENCH_MODEL_STORE": str(work / "store-serial")}
    serial = {}
    for model in MODELS:
        cmd = [*seqbench, "run", "--model", model, "--probe", ",".join(PROBES), "--seeds", ",".join(map(str, SEEDS)),
               "--dataset", args.dataset, "--tracking-uri", serial_uri]
        if model != "pop":
            cmd += ["--set", sets]
        serial[model], _ = timed(cmd, serial_env)
        print(f"serial {model}: {serial[model]:.1f} s", flush=True)

    grid = work / "grid.yaml"
    grid.write_text(json.dumps({  # JSON is valid YAML
        "experiment": "bench-sweep", "datasets": [args.dataset], "models": MODELS, "probes": PROBES,
        "seeds": SEEDS, "set": {m: {"max_epochs": args.epochs} for m in MODELS if m != "pop"}}))
    sweep_uri = f"sqlite:///{work / 'sweep.db'}"
    sweep_env = {k: v for k, v in env.items() if k != "RAY_ADDRESS"}  # a local Ray, started by the sweep
    sweep_env["SEQBENCH_MODEL_STORE"] = str(work / "store-sweep")
    sweep_cmd = [*seqbench, "sweep", str(grid), "--tracking-uri", sweep_uri, "--cpus-per-task", "1"]
    first, out1 = timed(sweep_cmd, sweep_env)
    print(f"sweep: {first:.1f} s: {out1.strip()}", flush=True)
    second, out2 = timed(sweep_cmd, sweep_env)
    print(f"sweep again: {second:.1f} s: {out2.strip()}", flush=True)
    trained_again = int(re.search(r"(\d+) models trained", out2).group(1))

    s_runs, w_runs = probe_runs(serial_uri, "seqbench"), probe_runs(sweep_uri, "bench-sweep")
    key = lambda r: (r["model"], r["probe"], r["seed"])  # noqa: E731
    s_ndcg = {key(r): r["ndcg"] for r in s_runs}
    diffs = [abs(s_ndcg[key(r)] - r["ndcg"]) for r in w_runs if key(r) in s_ndcg]
    total_serial = sum(serial.values())
    result = {
        "grid": {"dataset": args.dataset, "models": MODELS, "probes": PROBES, "seeds": SEEDS,
                 "set": sets + " (sasrec, gru4rec)"},
        "serial_seconds": {**serial, "total": total_serial},
        "sweep_seconds": first,
        "sweep_again_seconds": second,
        "sweep_vs_serial": first / total_serial,
        "again_vs_first": second / first,
        "sweep_output": out1.strip(),
        "sweep_again_output": out2.strip(),
        "models_trained_again": trained_again,
        "probe_runs": {"serial": len(s_runs), "sweep": len(w_runs),
                       "sweep_distinct_result_ids": len({r["result_id"] for r in w_runs})},
        "max_abs_diff_original_ndcg@10_serial_vs_sweep": max(diffs) if diffs else None,
        "commands": {"serial": "seqbench run --model M --probe " + ",".join(PROBES) + " --seeds 0,1 --dataset "
                     f"{args.dataset} --set {sets} (OMP_NUM_THREADS=2), one per model",
                     "sweep": "seqbench sweep grid.yaml --cpus-per-task 1 (local Ray, num_cpus=os.cpu_count())"},
    }
    record(run, result, args.output)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
