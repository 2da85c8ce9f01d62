"""A simulated two-node Ray cluster (``ray.cluster_utils.Cluster``): the head advertises a GPU, the other node only
CPUs. A sweep and a tune run on it as on a real cluster (docs/sweeps.md "On a cluster"): LLM-family work lands on
the GPU node, CF work on the CPU node, every result reaches the driver's MLflow once, and the data home and the
trained-model store, given by the driver and the nodes' environment, are the ones every node reads and writes.

Placement is deterministic by design, not by luck: the GPU node has spare CPUs, so a CF task could run there, but
Ray's scheduler sends a task that asks for no GPU to a node without GPUs whenever one has room
(``scheduler_avoid_gpu_nodes``, on by default; ``HybridSchedulingPolicy::Schedule`` in Ray's raylet), and the CPU
node has room for every CF task here. A task that asks for a GPU can only run on the GPU node. The GPU is not
there: the GPU node's environment sets ``SEQBENCH_DEVICE=cpu``, so its tasks train on the CPU."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import mlflow
import pytest

from seqbench import record
from seqbench.data.pipeline import prepare_source
from seqbench.data.preprocess import PrepareParams
from seqbench.data.sources.options import SourceOptions
from seqbench.models.store import ModelStore
from seqbench.sweep import DEVICE_ENV, HPU, run_sweep

QUIET = {"include_dashboard": False, "no_monitor": True, "include_log_monitor": False}  # start-up time only
# two CPUs: room for a CF task, which must still go to the CPU node; its GPU and its Gaudi card (Ray's HPU
# resource) are only advertised, so its tasks train on the CPU (the raylet's environment, which its workers
# inherit, as a real node's from `ray start`)
GPU_NODE = {"num_cpus": 2, "num_gpus": 1, "resources": {HPU: 1}, "env_vars": {DEVICE_ENV: "cpu"}, **QUIET}
CPU_NODE = {"num_cpus": 2, "include_log_monitor": False}
SMALL = SourceOptions(users=60, items=140, order=0.9, seed=3, min_len=5, max_len=20)  # LLM evaluation scales with it
GRID = ("datasets: [tiny]\nmodels: [sasrec, llmsrec]\nprobes: [shuffle-infer]\nseeds: [0]\nset:\n"
        "  sasrec: {max_epochs: 2, eval_every: 1, d: 8, maxlen: 16}\n"
        "  llmsrec: {llm: tiny-random, dtype: fp32, teacher_epochs: 1, max_steps: 2, max_valid_users: 10}\n")


@pytest.fixture(autouse=True)
def fresh_model_store():
    """Overrides the suite's per-test store: the driver and both nodes share the module's one (``cluster``)."""


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    """MLflow puts a new experiment's artifacts under the working directory: keep them out of the repository."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """The two nodes, started with the environment a real cluster's nodes get before ``ray start``: the shared
    cache and model store (the data home is given by the driver); the driver connected to the head."""
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    if ray.is_initialized():  # another module's local Ray
        ray.shutdown()
    shared = tmp_path_factory.mktemp("shared")  # stands for the shared filesystem every node mounts
    home = shared / "data"
    prepare_source("synthetic", None, "tiny", home, PrepareParams(k=2), SMALL)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SEQBENCH_CACHE", str(shared / "cache"))
        env.setenv("SEQBENCH_MODEL_STORE", str(shared / "cache" / "models"))
        env.delenv("RAY_ADDRESS", raising=False)
        env.delenv(DEVICE_ENV, raising=False)
        nodes = Cluster(initialize_head=True, head_node_args=GPU_NODE)
        try:
            cpu_node = nodes.add_node(**CPU_NODE)
            nodes.wait_for_nodes()
            ray.init(address=nodes.address, include_dashboard=False, log_to_driver=False)
            yield SimpleNamespace(gpu=nodes.head_node.node_id, cpu=cpu_node.node_id, home=home,
                                  store=ModelStore(shared / "cache" / "models"))
        finally:
            ray.shutdown()
            nodes.shutdown()


@pytest.fixture(scope="module")
def uri(tmp_path_factory) -> str:
    """The driver's MLflow, one for the module (a new sqlite store costs seconds of migrations)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def _grid(tmp_path: Path, experiment: str) -> Path:
    path = tmp_path / f"{experiment}.yaml"
    path.write_text(f"experiment: {experiment}\n{GRID}")
    return path


def _probe_runs(uri: str, experiment: str):
    mlflow.set_tracking_uri(uri)
    return mlflow.search_runs(experiment_names=[experiment], filter_string="tags.run_kind = 'probe'")


