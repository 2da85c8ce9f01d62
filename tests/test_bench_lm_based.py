"""scripts/bench_lm_based.py on tiny data: rows, the vs-pop test, both windows, and --resume adding a row."""

import json

from .conftest import load_script


def _main():
    return load_script("bench_lm_based").main


def test_rows_against_pop_and_resume(tiny_home, tmp_path, monkeypatch):
    monkeypatch.setenv("SEQBENCH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "lm.json"
    common = ["--datasets", "tiny", "--data-home", str(tiny_home), "--out", str(out), "--threads", "1",
              "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--no-other-probes",
              "--set", "ctrl.d=16,ctrl.maxlen=16,ctrl.max_epochs=2,ctrl.text_encoder=tiny-random"]
    assert _main()(["--models", "ctrl", *common]) == 0
    first = json.loads(out.read_text())["datasets"]["tiny"]
    rows = {r["label"]: r for r in first["rows"]}
    assert set(rows) == {"pop", "ctrl"}
    ctrl = rows["ctrl"]
    assert ctrl["shuffle_window=10"]["window"] == 10 and ctrl["shuffle_own_window"]["window"] == 16
    assert ctrl["settings"]["d"] == "16" and "machine" in ctrl and 0 <= ctrl["vs_pop"]["p_holm"] <= 1
    assert isinstance(ctrl["vs_pop"]["beats_pop"], bool) and first["pop_run_id"] == rows["pop"]["mlflow_run_id"]

    assert _main()(["--models", "ctrl", "--row", "ctrl-c=ctrl:variant=contrastive,align_epochs=1", "--resume",
                    *common]) == 0
    second = {r["label"]: r for r in json.loads(out.read_text())["datasets"]["tiny"]["rows"]}
    assert set(second) == {"pop", "ctrl", "ctrl-c"}
    assert second["ctrl"]["mlflow_run_id"] == ctrl["mlflow_run_id"]  # kept, not re-run
    assert second["ctrl-c"]["settings"]["variant"] == "contrastive" and second["ctrl-c"]["model"] == "ctrl"
