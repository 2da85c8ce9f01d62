"""`seqbench report`'s title-generation table: the three HR@1 readings from fake generation runs with known
per-user answers, kept apart from the retrieval tables."""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from seqbench.eval.evaluator import EvalResult
from seqbench.report import tables
from seqbench.report.build import build_document
from seqbench.report.collect import RunSource
from seqbench.report.generation import generation_tables
from seqbench.stats.paired import paired_test
from seqbench.tracking import artifact_location
from tests.report_fakes import log_fake_run, paired

N = 40


def _answers(seed: int, hit_share: float, invalid_share: float, lenient_extra: float, ranking: bool = False):
    """Per-user strict hits, invalid flags and lenient hits: a hit is never invalid; lenient adds hits among the
    invalid answers (an answer naming the target and another candidate)."""
    rng = np.random.default_rng(seed)
    u = rng.random(N)
    hit = (u < hit_share).astype(float)
    invalid = np.zeros(N) if ranking else ((u >= hit_share) & (u < hit_share + invalid_share)).astype(float)
    lenient = hit.copy() if ranking else np.maximum(hit, invalid * (rng.random(N) < lenient_extra))
    return {"hr@1": hit, "hr@1_lenient": lenient, "invalid": invalid}


def log_generation_run(client, exp: str, conditions: dict[str, dict[str, np.ndarray]], *, model: str, family: str,
                       probe: str = "shuffle-infer", seed: int = 0, old: bool = False) -> str:
    """A finished generation run laid out like runner.log_result; ``old``: logged before the three readings existed
    (conditions hold hr@1 and invalid only)."""
    run_id = client.create_run(exp, run_name=f"d/{model}/{probe}/seed{seed}").info.run_id
    for k, v in {"dataset": "d", "model": model, "probe": probe, "seed": str(seed), "task": "generation"}.items():
        client.log_param(run_id, k, v)
    for k, v in {"family": family, "dataset_hash": "hash-d", "code_version": "0.1.0+test", "task": "generation",
                 "eval_protocol": "sampled", "recipe": "official"}.items():
        client.set_tag(run_id, k, v)
    if old:
        conditions = {c: {k: v for k, v in pu.items() if k != "hr@1_lenient"} for c, pu in conditions.items()}
    summaries = {c: EvalResult(np.arange(1, N + 1), np.zeros(N, dtype=int), pu, metric="hr@1").summary
                 for c, pu in conditions.items()}
    if old:
        summaries = {c: {k: v for k, v in s.items() if k != "hr@1_valid"} for c, s in summaries.items()}
    test = paired_test(conditions["original"]["hr@1"], conditions["probed"]["hr@1"], "hr@1")
    result = {"dataset": "d", "model": model, "probe": probe, "seed": seed, "task": "generation",
              "metrics": summaries, "test": {"compare": ["original", "probed"], **test.as_dict()},
              "probe_stats": {}, "fit": {}, "mlflow_run_id": run_id}
    client.log_dict(run_id, result, "result.json")
    client.log_dict(run_id, {"dataset_meta": {"name": "d", "counts": {"users": N}}}, "resolved_config.json")
    frame = pd.concat([pd.DataFrame({"condition": c, "user": np.arange(1, N + 1), **pu})
                       for c, pu in conditions.items()])
    with tempfile.TemporaryDirectory() as tmp:
        frame.to_parquet(Path(tmp) / "per_user_metrics.parquet", index=False)
        client.log_artifact(run_id, str(Path(tmp) / "per_user_metrics.parquet"))
    client.set_terminated(run_id)
    return run_id


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    uri = f"sqlite:///{tmp_path_factory.mktemp('report_generation') / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("seqbench", artifact_location=artifact_location(uri))
    llara = {"original": _answers(0, 0.3, 0.3, 0.5), "probed": _answers(1, 0.25, 0.35, 0.5)}
    sasrec = {"original": _answers(2, 0.4, 0, 0, ranking=True), "probed": _answers(3, 0.2, 0, 0, ranking=True)}
    old = {"original": _answers(4, 0.2, 0.5, 0.5), "probed": _answers(5, 0.2, 0.5, 0.5)}
    runs = {"llara": log_generation_run(client, exp, llara, model="llara", family="LLM4Rec"),
            "sasrec": log_generation_run(client, exp, sasrec, model="sasrec", family="CF-SRec"),
            "tallrec": log_generation_run(client, exp, old, model="tallrec", family="LLM4Rec", old=True),
            "retrieval": log_fake_run(client, exp, paired(0, 0.7))}  # a retrieval sasrec run beside them
    return uri, runs, {"llara": llara, "sasrec": sasrec, "tallrec": old}


