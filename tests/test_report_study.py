"""`seqbench report --study`: a study file's views from its experiment's runs; the calibration views' numbers."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
from scipy import stats
from typer.testing import CliRunner

from seqbench.cli import app
from seqbench.errors import SeqbenchError, UnknownNameError
from seqbench.planner import recipe_layer, resolved_config
from seqbench.report import calibration
from seqbench.report.build import write_study_report
from seqbench.report.collect import RunSource
from seqbench.stats import ALPHA
from seqbench.sweep import find_study, load_grid
from seqbench.tracking import artifact_location
from tests.report_fakes import N_USERS, base_values, log_fake_run, paired

runner = CliRunner()
NULL_SEEDS = range(20)


def _null(seed: int) -> dict[str, np.ndarray]:
    """No order effect: the probed condition is the original plus symmetric noise."""
    base = base_values(seed)
    noise = np.random.default_rng(1000 + seed).normal(0, 0.05, N_USERS)
    return {"original": base, "probed": np.clip(base + noise, 0, 1)}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    uri = f"sqlite:///{tmp_path_factory.mktemp('study') / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("cal", artifact_location=artifact_location(uri))
    for s in NULL_SEEDS:
        log_fake_run(client, exp, _null(s), dataset=f"syn-order0-u60-i300-s{s}", dataset_hash=f"h{s}")
    for o, factor in (("0.2", 0.9), ("0.9", 0.3)):
        for s in range(2):
            base = base_values(50 + s)
            log_fake_run(client, exp, {"original": base, "probed": base * factor},
                         dataset=f"syn-order{o}-u60-i300-s{s}", dataset_hash=f"h{o}{s}")
    log_fake_run(client, exp, _null(99), dataset="ml-100k", dataset_hash="hm")  # not a synthetic dataset
    return uri


def test_false_positive_table_counts_significant_runs_with_exact_intervals(store):
    with RunSource(store, "cal") as source:
        records, _ = source.collect()
    (table,) = calibration.false_positive_tables(records)
    (row,) = table.rows  # order 0 only: the ordered and the real datasets are not counted
    ps = [stats.wilcoxon(_null(s)["probed"], _null(s)["original"]).pvalue for s in NULL_SEEDS]
    k = sum(p < ALPHA for p in ps)
    ci = stats.binomtest(k, 20).proportion_ci(method="exact")
    assert row[:4] == ["sasrec", "shuffle-infer", "Wilcoxon over users, one seed", "20"]
    assert row[4] == f"{k}/20 = {k / 20:.1%} [{ci.low:.1%}, {ci.high:.1%}]"
    assert row[7] == f"D = {stats.kstest(ps, 'uniform').statistic:.2f}, p = {stats.kstest(ps, 'uniform').pvalue:.2g}"


def _retrained(dataset_seed: int, seed: int) -> dict[str, np.ndarray]:
    """shuffle-train on data without order: each training run shifts every user by its own few per cent (training
    variance), which a per-user test mistakes for an effect."""
    base = base_values(200 + dataset_seed)
    shift = np.random.default_rng(300 + 10 * dataset_seed + seed).normal(0, 0.05)
    return {"original": base, "probed": np.clip(base * (1 + shift), 0, 1)}


def test_shuffle_train_gets_its_verdict_from_the_t_test_over_seeds(tmp_path):
    from seqbench.report.aggregate import effect
    from seqbench.report.protocols import verdict

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("cal", artifact_location=artifact_location(uri))
    for d in range(6):
        for seed in range(3):
            log_fake_run(client, exp, _retrained(d, seed), dataset=f"syn-order0-u60-i300-s{d}", dataset_hash=f"h{d}",
                         probe="shuffle-train", seed=seed)
    with RunSource(uri, "cal") as source:
        records, _ = source.collect()
    (table,) = calibration.false_positive_tables(records)
    per_user, over_seeds = table.rows
    assert per_user[2:4] == ["Wilcoxon over users, one seed", "6"] and per_user[5] == "none (one training run)"
    assert per_user[4].startswith("6/6")  # every shift is "significant" to the per-user test
    assert over_seeds[2:4] == ["t-test over 3 seeds", "6"]
    first = [r for r in records if r.dataset == "syn-order0-u60-i300-s0"]
    runs = [
        {k: {"ndcg@10": float(v.mean())} for k, v in _retrained(0, s).items()} for s in range(3)]
    p = stats.ttest_rel([m["probed"]["ndcg@10"] for m in runs], [m["original"]["ndcg@10"] for m in runs]).pvalue
    assert np.isclose(effect(sorted(first, key=lambda r: r.seed)).p, p)
    one = effect([min(first, key=lambda r: r.seed)])
    assert np.isnan(one.p) and not one.significant and verdict(one.relative_change, one.p) == "undecided"
    for seeds, seed_rows in (("[0]", False), ("[0, 1, 2]", True)):  # a study reads only its own seeds
        study = tmp_path / f"s{len(seeds)}.yaml"
        study.write_text("experiment: cal\ndatasets: ['syn-order0-u60-i300-s{0..5}']\nmodels: [sasrec]\n"
                         f"probes: [shuffle-train]\nseeds: {seeds}\nviews: [false-positives]\n")
        (md,) = write_study_report(study, uri, tmp_path / study.stem, fmt="md")
        assert ("t-test over 3 seeds" in md.read_text()) is seed_rows


def test_verdict_lines_for_a_probe_that_compares_trained_models():
    from seqbench.render import seed_verdict, verdict

    test = {"relative_change": -0.2, "ci95": [-0.3, -0.1], "p_value": 1e-6, "compare": ["original", "probed"],
            "kind": "paired", "metric": "ndcg@10"}
    assert verdict({"model": "sasrec", "probe": "shuffle-infer", "test": test}).startswith("Order matters")
    assert verdict({"model": "sasrec", "probe": "shuffle-train", "test": test}).startswith("Undecided on one training")
    summary = {"probe": "shuffle-train", "n_seeds": 3, "original_mean": 0.5, "probed_mean": 0.4,
               "relative_change_mean": -0.2, "relative_change_ci95": [-0.3, -0.1], "t_p_value": 0.01}
    assert seed_verdict("shuffle-train", summary).startswith("Order matters (shuffle-train): -20.0% over 3 seeds")
    assert seed_verdict("shuffle-train", summary | {"t_p_value": 0.3}).startswith("No significant effect")
    assert seed_verdict("shuffle-infer", summary | {"probe": "shuffle-infer"}) is None


def test_power_cuts_each_model_into_disjoint_user_subsets(store):
    with RunSource(store, "cal") as source:
        records, _ = source.collect()
        table, figure = calibration.power(records, source, sizes=(20, 60))
    assert table.columns[-2:] == ["20 users", "60 users"] and figure.png.startswith(b"\x89PNG")
    rows = {r[0]: r for r in table.rows}
    assert set(rows) == {"0", "0.2", "0.9"}
    assert rows["0"][1] == "20" and rows["0"][3].split(" =")[0].endswith("/60")  # 20 models x 3 subsets of 20
    assert rows["0.9"][3].startswith("6/6") and rows["0.9"][4].startswith("2/2")  # a 70 % drop: always found
    # a uniform 10 % drop of every user is found in every subset too: the smallest detected effect
    assert "at least 80% power: 20 test users: order 0.2, a mean change of -10.0%" in table.notes[0]


def test_study_report_renders_the_views_the_study_names(store, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "cal.yaml").write_text(
        "experiment: cal\ndatasets: ['syn-order0-u60-i300-s{0..19}']\nmodels: [sasrec]\nseeds: [0]\n"
        "probes: [shuffle-infer]\nviews: [false-positives, runs]\n")
    assert find_study("cal").resolve() == tmp_path / "studies" / "cal.yaml" and load_grid(find_study("cal")).views
    r = runner.invoke(app, ["report", "--study", "cal", "--tracking-uri", store, "--out", str(tmp_path / "o"),
                            "--format", "md"])
    assert r.exit_code == 0, r.output
    text = (tmp_path / "o" / "report.md").read_text()
    assert text.startswith("# seqbench study: cal")
    assert "## False positives (data without order)" in text and "## Runs covered" in text
    assert "Overall performance" not in text and "ml-100k" not in text  # only its views, only its datasets
    with pytest.raises(UnknownNameError, match="unknown study 'nope'; valid studys: cal"):
        find_study("nope")
    (tmp_path / "studies" / "bad.yaml").write_text(
        "datasets: [d]\nmodels: [sasrec]\nseeds: [0]\nprobes: [shuffle-infer]\nviews: [no-such-view]\n")
    with pytest.raises(UnknownNameError, match="unknown report view 'no-such-view'"):
        write_study_report("bad", store, tmp_path / "o2")


def test_every_committed_study_loads_and_names_known_views():
    from pathlib import Path

    from seqbench.report import VIEWS

    studies = sorted((Path(__file__).resolve().parents[1] / "studies").glob("*.yaml"))
    assert studies
    for path in studies:
        grid = load_grid(path)
        assert set(grid.views) <= set(VIEWS), path


def test_window_study_shows_both_windows_and_a_companion_studys_variant(tmp_path):
    """window-check's shape: shuffle-infer at window=10 and at the model's own window as two columns of one row,
    an LLM-SRec variant logged by a second study of the same experiment beside the first (each labelled by the
    settings that differ, both proxies), and a model the study does not name left out."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("wc", artifact_location=artifact_location(uri))
    for window, factor in (("10", 0.9), (None, 0.7)):
        options = {"window": window} if window else None
        log_fake_run(client, exp, paired(1, factor), probe_options=options, probe_stats={"window": int(window or 128)})
        for epochs, recipe in (("2", "custom"), ("1", "cpu-proxy")):
            log_fake_run(client, exp, paired(2, 1.0), model="llmsrec", family="LLM4Rec", recipe=recipe,
                         config={"llm": "smollm2-135m", "max_epochs": epochs}, probe_options=options,
                         probe_stats={"window": 10})
    log_fake_run(client, exp, paired(3, 0.5), model="gru4rec")
    study = tmp_path / "wc.yaml"
    study.write_text("experiment: wc\ndatasets: [d]\nmodels: [sasrec, llmsrec]\nseeds: [0]\nprobes: [shuffle-infer]\n"
                     "probe_set: [{window: 10}, {}]\nviews: [overall, order, runs]\n")
    md = next(p for p in write_study_report(study, uri, tmp_path / "o", fmt="md") if p.name == "report.md")
    text = md.read_text()
    order = text[text.index("## Order sensitivity"):]
    header = next(line for line in order.splitlines() if line.startswith("| model"))
    cols = [c.strip() for c in header.strip("|").split("|")]
    at10, own = cols.index("shuffle-infer (window=10) Δ [95 % CI]"), cols.index("shuffle-infer Δ [95 % CI]")
    rows = {r[0]: r for r in ([c.strip() for c in line.strip("|").split("|")] for line in order.splitlines()
                              if line.startswith("| ") and not line.startswith("| model"))}
    assert rows["sasrec"][at10].startswith("-10.0%") and rows["sasrec"][own].startswith("-30.0%")
    for epochs in ("1", "2"):
        row = rows[f"llmsrec (llm=smollm2-135m, max_epochs={epochs}, proxy)"]
        assert row[at10].startswith("+0.0%") and row[own].startswith("+0.0%")
    assert "gru4rec" not in text


