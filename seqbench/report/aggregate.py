"""Run records -> numbers: seeds aggregated, paired model tests, one place for every table and figure.

Over seeds: the mean and a 95 % t-interval (``stats.multiple``), as `seqbench run --seeds` reports them. With
one seed the probe's own per-user statistics are used (bootstrap CI, Wilcoxon or Mann-Whitney p, Holm over
the run's probes). With several seeds the p shown is the *largest* per-seed (Holm-adjusted) p: a mark then
means every seed was significant on its own, the conservative reading. A probe that compares two trained
models (shuffle-train) is the exception: its per-user test ignores training variance, so its p is the paired
t-test over seeds (the training run as the unit) and it has none with one seed.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from seqbench.compare import compare_series
from seqbench.errors import SeqbenchError
from seqbench.probes import compares_trained_models
from seqbench.stats import ALPHA
from seqbench.stats.multiple import aggregate_seeds, mean_ci

from .collect import RunRecord, RunSource

METRIC = "ndcg@10"
CF_FAMILY = "CF-SRec"
# probes whose "original" condition is the trained model on the real test input, in order of preference
ORIGINAL_FROM = ("shuffle-infer", "cosine", "shuffle-train", "reverse", "recency", "jaccard")
# order probes with their own NDCG change
REARRANGE = ("shuffle-infer", "shuffle-train", "reverse", "recency", "tie-shuffle")


def base_probe(probe: str) -> str:
    return probe.split(" (")[0]


@dataclass
class Estimate:
    """A value over seeds: mean, 95 % CI, and the run ids it came from."""

    mean: float
    ci: tuple[float, float]
    n: int
    ci_over: str  # "seeds" or "users" (one seed: a normal interval over users) or "" (none)
    run_ids: list[str] = field(default_factory=list)


@dataclass
class ProbeEffect:
    """One probe on one model over seeds: the relative change of NDCG@10 between its two conditions."""

    probe: str
    compare: tuple[str, str]
    a: float  # mean over seeds of the first condition (original, transition, warm, in_domain)
    b: float
    relative_change: float
    ci: tuple[float, float]
    # one seed: its p (Holm-adjusted when the run had several probes); several: the largest. A probe comparing
    # two trained models (shuffle-train): the paired t-test over seeds, NaN (no verdict) with one seed
    p: float
    holm: bool
    n_seeds: int
    significant_seeds: int
    stats: dict  # probe_stats averaged over seeds where numeric, else the first seed's
    run_ids: list[str]

    @property
    def significant(self) -> bool:
        return self.p < ALPHA


def group(records: list[RunRecord]) -> dict[tuple[str, str, str], list[RunRecord]]:
    """(dataset, variant, probe) -> runs sorted by seed."""
    out: dict[tuple[str, str, str], list[RunRecord]] = defaultdict(list)
    for r in records:
        out[(r.dataset, r.variant, r.probe)].append(r)
    return {k: sorted(v, key=lambda r: r.seed) for k, v in out.items()}


def datasets_of(records: list[RunRecord]) -> list[str]:
    return sorted({r.dataset for r in records})


def variants_of(records: list[RunRecord], dataset: str | None = None) -> list[str]:
    """Variants in a stable reading order: baselines, CF, LLM, others; then by name."""
    rank = {"baseline": 0, CF_FAMILY: 1, "LLM4Rec": 2}
    fam = {r.variant: r.family for r in records}
    names = {r.variant for r in records if dataset is None or r.dataset == dataset}
    return sorted(names, key=lambda v: (rank.get(fam[v], 3), v))


def horizon_curves(records: list[RunRecord], dataset: str) -> list[tuple[RunRecord, list[dict]]]:
    """The runs on ``dataset`` that recorded an order-horizon curve, each with its points sorted by K, in the
    reading order of ``variants_of`` and then by seed."""
    rank = {v: i for i, v in enumerate(variants_of(records, dataset))}
    found = [(r, r.result.get("probe_stats", {}).get("horizon")) for r in records if r.dataset == dataset]
    return sorted([(r, sorted(pts, key=lambda p: p["k"])) for r, pts in found if isinstance(pts, list) and pts],
                  key=lambda c: (rank[c[0].variant], c[0].seed))


def family_of(records: list[RunRecord], variant: str) -> str:
    return next(r.family for r in records if r.variant == variant)


def original_runs(records: list[RunRecord], dataset: str, variant: str) -> list[RunRecord]:
    """One run per seed whose "original" condition is the model on the real test input."""
    by_seed: dict[int, RunRecord] = {}
    pref = {p: i for i, p in enumerate(ORIGINAL_FROM)}
    for r in records:
        if r.dataset != dataset or r.variant != variant or "original" not in r.result.get("metrics", {}):
            continue
        best = by_seed.get(r.seed)
        if best is None or pref.get(base_probe(r.probe), 99) < pref.get(base_probe(best.probe), 99):
            by_seed[r.seed] = r
    return [by_seed[s] for s in sorted(by_seed)]


def estimate(values: list[float], run_ids: list[str], per_user: pd.Series | None = None) -> Estimate:
    """Mean over seeds with a t-CI; with one seed and per-user values, a normal 95 % interval over users."""
    x = np.asarray(values, dtype=np.float64)
    if len(x) >= 2:
        m, ci = mean_ci(x)
        return Estimate(m, ci, len(x), "seeds", run_ids)
    if per_user is not None and len(per_user) > 1:
        half = 1.96 * float(per_user.std(ddof=1)) / np.sqrt(len(per_user))
        return Estimate(float(x[0]), (float(x[0]) - half, float(x[0]) + half), 1, "users", run_ids)
    return Estimate(float(x[0]), (float(x[0]), float(x[0])), 1, "", run_ids)


def overall(records: list[RunRecord], source: RunSource | None, dataset: str, variant: str,
            metric: str = METRIC, condition: str = "original") -> Estimate | None:
    runs = original_runs(records, dataset, variant)
    if not runs:
        return None
    per_user = source.per_user_metric(runs[0].run_id, condition, metric) if source and len(runs) == 1 else None
    return estimate([r.result["metrics"][condition][metric] for r in runs], [r.run_id for r in runs], per_user)


def effect(runs: list[RunRecord], metric: str = METRIC) -> ProbeEffect:
    """Aggregate one probe's runs (one per seed) of one model."""
    tests = [r.result["test"] for r in runs]
    a_name, b_name = tests[0]["compare"]
    a = [r.result["metrics"][a_name][metric] for r in runs]
    b = [r.result["metrics"][b_name][metric] for r in runs]
    holm = all(t.get("p_holm") is not None for t in tests)
    ps = [t["p_holm"] if holm else t["p_value"] for t in tests]
    p = max(ps)
    if len(runs) == 1:
        rel, ci, sig = tests[0]["relative_change"], tuple(tests[0]["ci95"]), int(ps[0] < ALPHA)
    else:
        agg = aggregate_seeds(a, b, [t["relative_change"] for t in tests], ps, ALPHA)
        rel, ci, sig = agg.relative_change_mean, agg.relative_change_ci95, agg.significant_seeds
    if compares_trained_models(base_probe(runs[0].probe)):  # the training run is the unit: no p from one seed
        p = float("nan") if len(runs) == 1 else agg.t_p_value
    return ProbeEffect(base_probe(runs[0].probe), (a_name, b_name), float(np.mean(a)), float(np.mean(b)),
                       float(rel), (float(ci[0]), float(ci[1])), float(p), holm, len(runs), sig,
                       _mean_stats([r.result.get("probe_stats", {}) for r in runs]), [r.run_id for r in runs])


