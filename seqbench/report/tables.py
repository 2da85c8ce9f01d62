"""The paper's tables from run records: overall performance, order sensitivity, group probes, ablations,
dataset card and the list of runs. A cell with no run shows "–"; every row names the runs it comes from."""

from __future__ import annotations

import math
from pathlib import Path

from seqbench.errors import SeqbenchError

from .aggregate import (
    ALPHA,
    REARRANGE,
    Estimate,
    ProbeEffect,
    base_probe,
    datasets_of,
    effects,
    family_of,
    horizon_curves,
    overall,
    variants_of,
    versus_reference,
)
from .collect import PROXY_NOTE, RunRecord, RunSource
from .document import MISSING, Table

SIG_NOTE = (f"`*`: significant at α = {ALPHA} (Holm-adjusted over the probes of a run where several ran; with "
            "several seeds the p shown is the largest over seeds, so `*` means every seed was significant). "
            "`shuffle-train` compares two trained models, so its p is the paired t-test over seeds (the training run "
            "as the unit; n/a with one seed: docs/statistics.md#calibration).")


def short(run_ids: list[str]) -> str:
    return ", ".join(r[:8] for r in run_ids)


def num(x: float | None, digits: int = 4) -> str:
    return MISSING if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def est(e: Estimate | None) -> str:
    if e is None:
        return MISSING
    if not e.ci_over:
        return num(e.mean)
    return f"{e.mean:.4f} ± {(e.ci[1] - e.ci[0]) / 2:.4f}"


def rel(change: float, ci: tuple[float, float]) -> str:
    if change is None or math.isnan(change):
        return MISSING
    return f"{change:+.1%} [{ci[0]:+.1%}, {ci[1]:+.1%}]"


def pval(p: float | None) -> str:
    """A p-value with the significance mark; NaN (a probe comparing trained models, one seed) reads n/a."""
    if p is None:
        return MISSING
    return "n/a" if math.isnan(p) else f"{p:.2g}" + ("*" if p < ALPHA else "")


def proxy_note(records: list[RunRecord], variants: list[str]) -> list[str]:
    """The proxy mark's explanation, for a table with a proxy row."""
    return [PROXY_NOTE] if any(r.proxy for r in records if r.variant in variants) else []


def overall_tables(records: list[RunRecord], source: RunSource, versus: str | None = None) -> list[Table]:
    """Per dataset: NDCG@10 / HR@10 per model (mean over seeds ± CI half-width), best bold, paired test of
    each model against model ``versus`` (a study's choice, e.g. pop), else the dataset's best CF-SRec model."""
    tables = []
    for ds in datasets_of(records):
        variants = variants_of(records, ds)
        tests = versus_reference(records, source, ds, reference=versus)
        ref = next(iter(tests.values())).reference if tests else None
        rows, ndcgs, hrs = [], [], []
        for v in variants:
            n, h = overall(records, source, ds, v), overall(records, source, ds, v, "hr@10")
            ndcgs.append(n.mean if n else -1.0)
            hrs.append(h.mean if h else -1.0)
            t = tests.get(v)
            if t is None:
                vs, p = MISSING, MISSING
            elif t.test is None:
                vs, p = ("reference", "") if v == ref else (MISSING, t.error)
            else:
                vs = rel(t.test["relative_change"], t.test["ci95"])
                p = pval(t.test["p_holm"] if t.test["p_holm"] is not None else t.test["p_value"])
            rows.append([v, family_of(records, v), str(n.n) if n else "0", est(n), est(h),
                         n.ci_over if n else MISSING, vs, p, short(n.run_ids) if n else MISSING])
        bold = {(col.index(max(col)), j) for col, j in ((ndcgs, 3), (hrs, 4)) if col and max(col) >= 0}
        notes = ["Mean over seeds ± half-width of the 95 % CI (t-interval over seeds; with one seed, a normal "
                 "interval over users). **Bold**: best per column."]
        if ref:
            why = f"the study's reference, `versus: {versus}`" if versus else "the best CF-SRec model here"
            notes.append(f"Against `{ref}` ({why}): relative change of NDCG@10 with the paired "
                         "bootstrap 95 % CI and the two-sided Wilcoxon p on per-user NDCG@10 (each user's value "
                         "averaged over the model's seeds), Holm-adjusted over the models compared "
                         "(`seqbench compare`'s statistics).")
        notes += [SIG_NOTE, *proxy_note(records, variants)]
        columns = ["model", "family", "seeds", "NDCG@10", "HR@10", "CI over",
                   f"NDCG@10 vs {ref or versus or 'best CF'}", "p (Holm)", "runs"]
        tables.append(Table(f"Overall performance on {ds}", columns, rows, notes, bold))
    return tables