def test_a_recipe_study_keeps_only_its_recipes_runs(tmp_path):
    """A `recipe: cpu-proxy` study's rows are its recipe's runs: another recipe's run of the same model in the same
    experiment (a companion study's) is not one of them, while a model without recipes keeps its runs."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("cp", artifact_location=artifact_location(uri))
    proxy = {k: str(v) for k, v in resolved_config("llmsrec", [recipe_layer("llmsrec", "cpu-proxy")]).items()}
    log_fake_run(client, exp, paired(1, 0.9), model="llmsrec", family="LLM4Rec", recipe="cpu-proxy", config=proxy)
    first = {**proxy, "max_epochs": "2", "max_steps": "None", "in_batch_negatives": "False"}
    log_fake_run(client, exp, paired(2, 1.0), model="llmsrec", family="LLM4Rec", recipe="custom", config=first)
    log_fake_run(client, exp, paired(3, 0.5))
    study = tmp_path / "cp.yaml"
    study.write_text("experiment: cp\ndatasets: [d]\nmodels: [sasrec, llmsrec]\nseeds: [0]\nprobes: [shuffle-infer]\n"
                     "recipe: cpu-proxy\nviews: [order, runs]\n")
    text = next(p for p in write_study_report(study, uri, tmp_path / "o", fmt="md") if p.name == "report.md") \
        .read_text()
    order = text[text.index("## Order sensitivity"):text.index("## Runs covered")]
    models = [line.strip("|").split("|")[0].strip() for line in order.splitlines()
              if line.startswith("| ") and not line.startswith("| model") and not set(line) <= set("|- ")]
    assert sorted(models) == ["llmsrec (llm=smollm2-135m, proxy)", "sasrec"]
    assert "max_epochs=2" not in text and text.count("| custom |") == 0


def test_a_study_report_keeps_only_its_own_config_rows_and_tests_against_its_versus_model(tmp_path):
    """Runs of a model with settings the study no longer gives (an earlier version of it, same experiment) are not
    rows of the study, and do not leak into the labels; `versus: pop` makes pop the overall view's reference."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("lm", artifact_location=artifact_location(uri))
    weak = base_values(7, scale=0.3)
    log_fake_run(client, exp, {"original": weak, "probed": weak}, model="pop", family="baseline")
    log_fake_run(client, exp, paired(1, 0.9), model="ctrl", config={"variant": "init", "lr": "0.001"})
    log_fake_run(client, exp, paired(2, 0.8), model="ctrl", config={"variant": "contrastive", "lr": "0.001"})
    log_fake_run(client, exp, paired(3, 0.7), model="recformer", config={"pooling": "cls", "lr": "0.0003"})  # stale
    log_fake_run(client, exp, paired(4, 0.6), model="recformer", config={"pooling": "mean", "lr": "0.00015"})
    study = tmp_path / "lm.yaml"
    study.write_text("experiment: lm\ndatasets: [d]\nmodels: [pop, ctrl, recformer]\nseeds: [0]\n"
                     "probes: [shuffle-infer]\nversus: pop\nviews: [overall]\n"
                     "set:\n  ctrl: [{}, {variant: contrastive}]\n  recformer@d: {pooling: mean, lr: 1.5e-4}\n")
    text = next(p for p in write_study_report(study, uri, tmp_path / "o", fmt="md") if p.name == "report.md") \
        .read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| model")]
    names = [r.strip("|").split("|")[0].strip() for r in rows if not set(r) <= set("|- ")]
    assert names == ["pop", "ctrl (variant=contrastive)", "ctrl (variant=init)", "recformer"]
    assert "NDCG@10 vs pop" in text and "the study's reference, `versus: pop`" in text
    pop_row = next(r for r in rows if r.startswith("| pop "))
    assert "reference" in pop_row

    study.write_text(study.read_text().replace("versus: pop", "versus: sasrec"))
    with pytest.raises(SeqbenchError, match="'versus' must name one of the study's models"):
        load_grid(study)