def test_sweep_places_llm_tasks_on_the_gpu_node_and_logs_each_result_once(cluster, uri, tmp_path):
    grid = _grid(tmp_path, "cluster")
    report = run_sweep(grid, tracking_uri=uri, home=cluster.home, accelerator="gpu")
    planned = report.plans
    assert not report.failed and report.trained == 2 and not any(p.stored for p in planned)
    runs = _probe_runs(uri, "cluster")
    points = {pt.result_id for p in planned for pt in p.points}
    assert len(runs) == len(points) == 2 and set(runs["tags.result_id"]) == points  # each point logged once
    where = {m: (n, d, r) for m, n, d, r in zip(runs["tags.model"], runs[f"tags.{record.NODE}"],
                                                runs["tags.torch_device"], runs["tags.ray_resources"], strict=True)}
    assert where["llmsrec"] == (cluster.gpu, "cpu", "CPU=1,GPU=1")  # granted the GPU, trained on the CPU
    assert where["sasrec"] == (cluster.cpu, "cpu", "CPU=1")

    # the workers read the driver's data home and wrote the one store: the driver now finds every planned model
    # (a task's result carries the identity it trained, checked against the plan) and the LLM's SASRec teacher
    assert all(cluster.store.has(p.identity) for p in planned)
    stored = {f.parent.name for f in cluster.store.root.glob("*/fit_report.json")}
    assert {p.identity for p in planned} < stored and len(stored) == 3  # the teacher: the node's store setting
    # the same grid into another experiment: the tasks take both models from the store, nothing is trained
    other = run_sweep(_grid(tmp_path, "again"), tracking_uri=uri, home=cluster.home, accelerator="gpu")
    assert not other.failed and other.trained == 0 and len(other.logged) == 2
    assert set(_probe_runs(uri, "again")["tags.reused"]) == {"true"}
    # and the same grid again: everything is logged already, nothing runs, nothing is logged twice
    assert run_sweep(grid, tracking_uri=uri, home=cluster.home, accelerator="gpu").logged == []
    assert len(_probe_runs(uri, "cluster")) == 2


def test_tune_trials_with_a_gpu_run_on_the_gpu_node(cluster, uri):
    pytest.importorskip("optuna")
    from seqbench.config import parse_spaces
    from seqbench.tune import TuneSpec, run_tune

    spec = TuneSpec(model="llmsrec", dataset="tiny", trials=1, data_home=cluster.home, tracking_uri=uri,
                    overrides={"llm": "tiny-random", "dtype": "fp32", "teacher_epochs": "1", "max_steps": "2",
                               "max_valid_users": "10"},
                    spaces=parse_spaces(["lr=loguniform(1e-4,1e-3)"]), gpus_per_trial=1)
    report = run_tune(spec)
    assert [t["status"] for t in report.trials] == ["finished"] and report.best_stored
    assert cluster.store.has(report.best_identity)  # the trial's model is in the shared store
    # the tune's experiment (what a rerun restores) lives in the data home, beside the tuned layer
    lines = [json.loads(line) for f in (report.folder / "ray").glob("*/*/result.json")
             for line in f.read_text().splitlines()]
    assert lines and {r[record.NODE] for r in lines} == {cluster.gpu}
    # the trial's MLflow run says where it ran, as a sweep task's does
    mlflow.set_tracking_uri(uri)
    (trial,) = mlflow.search_runs(search_all_experiments=True, filter_string="tags.run_kind = 'trial'",
                                  output_format="list")
    assert {k: trial.data.tags.get(k) for k in record.PLACEMENT} == \
        {record.NODE: cluster.gpu, "torch_device": "cpu", "ray_resources": "CPU=1,GPU=1"}


def test_a_tune_trial_asking_for_a_gaudi_card_runs_on_the_node_that_has_one(cluster, uri):
    """``--hpus-per-trial``: the trial asks for Ray's HPU resource, which only the accelerator node advertises."""
    pytest.importorskip("optuna")
    from seqbench.config import parse_spaces
    from seqbench.tune import TuneSpec, run_tune

    spec = TuneSpec(model="sasrec", dataset="tiny", trials=1, data_home=cluster.home, tracking_uri=uri,
                    overrides={"max_epochs": "1", "d": "8", "maxlen": "16"},
                    spaces=parse_spaces(["lr=loguniform(1e-3,1e-2)"]), hpus_per_trial=1)
    report = run_tune(spec)
    assert [t["status"] for t in report.trials] == ["finished"]
    (trial,) = report.trials
    assert trial["placement"] == {record.NODE: cluster.gpu, "torch_device": "cpu", "ray_resources": "CPU=1,HPU=1"}
