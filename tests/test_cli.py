"""The CLI end to end on tiny synthetic data, including MLflow logging and the JSON result."""

import json

import mlflow
import pytest
from typer.testing import CliRunner

from seqbench.cli import app
from seqbench.eval.metrics import METRIC_KEYS

runner = CliRunner()
FAST = "max_epochs=2,eval_every=1,d=16,maxlen=16"


def _invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_run_end_to_end_writes_json_and_mlflow(tiny_home, tracking_uri, tmp_path):
    out = tmp_path / "res.json"
    r = _invoke("run", "--model", "sasrec", "--probe", "shuffle-infer", "--dataset", "tiny", "--data-home",
                tiny_home, "--tracking-uri", tracking_uri, "--set", FAST, "--output", out)
    assert r.exit_code == 0, r.output
    assert "ndcg@10" in r.output and ("Order matters" in r.output or "No significant" in r.output
                                      or "did better" in r.output)
    res = json.loads(out.read_text())
    assert {"dataset", "model", "probe", "seed", "metrics", "test", "mlflow_run_id"} <= set(res)
    assert (res["dataset"], res["model"], res["probe"], res["seed"]) == ("tiny", "sasrec", "shuffle-infer", 0)
    for cond in ("original", "probed"):
        assert set(res["metrics"][cond]) == set(METRIC_KEYS)
        assert all(0 <= v <= 1 for v in res["metrics"][cond].values())
    lo, hi = res["test"]["ci95"]
    assert lo <= res["test"]["relative_change"] <= hi
    assert 0 <= res["test"]["p_value"] <= 1

    mlflow.set_tracking_uri(tracking_uri)
    run = mlflow.get_run(res["mlflow_run_id"])
    assert run.data.params["model"] == "sasrec" and run.data.params["model_config.d"] == "16"
    assert run.data.tags["dataset_hash"] and run.data.tags["code_version"]
    assert run.data.metrics["original_ndcg_at_10"] == pytest.approx(res["metrics"]["original"]["ndcg@10"])
    history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "train_loss")
    assert sorted(m.step for m in history) == [1, 2]  # the training curve, one point per epoch (max_epochs=2)
    names = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)}
    assert {"per_user_metrics.parquet", "resolved_config.json", "result.json"} <= names


@pytest.mark.parametrize("flag,value,valid", [("--model", "nope", "sasrec"), ("--probe", "nope", "shuffle-infer"),
                                              ("--dataset", "nope", "tiny")])
def test_unknown_names_exit_2_and_list_valid_ones(tiny_home, tracking_uri, flag, value, valid):
    r = _invoke("run", flag, value, "--data-home", tiny_home, "--tracking-uri", tracking_uri)
    assert r.exit_code == 2
    assert f"'{value}'" in r.output and valid in r.output


def test_unknown_probe_option_exits_2_before_training(tiny_home, tracking_uri, monkeypatch):
    import seqbench.runner

    monkeypatch.setattr(seqbench.runner, "create_model", lambda *a: pytest.fail("trained despite a bad option"))
    r = _invoke("run", "--probe", "shuffle-infer,warm-cold", "--dataset", "tiny", "--data-home", tiny_home,
                "--tracking-uri", tracking_uri, "--probe-set", "windw=10")
    assert r.exit_code == 2 and "'windw'" in r.output and "shuffle-infer: user_rep, window" in r.output
    r = _invoke("run", "--probe", "shuffle-infer", "--dataset", "tiny", "--data-home", tiny_home,
                "--tracking-uri", tracking_uri, "--probe-set", "window=0")
    assert r.exit_code == 2 and "window=0" in r.output


def test_order_horizon_and_window_are_recorded_in_json_and_mlflow(tiny_home, tracking_uri, tmp_path):
    out = tmp_path / "res.json"
    r = _invoke("run", "--model", "sasrec", "--probe", "order-horizon,shuffle-infer", "--dataset", "tiny",
                "--data-home", tiny_home, "--tracking-uri", tracking_uri, "--set", FAST, "--probe-set", "window=4",
                "--output", out)
    assert r.exit_code == 0, r.output
    horizon, shuffle = json.loads(out.read_text())["runs"]
    assert shuffle["probe_stats"]["window"] == 4 and shuffle["probe_stats"]["options"] == {"window": "4"}
    ks = [c["k"] for c in horizon["probe_stats"]["horizon"]]
    assert ks == horizon["probe_stats"]["grid"] and ks[0] == 2
    mlflow.set_tracking_uri(tracking_uri)
    client = mlflow.MlflowClient()
    curve = client.get_metric_history(horizon["mlflow_run_id"], "horizon_relative_change")
    assert sorted(m.step for m in curve) == ks
    assert mlflow.get_run(shuffle["mlflow_run_id"]).data.params["probe_options.window"] == "4"
    assert mlflow.get_run(shuffle["mlflow_run_id"]).data.metrics["probe_window"] == 4


def test_unknown_setting_is_a_clear_error(tiny_home, tracking_uri):
    r = _invoke("run", "--dataset", "tiny", "--data-home", tiny_home, "--tracking-uri", tracking_uri,
                "--set", "nonsense=1")
    assert r.exit_code == 1 and "unknown setting 'nonsense'" in r.output


def test_listing_commands():
    assert "sasrec" in _invoke("models").output
    assert "shuffle-infer" in _invoke("probes").output
    assert _invoke("--help").exit_code == 0


@pytest.mark.parametrize("command", [("run",), ("data", "prepare")])
def test_help_texts_survive_rich_markup(command, monkeypatch):
    """Bracketed text in a help string is rich markup and would vanish; defaults must stay readable."""
    monkeypatch.setenv("COLUMNS", "200")
    out = _invoke(*command, "--help").output
    assert "(default: " in out
    assert "with a 'model' table" in out or command != ("run",)


def test_data_prepare_list_stats_and_bad_input(tmp_path):
    home = tmp_path / "home"
    r = _invoke("data", "prepare", "synthetic", "--name", "s0", "--users", 60, "--items", 200, "--order", 0.5,
                "--data-home", home)
    assert r.exit_code == 0, r.output
    assert "s0" in _invoke("data", "list", "--data-home", home).output
    stats = _invoke("data", "stats", "s0", "--json", "--data-home", home)
    assert json.loads(stats.output)["users"] == 60
    again = _invoke("data", "prepare", "synthetic", "--name", "s0", "--data-home", home)
    assert again.exit_code == 1 and "already exists" in again.output
    bad = _invoke("data", "prepare", "recbole", "--source", tmp_path / "missing", "--data-home", home)
    assert bad.exit_code == 1 and "missing" in bad.output
    assert _invoke("data", "prepare", "nope", "--data-home", home).exit_code == 2
    assert sorted(p.name for p in home.iterdir()) == ["s0"]  # nothing half-written