@pytest.fixture(scope="module")
def pattern_store(tmp_path_factory):
    uri = f"sqlite:///{tmp_path_factory.mktemp('pattern') / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("pp", artifact_location=artifact_location(uri))
    weak = base_values(7, scale=0.3)
    strong = base_values(7)
    log_fake_run(client, exp, {"original": weak, "probed": weak}, model="pop", family="baseline")
    log_fake_run(client, exp, {"original": strong, "probed": strong * 0.4}, model="sasrec")
    log_fake_run(client, exp, _null(3) | {"original": strong, "probed": np.clip(strong + np.random.default_rng(5)
                 .normal(0, 0.01, N_USERS), 0, 1)}, model="tallrec", family="LLM4Rec", recipe="official")
    log_fake_run(client, exp, {"original": weak, "probed": weak}, model="llara", family="LLM4Rec", recipe="official")
    log_fake_run(client, exp, {"original": strong, "probed": strong * 0.5}, model="llmsrec", family="LLM4Rec",
                 recipe="cpu-proxy")
    return uri


def test_paper_pattern_classifies_rows_and_keeps_proxies_out_of_the_verdict(pattern_store):
    from seqbench.report import pattern

    with RunSource(pattern_store, "pp") as source:
        records, _ = source.collect()
        (table,) = pattern.pattern_tables(records, source)
        (counted,) = pattern.pattern_tables(records, source, proxies_in_verdict=True)
    reading = {r[0]: r[-1] for r in table.rows}
    assert reading == {"sasrec": "order-sensitive", "tallrec": "order-blind",
                       "llara": "undecided",  # no drop, but it does not beat pop either
                       "llmsrec (proxy)": "order-sensitive"}
    assert "**undecided (no row of collm, a-llmrec, llmsrec; llara undecided)**" in table.notes[1]
    assert "stay out of the verdict: llmsrec (proxy)" in table.notes[2]
    assert "**undecided (no row of collm, a-llmrec; llara undecided)**" in counted.notes[1]
    assert "it reads the `cpu-proxy` recipe, not the official one" in counted.notes[2]


