"""Live training curves: points are in MLflow while the training run is still open, not only at the end."""

import mlflow
import pytest

from seqbench.tracking import EXPERIMENT, Tracker
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


def test_seqbench_run_closes_the_training_run_before_the_probes_evaluate(tiny_home, tracking_uri, monkeypatch):
    """A process killed during the (long) test evaluation leaves a finished training run with its whole curve."""
    from seqbench.probes.shuffle_infer import ShuffleInfer
    from seqbench.runner import RunSpec, run

    statuses = []

    def killed(self, pc):
        statuses.extend(r.info.status for r in mlflow.search_runs(experiment_names=[EXPERIMENT], output_format="list"))
        raise KeyboardInterrupt

    monkeypatch.setattr(ShuffleInfer, "run", killed)
    spec = RunSpec(model="sasrec", probes=["shuffle-infer"], dataset="tiny", data_home=tiny_home,
                   tracking_uri=tracking_uri, overrides={"max_epochs": "2", "eval_every": "1", "d": "8", "maxlen": "8"})
    with pytest.raises(KeyboardInterrupt):
        run(spec)
    assert statuses == ["FINISHED"]  # the training run, closed when the fit returned
    (train,) = mlflow.search_runs(experiment_names=[EXPERIMENT], output_format="list")
    assert train.data.tags["run_kind"] == "train" and train.info.status == "FINISHED"
    assert [m.step for m in mlflow.MlflowClient().get_metric_history(train.info.run_id, "valid_ndcg_at_10")] == [1, 2]


def test_a_last_point_is_written_once_flush_s_has_passed_without_a_later_point(tracking_uri, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tracker = Tracker(tracking_uri, experiment="due")
    client = mlflow.MlflowClient()
    live = LiveCurves(tracker, "tiny", "sasrec", experiment="due", flush_s=3600.0)
    live.add("abc", "valid_ndcg@10", 0.2, 7)

    def history() -> list[float]:
        return [m.value for m in client.get_metric_history(live.runs["abc"], "valid_ndcg_at_10")]

    live.flush_due()
    assert history() == []  # buffered: an LLM loop logging every step must not write every point
    live.last_flush -= 3600.0
    live.flush_due()
    assert history() == [0.2]
    live.finish("abc")