def _paired_columns(found: dict[tuple[str, str, str], ProbeEffect], ds: str) -> list[str]:
    probes = {k[2] for k in found if k[0] == ds and base_probe(k[2]) not in ("cosine", "jaccard")}
    order = {p: i for i, p in enumerate(REARRANGE)}
    return sorted(probes, key=lambda p: (order.get(base_probe(p), 99), p))


def order_tables(records: list[RunRecord]) -> list[Table]:
    """The paper's Tables 3-5 in one view: original vs each rearrangement (shuffle-infer, shuffle-train, ...),
    window shuffled, cosine between original and shuffled user representations."""
    found = effects(records, "paired")
    tables = []
    for ds in datasets_of(records):
        probes = _paired_columns(found, ds)
        has = {base_probe(k[2]) for k in found if k[0] == ds}
        if not probes and not has:
            continue
        cols = ["model", "seeds", "original NDCG@10"]
        for p in probes:
            cols += [f"{p} Δ [95 % CI]", f"{p} p"]
        cols += ["window", "cosine mean", "Jaccard@10", "runs"]
        rows = []
        for v in variants_of(records, ds):
            cells = [e for e in (found.get((ds, v, p)) for p in probes) if e]
            cos = next((e for k, e in found.items() if k[:2] == (ds, v) and base_probe(k[2]) == "cosine"), None)
            jac = next((e for k, e in found.items() if k[:2] == (ds, v) and base_probe(k[2]) == "jaccard"), None)
            anyone = cells or [e for e in (cos, jac) if e]
            if not anyone:
                continue
            first = anyone[0]
            row = [v, str(max(e.n_seeds for e in anyone)), num(first.a) if first.compare[0] == "original" else MISSING]
            for p in probes:
                e = found.get((ds, v, p))
                row += [rel(e.relative_change, e.ci), pval(e.p)] if e else [MISSING, MISSING]
            window = next((e.stats.get("window") for e in anyone if "window" in e.stats), None)
            row += [MISSING if window is None else str(window if isinstance(window, str) else int(window)),
                    num(cos.stats.get("cosine_mean"), 3) if cos else MISSING,
                    num(jac.stats.get("jaccard_at_10"), 3) if jac else MISSING,
                    short(sorted({r for e in [*cells, cos, jac] if e for r in e.run_ids}))]
            rows.append(row)
        notes = ["Δ: relative change of NDCG@10, probed vs original (mean over seeds; CI: paired bootstrap with one "
                 "seed, t-interval over seeds with several). `shuffle-infer` permutes the last `window` test items; "
                 "`shuffle-train` retrains on shuffled train sequences and evaluates on original inputs.", SIG_NOTE,
                 *proxy_note(records, [row[0] for row in rows])]
        tables.append(Table(f"Order sensitivity on {ds}", cols, rows, notes))
    return tables


def horizon_tables(records: list[RunRecord]) -> list[Table]:
    """The order-horizon curve as numbers (the figure's points): per K, the change of NDCG@10 when only the last
    K test items are shuffled, with its p Holm-adjusted over the run's K grid; one row per model and seed."""
    tables = []
    for ds in datasets_of(records):
        curves = horizon_curves(records, ds)
        if not curves:
            continue
        ks = sorted({p["k"] for _, pts in curves for p in pts})
        rows = []
        for r, pts in curves:
            at = {p["k"]: p for p in pts}
            smallest = r.result.get("probe_stats", {}).get("smallest_significant_k")
            rows.append([r.variant, str(r.seed),
                         *(f"{at[k]['relative_change']:+.1%} ({pval(at[k].get('p_holm'))})" if k in at else MISSING
                           for k in ks),
                         MISSING if smallest is None else str(smallest), r.run_id[:8]])
        notes = ["K = 2 swaps the two most recent items; a larger K is the seeded shuffle of the last K (K = the "
                 "model's window is its shuffle-infer). A cell reads the relative change of NDCG@10 and, in "
                 "brackets, its p Holm-adjusted over the run's K grid (`*` below α). The smallest significant K is "
                 "the smallest whose change is a significant drop; – where none is.",
                 *proxy_note(records, [row[0] for row in rows])]
        tables.append(Table(f"Order horizon on {ds}", ["model", "seed", *(f"K = {k}" for k in ks),
                                                        "smallest significant K", "run"], rows, notes))
    return tables


