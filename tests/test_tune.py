"""`seqbench tune`: search spaces (declared, parsed, printed), the test-split guard, a tiny tune on Ray Tune whose
winner `seqbench run --config tuned` reuses, and a rerun that restores the tune instead of training again."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from seqbench.cli import app
from seqbench.config import check_space, parse_spaces, search_space
from seqbench.data.guard import TestDataError, validation_only
from seqbench.errors import SeqbenchError
from seqbench.models import create_model, get_spec
from seqbench.models.cf.sasrec import SASRecConfig
from seqbench.planner import tuned_layer
from seqbench.space import Space, parse

from .conftest import load_script


# -- spaces -------------------------------------------------------------------------------------------------
def test_spaces_parse_and_print():
    assert parse("loguniform(1e-4, 1e-2)", "lr") == Space("loguniform", (1e-4, 1e-2))
    assert parse("uniform(0,0.5)", "dropout") == Space("uniform", (0.0, 0.5))
    assert parse("int(1,3)", "n_blocks") == Space("int", (1, 3))
    assert parse("choice(32,64)", "d") == Space("choice", ("32", "64"))
    assert str(parse("loguniform(1e-4,1e-2)", "lr")) == "loguniform(0.0001,0.01)"
    assert parse_spaces(["lr=loguniform(1e-4,1e-2);d=choice(32,64)"]).keys() == {"lr", "d"}
    # values are read as the setting's type and checked against its range
    assert check_space(SASRecConfig, "d", parse("choice(32,64)", "d")).args == (32, 64)
    declared = search_space(get_spec("sasrec").load_class().config_cls)
    assert {"lr", "dropout", "d"} <= declared.keys()
    for model in ("gru4rec", "bert4rec", "nextitnet"):
        assert "lr" in search_space(get_spec(model).load_class().config_cls)
    shown = CliRunner().invoke(app, ["models", "--show", "sasrec"], env={"COLUMNS": "250"})
    assert shown.exit_code == 0 and "loguniform(0.0001,0.01)" in shown.output


@pytest.mark.parametrize(("spec", "key", "message"), [
    ("normal(0,1)", "lr", "unknown kind 'normal'"),
    ("uniform(0.5,0.1)", "dropout", "lower bound 0.5 must be below"),
    ("loguniform(0,1e-2)", "lr", "positive lower bound"),
    ("uniform(a,1)", "dropout", "'a' in 'uniform(a,1)' is not a number"),
    ("int(1.5,3)", "n_blocks", "whole numbers"),
    ("lr", "lr", "cannot read 'lr'"),
])
def test_bad_space_text_names_the_value(spec, key, message):
    with pytest.raises(SeqbenchError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse(spec, key)


@pytest.mark.parametrize(("key", "spec", "message"), [
    ("dropout", "uniform(0,1.5)", "1.5 is out of range"),
    ("d", "uniform(16,64)", "samples floats but 'd' is int"),
    ("loss", "choice(ce,mse)", "'mse' is not allowed"),
    ("nope", "choice(1)", "unknown setting 'nope'"),
])
def test_bad_space_for_the_setting_names_the_value(key, spec, message):
    with pytest.raises(SeqbenchError, match=message):
        search_space(SASRecConfig, {key: parse(spec, key)})


# -- the test-split guard -------------------------------------------------------------------------------------
def test_the_first_trial_is_the_defaults_that_lie_in_their_spaces():
    from seqbench.tune import TuneSpec, first_configs

    space = {"lr": Space("loguniform", (1e-3, 1e-2)), "dropout": Space("uniform", (0.2, 0.5)),
             "d": Space("choice", (16, 32)), "n_blocks": Space("int", (1, 3))}
    base = {"lr": 0.001, "dropout": 0.1, "d": 32, "n_blocks": 2, "maxlen": 50}
    # dropout's default is outside its space: the searcher samples it in that trial
    assert first_configs(TuneSpec(model="sasrec"), space, base) == [{"lr": 0.001, "d": 32, "n_blocks": 2}]
    assert first_configs(TuneSpec(model="sasrec", defaults_first=False), space, base) == []
    given = [{"lr": 0.005}]
    assert first_configs(TuneSpec(model="sasrec", first_configs=given), space, base) == given
    assert not Space("int", (1, 3)).contains(1.5) and not Space("uniform", (0, 1)).contains(True)


def test_validation_only_refuses_every_read_of_the_test_split(tiny):
    guarded = validation_only(tiny)
    assert guarded.content_hash == tiny.content_hash and "test" not in guarded.candidates
    for read in (lambda: guarded.candidates["test"], lambda: guarded.histories("test"),
                 lambda: guarded.targets("test"), lambda: guarded.stage_users("test")):
        with pytest.raises(TestDataError):
            read()
    assert len(guarded.histories("valid")) == len(tiny.histories("valid"))
    # a model trains and validates on it: training touches no test data
    from seqbench.context import RunContext

    model = create_model("sasrec", guarded.n_items, {"max_epochs": 1, "d": 16})
    assert model.fit(guarded, guarded.histories("train"), RunContext()).best_valid > 0


# -- a tiny tune ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_two_cpus():
    ray = pytest.importorskip("ray")
    pytest.importorskip("optuna")
    started = not ray.is_initialized()
    if started:
        # "local": a Ray of its own, not a `ray start` cluster that another process left in /tmp/ray
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()


def test_tune_writes_the_tuned_layer_run_reuses_and_a_rerun_restores(ray_two_cpus, tiny, tiny_home, tmp_path):
    from seqbench.runner import RunSpec, run
    from seqbench.tune import TuneSpec, run_tune

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    spec = TuneSpec(model="sasrec", dataset="tiny", trials=3, seed=0, data_home=tiny_home, tracking_uri=uri,
                    overrides={"max_epochs": "2", "eval_every": "1", "d": "16", "n_blocks": "1"},
                    spaces=parse_spaces(["lr=loguniform(1e-3,1e-2)"]), max_concurrent=2)
    report = run_tune(spec)
    assert len(report.trials) == 3 and not report.resumed
    assert all(t["status"] in ("finished", "stopped") for t in report.trials)  # none read the test split
    assert {"lr", "dropout", "attn_dropout"} <= report.best_layer.keys() and report.best_layer["d"] == "16"
    assert tuned_layer(tiny_home, tiny, "sasrec") == report.best_layer
    search = json.loads((report.folder / "search.json").read_text())
    assert search["best"]["identity"] == report.best_identity and len(search["results"]) == 3
    # the first trial is the model's own settings (the defaults), the others the searcher's
    (first,) = search["searcher"]["first"]
    assert first == {"lr": 0.001, "dropout": 0.1, "attn_dropout": 0.1}
    assert first in [t["config"] for t in report.trials]

    # MLflow: one parent, one child per trial with its curve
    import mlflow

    client = mlflow.MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("seqbench").experiment_id])
    kinds = sorted(r.data.tags["run_kind"] for r in runs)
    assert kinds == ["trial"] * 3 + ["tune"]
    child = next(r for r in runs if r.data.tags["run_kind"] == "trial")
    assert client.get_metric_history(child.info.run_id, "valid_ndcg_at_10")

    # `run --config tuned` trains the winner's config: the tune's model, taken from the store
    out = run(RunSpec(model="sasrec", dataset="tiny", data_home=tiny_home, config_file=Path("tuned"),
                      tracking_uri=uri))
    assert out["runs"][0]["model_identity"] == report.best_identity
    assert out["runs"][0]["reused"] is report.best_stored is True
    assert out["runs"][0]["config"] == "tuned"  # its run is tagged config_layer=tuned
    tagged = client.get_run(out["runs"][0]["mlflow_run_id"]).data.tags
    assert tagged["config_layer"] == "tuned"

    # the same command again restores the finished tune: no trial runs again; a winner whose model is not in the
    # store after the search (ASHA stopped it; here: removed) is trained to its end and recorded as completed
    import shutil

    from seqbench.models.store import ModelStore

    assert report.completed is None
    shutil.rmtree(ModelStore().path(report.best_identity))
    again = run_tune(spec)
    assert again.resumed and sorted(t["trial_id"] for t in again.trials) == sorted(t["trial_id"] for t in report.trials)
    assert again.best_layer == report.best_layer and again.best_stored
    assert again.completed["final_valid"] == pytest.approx(report.best_score, abs=1e-6)
    assert again.completed["chosen_valid"] == report.best_score
    for name in ("config.json", "search.json"):
        saved = json.loads((report.folder / name).read_text())
        assert (saved.get("completed") or saved["best"]["completed"]) == again.completed
    assert run_tune(spec).completed == again.completed  # a later rerun keeps the record
    assert len(client.search_runs([client.get_experiment_by_name("seqbench").experiment_id],
                                  "tags.run_kind = 'trial'")) == 3


@pytest.mark.slow
def test_a_killed_tune_resumes_without_rerunning_ended_trials(ray_two_cpus, tiny_home, tmp_path, monkeypatch):
    """`seqbench tune` SIGKILLed with its local Ray once Tune's snapshot records two ended trials, then run again:
    it resumes, the ended trials are not run again (their Tune files and stored models untouched), every trial is
    recorded once (search.json, MLflow), and the trials and winner equal those of the same tune uninterrupted
    (one trial at a time: the searcher's and ASHA's state are restored with the experiment)."""
    import shutil
    import signal
    import subprocess
    import sys

    import mlflow

    from seqbench.tune import TuneSpec, run_tune

    bench = load_script("bench_tune")
    fixed = {"max_epochs": "2", "eval_every": "1", "d": "16", "n_blocks": "1"}
    space = "lr=loguniform(1e-3,1e-1)"

    def fresh(name):
        home = tmp_path / name
        shutil.copytree(tiny_home / "tiny", home / "tiny")
        return home, tmp_path / f"store-{name}", f"sqlite:///{tmp_path / name}.db"

    home, store, uri = fresh("killed")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(SEQBENCH_MODEL_STORE=str(store), MLFLOW_TRACKING_URI=uri)
    cmd = [sys.executable, "-m", "seqbench.cli", "tune", "--model", "sasrec", "--dataset", "tiny", "--trials", "4",
           "--max-concurrent", "1", "--space", space, "--data-home", str(home),
           *[x for k, v in fixed.items() for x in ("--set", f"{k}={v}")]]
    folder = home / "tuned" / "tiny" / "sasrec"
    ended = bench.kill_after(cmd, env, folder / "ray", 2, signal.SIGKILL, timeout=300)
    assert len(ended) >= 2 and not (folder / "search.json").exists()
    files = {p: p.stat().st_mtime_ns for t in ended for p in folder.glob(f"ray/*/_trial_{t}_*/*")}
    saved = {p.parent.name: json.loads(p.read_text())["saved_at"] for p in store.glob("*/meta.json")}

    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "resuming the tune" in again.stderr and "(resumed)" in again.stdout
    assert {p: p.stat().st_mtime_ns for p in files} == files  # ended trials did not run again
    after = {p.parent.name: json.loads(p.read_text())["saved_at"] for p in store.glob("*/meta.json")}
    assert {k: after[k] for k in saved} == saved  # no stored model trained again
    # ASHA's rungs came back with the experiment: the resumed session's last snapshot still holds the ended trials
    import pickle

    last = max(folder.glob("ray/*/callback-states-*.pkl"), key=lambda p: p.stat().st_mtime)
    rungs = pickle.loads(last.read_bytes())[1]["scheduler"]["_brackets"][0]._rungs
    assert set(ended) <= set().union(*(recorded for _milestone, recorded in rungs))
    search = json.loads((folder / "search.json").read_text())
    ids = [t["trial_id"] for t in search["results"]]
    assert len(ids) == len(set(ids)) == 4 and set(ended) <= set(ids)
    client = mlflow.MlflowClient(uri)
    children = client.search_runs([client.get_experiment_by_name("seqbench").experiment_id],
                                  "tags.run_kind = 'trial'")
    assert sorted(r.data.tags["trial_id"] for r in children) == sorted(ids)

    # the same tune uninterrupted, in its own data home and stores
    ref_home, ref_store, ref_uri = fresh("whole")
    monkeypatch.setenv("SEQBENCH_MODEL_STORE", str(ref_store))
    whole = run_tune(TuneSpec(model="sasrec", dataset="tiny", trials=4, spaces=parse_spaces([space]), overrides=fixed,
                              max_concurrent=1, data_home=ref_home, tracking_uri=ref_uri))

    def seen(trials):  # a restore lists trials in another order
        return sorted(((t["config"], t["status"], round(t["best"], 6)) for t in trials), key=lambda x: x[0]["lr"])

    assert seen(search["results"]) == seen(whole.trials)
    assert search["best"]["layer"] == whole.best_layer and search["best"]["identity"] == whole.best_identity


def test_a_stopped_winner_is_trained_to_its_end_from_its_checkpoint(ray_two_cpus, tiny, tiny_home, tmp_path):
    """ASHA stops a trial inside its report (Tune's ``sys.exit`` in the trial's thread), before the loop saves that
    check: the store keeps the checkpoint of the check before. The winner's completion resumes it and ends with
    the model an uninterrupted fit stores."""
    from rich.console import Console

    from seqbench.context import resolve_device
    from seqbench.models.store import ModelStore
    from seqbench.planner import model_layers, planned_identity
    from seqbench.runner import train_or_reuse
    from seqbench.tracking import code_version
    from seqbench.tune import TuneSpec, _finish_winner

    data = validation_only(tiny)
    fixed = {"max_epochs": "3", "eval_every": "1", "d": "16", "n_blocks": "1"}
    layers = model_layers("sasrec", fixed, None, tiny.meta.get("run_defaults"))
    sampled = {"lr": 0.01}
    ident = planned_identity("sasrec", [*layers, sampled], data, 0, code_version())
    store = ModelStore(tmp_path / "store")

    def stop_at_second_check(_ident, name, _value, step):
        if name.startswith("valid_") and step == 2:
            raise SystemExit(0)  # what Tune's report does in a trial ASHA stopped

    with pytest.raises(SystemExit):
        train_or_reuse("sasrec", [*layers, sampled], data, data.histories("train"), 0, resolve_device("cpu"), store,
                       stop_at_second_check)
    entry = store.checkpointer(ident).path
    assert not store.has(ident) and entry.is_file()

    best = {"trial_id": "t1", "config": sampled, "identity": ident, "status": "stopped", "best": 0.1}
    spec = TuneSpec(model="sasrec", dataset="tiny", overrides=fixed)
    done = _finish_winner(spec, best, layers, "tiny", tiny_home, store.root, Console(quiet=True))
    assert store.has(ident) and not entry.exists()  # stored, its checkpoint cleared
    assert done["resumed_from_check"] == 1 and done["trial_status"] == "stopped" and done["chosen_valid"] == 0.1
    # the same fit uninterrupted: the same final score (a resumed fit is bit-identical)
    whole, _ = train_or_reuse("sasrec", [*layers, sampled], data, data.histories("train"), 0, resolve_device("cpu"),
                              ModelStore(tmp_path / "other"))
    assert whole.identity == ident and done["final_valid"] == pytest.approx(whole.fit.best_valid, abs=1e-6)
    assert done["epochs_run"] == whole.fit.epochs_run == 3


def test_config_tuned_without_a_tune_says_what_to_run(tiny_home, tmp_path):
    from seqbench.runner import RunSpec, run

    with pytest.raises(SeqbenchError, match="seqbench tune --model gru4rec --dataset tiny"):
        run(RunSpec(model="gru4rec", dataset="tiny", data_home=tiny_home, config_file=Path("tuned"),
                    tracking_uri=f"sqlite:///{tmp_path / 'm.db'}"))


def test_tune_cli_rejects_a_bad_space_before_ray_starts(tiny_home):
    got = CliRunner().invoke(app, ["tune", "--model", "sasrec", "--dataset", "tiny", "--data-home", str(tiny_home),
                                   "--space", "dropout=uniform(0,1.5)"])
    assert got.exit_code != 0 and "1.5 is out of range" in got.output
    got = CliRunner().invoke(app, ["tune", "--model", "sasrec", "--dataset", "tiny", "--data-home", str(tiny_home),
                                   "--scheduler", "hyperband"])
    assert got.exit_code != 0 and "unknown --scheduler 'hyperband'; use asha or fifo" in got.output


def test_a_sweep_with_config_tuned_plans_the_tuned_layer(tiny, tiny_home, tmp_path):
    from seqbench.models.store import ModelStore
    from seqbench.planner import model_layers, planned_identity, tuned_dir
    from seqbench.sweep import expand, load_grid

    folder = tuned_dir(tiny_home, "tiny", "nextitnet")
    folder.mkdir(parents=True)
    try:
        (folder / "config.json").write_text(json.dumps({"dataset_hash": tiny.content_hash,
                                                        "layer": {"dropout": 0.25, "d": 16}}))
        grid = tmp_path / "g.yaml"
        grid.write_text("experiment: e\ndatasets: [tiny]\nmodels: [nextitnet]\nprobes: [shuffle-infer]\nseeds: [0]\n"
                        "config: tuned\n")
        (plan,) = expand(load_grid(grid), {"tiny": tiny}, ModelStore(tmp_path / "s"), code="v", home=tiny_home)
        layers = model_layers("nextitnet", {}, None, tiny.meta.get("run_defaults"),
                              tuned={"dropout": 0.25, "d": 16})
        assert plan.identity == planned_identity("nextitnet", layers, tiny, 0, "v")
        assert {"dropout": 0.25, "d": 16} in plan.layers
    finally:
        (folder / "config.json").unlink()


def test_a_study_declares_spaces_and_tune_reads_them(tmp_path, tiny_home):
    from seqbench.sweep import load_grid

    study = tmp_path / "s.yaml"
    study.write_text("experiment: e\ndatasets: [tiny]\nmodels: [sasrec]\nprobes: [shuffle-infer]\nseeds: [0]\n"
                     "space: {sasrec: {lr: 'loguniform(1e-3,1e-2)'}}\n")
    assert load_grid(study).spaces == {"sasrec": {"lr": Space("loguniform", (1e-3, 1e-2))}}
    study.write_text(study.read_text().replace("1e-3,1e-2", "0,1e-2"))
    with pytest.raises(SeqbenchError, match="'space.sasrec': space 'lr'.*positive lower bound"):
        load_grid(study)
    # `tune --study` takes the study's table for the model; a bad one fails before Ray starts
    got = CliRunner().invoke(app, ["tune", "--model", "sasrec", "--dataset", "tiny", "--data-home", str(tiny_home),
                                   "--study", str(study)])
    assert got.exit_code != 0 and "positive lower bound" in got.output


# -- the fairness path: tune --study, sweep default and tuned rows, the tuning view ------------------------------
FAIR_STUDY = """experiment: fair
datasets: [fair]
models: [pop, sasrec]
seeds: [0]
probes: [shuffle-infer]
config: [default, tuned]
set: {sasrec: {max_epochs: 2, eval_every: 1, d: 16, n_blocks: 1, maxlen: 16}}
space: {sasrec: {lr: 'loguniform(1e-3,1e-2)', dropout: 'uniform(0,0.5)'}}
tune: {trials: 2, max_concurrent: 2, seed: 0}
views: [tuning, overall, runs]
"""


def test_tune_study_then_sweep_then_report_the_tuning_view(ray_two_cpus, tmp_path, monkeypatch):
    """The fairness study's commands end to end on a tiny dataset: every tunable model of the study tuned with the
    study's budget (pop skipped), a second `tune --study` restores instead of tuning again, the sweep logs a default
    and a tuned row per model, and `report --study` sets them side by side."""
    import mlflow

    from seqbench.data.pipeline import prepare_source
    from seqbench.data.preprocess import PrepareParams
    from seqbench.data.sources.options import SourceOptions

    monkeypatch.chdir(tmp_path)  # MLflow's artifacts of a new experiment go under the working directory
    home, uri = tmp_path / "home", f"sqlite:///{tmp_path / 'mlflow.db'}"
    prepare_source("synthetic", None, "fair", home, PrepareParams(),
                   SourceOptions(users=120, items=140, order=0.9, seed=1, min_len=5, max_len=15))
    study = tmp_path / "fair.yaml"
    study.write_text(FAIR_STUDY)
    cli = CliRunner()
    args = ["--data-home", str(home), "--tracking-uri", uri]
    got = cli.invoke(app, ["tune", "--study", str(study), *args], terminal_width=200)
    assert got.exit_code == 0, got.output
    assert "skipping pop on fair: pop declares no search space" in got.output
    assert "tune 1/1: sasrec on fair (2 trials, seed 0)" in got.output
    saved = json.loads((home / "tuned" / "fair" / "sasrec" / "config.json").read_text())
    assert {"lr", "dropout", "max_epochs"} <= saved["layer"].keys()
    search = json.loads((home / "tuned" / "fair" / "sasrec" / "search.json").read_text())
    assert search["trials"] == 2 and set(search["space"]) == {"lr", "dropout", "attn_dropout"}  # d, n_blocks: set

    again = cli.invoke(app, ["tune", "--study", str(study), *args], terminal_width=200)
    assert again.exit_code == 0 and "its ended trials were restored, not rerun" in again.output
    assert json.loads((home / "tuned" / "fair" / "sasrec" / "config.json").read_text())["layer"] == saved["layer"]

    swept = cli.invoke(app, ["sweep", str(study), *args], terminal_width=200)
    assert swept.exit_code == 0, swept.output
    client = mlflow.MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("fair").experiment_id], "tags.run_kind = 'probe'")
    rows = sorted((r.data.tags["model"], r.data.tags["config_layer"]) for r in runs)
    # pop has nothing to tune: its default row is its only one
    assert rows == [("pop", "default"), ("sasrec", "default"), ("sasrec", "tuned")]
    tuned_run = next(r for r in runs if r.data.tags["model"] == "sasrec" and r.data.tags["config_layer"] == "tuned")
    assert float(tuned_run.data.params["model_config.lr"]) == pytest.approx(float(saved["layer"]["lr"]))

    reported = cli.invoke(app, ["report", "--study", str(study), "--tracking-uri", uri, "--out",
                                str(tmp_path / "report"), "--format", "md"])
    assert reported.exit_code == 0, reported.output
    text = (tmp_path / "report" / "report.md").read_text()
    assert "**Default vs tuned on fair**" in text
    assert "| sasrec | default |" in text and "| sasrec | tuned |" in text and "lr 0.001 → " in text


def test_tune_study_refuses_pairs_outside_the_study(tmp_path):
    study = tmp_path / "fair.yaml"
    study.write_text(FAIR_STUDY)
    got = CliRunner().invoke(app, ["tune", "--study", str(study), "--model", "gru4rec"])
    assert got.exit_code != 0 and "--model gru4rec is not one of the study's models (pop, sasrec)" in got.output
    got = CliRunner().invoke(app, ["tune", "--study", str(study), "--space", "lr=loguniform(1e-3,1e-2)"])
    assert got.exit_code != 0 and "apply to one model: add --model" in got.output
    got = CliRunner().invoke(app, ["tune"])
    assert got.exit_code != 0 and "give --model (one model) or --study" in got.output
