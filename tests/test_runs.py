"""Run ids a user can use: printed after every run, listed by `seqbench runs`, accepted as unique prefixes;
artifacts beside the sqlite store, never in the working directory."""

import json
import re
from pathlib import Path
from types import SimpleNamespace

import mlflow
import pytest
from typer.testing import CliRunner

from seqbench.cli import app
from seqbench.errors import SeqbenchError
from seqbench.runs import list_runs, resolve_run_id
from seqbench.tracking import artifact_location

runner = CliRunner()
FAST = "max_epochs=2,eval_every=1,d=16,maxlen=16"


def _run(home, uri, *args):
    r = runner.invoke(app, ["run", "--dataset", "tiny", "--data-home", str(home), "--tracking-uri", uri, *args],
                      catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return r.output


@pytest.fixture(scope="module")
def store(tiny_home, tmp_path_factory):
    """One tracking store for the module: (tmp dir, tracking uri, sasrec run output, pop run output)."""
    tmp = tmp_path_factory.mktemp("runs")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    (tmp / "cwd").mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp / "cwd")  # nothing may land in the working directory
        sas = _run(tiny_home, uri, "--model", "sasrec", "--probe", "shuffle-infer,reverse", "--set", FAST)
        pop = _run(tiny_home, uri, "--model", "pop")
    return tmp, uri, sas, pop


def _ids(output: str) -> list[str]:
    return re.findall(r"^  run ([0-9a-f]{32})  ", output, flags=re.M)


def test_run_prints_ids_experiment_and_artifacts(store):
    tmp_path, tracking_uri, sas, pop = store
    ids = _ids(sas)
    assert len(ids) == 2 and len(_ids(pop)) == 1
    db_dir = tmp_path  # tracking_uri is sqlite:///<tmp_path>/mlflow.db
    assert f"experiment 'seqbench' in {tracking_uri}" in sas
    assert f"artifacts under {(db_dir / 'mlartifacts').as_uri()}" in sas
    client = mlflow.MlflowClient(tracking_uri)
    for run_id in ids:
        run = client.get_run(run_id)
        assert run.info.artifact_uri.startswith((db_dir / "mlartifacts").as_uri())
        names = {a.path for a in client.list_artifacts(run_id)}
        assert {"result.json", "per_user_metrics.parquet", "fit_report.json", "resolved_config.json"} <= names
        tags = run.data.tags
        assert tags["dataset"] == "tiny" and tags["model"] == "sasrec" and tags["seed"] == "0"
        assert tags["family"] == "CF-SRec" and tags["task"] == "retrieval" and tags["probe"] in ("shuffle-infer",
                                                                                                "reverse")
        assert "recipe" not in tags  # only LLM recommenders have a training recipe
    assert (db_dir / "mlartifacts").is_dir()
    assert not (tmp_path / "cwd" / "mlruns").exists() and list((tmp_path / "cwd").iterdir()) == []


def test_artifact_location_only_for_sqlite(tmp_path):
    assert artifact_location(f"sqlite:///{tmp_path}/x/m.db") == (tmp_path / "x" / "mlartifacts").as_uri()
    assert artifact_location("http://localhost:5000") is None


def test_runs_lists_and_filters(store, tmp_path):
    _, tracking_uri, sas, pop = store
    rows = list_runs(tracking_uri)
    assert len(rows) == 3 and rows[0].model == "pop"  # newest first
    assert {r.run_id for r in rows} == set(_ids(sas) + _ids(pop))
    only = list_runs(tracking_uri, model="sasrec", probe="reverse")
    assert len(only) == 1 and only[0].conditions == ("original", "probed")
    path = mlflow.MlflowClient(tracking_uri).download_artifacts(only[0].run_id, "result.json", str(tmp_path))
    result = json.loads(Path(path).read_text())
    assert only[0].ndcg[0] == pytest.approx(result["metrics"]["original"]["ndcg@10"])
    assert only[0].p_value == pytest.approx(result["test"]["p_holm"])  # two probes together: Holm-adjusted
    assert list_runs(tracking_uri, dataset="nope") == []

    r = runner.invoke(app, ["runs", "--tracking-uri", tracking_uri, "--model", "pop"])
    assert r.exit_code == 0 and _ids(pop)[0] in r.output and "sasrec" not in r.output
    r = runner.invoke(app, ["runs", "--tracking-uri", tracking_uri, "--json"])
    assert [row["run_id"] for row in json.loads(r.output)] == [x.run_id for x in rows]


def test_compare_accepts_unique_prefixes(store):
    _, tracking_uri, sas, pop = store
    ref, other = _ids(pop)[0], _ids(sas)[0]
    r = runner.invoke(app, ["compare", ref[:8], other[:10], "--tracking-uri", tracking_uri])
    assert r.exit_code == 0, r.output
    assert "sasrec/shuffle-infer/seed0" in r.output or "sasrec/reverse/seed0" in r.output
    assert "Downloading artifacts" not in r.output  # MLflow's tqdm bars stay out of the table
    client = mlflow.MlflowClient(tracking_uri)
    assert resolve_run_id(ref[:6].upper(), client) == ref
    with pytest.raises(SeqbenchError, match="too short"):
        resolve_run_id(ref[:2], client)
    with pytest.raises(SeqbenchError, match="no MLflow run 'ffffffff'"):
        resolve_run_id("ffffffff", client)


def test_ambiguous_prefix_names_the_candidates():
    ids = ["abcd1234" + "0" * 24, "abcd5678" + "0" * 24, "ffff0000" + "0" * 24]
    run = lambda i: SimpleNamespace(info=SimpleNamespace(run_id=i))  # noqa: E731

    class Page(list):
        token = None

    client = SimpleNamespace(get_experiment_by_name=lambda name: SimpleNamespace(experiment_id="1"),
                             search_runs=lambda *a, **k: Page(run(i) for i in ids))
    with pytest.raises(SeqbenchError, match="'abcd' is ambiguous: it matches abcd12340000, abcd56780000"):
        resolve_run_id("abcd", client)
    assert resolve_run_id("abcd5", client) == ids[1]