def _mean_stats(stats: list[dict]) -> dict:
    out = dict(stats[0])
    for k in stats[0]:
        values = [s.get(k) for s in stats]
        if all(isinstance(x, int | float) and not isinstance(x, bool) for x in values):
            out[k] = float(np.mean(values))
    return out


def effects(records: list[RunRecord], kind: str) -> dict[tuple[str, str, str], ProbeEffect]:
    """Every (dataset, variant, probe) whose test kind is ``kind`` ("paired" or "independent")."""
    return {k: effect(runs) for k, runs in group(records).items() if runs[0].result["test"]["kind"] == kind}


@dataclass
class ModelTest:
    reference: str
    test: dict | None  # PairedTest.as_dict(); None for the reference itself
    error: str = ""


def versus_reference(records: list[RunRecord], source: RunSource, dataset: str, metric: str = METRIC,
                     reference: str | None = None) -> dict[str, ModelTest]:
    """Each model against a reference by mean NDCG@10: the best row of model ``reference`` (a study's ``versus``,
    e.g. pop), else the dataset's best CF-SRec model. Paired per-user test (the per-user value averaged over a
    model's seeds), Holm over the models compared, via ``seqbench compare``'s code."""
    variants = variants_of(records, dataset)
    means = {v: overall(records, None, dataset, v, metric) for v in variants}
    if reference is None:
        candidates = [v for v in variants if family_of(records, v) == CF_FAMILY and means[v] is not None]
    else:
        candidates = [v for v in variants if means[v] is not None
                      and any(r.model == reference for r in original_runs(records, dataset, v))]
    if not candidates:
        return {}
    ref = max(candidates, key=lambda v: means[v].mean)

    def per_user(v: str) -> pd.Series:
        series = [source.per_user_metric(r.run_id, "original", metric) for r in original_runs(records, dataset, v)]
        return pd.concat(series, axis=1).mean(axis=1)

    ref_users = per_user(ref)
    others, out = [], {ref: ModelTest(ref, None)}
    for v in variants:
        if v == ref or means[v] is None:
            continue
        s = per_user(v)
        if not s.index.equals(ref_users.index):
            out[v] = ModelTest(ref, None, "evaluated other users than the reference")
            continue
        others.append((v, s))
    if others:
        try:
            tests = compare_series(ref_users, [s for _, s in others], metric)
        except (SeqbenchError, ValueError) as e:
            return {**out, **{v: ModelTest(ref, None, str(e)) for v, _ in others}}
        for (v, _), t in zip(others, tests, strict=True):
            out[v] = ModelTest(ref, t.as_dict())
    return out
