"""seqbench.record: the one MLflow schema; what a run writes is what the readers find."""

from __future__ import annotations

import mlflow

from seqbench import record
from seqbench.tracking import artifact_location


def _tags(**kw) -> dict[str, str]:
    base = dict(dataset="d", model="sasrec", family="CF-SRec", probe="shuffle-infer", seed=3, task="retrieval",
                protocol="full", split="leave-last-out", conditions=("original", "probed"), dataset_hash="h",
                code_version="0.1.0+x")
    return record.result_tags(**(base | kw))


def test_result_tags_round_trip_through_mlflow_and_the_readers(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("e", artifact_location=artifact_location(uri))
    llm = client.create_run(exp, tags=_tags(model="llara", recipe="cpu-proxy", result_id="r1",
                                            config_layer="tuned")).info.run_id
    cf = client.create_run(exp, tags={**_tags(), **record.reuse_tags(True, "abc")}).info.run_id
    client.create_run(exp, tags=record.train_tags("abc", {"dataset": "d"}))
    client.create_run(exp, tags=record.sweep_tags("s1", "studies/x.yaml"))
    runs = {r.info.run_id: r for r in client.search_runs([exp])}
    assert sorted(rid for rid, r in runs.items() if record.is_result(r)) == sorted([llm, cf])
    a = runs[llm]
    assert (record.field(a, "seed"), record.protocol(a), record.dataset_hash(a), record.code_version(a),
            record.recipe(a), record.conditions(a)) == ("3", "full", "h", "0.1.0+x", "cpu-proxy",
                                                          ("original", "probed"))
    assert record.recipe(runs[cf]) is None and runs[cf].data.tags["reused"] == "true"
    assert record.config_layer(a) == "tuned" and runs[cf].data.tags[record.CONFIG_LAYER] == "default"
    found = client.search_runs([exp], record.filter_string(run_kind=record.PROBE_RUN, model="llara", task=None))
    assert [r.info.run_id for r in found] == [llm]


def test_runs_logged_before_a_tag_existed_read_as_its_default(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("e", artifact_location=artifact_location(uri))
    rid = client.create_run(exp).info.run_id
    client.log_param(rid, "dataset", "old")
    client.log_param(rid, "model_config.d", "64")
    run = client.get_run(rid)
    assert record.is_result(run) and record.field(run, "dataset") == "old"
    assert record.protocol(run) == record.DEFAULT_PROTOCOL and record.conditions(run) == record.DEFAULT_CONDITIONS
    assert record.config_layer(run) == "default"
    assert record.prefixed(run, record.MODEL_CONFIG) == {"d": "64"}


def test_a_copy_without_git_takes_its_commit_from_the_commit_file(tmp_path, monkeypatch):
    """The working tree a lent accelerator machine receives has no .git: the COMMIT file written by
    scripts/device_pack.py names the commit, so its trained-model identities equal this checkout's."""
    import subprocess

    from seqbench import __version__, version

    def no_git(*args, **kwargs):
        raise OSError("git: not found")

    monkeypatch.setattr(subprocess, "run", no_git)
    monkeypatch.setattr(version, "COMMIT_FILE", tmp_path / "COMMIT")
    assert version.code_version.__wrapped__() == __version__
    (tmp_path / "COMMIT").write_text("abc1234\n")
    assert version.code_version.__wrapped__() == f"{__version__}+abc1234"