def group_tables(records: list[RunRecord]) -> list[Table]:
    """Transition vs non-transition, warm vs cold, in- vs cross-domain: NDCG@10 of the two user groups."""
    found = effects(records, "independent")
    tables = []
    for ds in datasets_of(records):
        keys = sorted((k for k in found if k[0] == ds), key=lambda k: (k[2], variants_of(records, ds).index(k[1])))
        if not keys:
            continue
        rows = []
        for k in keys:
            e = found[k]
            a, b = e.compare
            rows.append([k[1], k[2], f"{a} / {b}", num(e.a), num(e.b), rel(e.relative_change, e.ci), pval(e.p),
                         str(e.n_seeds), short(e.run_ids)])
        notes = ["Different users in the two groups: Mann-Whitney U on per-user NDCG@10, bootstrap CI resampling each "
                 "group; Δ is the second group relative to the first.", SIG_NOTE]
        tables.append(Table(f"Group probes on {ds}", ["model", "probe", "groups", "NDCG@10 first", "NDCG@10 second",
                                                      "Δ [95 % CI]", "p", "seeds", "runs"], rows, notes))
    return tables


def ablation_tables(records: list[RunRecord], source: RunSource) -> list[Table]:
    """Models run with several configurations (`--set` variants), side by side (the paper's Table 8)."""
    found = effects(records, "paired")
    labels: dict[str, set[str]] = {}
    for r in records:
        labels.setdefault(r.model, set()).add(r.variant)
    models = sorted(m for m, v in labels.items() if len(v) > 1)
    tables = []
    for m in models:
        rows = []
        for ds in datasets_of(records):
            for v in variants_of(records, ds):
                if not any(r.variant == v and r.model == m for r in records):
                    continue
                n, h = overall(records, source, ds, v), overall(records, source, ds, v, "hr@10")
                shuf = next((e for k, e in found.items() if k[:2] == (ds, v) and base_probe(k[2]) == "shuffle-infer"),
                            None)
                ids = sorted({*(n.run_ids if n else []), *(shuf.run_ids if shuf else [])})
                rows.append([ds, v, str(n.n) if n else "0", est(n), est(h),
                             rel(shuf.relative_change, shuf.ci) if shuf else MISSING,
                             pval(shuf.p) if shuf else MISSING, short(ids)])
        tables.append(Table(f"Variants of {m}", ["dataset", "variant", "seeds", "NDCG@10", "HR@10",
                                                 "shuffle-infer Δ [95 % CI]", "p", "runs"], rows,
                            ["A variant is a distinct model configuration; its label names the settings that differ.",
                             SIG_NOTE]))
    return tables


def dataset_card(records: list[RunRecord], source: RunSource, data_home: Path | None) -> Table:
    """Sizes from the runs' recorded dataset meta; history length and sequential-rules ratio when the prepared
    dataset with the same content hash is in the data home (computed as `seqbench data stats` does)."""
    from seqbench.data.stats import dataset_stats
    from seqbench.data.store import list_datasets, load_dataset

    rows = []
    for ds in datasets_of(records):
        rec = next(r for r in records if r.dataset == ds)
        meta = source.dataset_meta(rec)
        counts = meta.get("counts", {})
        name = meta.get("name", ds.split("@")[0])
        full: dict = {}
        if data_home is not None and name in list_datasets(data_home):
            try:
                data = load_dataset(name, data_home)
                if data.content_hash == rec.dataset_hash:
                    full = dataset_stats(data)
            except SeqbenchError:
                full = {}
        rows.append([ds, rec.dataset_hash[:12] or MISSING, meta.get("source", {}).get("kind", MISSING),
                     str(counts.get("users", MISSING)), str(counts.get("items", MISSING)),
                     str(counts.get("interactions", MISSING)),
                     num(full.get("seq_len_mean"), 1) if full else MISSING,
                     num(full.get("seq_len_median"), 0) if full else MISSING,
                     num(full.get("rules_2gram_ratio"), 3) if full else MISSING,
                     num(full.get("rules_3gram_ratio"), 3) if full else MISSING])
    return Table("Datasets", ["dataset", "hash", "source", "users", "items", "interactions", "history mean",
                              "history median", "rules ratio 2-gram", "rules ratio 3-gram"], rows,
                 ["History length and the sequential-rules ratio ((shuffled + 1) ÷ (original + 1) rules; lower = more "
                  "sequential) are computed from the prepared dataset when it is in the data home with the same "
                  "content hash, else shown as –."])


def runs_table(records: list[RunRecord]) -> Table:
    rows = [[r.run_id, r.dataset, r.variant, r.probe, r.protocol, str(r.seed), r.code_version, r.recipe or MISSING]
            for r in sorted(records, key=lambda r: (r.dataset, r.variant, r.probe, r.protocol, r.seed))]
    return Table("Runs covered", ["MLflow run id", "dataset", "model", "probe", "eval", "seed", "code version",
                                  "recipe"], rows,
                 ["The 8-character run ids in the tables above are prefixes of these. recipe: an LLM recommender's "
                  "training recipe (`official`, `official-135m`, `cpu-proxy` or `custom`, `models/llm/recipes.py`); "
                  "– for other models."])
