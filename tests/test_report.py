"""`seqbench report`: tables from fake MLflow runs with known values, refusal of mixed dataset hashes, one
figure per table type, and the command end to end on real tiny runs."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest
from scipy import stats
from typer.testing import CliRunner

from seqbench.cli import app
from seqbench.compare import compare_series
from seqbench.errors import SeqbenchError
from seqbench.report import figures, protocols, tables
from seqbench.report.collect import RunSource
from seqbench.stats.multiple import mean_ci
from seqbench.tracking import artifact_location
from tests.report_fakes import base_values, full_experiment, log_fake_run, paired

runner = CliRunner()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One sqlite store for the module (creating one costs seconds); tests add their own experiments."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('report') / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    runs = full_experiment(client, client.create_experiment("seqbench", artifact_location=artifact_location(uri)))
    return uri, runs


def _experiment(store, name: str):
    client = mlflow.MlflowClient(tracking_uri=store[0])
    return client, client.create_experiment(name, artifact_location=artifact_location(store[0]))


@pytest.fixture(scope="module")
def collected(store):
    uri, runs = store
    with RunSource(uri) as source:
        records, notes = source.collect()
        yield source, records, runs


def _row(table, first: str) -> dict[str, str]:
    row = next(r for r in table.rows if r[0] == first)
    return dict(zip(table.columns, row, strict=True))


def test_overall_aggregates_seeds_marks_best_and_tests_against_best_cf(collected):
    source, records, runs = collected
    (table,) = tables.overall_tables(records, source)
    sas = _row(table, "sasrec")
    means = [base_values(s).mean() for s in (0, 1)]
    m, (lo, hi) = mean_ci(np.array(means))
    assert sas["seeds"] == "2" and sas["CI over"] == "seeds"
    assert sas["NDCG@10"] == f"{m:.4f} ± {(hi - lo) / 2:.4f}"
    assert sas["NDCG@10 vs sasrec"] == "reference"
    assert (table.rows.index(next(r for r in table.rows if r[0] == "sasrec")), 3) in table.bold
    assert set(sas["runs"].split(", ")) == {r[:8] for r in runs["sasrec/shuffle-infer"]}
    # the others against sasrec's per-user values averaged over its two seeds, Holm over the four compared
    ref = pd.Series((base_values(0) + base_values(1)) / 2, index=np.arange(1, 61))
    others = [pd.Series(base_values(seed, s), index=np.arange(1, 61)) for seed, s in ((0, 0.9), (0, 0.5), (3, 0.8))]
    gru_test, pop_test, llm_test, _ = compare_series(ref, [*others, others[-1]])
    gru = _row(table, "gru4rec")
    assert gru["NDCG@10 vs sasrec"] == tables.rel(gru_test.relative_change, gru_test.ci95)
    assert gru["p (Holm)"] == tables.pval(gru_test.p_holm) and gru["CI over"] == "users"
    assert _row(table, "pop")["p (Holm)"] == tables.pval(pop_test.p_holm)
    assert _row(table, "llmsrec (distill=false, llm=tiny-random, proxy)")["p (Holm)"] == tables.pval(llm_test.p_holm)


def test_order_table_holm_marks_and_missing_cells(collected):
    _, records, _ = collected
    (table,) = tables.order_tables(records)
    sas, gru, pop = (_row(table, m) for m in ("sasrec", "gru4rec", "pop"))
    assert sas["shuffle-infer p"] == "0.2"  # the larger of the seeds' Holm p (0.001, 0.2): not every seed significant
    # shuffle-train compares trained models: its p is the t-test over seeds, not a per-user Holm p
    means = [(paired(s, 0.8)["original"].mean(), paired(s, 0.8)["probed"].mean()) for s in (0, 1)]
    t_p = stats.ttest_rel([b for _, b in means], [a for a, _ in means]).pvalue
    assert sas["shuffle-train p"] == tables.pval(t_p) and t_p < 0.05
    assert sas["shuffle-infer Δ [95 % CI]"].startswith("-30.0%") and sas["window"] == "128"
    assert sas["cosine mean"] == "0.500"
    assert gru["shuffle-infer p"] == "0.003*" and gru["shuffle-train Δ [95 % CI]"] == "–"  # never ran: a dash
    assert pop["window"] == "0" and pop["cosine mean"] == "–"
    assert "Jaccard@10" in table.columns and sas["Jaccard@10"] == "–"


def test_group_and_variant_tables(collected):
    source, records, _ = collected
    (groups,) = tables.group_tables(records)
    probes = {r[1]: r for r in groups.rows}
    assert set(probes) == {"transition", "warm-cold"}
    assert probes["warm-cold"][2] == "warm / cold" and probes["warm-cold"][6] == "0.01*"
    assert float(probes["transition"][3]) == pytest.approx(base_values(5).mean(), abs=1e-4)
    (variants,) = tables.ablation_tables(records, source)
    assert variants.title == "Variants of llmsrec"
    assert sorted(r[1] for r in variants.rows) == ["llmsrec (distill=false, llm=tiny-random, proxy)",
                                                   "llmsrec (distill=true, llm=tiny-random, proxy)"]
    card = tables.dataset_card(records, source, None)
    assert card.rows[0][:6] == ["d", "hash-d", "–", "60", "50", "600"]
    runs = tables.runs_table(records)
    assert len(runs.rows) == len(records) == 12
    recipes = {(row[2], row[-1]) for row in runs.rows}
    assert {("sasrec", "–"), ("llmsrec (distill=true, llm=tiny-random, proxy)", "custom"),
            ("llmsrec (distill=false, llm=tiny-random, proxy)", "unrecorded")} <= recipes


def test_rows_trained_with_a_non_official_recipe_are_marked_proxies(store):
    client, exp = _experiment(store, "recipes")
    for llm, recipe in (("meta-llama/Llama-3.2-3B-Instruct", "official"), ("smollm2-135m", "cpu-proxy")):
        log_fake_run(client, exp, paired(3, 0.98, 0.8), model="tallrec", family="LLM4Rec", config={"llm": llm},
                     recipe=recipe)
    log_fake_run(client, exp, paired(0, 0.7))
    with RunSource(store[0], "recipes") as source:
        records, _ = source.collect()
        (table,) = tables.overall_tables(records, source)
    assert {r.variant: r.proxy for r in records} == {"tallrec (llm=meta-llama/Llama-3.2-3B-Instruct)": False,
                                                     "tallrec (llm=smollm2-135m, proxy)": True, "sasrec": False}
    assert {row[0] for row in table.rows} == {r.variant for r in records}
    assert any(n.startswith("`proxy` in a model's label") for n in table.notes)


def test_the_order_horizon_table_gives_the_figure_s_points_with_their_holm_p(collected):
    _, records, _ = collected
    (table,) = tables.horizon_tables(records)  # only sasrec recorded a curve, over two seeds
    assert table.columns == ["model", "seed", "K = 1", "K = 2", "K = 4", "smallest significant K", "run"]
    assert [row[:2] for row in table.rows] == [["sasrec", "0"], ["sasrec", "1"]]
    assert table.rows[0][2:6] == ["-5.0% (0.3)", "-10.0% (0.15)", "-20.0% (0.075)", "–"]
    assert table.rows[1][2:6] == ["-5.0% (0.3)", "-10.0% (0.075)", "-20.0% (0.019*)", "2"]


def test_every_table_type_gets_its_figures(collected):
    source, records, _ = collected
    made = {
        "order": figures.order_figures(records, source),
        "cosine": figures.cosine_figures(records),
        "groups": figures.group_figures(records),
        "training": figures.training_figures(records, source),
        "horizon": figures.horizon_figures(records),
    }
    for kind, figs in made.items():
        assert figs, kind
        for f in figs:
            assert f.name.startswith(kind) and f.png[:8] == b"\x89PNG\r\n\x1a\n" and len(f.png) > 5000
    assert len(made["training"]) == 2  # one per llmsrec variant


def test_mixed_dataset_hashes_are_refused_or_split(store, tmp_path):
    uri = store[0]
    client, exp = _experiment(store, "mixed")
    a = log_fake_run(client, exp, paired(0, 0.9), dataset_hash="aaaaaaaa1111")
    b = log_fake_run(client, exp, paired(0, 0.9), dataset_hash="bbbbbbbb2222", ids_as_tags=True)  # tags only
    with RunSource(uri, "mixed") as source, pytest.raises(SeqbenchError, match="2 different dataset_hash") as e:
        source.collect()
    assert a in str(e.value) or b in str(e.value)
    assert "--split-hashes" in str(e.value)
    with RunSource(uri, "mixed") as source:
        records, _ = source.collect(split_hashes=True)
    assert sorted(r.dataset for r in records) == ["d@aaaaaaaa", "d@bbbbbbbb"]
    r = runner.invoke(app, ["report", "--tracking-uri", uri, "--experiment", "mixed", "--out", str(tmp_path / "rep")])
    assert r.exit_code == 1 and "dataset_hash" in r.output and not (tmp_path / "rep" / "report.md").exists()


def test_missing_and_repeated_runs(store):
    client, exp = _experiment(store, "repeats")
    old = log_fake_run(client, exp, paired(0, 0.9))
    new = log_fake_run(client, exp, paired(1, 0.9))
    client.create_run(exp)  # not a seqbench run
    running = client.create_run(exp).info.run_id  # a seqbench run still in progress
    for k, v in (("dataset", "d"), ("model", "sasrec"), ("probe", "cosine"), ("seed", "0")):
        client.log_param(running, k, v)
    with RunSource(store[0], "repeats") as source:
        records, notes = source.collect()
        assert [r.run_id for r in records] == [new]
        assert any(old in n and "superseded" in n for n in notes) and any("not a seqbench run" in n for n in notes)
        assert any(running in n and "RUNNING" in n for n in notes)
        assert tables.group_tables(records) == [] and figures.training_figures(records, source) == []
        assert tables.ablation_tables(records, source) == []  # one configuration: nothing to set side by side
        overall = tables.overall_tables(records, source)[0]
        assert _row(overall, "sasrec")["NDCG@10 vs sasrec"] == "reference"


def test_generation_task_runs_stay_out_of_the_retrieval_tables(store):
    client, exp = _experiment(store, "tasks")
    kept = log_fake_run(client, exp, paired(0, 0.9))
    generation = log_fake_run(client, exp, paired(1, 0.5), model="tallrec", family="LLM4Rec")
    client.set_tag(generation, "task", "generation")
    with RunSource(store[0], "tasks") as source:
        records, notes = source.collect()
    assert [r.run_id for r in records] == [kept]
    assert any(generation in n and "task generation" in n for n in notes)


def test_report_command_on_real_tiny_runs(tiny_home, tracking_uri, tmp_path):
    fast = "max_epochs=2,eval_every=1,d=16,maxlen=16"
    for args in (["--model", "pop", "--probe", "shuffle-infer,transition"],
                 ["--model", "sasrec", "--probe", "shuffle-infer,cosine", "--seeds", "0,1", "--set", fast]):
        r = runner.invoke(app, ["run", "--dataset", "tiny", "--data-home", str(tiny_home), "--tracking-uri",
                                tracking_uri, *args], catch_exceptions=False)
        assert r.exit_code == 0, r.output
    out = tmp_path / "rep"
    r = runner.invoke(app, ["report", "--tracking-uri", tracking_uri, "--out", str(out), "--data-home",
                            str(tiny_home), "--format", "md"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    md = (out / "report.md").read_text()
    assert not (out / "report.html").exists()
    assert "| sasrec | CF-SRec | 2 |" in md and "| pop | baseline | 1 |" in md and "| pop | transition |" in md
    for fig in ("order_tiny", "cosine_tiny", "groups_tiny"):
        assert f"(figures/{fig}.png)" in md and (out / "figures" / f"{fig}.png").stat().st_size > 1000
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    ids = [r.info.run_id for r in client.search_runs([client.get_experiment_by_name("seqbench").experiment_id],
                                                     "tags.run_kind = 'probe'")]  # not the live training curves
    assert len(ids) == 6 and all(i in md for i in ids)
    r = runner.invoke(app, ["report", "--tracking-uri", tracking_uri, "--out", str(out), "--format", "pdf"])
    assert r.exit_code == 1 and "unknown format 'pdf'" in r.output


def test_protocol_tables_set_effects_side_by_side_and_count_flips(store, tmp_path):
    client, exp = _experiment(store, "protocols")
    # four models; under full ranking the effects grow, m3's significant drop appears only there, and m2 and m4
    # swap places in the accuracy order
    factors = {"m1": (0.5, 0.3), "m2": (0.8, 0.6), "m3": (1.0, 0.7), "m4": (0.9, 0.85)}
    scale = {"m1": (1.0, 0.5), "m2": (0.9, 0.3), "m3": (0.8, 0.35), "m4": (0.7, 0.2)}
    for i, (model, (sampled, full)) in enumerate(factors.items()):
        for protocol, factor, s in (("sampled", sampled, scale[model][0]), ("full", full, scale[model][1])):
            conditions = paired(i, factor, s) if factor != 1.0 else {"original": base_values(i, s),
                                                                     "probed": base_values(i, s)}
            log_fake_run(client, exp, conditions, model=model, protocol=protocol)
    with RunSource(store[0], "protocols") as source:
        records, _ = source.collect()
    assert {r.protocol for r in records} == {"sampled", "full"}
    effect_table = protocols.effect_tables(records)[0]
    m3 = [dict(zip(effect_table.columns, r, strict=True)) for r in effect_table.rows if r[0] == "m3"]
    assert [(r["protocol"], r["verdict"]) for r in m3] == [("sampled", "none"), ("full", "drop")]
    agreement = protocols.agreement_tables(records)[0]
    row = dict(zip(agreement.columns, agreement.rows[0], strict=True))
    assert row["protocols"] == "sampled vs full" and row["models"] == "4"
    assert row["verdicts that flip"] == "m3: none → drop"
    assert row["τ (NDCG@10 ranking)"] == "+0.67"  # one discordant pair of six (m2, m4)
    assert row["τ (effect ranking)"] == "+0.67"  # m3 (0 → -30 %) and m4 (-10 % → -15 %) swap
    r = runner.invoke(app, ["report", "--tracking-uri", store[0], "--experiment", "protocols", "--out",
                            str(tmp_path / "rep"), "--format", "md", "--eval", "full"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "## Ranking protocols" in md and "Protocol agreement" in md and "`full`" in md
    r = runner.invoke(app, ["report", "--tracking-uri", store[0], "--experiment", "protocols", "--out",
                            str(tmp_path / "rep"), "--eval", "full-unseen"])
    assert r.exit_code == 1 and "no runs ranked under --eval full-unseen" in r.output
