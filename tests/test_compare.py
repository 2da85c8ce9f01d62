"""`seqbench compare`: paired per-user tests across MLflow runs, refusing runs on different data."""

import json

import pytest
from typer.testing import CliRunner

from seqbench.cli import app
from seqbench.compare import compare_runs
from seqbench.data.pipeline import prepare_source
from seqbench.data.preprocess import PrepareParams
from seqbench.data.sources.options import SourceOptions

runner = CliRunner()
FAST = "max_epochs=2,eval_every=1,d=16,maxlen=16"


def _run(home, uri, tmp_path, model, dataset="tiny", sets=()):
    out = tmp_path / f"{model}-{dataset}.json"
    args = ["run", "--model", model, "--dataset", dataset, "--data-home", str(home), "--tracking-uri", uri,
            "--output", str(out), *sets]
    r = runner.invoke(app, args, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return json.loads(out.read_text())


def test_compare_two_models_on_the_same_users(tiny_home, tracking_uri, tmp_path):
    pop = _run(tiny_home, tracking_uri, tmp_path, "pop")
    sas = _run(tiny_home, tracking_uri, tmp_path, "sasrec", sets=["--set", FAST])
    res = compare_runs([pop["mlflow_run_id"], sas["mlflow_run_id"], pop["mlflow_run_id"]],
                       tracking_uri=tracking_uri)
    assert res["reference"]["label"] == f"pop/shuffle-infer/seed0 ({pop['mlflow_run_id'][:8]})"
    assert res["reference"]["mean"] == pytest.approx(pop["metrics"]["original"]["ndcg@10"])
    vs_sas, vs_self = res["comparisons"]
    assert vs_sas["test"]["mean_challenger"] == pytest.approx(sas["metrics"]["original"]["ndcg@10"])
    assert vs_self["test"]["p_value"] == 1.0 and vs_self["test"]["n_nonzero"] == 0  # a run against itself
    assert res["holm"] and vs_sas["test"]["p_holm"] >= vs_sas["test"]["p_value"]

    out = tmp_path / "cmp.json"
    r = runner.invoke(app, ["compare", pop["mlflow_run_id"], sas["mlflow_run_id"], "--tracking-uri",
                            tracking_uri, "--metric", "hr@10", "--output", str(out)])
    assert r.exit_code == 0, r.output
    assert "sasrec/shuffle-infer/seed0" in r.output
    saved = json.loads(out.read_text())
    assert saved["metric"] == "hr@10" and saved["holm"] is False and len(saved["comparisons"]) == 1
    assert saved["comparisons"][0]["test"]["mean_challenger"] == pytest.approx(sas["metrics"]["original"]["hr@10"])


def test_compare_refuses_other_data_and_bad_names(tracking_uri, tmp_path):
    home = tmp_path / "home"
    opts = SourceOptions(users=150, items=160, order=0.9, seed=3, min_len=5, max_len=20)
    prepare_source("synthetic", None, "a", home, PrepareParams(), opts)
    prepare_source("synthetic", None, "b", home, PrepareParams(neg_seed=1), opts)  # other negatives only
    a = _run(home, tracking_uri, tmp_path, "pop", dataset="a")
    b = _run(home, tracking_uri, tmp_path, "pop", dataset="b")
    cases = [([a["mlflow_run_id"], b["mlflow_run_id"]], "different data"),
             ([a["mlflow_run_id"], "nope"], "no MLflow run 'nope'"),
             ([a["mlflow_run_id"]], "at least one other run")]
    for ids, msg in cases:
        r = runner.invoke(app, ["compare", *ids, "--tracking-uri", tracking_uri])
        assert r.exit_code == 1 and msg in r.output, r.output
    r = runner.invoke(app, ["compare", a["mlflow_run_id"], a["mlflow_run_id"], "--tracking-uri", tracking_uri,
                            "--metric", "mrr"])
    assert r.exit_code == 1 and "no per-user 'mrr'" in r.output and "ndcg@10" in r.output
    r = runner.invoke(app, ["compare", a["mlflow_run_id"], a["mlflow_run_id"], "--tracking-uri", tracking_uri,
                            "--condition", "nope"])
    assert r.exit_code == 1 and "no condition 'nope'" in r.output and "probed" in r.output