def test_generation_table_shows_the_three_hr1_readings(experiment):
    uri, runs, answers = experiment
    with RunSource(uri) as source:
        records, notes = source.collect(tasks=("retrieval", "generation"))
        gen = [r for r in records if r.task == "generation"]
        (table,) = generation_tables(gen, source)
    assert {r.run_id for r in gen} == {runs["llara"], runs["sasrec"], runs["tallrec"]}
    assert [r.variant for r in records if r.run_id == runs["retrieval"]] == ["sasrec"]
    rows = {row[0]: dict(zip(table.columns, row, strict=True)) for row in table.rows}
    assert set(rows) == {"sasrec", "llara", "tallrec"}
    a = answers["llara"]["original"]
    strict, invalid = a["hr@1"].mean(), a["invalid"].mean()
    assert rows["llara"]["HR@1 strict"].startswith(f"{strict:.4f} ± ")  # one seed: a CI over users
    assert rows["llara"]["HR@1 valid-only"] == f"{a['hr@1'].sum() / (N - a['invalid'].sum()):.4f}"
    assert rows["llara"]["HR@1 lenient"] == f"{a['hr@1_lenient'].mean():.4f}"
    assert rows["llara"]["invalid"] == f"{invalid:.4f}"
    assert a["hr@1_lenient"].mean() > strict and a["hr@1"].sum() / (N - a["invalid"].sum()) > strict
    s = answers["sasrec"]["original"]["hr@1"].mean()  # a ranking: all three equal, nothing invalid
    assert [rows["sasrec"][c] for c in ("HR@1 valid-only", "HR@1 lenient", "invalid")] == [f"{s:.4f}", f"{s:.4f}",
                                                                                         "0.0000"]
    old = answers["tallrec"]["original"]  # logged before the readings: valid-only from strict and invalid
    assert rows["tallrec"]["HR@1 valid-only"] == f"{old['hr@1'].sum() / (N - old['invalid'].sum()):.4f}"
    assert rows["tallrec"]["HR@1 lenient"] == "–"
    t = paired_test(a["hr@1"], answers["llara"]["probed"]["hr@1"], "hr@1")
    assert rows["llara"]["shuffle-infer Δ strict [95 % CI]"] == tables.rel(t.relative_change, t.ci95)


def test_report_keeps_generation_runs_in_their_own_section(experiment):
    uri, runs, _ = experiment
    with RunSource(uri) as source:
        records, notes = source.collect(tasks=("retrieval", "generation"))
        doc = build_document(source, records, notes)
        retrieval_only, skipped = source.collect()
    sections = {s.title: s for s in doc.sections}
    (overall,) = sections["Overall performance"].tables
    assert [row[0] for row in overall.rows] == ["sasrec"] and runs["retrieval"][:8] in overall.rows[0][-1]
    (gen,) = sections["Title generation (HR@1)"].tables
    assert gen.title == "Title generation on d" and {row[0] for row in gen.rows} == {"sasrec", "llara", "tallrec"}
    assert len(sections["Runs covered"].tables[0].rows) == 4
    assert [r.run_id for r in retrieval_only] == [runs["retrieval"]]
    assert sum("task generation" in n for n in skipped) == 3
