"""Live training curves: points are in MLflow while the training run is still open, not only at the end."""

import mlflow

from seqbench.tracking import Tracker
from seqbench.tracking_live import LiveCurves


def test_points_visible_while_training_and_run_closed_at_exit(tracking_uri, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tracker = Tracker(tracking_uri, experiment="live")
    client = mlflow.MlflowClient()
    with LiveCurves(tracker, "tiny", "sasrec", experiment="live", flush_s=0.0) as live:
        live.add("abc", "train_loss", 2.0, 1)
        live.add("abc", "valid_ndcg@10", 0.1, 1)
        run_id = live.runs["abc"]
        run = client.get_run(run_id)
        assert run.info.status == "RUNNING" and run.data.tags["run_kind"] == "train"
        assert run.data.tags["model_identity"] == "abc" and run.data.tags["family"] == "CF-SRec"
        assert [m.value for m in client.get_metric_history(run_id, "valid_ndcg_at_10")] == [0.1]
        live.add("abc", "train_loss", 1.5, 2)
        assert [m.step for m in client.get_metric_history(run_id, "train_loss")] == [1, 2]
    assert client.get_run(run_id).info.status == "FINISHED"
    assert len(mlflow.search_runs(experiment_names=["live"])) == 1  # one run per identity, created on first point


def test_a_resumed_fit_continues_its_unfinished_training_run(tracking_uri, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tracker = Tracker(tracking_uri, experiment="resume")
    client = mlflow.MlflowClient()

    def process() -> LiveCurves:
        return LiveCurves(tracker, "tiny", "tallrec", experiment="resume", flush_s=0.0)

    killed = process()
    killed.add("abc", "train_loss", 2.0, 1)
    killed.add("abc", "train_loss", 1.9, 2)  # the process dies here: no finish, the run stays RUNNING
    first = killed.runs["abc"]
    with process() as live:
        live.add("abc", "train_loss", 1.8, 2)  # resumed from a checkpoint at step 1
        assert live.runs["abc"] == first
    assert client.get_run(first).info.status == "FINISHED"
    history = [(m.step, m.value) for m in client.get_metric_history(first, "train_loss")]
    assert sorted(history) == [(1, 2.0), (2, 1.8), (2, 1.9)]
    with process() as again:
        again.add("abc", "train_loss", 2.0, 3)  # a finished fit's run is never reopened (--retrain: a new one)
        assert again.runs["abc"] != first
        failed = again.runs["abc"]
        again.finish("abc", "FAILED")
        again.add("abc", "train_loss", 1.7, 4)  # but a failed one is, like a killed one
        assert again.runs["abc"] == failed
        again.finish("abc", "FAILED")
        again.add("abc", "train_loss", 2.1, 1)  # a fresh fit (step 1: no checkpoint was left) gets its own run
        assert again.runs["abc"] not in (first, failed)
    assert len(mlflow.search_runs(experiment_names=["resume"])) == 3