def test_a_models_own_window_equal_to_the_common_one_is_one_row_of_the_holm_family(tmp_path):
    """A study probing at window 10 and at each model's own window: an LLM's own window is 10, so its two runs are
    one measurement (one row, Holm over the distinct ones); SASRec's own window (128) is a row of its own."""
    from seqbench.report import pattern

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("w", artifact_location=artifact_location(uri))
    weak, strong = base_values(7, scale=0.3), base_values(7)
    common = {"probe": "shuffle-infer", "probe_options": {"window": "10"}}
    for kw in ({"probe": "shuffle-infer"}, common):
        log_fake_run(client, exp, {"original": weak, "probed": weak}, model="pop", family="baseline",
                     probe_stats={"window": 0}, **kw)
        log_fake_run(client, exp, {"original": strong, "probed": strong * 0.9}, model="tallrec", family="LLM4Rec",
                     recipe="official", probe_stats={"window": 10}, **kw)
    log_fake_run(client, exp, {"original": strong, "probed": strong * 0.8}, model="sasrec",
                 probe_stats={"window": 10}, **common)
    log_fake_run(client, exp, {"original": strong, "probed": strong * 0.5}, model="sasrec",
                 probe_stats={"window": 128}, probe="shuffle-infer")
    with RunSource(uri, "w") as source:
        records, _ = source.collect()
        (table,) = pattern.pattern_tables(records, source)
    assert [r[0] for r in table.rows] == ["sasrec, shuffle-infer", "sasrec, shuffle-infer (window=10)",
                                          "tallrec, shuffle-infer (window=10)"]
    assert "Holm-adjusted over the 3 rows" in table.notes[0]
    assert "tallrec, shuffle-infer measured the same permutation" in table.notes[2]


