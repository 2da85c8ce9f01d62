"""`seqbench tune`: trials per hour with one CPU per trial, the epochs ASHA saves against running the same trials
to their end, and a tune killed and resumed against the same tune uninterrupted.

1. asha: `seqbench tune` (Optuna TPE seeded, ASHA), one CPU per trial, as many trials at once as the cores allow;
2. fifo: the same trials (asha's sampled configs, in its order, given to Optuna as its first points) with
   ``scheduler="fifo"``: every trial runs to its end (its own early stop included);
3. resume: the tune as `seqbench tune --max-concurrent 1` (one trial at a time repeats exactly) uninterrupted,
   and again in a fresh data home and store, SIGKILLed with its local Ray (the whole session) once ``--kill-after``
   trials have ended in Tune's snapshot, then run again with the same command.

Every tune gets its own copy of the dataset (its ``tuned/`` folder), its own empty model store and MLflow store
(in a temporary folder, removed at the end), so none reuses another's models and the data home's own tuned layer
is not touched. Epochs of a trial: the last epoch it validated (stopped trials stop at a check); an ASHA tune's
epochs include those of training its winner to its end when ASHA had stopped it. Stores the run in
``benchmarks/results/tune.json`` (the envelope of ``seqbench.benchinfo``).

    SEQBENCH_DATA_HOME=/work/data flock /work/compute.lock python scripts/bench_tune.py
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from seqbench.benchinfo import begin, record, result_file, variant_of
from seqbench.data.store import data_home
from seqbench.tune import TuneSpec, ended_trials, run_tune


def say(text: str) -> None:
    print(f"[bench_tune {time.strftime('%H:%M:%S')}] {text}", flush=True)


def session_pids(sid: int) -> list[int]:
    """Processes of the session ``sid`` (Linux /proc): a killed tune's driver and the local Ray it started (Ray's
    workers run in process groups of their own, so a kill of the driver's group misses them)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[3]) == sid:  # after the name: state, ppid, pgrp, session
            pids.append(int(stat.parent.name))
    return pids


