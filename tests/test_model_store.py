"""Trained-model store: identity, atomic save/load, reuse by `seqbench run` and --retrain."""

import json

import numpy as np
import pytest

from seqbench.context import RunContext
from seqbench.data.pipeline import prepare_source
from seqbench.data.preprocess import PrepareParams
from seqbench.data.sources.options import SourceOptions
from seqbench.models import FitReport, create_model
from seqbench.models.store import FileCheckpointer, ModelStore, histories_hash, identity
from seqbench.runner import RunSpec, run


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    """MLflow puts a new experiment's artifacts under the working directory: keep them out of the repository."""
    monkeypatch.chdir(tmp_path)


FAST = {"max_epochs": "2", "eval_every": "1", "d": "16", "maxlen": "16"}
BASE = dict(model="sasrec", config={"d": 16}, dataset_hash="abc", train_hash="t", seed=0, code_version="v")


@pytest.mark.parametrize("change", [{"model": "gru4rec"}, {"config": {"d": 32}}, {"dataset_hash": "abd"},
                                    {"train_hash": "u"}, {"seed": 1}, {"code_version": "w"}])
def test_identity_changes_with_every_part(change):
    assert identity(**BASE) == identity(**dict(BASE))
    assert identity(**{**BASE, **change}) != identity(**BASE)


def test_histories_hash_sees_order(tiny):
    from seqbench.data.permutation import PERMUTATION_SEED, permute_all

    train = tiny.histories("train")
    assert histories_hash(train) == histories_hash(tiny.histories("train"))
    assert histories_hash(permute_all(train, PERMUTATION_SEED)) != histories_hash(train)


def test_file_checkpointer_roundtrip_and_clear(tmp_path):
    ck = FileCheckpointer(tmp_path / "a" / "state.pt")
    assert ck.load() is None
    ck.save({"epoch": 3, "x": np.arange(4)})
    ck.save({"epoch": 4, "x": np.arange(5)})
    assert ck.load()["epoch"] == 4 and list(ck.load()["x"]) == list(range(5))
    assert [p.name for p in ck.path.parent.iterdir()] == ["state.pt"]  # no temporary file left behind
    ck.clear()
    assert ck.load() is None


def test_get_or_fit_trains_once_then_loads(tiny, tmp_path):
    store = ModelStore(tmp_path / "models")
    calls = []

    def build():
        return create_model("sasrec", tiny.n_items, FAST)

    def fit(model, ctx):
        calls.append(ctx.checkpoint)
        return model.fit(tiny, tiny.histories("train"), ctx)

    first = store.get_or_fit("id1", build, fit, RunContext(seed=0))
    assert not first.reused and len(calls) == 1 and calls[0] is not None  # trained with a checkpointer
    second = store.get_or_fit("id1", build, fit, RunContext(seed=0))
    assert second.reused and len(calls) == 1
    assert second.fit == first.fit  # the original fit figures, curve included
    hist, cands = tiny.histories("test"), tiny.candidates["test"]
    np.testing.assert_array_equal(second.model.score(hist, cands), first.model.score(hist, cands))
    assert not (tmp_path / "models" / "id1.ckpt").exists()  # checkpoint cleared after a finished fit
    third = store.get_or_fit("id1", build, fit, RunContext(seed=0), retrain=True)
    assert not third.reused and len(calls) == 2


def test_failed_save_leaves_nothing(tiny, tmp_path):
    class Broken:
        def save(self, path):
            path.mkdir(parents=True)
            (path / "half").write_text("x")
            raise OSError("disk full")

    store = ModelStore(tmp_path / "models")
    with pytest.raises(OSError):
        store.save("idx", Broken(), FitReport(0, 0.0, 0, 0.0, 0.0), {})
    assert not store.has("idx") and list((tmp_path / "models").iterdir()) == []


def _run(home, uri, **kw):
    spec = RunSpec(model="sasrec", probes=["shuffle-infer"], dataset=kw.pop("dataset", "tiny"), data_home=home,
                   tracking_uri=uri, overrides={**FAST, **kw.pop("overrides", {})}, **kw)
    return run(spec)["runs"][0]


def test_run_reuses_the_stored_model_unless_config_dataset_or_retrain_change(tiny_home, tracking_uri):
    import mlflow

    a = _run(tiny_home, tracking_uri)
    b = _run(tiny_home, tracking_uri)
    assert (a["reused"], b["reused"]) == (False, True)
    assert b["fit"] == a["fit"] and b["model_identity"] == a["model_identity"]
    assert b["metrics"] == a["metrics"]
    entry = ModelStore().path(a["model_identity"])
    assert json.loads((entry / "meta.json").read_text())["identity"] == a["model_identity"]
    assert (entry / "model" / "weights.pt").is_file() and (entry / "fit_report.json").is_file()
    mlflow.set_tracking_uri(tracking_uri)
    assert mlflow.get_run(b["mlflow_run_id"]).data.tags["reused"] == "true"
    assert mlflow.get_run(a["mlflow_run_id"]).data.tags["reused"] == "false"
    c = _run(tiny_home, tracking_uri, overrides={"d": "8"})
    assert not c["reused"] and c["model_identity"] != a["model_identity"]
    d = _run(tiny_home, tracking_uri, retrain=True)
    assert not d["reused"] and d["model_identity"] == a["model_identity"] and d["metrics"] == a["metrics"]
    # live training curve: a run per trained model (run_kind=train), none for the reused one
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name("seqbench").experiment_id
    train_runs = client.search_runs([exp], "tags.run_kind = 'train'")
    assert sorted(r.data.tags["model_identity"] for r in train_runs) == sorted(
        [a["model_identity"], c["model_identity"], a["model_identity"]])
    assert {m.step for m in client.get_metric_history(train_runs[0].info.run_id, "valid_ndcg_at_10")} == {1, 2}


def test_changed_dataset_retrains(tiny_home, tracking_uri, tmp_path):
    opts = SourceOptions(users=150, items=160, order=0.9, seed=4, min_len=5, max_len=20)
    prepare_source("synthetic", None, "tiny2", tmp_path, PrepareParams(), opts)
    a = _run(tiny_home, tracking_uri)
    b = _run(tmp_path, tracking_uri, dataset="tiny2")
    assert not b["reused"] and b["model_identity"] != a["model_identity"]
