"""`seqbench sweep`: grid files, expansion, Ray resources, exactly-once logging with 8 concurrent tasks, and a
driver killed midway then rerun."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import mlflow
import pytest

from seqbench.errors import SeqbenchError, UnknownNameError
from seqbench.models import MODELS
from seqbench.models.store import ModelStore
from seqbench.sweep import DEVICE_ENV, device_for, expand, load_grid, run_sweep, task_resources, threads_for


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    """MLflow puts a new experiment's artifacts under the working directory: keep them out of the repository."""
    monkeypatch.chdir(tmp_path)


TINY_SASREC = "{max_epochs: 2, eval_every: 1, d: 8, maxlen: 16}"


def _grid(tmp_path, text, name="grid.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray for the module (8 logical CPUs so 8 tasks can run at once on any machine)."""
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=8, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_grid_yaml_and_toml_expand_the_same(tmp_path, tiny):
    y = load_grid(_grid(tmp_path, f"experiment: e\ndatasets: [tiny]\nmodels: [pop, sasrec]\n"
                                  f"probes: [shuffle-infer, cosine, shuffle-train]\nseeds: [0, 1]\n"
                                  f"set:\n  sasrec: {TINY_SASREC}\nprobe_set: {{window: 5}}\n"))
    t = load_grid(_grid(tmp_path, 'experiment = "e"\ndatasets = ["tiny"]\nmodels = ["pop", "sasrec"]\n'
                                  'probes = ["shuffle-infer", "cosine", "shuffle-train"]\nseeds = [0, 1]\n'
                                  '[set.sasrec]\nmax_epochs = 2\neval_every = 1\nd = 8\nmaxlen = 16\n'
                                  '[probe_set]\nwindow = 5\n', "grid.toml"))
    assert y == t and y.sweep_id == t.sweep_id
    plans = expand(y, {"tiny": tiny}, ModelStore(tmp_path / "s"), code="v")
    assert [(p.model, p.seed) for p in plans] == [("pop", 0), ("pop", 1), ("sasrec", 0), ("sasrec", 1)]
    points = [pt for p in plans for pt in p.points]
    assert len(points) == 12 and len({pt.result_id for pt in points}) == 12
    assert len({p.identity for p in plans}) == 4 and not any(p.stored for p in plans)
    other = load_grid(_grid(tmp_path, "datasets: [tiny]\nmodels: [sasrec]\nprobes: [cosine]\nseeds: [0]\n"
                                      "set:\n  sasrec: {max_epochs: 3, eval_every: 1, d: 8, maxlen: 16}\n"))
    changed = expand(other, {"tiny": tiny}, ModelStore(tmp_path / "s"), code="v")[0]
    assert changed.identity != plans[2].identity  # another config is another trained model


def test_protocols_are_grid_points_of_one_trained_model(tmp_path, tiny):
    base = "datasets: [tiny]\nmodels: [sasrec]\nprobes: [shuffle-infer, jaccard]\nseeds: [0]\n"
    sampled = load_grid(_grid(tmp_path, base))
    both = load_grid(_grid(tmp_path, base + "eval: [sampled, full]\n", "both.yaml"))
    assert sampled.evals == ["sampled"] and both.evals == ["sampled", "full"] and both.sweep_id != sampled.sweep_id
    one = expand(sampled, {"tiny": tiny}, ModelStore(tmp_path / "s"), code="v")
    two = expand(both, {"tiny": tiny}, ModelStore(tmp_path / "s"), code="v")
    assert len(one) == len(two) == 1 and one[0].identity == two[0].identity  # trained once for every protocol
    assert [(p.probe, p.protocol) for p in two[0].points] == [("shuffle-infer", "sampled"), ("jaccard", "sampled"),
                                                              ("shuffle-infer", "full"), ("jaccard", "full")]
    ids = [p.result_id for p in two[0].points]
    assert ids[:2] == [p.result_id for p in one[0].points] and len(set(ids)) == 4  # sampled ids as before
    with pytest.raises(SeqbenchError, match="unknown evaluation protocol 'fast'"):
        load_grid(_grid(tmp_path, base + "eval: [fast]\n", "bad.yaml"))


@pytest.mark.parametrize("text,message,exc", [
    ("datasets: [tiny]\nmodels: [pop]\nprobes: [cosine]\nseeds: [0]\nmodel: [x]\n", "unknown key 'model'",
     SeqbenchError),
    ("datasets: [tiny]\nmodels: [nope]\nprobes: [cosine]\nseeds: [0]\n", "unknown model 'nope'", UnknownNameError),
    ("datasets: [tiny]\nmodels: [pop]\nprobes: [nope]\nseeds: [0]\n", "unknown probe 'nope'", UnknownNameError),
    ("datasets: [tiny]\nmodels: [pop]\nprobes: [cosine]\nseeds: [a]\n", "'seeds' must be", SeqbenchError),
    ("datasets: [tiny]\nmodels: [sasrec]\nprobes: [cosine]\nseeds: [0]\nset: {sasrec: {dd: 1}}\n",
     "unknown setting 'dd'", SeqbenchError),
    ("datasets: [tiny]\nmodels: [pop]\nprobes: [cosine]\nseeds: [0]\nset: {sasrec: {d: 1}}\n",
     "'set.sasrec'", SeqbenchError),
    ("datasets: [tiny]\nmodels: [sasrec]\nprobes: [cosine]\nseeds: [0]\nset: {sasrec@nope: {d: 8}}\n",
     "'set.sasrec@nope': dataset 'nope' is not in 'datasets'", SeqbenchError),
    ("datasets: [tiny]\nmodels: [sasrec]\nprobes: [cosine]\nseeds: [0]\nset: {pop@tiny: {}}\n",
     "'set.pop@tiny': model 'pop' is not in 'models'", SeqbenchError),
    ("datasets: [tiny]\nmodels: [sasrec]\nprobes: [cosine]\nseeds: [0]\nset: {sasrec@tiny: [{d: 8}]}\n",
     "'set.sasrec@tiny' must be one table", SeqbenchError),
    ("datasets: [tiny]\nmodels: [sasrec]\nprobes: [cosine]\nseeds: [0]\nset: {sasrec: []}\n",
     "'set.sasrec' must be a table of settings, or a non-empty list", SeqbenchError),
    ("datasets: [tiny]\nmodels: [sasrec]\nprobes: [cosine]\nseeds: [0]\nset: {sasrec: [{d: 8}, {d: 8}]}\n",
     "'set.sasrec': the same config is listed twice", SeqbenchError),
    ("datasets: [tiny]\nmodels: [sasrec]\nprobes: [cosine]\nseeds: [0]\nset: {sasrec: [{}, {dd: 1}]}\n",
     "'set.sasrec': unknown setting 'dd'", SeqbenchError),
    ("datasets: [tiny]\nmodels: [pop]\nprobes: [cosine]\nseeds: [0]\nconfig: [default, best]\n",
     "'config' names config layers .default, tuned., got 'best'", SeqbenchError),
    ("datasets: [tiny]\nmodels: [pop]\nprobes: [cosine]\nseeds: [0]\nconfig: [tuned, tuned]\n",
     "names a layer twice", SeqbenchError),
    ("datasets: [tiny]\nmodels: [pop]\nprobes: [cosine]\nseeds: [0]\ntune: {trails: 8}\n",
     "unknown key 'tune.trails'", SeqbenchError),
    ("datasets: [tiny]\nmodels: [pop]\nprobes: [cosine]\nseeds: [0]\ntune: {trials: 2.5}\n",
     "'tune.trials' must be a whole number", SeqbenchError),
    ("datasets: [tiny]\nmodels: [pop]\nprobes: [cosine]\nseeds: [0]\ntune: {defaults_first: 1}\n",
     "'tune.defaults_first' must be true or false", SeqbenchError),
])
def test_bad_grid_files_name_the_problem(tmp_path, text, message, exc):
    path = _grid(tmp_path, text)
    with pytest.raises(exc, match=message.replace("[", r"\[")) as e:
        load_grid(path)
    if exc is SeqbenchError:
        assert str(path) in str(e.value)


@pytest.mark.parametrize("model,accelerator,expected", [
    ("sasrec", "gpu", {"num_cpus": 2}),  # CF models take CPUs whatever the accelerator
    ("pop", "hpu", {"num_cpus": 2}),
    ("llmsrec", "cpu", {"num_cpus": 2}),
    ("llmsrec", "gpu", {"num_cpus": 2, "num_gpus": 1}),
    ("llmsrec", "hpu", {"num_cpus": 2, "resources": {"HPU": 1}}),
    ("recformer", "gpu", {"num_cpus": 2, "num_gpus": 1}),  # an LM-based model that declares needs_accelerator
    ("recformer", "hpu", {"num_cpus": 2, "resources": {"HPU": 1}}),
    ("ctrl", "gpu", {"num_cpus": 2}),
])
def test_accelerator_to_ray_resources(model, accelerator, expected):
    assert task_resources(model, accelerator, 2) == expected


def test_every_model_that_needs_an_accelerator_gets_one():
    """The accelerator follows the declared capability, not the family label."""
    for name, spec in MODELS.items():
        assert ("num_gpus" in task_resources(name, "gpu", 1)) == spec.needs_accelerator, name


def test_unknown_accelerator_is_an_error():
    with pytest.raises(SeqbenchError, match="unknown accelerator 'tpu'"):
        task_resources("llmsrec", "tpu", 1)


@pytest.mark.parametrize("granted,device,threads", [
    ({"CPU": 1.0}, "cpu", 1), ({"CPU": 2.0, "GPU": 1.0}, "cuda", 2), ({"CPU": 4.0, "HPU": 1.0}, "hpu", 4),
    ({}, "cpu", 1), ({"CPU": 0.5}, "cpu", 1),
])
def test_ray_grant_to_device_and_threads(granted, device, threads):
    assert device_for(granted) == device and threads_for(granted) == threads


def test_a_nodes_seqbench_device_fixes_the_torch_device_whatever_ray_granted(monkeypatch):
    monkeypatch.setenv(DEVICE_ENV, "cpu")
    assert device_for({"CPU": 1.0, "GPU": 1.0}) == "cpu" and device_for({"CPU": 1.0, "HPU": 1.0}) == "cpu"
    monkeypatch.setenv(DEVICE_ENV, "")  # empty: as if unset
    assert device_for({"CPU": 1.0, "GPU": 1.0}) == "cuda"


def test_device_auto_picks_hpu_when_gaudi_is_importable(monkeypatch):
    import types

    from seqbench.context import resolve_device

    fake = types.ModuleType("habana_frameworks")
    fake.torch = types.ModuleType("habana_frameworks.torch")
    fake.torch.core = types.ModuleType("habana_frameworks.torch.core")
    for name, mod in (("habana_frameworks", fake), ("habana_frameworks.torch", fake.torch),
                      ("habana_frameworks.torch.core", fake.torch.core)):
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert resolve_device("auto").type == "hpu"


def _probe_runs(uri, experiment):
    mlflow.set_tracking_uri(uri)
    return mlflow.search_runs(experiment_names=[experiment], filter_string="tags.run_kind = 'probe'")


def test_eight_concurrent_tasks_log_every_run_exactly_once(ray_cluster, tiny_home, tracking_uri, tmp_path):
    grid = _grid(tmp_path, f"experiment: conc\ndatasets: [tiny]\nmodels: [sasrec]\nprobes: [shuffle-infer, cosine]\n"
                           f"seeds: [0, 1, 2, 3, 4, 5, 6, 7]\nset:\n  sasrec: {TINY_SASREC}\n")
    report = run_sweep(grid, tracking_uri=tracking_uri, home=tiny_home, max_parallel=8)
    assert not report.failed and report.trained == 8 and len(report.logged) == 16
    runs = _probe_runs(tracking_uri, "conc")
    assert len(runs) == 16 and runs["tags.result_id"].nunique() == 16
    assert set(runs["tags.mlflow.parentRunId"]) == {report.parent_run_id}
    assert {"dataset", "model", "family", "probe", "seed", "task"} <= {c[5:] for c in runs.columns if
                                                                       c.startswith("tags.")}
    assert (runs["status"] == "FINISHED").all()
    train = mlflow.search_runs(experiment_names=["conc"], filter_string="tags.run_kind = 'train'")
    assert len(train) == 8 and (train["status"] == "FINISHED").all()  # live curves, one per trained model
    again = run_sweep(grid, tracking_uri=tracking_uri, home=tiny_home, max_parallel=8)
    assert again.trained == 0 and again.logged == [] and len(_probe_runs(tracking_uri, "conc")) == 16


def _finished_probe_runs(db) -> int:
    try:
        with sqlite3.connect(db) as con:
            return con.execute("select count(*) from runs r join tags t on r.run_uuid = t.run_uuid where "
                               "t.key = 'run_kind' and t.value = 'probe' and r.status = 'FINISHED'").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_driver_killed_midway_then_rerun_logs_every_point_once(ray_cluster, tiny_home, tmp_path):
    db = tmp_path / "kill.db"
    uri = f"sqlite:///{db}"
    grid = _grid(tmp_path, "experiment: kill\ndatasets: [tiny]\nmodels: [sasrec]\nprobes: [shuffle-infer, cosine]\n"
                           "seeds: [0, 1, 2, 3, 4]\nset:\n  sasrec: {max_epochs: 6, eval_every: 1, d: 8, maxlen: 16,"
                           " patience: 100}\n")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    # its own local Ray in its own session, so killing the group is a crash of the driver and its cluster
    proc = subprocess.Popen([sys.executable, "-m", "seqbench.cli", "sweep", str(grid), "--tracking-uri", uri,
                             "--data-home", str(tiny_home), "--max-parallel", "1"], env=env,
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while _finished_probe_runs(db) < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    logged_before = _finished_probe_runs(db)
    assert 2 <= logged_before < 10, "the kill must land midway"
    report = run_sweep(grid, tracking_uri=uri, home=tiny_home)
    assert not report.failed and len(report.logged) == 10 - logged_before
    runs = _probe_runs(uri, "kill")
    assert len(runs) == 10 and runs["tags.result_id"].nunique() == 10 and (runs["status"] == "FINISHED").all()
    assert runs["tags.mlflow.parentRunId"].nunique() == 1  # the rerun continued the same parent run


def test_default_and_tuned_rows_share_a_trained_model_only_when_their_settings_agree(tmp_path, tiny_home, tiny):
    """``config: [default, tuned]`` plans both rows (pop, with nothing to tune, its default only); a tuned layer
    equal to the defaults gives one task (one trained model) with a point per row, each with its own result
    identity; ``config: tuned`` keeps its sweep id and plans pop's row under the tuned layer."""
    import json

    from seqbench.planner import tuned_dir

    base = (f"datasets: [tiny]\nmodels: [pop, sasrec]\nprobes: [shuffle-infer]\nseeds: [0]\n"
            f"set: {{sasrec: {TINY_SASREC}}}\n")
    both = load_grid(_grid(tmp_path, base + "config: [default, tuned]\ntune: {trials: 2, cpus_per_trial: 1}\n"))
    assert both.config == ["default", "tuned"] and both.tune == {"trials": 2, "cpus_per_trial": 1.0}
    assert load_grid(_grid(tmp_path, base + "config: tuned\n", "t.yaml")).config == ["tuned"]
    assert len({load_grid(_grid(tmp_path, base + c, f"{i}.yaml")).sweep_id for i, c in
                enumerate(["", "config: tuned\n", "config: [default, tuned]\n"])}) == 3
    assert load_grid(_grid(tmp_path, base + "config: default\n", "d.yaml")).sweep_id == \
        load_grid(_grid(tmp_path, base, "n.yaml")).sweep_id  # the default layer is what a grid always had
    folder = tuned_dir(tiny_home, "tiny", "sasrec")
    folder.mkdir(parents=True, exist_ok=True)
    try:
        for layer, tasks in (({"lr": 0.001}, 2), ({"lr": 0.005}, 3)):  # 0.001 is sasrec's default
            (folder / "config.json").write_text(json.dumps({"dataset_hash": tiny.content_hash, "layer": layer}))
            plans = expand(both, {"tiny": tiny}, ModelStore(tmp_path / "s"), code="v", home=tiny_home)
            assert len(plans) == tasks
            points = [(p.model, p.config) for plan in plans for p in plan.points]
            # pop has nothing to tune: beside its default row a tuned one would repeat it
            assert sorted(points) == [("pop", "default"), ("sasrec", "default"), ("sasrec", "tuned")]
            assert len({p.result_id for plan in plans for p in plan.points}) == 3
        only_tuned = expand(load_grid(_grid(tmp_path, base + "config: tuned\n", "t.yaml")), {"tiny": tiny},
                            ModelStore(tmp_path / "s"), code="v", home=tiny_home)
        assert sorted((p.model, p.config) for plan in only_tuned for p in plan.points) == \
            [("pop", "tuned"), ("sasrec", "tuned")]
        default_only = expand(load_grid(_grid(tmp_path, base, "n.yaml")), {"tiny": tiny}, ModelStore(tmp_path / "s"),
                              code="v", home=tiny_home)
        # default rows keep the result identities they had before config layers existed
        assert {p.result_id for plan in default_only for p in plan.points} < \
            {p.result_id for plan in plans for p in plan.points}
    finally:
        (folder / "config.json").unlink()


def test_dry_run_cli_prints_the_grid_and_runs_nothing(tiny_home, tracking_uri, tmp_path):
    from typer.testing import CliRunner

    from seqbench.cli import app

    grid = _grid(tmp_path, "experiment: dry\ndatasets: [tiny]\nmodels: [pop]\nprobes: [shuffle-infer, cosine]\n"
                           "seeds: [0, 1]\n")
    r = CliRunner().invoke(app, ["sweep", str(grid), "--dry-run", "--tracking-uri", tracking_uri, "--data-home",
                                 str(tiny_home)], terminal_width=200)
    assert r.exit_code == 0, r.output
    assert "4 grid points in 2 tasks" in r.output and r.output.count("to do") == 4
    mlflow.set_tracking_uri(tracking_uri)
    assert len(mlflow.search_runs(experiment_names=["dry"])) == 0
    bad = CliRunner().invoke(app, ["sweep", str(_grid(tmp_path, "models: [x]\n", "bad.yaml")), "--dry-run",
                                   "--tracking-uri", tracking_uri])
    assert bad.exit_code == 1 and "bad.yaml" in bad.output


def test_sweep_and_run_plan_the_same_config_on_a_dataset_with_run_defaults(tmp_path):
    """quickstart carries run_defaults (30 epochs, patience 3): a sweep trains what `seqbench run` trains,
    and an unprepared quickstart is prepared on demand instead of refused."""
    from seqbench.planner import ensure_dataset, model_layers, planned_identity, resolved_config
    from seqbench.tracking import code_version

    home = tmp_path / "home"
    grid = load_grid(_grid(tmp_path, "datasets: [quickstart]\nmodels: [sasrec]\nprobes: [cosine]\nseeds: [3]\n"
                                     "set:\n  sasrec: {d: 16}\n"))
    report = run_sweep(tmp_path / "grid.yaml", home=home, dry_run=True,
                       tracking_uri=f"sqlite:///{tmp_path}/m.db")
    data = ensure_dataset("quickstart", home)
    run_layers = model_layers("sasrec", {"d": "16"}, None, data.meta["run_defaults"])
    assert report.plans[0].identity == planned_identity("sasrec", run_layers, data, 3, code_version())
    config = resolved_config("sasrec", report.plans[0].layers)
    assert (config["max_epochs"], config["patience"], config["d"]) == (30, 3, 16)
    assert grid.datasets == ["quickstart"]


def test_dataset_ranges_expand_and_synthetic_names_are_made_on_demand(tmp_path):
    grid = load_grid(_grid(tmp_path, "datasets: ['syn-order0-u60-i300-s{0..2}', syn-order0.5-u60-i300]\n"
                                     "models: [pop]\nprobes: [shuffle-infer]\nseeds: [0]\n"))
    assert grid.datasets == ["syn-order0-u60-i300-s0", "syn-order0-u60-i300-s1", "syn-order0-u60-i300-s2",
                             "syn-order0.5-u60-i300"]
    report = run_sweep(tmp_path / "grid.yaml", home=tmp_path / "home", dry_run=True,
                       tracking_uri=f"sqlite:///{tmp_path}/m.db")
    assert len(report.plans) == 4 and len({p.identity for p in report.plans}) == 4
    with pytest.raises(SeqbenchError, match="empty range"):
        load_grid(_grid(tmp_path, "datasets: ['syn-order0-u60-i300-s{3..1}']\nmodels: [pop]\nprobes: [cosine]\n"
                                  "seeds: [0]\n"))
    with pytest.raises(UnknownNameError):
        run_sweep(_grid(tmp_path, "datasets: [no-such-data]\nmodels: [pop]\nprobes: [cosine]\nseeds: [0]\n"),
                  home=tmp_path / "home", dry_run=True, tracking_uri=f"sqlite:///{tmp_path}/m.db")


def test_several_configs_of_a_model_and_per_dataset_settings_are_rows_of_their_own(tmp_path, tiny):
    """set.<model> as a list: one trained model per table; set.<model>@<dataset> over each row on that dataset."""
    from seqbench.planner import resolved_config

    base = "datasets: [tiny, copy]\nmodels: [pop, sasrec]\nprobes: [shuffle-infer, cosine]\nseeds: [0]\n"
    grid = load_grid(_grid(tmp_path, base + "set:\n  sasrec: [{}, {n_blocks: 1}]\n  sasrec@copy: {d: 16}\n"))
    data = {"tiny": tiny, "copy": tiny}  # the same data under two names: only the settings differ
    plans = expand(grid, data, ModelStore(tmp_path / "s"), code="v")
    assert [(p.dataset, p.model, p.settings) for p in plans] == [
        ("tiny", "pop", {}), ("tiny", "sasrec", {}), ("tiny", "sasrec", {"n_blocks": 1}),
        ("copy", "pop", {}), ("copy", "sasrec", {"d": 16}), ("copy", "sasrec", {"n_blocks": 1, "d": 16})]
    sasrec = [p for p in plans if p.model == "sasrec"]
    assert [(c["n_blocks"], c["d"]) for c in (resolved_config("sasrec", p.layers) for p in sasrec)] == \
        [(2, 64), (1, 64), (2, 16), (1, 16)]
    assert len({p.identity for p in sasrec}) == 4
    assert len({pt.result_id for p in sasrec for pt in p.points}) == 8
    assert sasrec[3].label == "copy/sasrec (n_blocks=1, d=16)/seed0"
    plain = expand(load_grid(_grid(tmp_path, base, "plain.yaml")), data, ModelStore(tmp_path / "s"), code="v")
    assert sasrec[0].identity == plain[1].identity  # {} is the defaults: the row a grid without `set` plans
    same = load_grid(_grid(tmp_path, base + "set:\n  sasrec: [{}, {d: 64}]\n", "same.yaml"))
    with pytest.raises(SeqbenchError, match=r"tiny/sasrec/seed0 and tiny/sasrec \(d=64\)/seed0 resolve to the same"):
        expand(same, data, ModelStore(tmp_path / "s"), code="v")


def test_grids_without_lists_or_per_dataset_settings_keep_their_sweep_id(tmp_path):
    """A rerun of an existing grid must continue its MLflow parent run, found by sweep_id."""
    head = ("experiment: e\ndatasets: [ml-100k, beauty-s05]\nmodels: [pop, sasrec, ctrl]\n"
            "probes: [shuffle-infer, cosine]\nseeds: [0]\nprobe_set: [{window: 10}, {}]\nset:\n"
            "  sasrec: {max_epochs: 5}\n")
    old = load_grid(_grid(tmp_path, head + "  ctrl: {variant: contrastive}\n"))
    assert old.sweep_id == "d69a3fbefb84460f"  # this grid's id before `set` took lists and <model>@<dataset>
    one = load_grid(_grid(tmp_path, head + "  ctrl: [{variant: contrastive}]\n", "one.yaml"))
    assert one.sweep_id == old.sweep_id and one.sets == old.sets  # a one-table list is the table
    two = load_grid(_grid(tmp_path, head + "  ctrl: [{}, {variant: contrastive}]\n", "two.yaml"))
    at = load_grid(_grid(tmp_path, head + "  ctrl: {variant: contrastive}\n  sasrec@ml-100k: {max_epochs: 3}\n",
                         "at.yaml"))
    assert len({old.sweep_id, two.sweep_id, at.sweep_id}) == 3


def test_a_study_with_two_configs_of_a_model_reports_two_labelled_rows(ray_cluster, tiny_home, tracking_uri,
                                                                       tmp_path):
    from typer.testing import CliRunner

    from seqbench.cli import app

    (tmp_path / "studies").mkdir()
    study = tmp_path / "studies" / "two.yaml"
    study.write_text("experiment: two\ndatasets: [tiny]\nmodels: [pop, sasrec]\nprobes: [shuffle-infer]\n"
                     f"seeds: [0]\nset:\n  sasrec: [{{}}, {{n_blocks: 1}}]\n  sasrec@tiny: {TINY_SASREC}\n"
                     "views: [overall]\n")
    dry = CliRunner().invoke(app, ["sweep", str(study), "--dry-run", "--tracking-uri", tracking_uri, "--data-home",
                                   str(tiny_home)], env={"COLUMNS": "250"})
    assert dry.exit_code == 0, dry.output
    assert "3 grid points in 3 tasks" in dry.output and "n_blocks=1, max_epochs=2" in dry.output
    report = run_sweep(study, tracking_uri=tracking_uri, home=tiny_home, max_parallel=3)
    assert not report.failed and report.trained == 3 and len(report.logged) == 3
    r = CliRunner().invoke(app, ["report", "--study", "two", "--tracking-uri", tracking_uri, "--out",
                                 str(tmp_path / "o"), "--format", "md", "--data-home", str(tiny_home)])
    assert r.exit_code == 0, r.output
    text = (tmp_path / "o" / "report.md").read_text()
    first_cells = [line.split(" | ")[0] for line in text.splitlines() if line.startswith("| ")]
    assert first_cells == ["| model", "| pop", "| sasrec (n_blocks=1)", "| sasrec (n_blocks=2)"], text


def test_tune_study_takes_the_one_config_row_of_a_model(tmp_path):
    """`seqbench tune --study` tunes one config: set.<model> with set.<model>@<dataset> over it, never a list."""
    from seqbench.sweep import one_row

    base = "datasets: [tiny, copy]\nmodels: [sasrec]\nprobes: [cosine]\nseeds: [0]\nset:\n"
    path = _grid(tmp_path, base + "  sasrec: {d: 8, n_blocks: 1}\n  sasrec@copy: {d: 16}\n")
    grid = load_grid(path)
    assert one_row(grid, "sasrec", "tiny", path) == {"d": 8, "n_blocks": 1}
    assert one_row(grid, "sasrec", "copy", path) == {"d": 16, "n_blocks": 1}
    listed = _grid(tmp_path, base + "  sasrec: [{}, {d: 16}]\n", "listed.yaml")
    with pytest.raises(SeqbenchError, match="'set.sasrec' lists 2 configs; tune one of them with --set"):
        one_row(load_grid(listed), "sasrec", "tiny", listed)


def test_without_an_address_a_new_local_ray_starts_instead_of_joining_another(monkeypatch):
    """`ray.init()` with no address joins the newest Ray on the machine (another sweep's or tune's) and then
    refuses num_cpus; the sweep and tune ask for a fresh local one."""
    ray = pytest.importorskip("ray")
    from seqbench.sweep import start_ray

    calls = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: calls.append(kw))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    start_ray(None)
    assert calls[-1]["address"] == "local" and calls[-1]["num_cpus"] >= 1
    start_ray("ray://head:10001")
    assert calls[-1]["address"] == "ray://head:10001" and "num_cpus" not in calls[-1]
    monkeypatch.setenv("RAY_ADDRESS", "head:6379")
    start_ray(None)
    assert calls[-1]["address"] == "head:6379" and "num_cpus" not in calls[-1]


def test_an_offline_run_needs_neither_ray_nor_mlflow_and_logs_like_a_sweep(ray_cluster, tiny_home, tmp_path,
                                                                             monkeypatch):
    """``--offline`` (a machine without Ray or MLflow) then ``--log-offline``: the same rows, result identities and
    metrics as a Ray sweep of the study, and a rerun of either does nothing."""
    from seqbench.sweep_offline import MANIFEST, log_offline, run_offline

    monkeypatch.setenv("SEQBENCH_CACHE", str(tmp_path / "cache"))
    grid = _grid(tmp_path, f"experiment: offline-run\ndatasets: [tiny]\nmodels: [pop, sasrec]\n"
                           f"probes: [shuffle-infer, cosine]\nseeds: [0]\nset:\n  sasrec: {TINY_SASREC}\n")
    out = tmp_path / "offline"
    blocked = ("import sys; sys.modules.update(mlflow=None, ray=None); from seqbench.cli import app; "
               "app(['sweep', sys.argv[1], '--offline', sys.argv[2], '--data-home', sys.argv[3]])")
    env = {**os.environ, "SEQBENCH_CACHE": str(tmp_path / "cache")}
    cmd = [sys.executable, "-c", blocked, str(grid), str(out), str(tiny_home)]
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert "2 tasks run, 0 already" in first.stdout and len(list((out / "tasks").glob("*.pkl"))) == 2
    assert "check at 2: valid_" in first.stderr  # validation checks show as they happen
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert "0 tasks run, 2 already" in again.stdout, again.stderr

    off_uri, ray_uri = f"sqlite:///{tmp_path / 'off.db'}", f"sqlite:///{tmp_path / 'ray.db'}"
    report, missing = log_offline(grid, out, tracking_uri=off_uri, home=tiny_home)
    assert missing == [] and len(report.logged) == 4 and report.trained == 2
    assert log_offline(grid, out, tracking_uri=off_uri, home=tiny_home)[0].logged == []
    assert not run_sweep(grid, tracking_uri=off_uri, home=tiny_home, dry_run=True).plans[0].todo
    swept = run_sweep(grid, tracking_uri=ray_uri, home=tiny_home)
    assert not swept.failed and swept.trained == 0  # the models the offline run stored
    off, ray = (_probe_runs(u, "offline-run").set_index("tags.result_id").sort_index() for u in (off_uri, ray_uri))
    assert list(off.index) == list(ray.index)
    metrics = [c for c in ray.columns if c.startswith("metrics.")]
    assert metrics and off[metrics].equals(ray[metrics])
    assert (off["tags.ray_node_id"].str.startswith("offline:")).all()
    mlflow.set_tracking_uri(off_uri)
    train = mlflow.search_runs(experiment_names=["offline-run"], filter_string="tags.run_kind = 'train'")
    assert len(train) == 1 and (train["status"] == "FINISHED").all()  # the SASRec curve, replayed

    manifest = json.loads((out / MANIFEST).read_text())
    (out / MANIFEST).write_text(json.dumps({**manifest, "code": "0.0+other"}))
    with pytest.raises(SeqbenchError, match="code version 0.0\\+other"):
        log_offline(grid, out, tracking_uri=off_uri, home=tiny_home)
    with pytest.raises(SeqbenchError, match="give another folder"):  # its files are not this code's tasks
        run_offline(grid, out, home=tiny_home)


def test_an_offline_run_prints_every_check_and_the_training_loss_at_most_once_a_minute(monkeypatch):
    """A long fit without MLflow still shows it is moving, without a line per step."""
    from rich.console import Console

    from seqbench import sweep_offline

    clock = iter([60.0, 70.0, 100.0, 125.0, 130.0])
    monkeypatch.setattr(sweep_offline.time, "perf_counter", lambda: next(clock))
    console = Console(record=True, width=200)
    show = sweep_offline._progress_printer(console, began=0.0, every_s=60.0)
    show("abcdef123456", "train_loss", 2.5, 1)  # 60 s: a minute since the start
    show("abcdef123456", "train_loss", 2.4, 2)  # 70 s: too soon
    show("abcdef123456", "valid_ndcg@10", 0.1234, 2)  # a check always prints
    show("abcdef123456", "train_loss", 2.2, 3)  # 125 s: 65 s after the last loss line
    show("abcdef123456", "train_loss", 2.1, 4)  # 130 s: too soon
    lines = console.export_text().splitlines()
    assert [line.split(maxsplit=2)[2] for line in lines] == [
        "abcdef12 step 1: train_loss 2.5000", "abcdef12 check at 2: valid_ndcg@10 0.1234",
        "abcdef12 step 3: train_loss 2.2000"]