def kill_after(cmd: list[str], env: dict[str, str], experiment_root: Path, ended: int, sig: int = signal.SIGKILL,
               timeout: float = 600) -> dict[str, str]:
    """Start ``cmd`` (a `seqbench tune`) in a session of its own, wait until Tune's snapshot under
    ``experiment_root`` records ``ended`` ended trials, send ``sig`` to the whole session and wait for it to be
    gone; returns the ended trials (id -> status) of the last snapshot before the kill."""
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline, done = time.monotonic() + timeout, {}
    try:
        while len(done) < ended:
            if proc.poll() is not None:
                raise RuntimeError(f"{' '.join(cmd)} ended ({proc.returncode}) before {ended} trials ended")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{ended} trials did not end within {timeout} s")
            time.sleep(0.2)
            done = {k: v for exp in experiment_root.glob("*") for k, v in ended_trials(exp).items()}
    finally:
        for pid in session_pids(proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        proc.wait(timeout=60)
        for _ in range(300):  # Ray's workers exit when their raylet is gone
            if not session_pids(proc.pid):
                break
            time.sleep(0.2)
        for pid in session_pids(proc.pid):  # what is left of the session this started
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    return done


def epochs(search: dict) -> int:
    """Epochs the tune trained: each trial's last validated epoch (a check every epoch), and those of the
    winner's completion after ASHA stopped it (from the checkpoint it resumed on)."""
    done = search["best"].get("completed")
    extra = done["epochs_run"] - done["resumed_from_check"] if done else 0
    return extra + sum(max((step for step, _ in t["curve"]), default=0) for t in search["results"])


def fresh(work: Path, name: str, source: Path, dataset: str) -> tuple[Path, dict[str, str]]:
    """A data home holding a copy of ``dataset`` and the environment of a tune with its own stores."""
    home = work / name / "home"
    shutil.copytree(source / dataset, home / dataset)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(SEQBENCH_MODEL_STORE=str(work / name / "store"), MLFLOW_TRACKING_URI=f"sqlite:///{work / name}/m.db")
    return home, env


def in_process(spec: TuneSpec, env: dict[str, str]) -> tuple[dict, float]:
    """Run ``spec`` here with ``env``'s stores; (search record, seconds)."""
    before = os.environ.get("SEQBENCH_MODEL_STORE")
    os.environ["SEQBENCH_MODEL_STORE"] = env["SEQBENCH_MODEL_STORE"]
    try:
        start = time.perf_counter()
        report = run_tune(dataclasses.replace(spec, tracking_uri=env["MLFLOW_TRACKING_URI"]))
        secs = time.perf_counter() - start
    finally:
        if before is None:
            os.environ.pop("SEQBENCH_MODEL_STORE")
        else:
            os.environ["SEQBENCH_MODEL_STORE"] = before
    return json.loads((report.folder / "search.json").read_text()), secs


def summary(search: dict, secs: float) -> dict:
    trials = len(search["results"])
    return {"seconds": secs, "trials": trials, "trials_per_hour": trials / secs * 3600, "epochs": epochs(search),
            "best_valid": search["best"]["valid"], "best_layer": search["best"]["layer"],
            "completed_winner": search["best"].get("completed"),
            "stopped": sum(t["status"] == "stopped" for t in search["results"])}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--model", default="sasrec")
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--max-epochs", type=int, default=20)
    ap.add_argument("--kill-after", type=int, default=3, help="ended trials before the kill (0: no resume check)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-home", type=Path, default=None, help="where the dataset is prepared (default: "
                    "$SEQBENCH_DATA_HOME)")
    ap.add_argument("--output", type=Path, default=result_file("tune", Path(__file__).resolve().parents[1]))
    args = ap.parse_args(argv)
    run = begin("tune", __file__, argv, variant_of(ap, args, skip=("output", "data_home")))
    source = data_home(args.data_home)
    work = Path(tempfile.mkdtemp(prefix="bench_tune-"))
    fixed = {"max_epochs": str(args.max_epochs), "eval_every": "1"}
    cores = os.cpu_count() or 1
    import ray

    started = not ray.is_initialized()
    try:
        home, env = fresh(work, "asha", source, args.dataset)
        # the trials the searcher draws, as in the committed run (the defaults are not a trial of their own)
        base = TuneSpec(model=args.model, dataset=args.dataset, trials=args.trials, seed=args.seed, overrides=fixed,
                        data_home=home, cpus_per_trial=1.0, defaults_first=False)
        say(f"asha: {args.trials} trials of {args.model} on {args.dataset}, {cores} at once")
        asha, asha_s = in_process(base, env)
        say(f"asha: {asha_s:.0f} s, best valid {asha['best']['valid']:.4f}, {epochs(asha)} epochs")
        configs = [t["config"] for t in asha["results"]]  # in the order Tune created the trials
        home, env = fresh(work, "fifo", source, args.dataset)
        say("fifo: the same trials, each to its end")
        fifo, fifo_s = in_process(dataclasses.replace(base, data_home=home, scheduler="fifo", first_configs=configs),
                                  env)
        say(f"fifo: {fifo_s:.0f} s, best valid {fifo['best']['valid']:.4f}, {epochs(fifo)} epochs")
        resume = None
        if args.kill_after > 0:
            resume = resumed_check(args, work, source, fixed)
    finally:
        if started:
            ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    a, f = summary(asha, asha_s), summary(fifo, fifo_s)
    result = {
        "dataset": args.dataset, "model": args.model, "trials": args.trials, "max_epochs": args.max_epochs,
        "seed": args.seed, "cpus_per_trial": 1, "concurrent": cores, "space": asha["space"],
        "asha": a, "fifo": f,
        "epochs_saved_share": 1 - a["epochs"] / f["epochs"] if f["epochs"] else None,
        "same_configs": [t["config"] for t in asha["results"]] == [t["config"] for t in fifo["results"]],
        "best_config_equal": a["best_layer"] == f["best_layer"],
        "best_valid_diff": a["best_valid"] - f["best_valid"],
        "resume": resume,
    }
    record(run, result, args.output)
    say(f"written to {args.output}")
    print(json.dumps(result, indent=2, default=str))
    return result


def resumed_check(args: argparse.Namespace, work: Path, source: Path, fixed: dict) -> dict:
    """Step 3: the CLI tune at one trial at a time, uninterrupted, then killed after ``--kill-after`` and rerun."""
    cmd = [sys.executable, "-m", "seqbench.cli", "tune", "--model", args.model, "--dataset", args.dataset,
           "--trials", str(args.trials), "--seed", str(args.seed), "--max-concurrent", "1", "--no-defaults-first",
           *[x for k, v in fixed.items() for x in ("--set", f"{k}={v}")]]
    out = {}
    for name in ("uninterrupted", "killed"):
        home, env = fresh(work, name, source, args.dataset)
        folder = home / "tuned" / args.dataset / args.model
        if name == "killed":
            say(f"resume: killing the tune once {args.kill_after} trials have ended")
            start = time.perf_counter()
            ended = kill_after([*cmd, "--data-home", str(home)], env, folder / "ray", args.kill_after, timeout=3600)
            out["killed_after_seconds"], out["ended_before_kill"] = time.perf_counter() - start, len(ended)
        say(f"resume: {name} run")
        start = time.perf_counter()
        proc = subprocess.run([*cmd, "--data-home", str(home)], env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        out[f"{name}_seconds"] = time.perf_counter() - start
        out[name] = json.loads((folder / "search.json").read_text())["best"]
        say(f"resume: {name}: best valid {out[name]['valid']:.4f}")
    out["resumed_best_equal"] = out["killed"]["layer"] == out["uninterrupted"]["layer"]
    return out


if __name__ == "__main__":
    main()
