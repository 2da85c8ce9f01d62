"""A study run where neither Ray nor MLflow is installed, logged later where they are.

A lent accelerator machine has torch, transformers and peft but no Ray or MLflow, and nothing can be installed
there (docs/gpu.md). `seqbench sweep STUDY --offline DIR` plans the study exactly as `seqbench sweep` does, runs
its tasks one after another in this process, and writes each task's result (the ``SeedPass`` a Ray task returns
to the driver) to ``DIR/tasks/<trained-model identity>.pkl``; a task already there is not run again, so the
same command resumes after an interruption (and a fit killed mid-way resumes from its checkpoint, as in a
sweep). `seqbench sweep STUDY --log-offline DIR`, on a machine with MLflow, logs those results into the study's
experiment through the sweep's own bookkeeping (parent run, one child run per grid point, result identities,
the training curve of each trained model), so `seqbench report --study` reads them like any sweep's. A file is
logged only if its trained-model identity is the one this checkout plans (same code version, data and
settings); the files are pickles, so log only a folder you made.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import pickle
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from seqbench import record
from seqbench.atomic import write_atomic, write_json_atomic
from seqbench.context import resolve_device
from seqbench.errors import SeqbenchError
from seqbench.runner import SeedPass, seed_pass
from seqbench.sweep import (
    HPU,
    SweepReport,
    TaskPlan,
    device_for,
    finished_results,
    log_points,
    mark_done,
    parent_run,
    plan_study,
    task_resources,
    task_spec,
    threads_for,
)
from seqbench.tracking import Tracker, code_version

TASKS = "tasks"  # DIR/tasks/<identity>.pkl: one finished task each
MANIFEST = "manifest.json"  # what ran where: study, code version, machine, seconds per task
PROGRESS_EVERY_S = 60.0  # a training-loss line at most this often, between validation checks


@dataclass
class OfflineReport:
    plans: list[TaskPlan]
    ran: list[str] = field(default_factory=list)  # labels of the tasks this call ran
    already: int = 0  # tasks whose file was there before
    seconds: float = 0.0


def task_file(out: Path, plan: TaskPlan) -> Path:
    return Path(out) / TASKS / f"{plan.identity}.pkl"


def granted(model: str, accelerator: str, cpus: float) -> dict[str, float]:
    """What Ray would grant the task (``task_resources``), as the resources dict a Ray task reads."""
    opts = task_resources(model, accelerator, cpus)
    grant = {"CPU": float(opts["num_cpus"])}
    if opts.get("num_gpus"):
        grant["GPU"] = float(opts["num_gpus"])
    grant.update({k: float(v) for k, v in opts.get("resources", {}).items() if k == HPU})
    return grant


def run_offline(grid_path: Path, out: Path, *, accelerator: str = "cpu", cpus: float | None = None,
                home: Path | None = None, checkpoint_every_s: float = 0.0, console: Console | None = None,
                config: str | None = None) -> OfflineReport:
    """Run every task of the study whose file ``out`` lacks, in this process, on the device each model would
    get in a sweep with ``accelerator`` (a model that needs one gets it, the others run on the CPU), with
    ``cpus`` torch threads (default: every core)."""
    import torch

    start = time.perf_counter()
    console = console or Console(stderr=True)
    study = plan_study(grid_path, home, console, config)
    cpus = float(cpus or os.cpu_count() or 1)
    for plan in study.plans:
        task_resources(plan.model, accelerator, cpus)  # a bad accelerator fails before anything runs
    out = Path(out)
    manifest_path = out / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    if manifest and (manifest.get("experiment"), manifest.get("code")) != (study.grid.experiment, code_version()):
        raise SeqbenchError(f"{out} holds an offline run of experiment '{manifest.get('experiment')}' at code "
                            f"version {manifest.get('code')}, not '{study.grid.experiment}' at {code_version()}: "
                            f"give another folder")
    manifest.update(study=str(grid_path), experiment=study.grid.experiment, sweep_id=study.grid.sweep_id,
                    code=code_version(), accelerator=accelerator, host=platform.node())
    tasks = manifest.setdefault("tasks", {})
    report = OfflineReport(study.plans)
    for plan in study.plans:
        path = task_file(out, plan)
        if path.is_file():
            report.already += 1
            continue
        grant = granted(plan.model, accelerator, cpus)
        torch.set_num_threads(threads_for(grant))
        device = resolve_device(device_for(grant))
        console.print(f"[bold]{plan.label}[/bold] on {device}", highlight=False)
        began = time.perf_counter()
        sp = seed_pass(task_spec(study.grid, plan, accelerator, checkpoint_every_s), study.datasets[plan.dataset],
                       plan.layers, plan.seed, device, study.home, study.store,
                       live=_progress_printer(console, began))
        sp = dataclasses.replace(sp, placement=record.placement_tags(f"offline:{platform.node()}", str(device),
                                                                     grant))
        write_atomic(path, lambda p, sp=sp: p.write_bytes(_dumps(sp)))
        tasks[plan.identity] = {"label": plan.label, "seconds": round(time.perf_counter() - began, 1),
                                "device": str(device), "reused": sp.reused}
        write_json_atomic(manifest, manifest_path)
        report.ran.append(plan.label)
    report.seconds = time.perf_counter() - start
    return report


def log_offline(grid_path: Path, out: Path, *, tracking_uri: str | None = None, home: Path | None = None,
                console: Console | None = None, config: str | None = None) -> tuple[SweepReport, list[str]]:
    """Log the task files in ``out`` into the study's MLflow experiment; returns the report and the labels of
    planned tasks that have neither a file nor logged results (run the offline command again for them)."""
    start = time.perf_counter()
    console = console or Console(stderr=True)
    manifest_path = Path(out) / MANIFEST
    if not manifest_path.is_file():
        raise SeqbenchError(f"{out} holds no offline run (no {MANIFEST}): run `seqbench sweep STUDY --offline "
                            f"{out}` first")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("code") != code_version():
        raise SeqbenchError(f"{out} was run at code version {manifest.get('code')} and this checkout is "
                            f"{code_version()}: its trained-model identities are not the ones planned here; log it "
                            f"from a checkout of that version")
    study = plan_study(grid_path, home, console, config)
    grid = study.grid
    tracker = Tracker(tracking_uri, experiment=grid.experiment)
    mark_done(study.plans, finished_results(tracker, grid.experiment, delete_unfinished=True))
    report, missing = SweepReport(study.plans), []
    todo = [p for p in study.plans if p.todo]
    if not todo:
        report.seconds = time.perf_counter() - start
        return report, missing
    from seqbench.tracking_live import LiveCurves

    parent = parent_run(tracker, grid, Path(grid_path))
    report.parent_run_id = parent
    live = LiveCurves(tracker, experiment=grid.experiment, parent_run_id=parent)
    try:
        for plan in todo:
            path = task_file(out, plan)
            if not path.is_file():
                missing.append(plan.label)
                continue
            sp = _load(path)
            live.label(plan.identity, dataset=plan.dataset, model=plan.model, seed=plan.seed)
            for name, value, step in sp.steps:  # the training curve, as the sweep's live curve would have it
                live.add(plan.identity, name, value, step)
            live.finish(plan.identity)
            report.trained += not sp.reused
            log_points(tracker, grid, plan, task_spec(grid, plan, manifest["accelerator"], 0.0, tracking_uri), sp,
                       study.datasets[plan.dataset], parent, report)
    finally:
        live.flush()
        tracker.mlflow.MlflowClient().set_terminated(parent, status="FAILED" if missing else "FINISHED")
    report.seconds = time.perf_counter() - start
    return report, missing


def _progress_printer(console: Console, began: float, every_s: float = PROGRESS_EVERY_S):
    """A metric sink that prints each validation check, and the training loss at most once per ``every_s``
    seconds, so a long fit shows it is moving (no MLflow here to watch the curve grow in)."""
    last = began  # when the last training line was printed

    def show(ident: str, name: str, value: float, step: int) -> None:
        nonlocal last
        now = time.perf_counter()
        if name.startswith("valid_"):
            what = "check at"
        elif now - last >= every_s:
            what, last = "step", now
        else:
            return
        console.print(f"  {now - began:7.0f} s  {ident[:8]} {what} {step}: {name} {value:.4f}", highlight=False)

    return show


class _CPUPickler(pickle.Pickler):
    """Tensors an accelerator left in a result are written as CPU tensors, so a machine without that
    accelerator reads the file."""

    def reducer_override(self, obj):
        import torch

        if isinstance(obj, torch.Tensor) and obj.device.type != "cpu":
            return obj.cpu().__reduce_ex__(pickle.HIGHEST_PROTOCOL)
        return NotImplemented


def _dumps(sp: SeedPass) -> bytes:
    buf = io.BytesIO()
    _CPUPickler(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(sp)
    return buf.getvalue()


def _load(path: Path) -> SeedPass:
    try:
        sp = pickle.loads(path.read_bytes())
    except Exception as e:  # a truncated copy, or a file from another version of the code
        raise SeqbenchError(f"{path}: not a task result this checkout can read ({type(e).__name__}: {e})") from e
    if not isinstance(sp, SeedPass):
        raise SeqbenchError(f"{path}: not a task result (a {type(sp).__name__})")
    return sp