def test_pattern_verdict_holds_fails_or_stays_undecided():
    from seqbench.report.pattern import pattern_verdict

    every = {m: (m, "order-blind") for m in ("tallrec", "llara", "collm", "a-llmrec")} | \
        {m: (m, "order-sensitive") for m in ("sasrec", "llmsrec")}
    assert pattern_verdict(every) == "holds"
    assert pattern_verdict(every | {"llara": ("llara", "order-sensitive")}) == "fails (llara is order-sensitive)"
    assert pattern_verdict(every | {"sasrec": ("sasrec", "undecided")}).startswith("undecided (sasrec undecided")
    # a decided contradiction settles it even beside an undecided row
    assert pattern_verdict(every | {"sasrec": ("sasrec", "undecided"), "llara": ("llara", "order-sensitive")}) \
        == "fails (llara is order-sensitive)"


def test_a_drop_is_order_sensitive_whatever_the_model_learned_and_no_drop_needs_a_model_above_pop():
    from seqbench.report.pattern import classify

    assert classify(1e-3, -0.3, beats_pop=False) == "order-sensitive"
    assert classify(1e-3, 0.3, beats_pop=True) == "order-blind"  # a significant rise is not a drop
    assert classify(0.8, -0.02, beats_pop=True) == "order-blind"
    assert classify(0.8, -0.02, beats_pop=False) == classify(0.8, -0.02, beats_pop=None) == "undecided"


