"""Probe effects by ranking protocol, and whether the protocols agree (`seqbench report`, docs/protocols.md).

The same trained model probed under ``sampled``, ``full`` and ``full-unseen`` ranking (``--eval``) gives one run
per protocol. For every (dataset, probe) measured under more than one protocol this module sets the effects side
by side, ranks the models under each protocol (by original NDCG@10 and by the probe's relative change), gives
Kendall's tau between the rankings of two protocols, and lists the verdicts that flip.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
from scipy.stats import kendalltau

from seqbench.eval.evaluator import PROTOCOLS
from seqbench.stats import ALPHA

from .aggregate import base_probe, effect, variants_of
from .collect import RunRecord
from .document import MISSING, Table
from .tables import pval

# probes with an "original" condition
PAIRED = ("shuffle-infer", "shuffle-train", "reverse", "recency", "tie-shuffle", "jaccard")


def verdict(relative_change: float, p: float) -> str:
    """The one-word reading of an order probe: a significant drop, a significant rise, or neither (undecided
    without a p: a probe comparing trained models on one seed)."""
    if math.isnan(p):
        return "undecided"
    if p < ALPHA and relative_change < 0:
        return "drop"
    if p < ALPHA and relative_change > 0:
        return "rise"
    return "none"


def _by_protocol(records: list[RunRecord]) -> dict[tuple[str, str, str], dict[str, list[RunRecord]]]:
    """(dataset, probe, variant) -> protocol -> runs sorted by seed, for the paired order probes."""
    out: dict[tuple[str, str, str], dict[str, list[RunRecord]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        if base_probe(r.probe) in PAIRED and "original" in r.result.get("metrics", {}):
            out[(r.dataset, r.probe, r.variant)][r.protocol].append(r)
    return {k: {p: sorted(v, key=lambda r: r.seed) for p, v in d.items()} for k, d in out.items()}


def _metric_change(runs: list[RunRecord], metric: str) -> float:
    a = np.mean([r.result["metrics"]["original"][metric] for r in runs])
    b = np.mean([r.result["metrics"]["probed"][metric] for r in runs])
    return float((b - a) / a) if a else math.nan


def effect_tables(records: list[RunRecord]) -> list[Table]:
    """Per dataset and probe: each model's original NDCG@10, relative change of NDCG@10 and HR@10, Jaccard@10
    where measured, and the paired p, one row per protocol."""
    grouped = _by_protocol(records)
    tables = []
    for ds, probe in sorted({(k[0], k[1]) for k in grouped}):
        rows = []
        for v in variants_of(records, ds):
            for protocol in PROTOCOLS:
                runs = grouped.get((ds, probe, v), {}).get(protocol)
                if not runs:
                    continue
                e = effect(runs)
                jac = e.stats.get("jaccard_at_10")
                rows.append([v, protocol, str(len(runs)), f"{e.a:.4f}", f"{e.b:.4f}",
                             f"{e.relative_change:+.1%} [{e.ci[0]:+.1%}, {e.ci[1]:+.1%}]",
                             f"{_metric_change(runs, 'hr@10'):+.1%}",
                             MISSING if jac is None else f"{jac:.3f}", pval(e.p), verdict(e.relative_change, e.p),
                             ", ".join(r.run_id[:8] for r in runs)])
        if rows:
            tables.append(Table(
                f"{probe} by ranking protocol on {ds}",
                ["model", "protocol", "seeds", "NDCG@10", "probed NDCG@10", "Δ NDCG@10 [95 % CI]", "Δ HR@10",
                 "Jaccard@10", "p", "verdict", "runs"], rows,
                ["Δ: relative change, probed vs original (paired bootstrap CI with one seed, t-interval over seeds "
                 "with several); p: two-sided Wilcoxon on per-user NDCG@10 (Holm-adjusted over the run's probes). "
                 f"verdict: drop / rise when p < {ALPHA}, else none. Protocols: sampled = target + 99 persisted "
                 "negatives; full = all items, seen kept; full-unseen = all items, seen items removed."]))
    return tables


def agreement_tables(records: list[RunRecord]) -> list[Table]:
    """Per dataset and probe, for each pair of protocols both measured: Kendall's tau between the model rankings
    (by original NDCG@10, and by the probe's relative change) and the models whose verdict flips."""
    grouped = _by_protocol(records)
    rows = []
    for ds, probe in sorted({(k[0], k[1]) for k in grouped}):
        variants = [v for v in variants_of(records, ds) if (ds, probe, v) in grouped]
        effects = {v: {p: effect(runs) for p, runs in grouped[(ds, probe, v)].items()} for v in variants}
        for i, a in enumerate(PROTOCOLS):
            for b in PROTOCOLS[i + 1:]:
                both = [v for v in variants if a in effects[v] and b in effects[v]]
                if not both:
                    continue
                tau_acc = _tau([effects[v][a].a for v in both], [effects[v][b].a for v in both])
                tau_eff = _tau([effects[v][a].relative_change for v in both],
                               [effects[v][b].relative_change for v in both])
                flips = [f"{v}: {verdict(effects[v][a].relative_change, effects[v][a].p)} → "
                         f"{verdict(effects[v][b].relative_change, effects[v][b].p)}" for v in both
                         if verdict(effects[v][a].relative_change, effects[v][a].p)
                         != verdict(effects[v][b].relative_change, effects[v][b].p)]
                ratio = [effects[v][b].relative_change / effects[v][a].relative_change for v in both
                         if effects[v][a].relative_change < 0 and effects[v][a].p < ALPHA]
                rows.append([ds, probe, f"{a} vs {b}", str(len(both)), tau_acc, tau_eff,
                             f"{np.median(ratio):.1f}×" if ratio else MISSING, "; ".join(flips) or "none"])
    if not rows:
        return []
    return [Table("Protocol agreement", ["dataset", "probe", "protocols", "models", "τ (NDCG@10 ranking)",
                                         "τ (effect ranking)", "effect ratio (median)", "verdicts that flip"], rows,
                  ["τ: Kendall's tau-b between the orders of the models under the two protocols (scipy.stats."
                   "kendalltau; – with fewer than 3 models), by original NDCG@10 and by the probe's relative "
                   "change of NDCG@10. Effect ratio: median over models with a significant drop under the first "
                   "protocol of (change under the second) / (change under the first).",
                   "A flip: the model's verdict (drop / rise / none, "
                   f"α = {ALPHA}) differs between the two protocols."])]


def _tau(x: list[float], y: list[float]) -> str:
    if len(x) < 3:
        return MISSING
    tau = kendalltau(x, y).statistic
    return MISSING if math.isnan(tau) else f"{tau:+.2f}"
