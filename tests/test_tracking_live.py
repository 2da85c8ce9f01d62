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