@pytest.fixture(scope="module")
def tuning_store(tmp_path_factory):
    """Default and tuned rows: sasrec order-blind by default and order-sensitive tuned (the verdict changes);
    gru4rec's tune kept its defaults (one trained model, both rows order-sensitive); pop the reference."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('tuning') / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("tu", artifact_location=artifact_location(uri))
    weak, strong = base_values(7, scale=0.3), base_values(7)
    noise = np.random.default_rng(5).normal(0, 0.01, N_USERS)
    for layer in ("default", "tuned"):  # a sweep once planned pop's tuned row too: the same model again
        log_fake_run(client, exp, {"original": weak, "probed": weak}, model="pop", family="baseline",
                     config_layer=layer)
    log_fake_run(client, exp, {"original": strong, "probed": np.clip(strong + noise, 0, 1)}, model="sasrec",
                 config={"lr": "0.001", "dropout": "0.2"}, config_layer="default",
                 fit={"best_valid_ndcg@10": 0.30}, model_identity="s-default")
    log_fake_run(client, exp, {"original": strong * 1.1, "probed": strong * 0.5}, model="sasrec",
                 config={"lr": "0.0031415926", "dropout": "0.2"}, config_layer="tuned",
                 fit={"best_valid_ndcg@10": 0.36}, model_identity="s-tuned")
    for layer in ("default", "tuned"):
        log_fake_run(client, exp, {"original": strong, "probed": strong * 0.6}, model="gru4rec",
                     config={"lr": "0.001"}, config_layer=layer, fit={"best_valid_ndcg@10": 0.25},
                     model_identity="g-same")
    return uri


def test_tuning_view_sets_default_and_tuned_side_by_side(tuning_store, tmp_path, monkeypatch):
    from seqbench.report import tuning

    with RunSource(tuning_store, "tu") as source:
        records, notes = source.collect()
        assert not [n for n in notes if "superseded" in n]  # gru4rec's two identical rows are two rows
        (table,) = tuning.tuning_tables(records, source)
    rows = {(r[0], r[1]): r for r in table.rows}
    assert list(rows) == [("gru4rec", "default"), ("gru4rec", "tuned"), ("sasrec", "default"), ("sasrec", "tuned")]
    col = {c: i for i, c in enumerate(table.columns)}
    s_def, s_tun = rows[("sasrec", "default")], rows[("sasrec", "tuned")]
    assert s_def[col["verdict"]] == "order-blind" and s_tun[col["verdict"]] == "order-sensitive"
    assert s_tun[col["verdict changed by tuning"]] == "yes: order-blind → order-sensitive"
    assert s_def[col["valid NDCG@10"]] == "0.3000" and s_tun[col["valid NDCG@10"]] == "0.3600 (+0.0600)"
    assert s_tun[col["test NDCG@10"]] == f"{base_values(7).mean() * 1.1:.4f} ({base_values(7).mean() * 0.1:+.4f})"
    assert s_tun[col["tuned settings"]] == "lr 0.001 → 0.003142"
    assert s_tun[col["shuffle-infer Δ NDCG@10 [95 % CI]"]].startswith(f"{0.5 / 1.1 - 1:+.1%}")
    g_tun = rows[("gru4rec", "tuned")]
    assert g_tun[col["tuned settings"]] == "= default (one trained model)"
    assert g_tun[col["verdict changed by tuning"]] == "no" and g_tun[col["verdict"]] == "order-sensitive"
    assert "**Tuning changed the verdict of sasrec (order-blind → order-sensitive).**" in table.notes[-1]

    # the study report renders it in both formats; the other views keep the rows apart by their layer
    monkeypatch.chdir(tmp_path)
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "tu.yaml").write_text(
        "experiment: tu\ndatasets: [d]\nmodels: [pop, sasrec, gru4rec]\nseeds: [0]\nprobes: [shuffle-infer]\n"
        "config: [default, tuned]\nviews: [tuning, overall]\n")
    r = runner.invoke(app, ["report", "--study", "tu", "--tracking-uri", tuning_store, "--out", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    md, html = (tmp_path / "o" / "report.md").read_text(), (tmp_path / "o" / "report.html").read_text()
    assert "**Default vs tuned on d**" in md and "| sasrec | tuned |" in md
    assert "yes: order-blind → order-sensitive" in md
    assert "<caption>Default vs tuned on d</caption>" in html and "= default (one trained model)" in html
    assert "| gru4rec (default) |" in md and "| gru4rec (tuned) |" in md  # overall: two rows, not one
    assert "| pop |" in md and "pop (tuned)" not in md  # nothing to tune: pop's default row is its only row
    assert "sasrec (tuned, lr=0.003142)" in md and "0.0031415926" not in md.split("## Runs covered")[0]
