"""benchmarks/: every committed result is a run in one envelope, listed in the generated index, which is current."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from seqbench import benchinfo
from seqbench.benchinfo import BENCHMARKS, ENVELOPE, INDEX, begin, load_runs, record, render_index, variant_of

ROOT = Path(__file__).resolve().parents[1]
FILES = benchinfo.result_files(ROOT)


def test_there_are_committed_results_and_only_under_results():
    assert FILES and all(p.parent == ROOT / benchinfo.RESULTS for p in FILES)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_run_has_the_envelope(path):
    data = json.loads(path.read_text())
    assert set(data) == {"benchmark", "runs"} and data["benchmark"] == path.stem in BENCHMARKS
    assert (ROOT / BENCHMARKS[path.stem][0]).exists()
    assert data["runs"]
    for run in data["runs"]:
        assert set(ENVELOPE) <= set(run) <= {*ENVELOPE, "provenance"}
        assert run["benchmark"] == path.stem
        assert isinstance(run["variant"], dict) and isinstance(run["result"], dict) and run["result"]
        missing = " ".join((run.get("provenance") or {}).get("missing", []))
        for key in ("command", "commit", "started", "machine"):  # null only where provenance says it is missing
            assert run[key] is not None or key in missing, f"{path.name}: {key} is null, not listed as missing"
        if run["started"] is None:
            assert (run.get("provenance") or {}).get("committed", {}).get("date"), "no date at all"


def test_the_index_lists_every_run_and_is_up_to_date():
    text = (ROOT / INDEX).read_text()
    for path in FILES:
        assert f"(results/{path.name})" in text
        for i, _ in enumerate(json.loads(path.read_text())["runs"]):
            assert f"| {path.stem}#{i} |" in text
    assert text == render_index(ROOT), "benchmarks/README.md is stale: run `python -m seqbench.benchinfo index`"


def test_reports_holds_no_performance_benchmark():
    moved = {"bench_cf", "bench_controls", "bench_eval_protocols", "bench_llm", "bench_prepare", "bench_quickstart",
             "bench_sweep", "gpu_check", "gpu_probe_check", "gpu_step_profile"}
    left = [p.name for p in (ROOT / "reports").glob("*.json") if any(p.stem.startswith(m) for m in moved)]
    assert not left


def test_a_new_run_replaces_its_variant_and_keeps_the_others(tmp_path):
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default="x.json")
    path = tmp_path / "quickstart.json"
    for argv, seconds in ((["--out", "y"], 1.0), (["--threads", "1"], 2.0), ([], 3.0)):
        args = ap.parse_args(argv)
        run = begin("quickstart", ROOT / "scripts" / "bench_quickstart.py", argv, variant_of(ap, args, ("out",)))
        stored = record(run, {"total_wall_s": seconds}, path, device="cpu")
    runs = load_runs(path)
    assert [(r["variant"], r["result"]["total_wall_s"]) for r in runs] == [({}, 3.0), ({"threads": 1}, 2.0)]
    assert stored == runs[0] and stored["command"] == "python scripts/bench_quickstart.py"
    assert stored["machine"]["device"] == "cpu" and "load_avg_after" in stored["machine"]
    assert stored["commit"] and stored["started"].endswith("Z")
    (tmp_path / "old.json").write_text("{}")
    with pytest.raises(ValueError, match="not a benchmark results file"):
        record(run, {}, tmp_path / "old.json")


def test_index_renders_runs_without_machine_or_date(tmp_path):
    results = tmp_path / benchinfo.RESULTS
    results.mkdir(parents=True)
    run = {"benchmark": "prepare", "variant": {"lines": 10}, "command": None, "commit": None, "started": None,
           "machine": None, "result": {"lines": 10, "seconds": 1.0},
           "provenance": {"missing": ["machine", "command"], "committed": {"commit": "abc1234", "date": "2026-01-02"}}}
    (results / "prepare.json").write_text(json.dumps({"benchmark": "prepare", "runs": [run]}))
    text = render_index(tmp_path)
    assert "| prepare#0 | lines=10 | not recorded | by 2026-01-02 (committed) |" in text
    assert "- prepare#0" in text and benchinfo.main(["index", "--root", str(tmp_path), "--check"]) == 1
    assert benchinfo.main(["index", "--root", str(tmp_path)]) == 0
    assert benchinfo.main(["index", "--root", str(tmp_path), "--check"]) == 0


@pytest.mark.slow
def test_bench_tune_runs_on_tiny_data_and_records_its_envelope(tiny_home, tmp_path):
    """scripts/bench_tune.py end to end on a tiny dataset (2 trials, 2 epochs; the kill-and-resume step is
    tests/test_tune.py's): the envelope, both schedulers on the same trials, the epochs and the share saved."""
    from .conftest import load_script

    out = tmp_path / "tune.json"
    result = load_script("bench_tune").main(["--dataset", "tiny", "--trials", "2", "--max-epochs", "2",
                                             "--kill-after", "0", "--data-home", str(tiny_home),
                                             "--output", str(out)])
    (run,) = load_runs(out)
    assert set(ENVELOPE) <= set(run) and run["benchmark"] == "tune"
    assert run["variant"] == {"dataset": "tiny", "trials": 2, "max_epochs": 2, "kill_after": 0}
    assert result["same_configs"] and result["asha"]["trials"] == result["fifo"]["trials"] == 2
    assert 0 < result["fifo"]["epochs"] <= 4  # 2 trials of at most 2 epochs
    assert 0 < result["asha"]["epochs"] <= result["fifo"]["epochs"] + 2  # + its winner's completion, if stopped
    assert result["epochs_saved_share"] == 1 - result["asha"]["epochs"] / result["fifo"]["epochs"]
    assert result["asha"]["trials_per_hour"] > 0 and result["resume"] is None
    assert "2 trials: asha" in benchinfo.HEADLINES["tune"](run["result"])
