"""Default vs tuned (`seqbench report` view ``tuning``): does tuning every model with the same budget change what
the shuffle-infer probe says about it?

A study with ``config: [default, tuned]`` runs every (model, dataset) twice: with the model's default settings and
with the settings `seqbench tune` chose on validation data (runs tagged ``config_layer``). Per dataset, each model
gets a default and a tuned row: its best validation NDCG@10 (as its training logged it), its test NDCG@10, the
shuffle-infer change with its CI and Holm-adjusted p, and its reading (order-sensitive / order-blind / undecided,
as the paper-pattern view classifies: :func:`seqbench.report.pattern.readings`, against the dataset's pop row),
whether tuning changed the reading, and the settings the tuned row changed.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from seqbench.planner import CONFIG_LAYERS, DEFAULT, TUNED
from seqbench.stats import ALPHA

from .aggregate import METRIC, base_probe, datasets_of
from .collect import RunRecord, RunSource, short_value
from .document import MISSING, Table
from .pattern import POP, readings
from .tables import short

PROBE = "shuffle-infer"
SAME = "= default"


def best_valid(runs: list[RunRecord]) -> float | None:
    """Mean over seeds of the trained model's best validation NDCG@10 (``fit`` in result.json), None if unlogged."""
    values = [r.result.get("fit", {}).get(f"best_valid_{METRIC}") for r in runs]
    values = [float(v) for v in values if isinstance(v, int | float) and not math.isnan(v)]
    return float(np.mean(values)) if values else None


def changed_settings(default: RunRecord, tuned: RunRecord) -> str:
    """The settings the tuned row changed, ``key default → tuned``; ``= default`` when none (then one trained model
    served both rows when their identities agree)."""
    keys = sorted(set(default.config) | set(tuned.config))
    diff = [f"{k} {short_value(default.config.get(k, '-'))} → {short_value(tuned.config.get(k, '-'))}" for k in keys
            if default.config.get(k) != tuned.config.get(k)]
    if diff:
        return ", ".join(diff)
    same_model = default.result.get("model_identity") and \
        default.result.get("model_identity") == tuned.result.get("model_identity")
    return SAME + (" (one trained model)" if same_model else "")


def _num(x: float | None, ref: float | None) -> str:
    if x is None:
        return MISSING
    return f"{x:.4f}" + ("" if ref is None else f" ({x - ref:+.4f})")


def tuning_tables(records: list[RunRecord], source: RunSource) -> list[Table]:
    tables = []
    for ds in datasets_of(records):
        labels = sorted({r.probe for r in records if r.dataset == ds and base_probe(r.probe) == PROBE
                         and "original" in r.result.get("metrics", {})})
        for label in labels:
            runs: dict[tuple[str, str], list[RunRecord]] = defaultdict(list)
            for r in records:
                if r.dataset == ds and r.probe == label:
                    runs[(r.model, r.config_layer)].append(r)
            if not {layer for m, layer in runs if m != POP} >= {TUNED}:
                continue  # no tuned row: nothing to set side by side
            pops = [runs[k][0] for k in sorted(runs) if k[0] == POP]
            rows_in = {f"{m}/{layer}": runs[(m, layer)] for m, layer in sorted(runs) if m != POP}
            read = readings(rows_in, pops[0] if pops else None, source)
            models = sorted({m for m, _ in runs if m != POP})
            rows, changed = [], []
            for m in models:
                base = read.get(f"{m}/{DEFAULT}")
                for layer in CONFIG_LAYERS:
                    key = f"{m}/{layer}"
                    if key not in read:
                        continue
                    rd, these = read[key], sorted(rows_in[key], key=lambda r: r.seed)
                    e, tuned_row = rd.effect, layer == TUNED and base is not None
                    flip = MISSING
                    if tuned_row:
                        flip = "no" if base.cls == rd.cls else f"yes: {base.cls} → {rd.cls}"
                        if base.cls != rd.cls:
                            changed.append(f"{m} ({base.cls} → {rd.cls})")
                    default_runs = rows_in.get(f"{m}/{DEFAULT}")
                    settings = MISSING if layer == DEFAULT or not default_runs else \
                        changed_settings(default_runs[0], these[0])
                    rows.append([m, layer,
                                 _num(best_valid(these), best_valid(default_runs) if tuned_row else None),
                                 _num(e.a, base.effect.a if tuned_row else None),
                                 f"{e.relative_change:+.1%} [{e.ci[0]:+.1%}, {e.ci[1]:+.1%}]", f"{rd.drop_p:.2g}",
                                 MISSING if rd.vs_pop is None else f"{rd.vs_pop[0]:+.1%}, p {rd.vs_pop[1]:.2g}",
                                 rd.cls, flip, settings, short([r.run_id for r in these])])
            verdict = (f"Tuning changed the verdict of {', '.join(changed)}." if changed
                       else "Tuning changed no verdict.")
            notes = [f"Per model, its default settings and the settings `seqbench tune` chose on validation data "
                     f"(the same number of trials and the same scheduler for every model). valid NDCG@10: the "
                     f"trained model's best validation score; test NDCG@10: the original condition of {label}; "
                     "in brackets on a tuned row, its difference from the default row.",
                     f"Shuffle-infer change of NDCG@10 [95 % CI]; p of the drop and the test against pop (paired "
                     f"Wilcoxon on per-user NDCG@10) Holm-adjusted over the {len(rows_in)} rows of {ds}. "
                     f"Order-sensitive: a significant drop (alpha {ALPHA}); order-blind: no drop from a model that "
                     "beats pop; undecided: neither.",
                     f"Tuned settings: the model settings of the tuned run that differ from the default run's "
                     f"(`{SAME}`: the tune kept the defaults; both rows then read the same trained model).",
                     f"On {ds}: **{verdict}**"]
            title = f"Default vs tuned on {ds}" + (f", {label}" if len(labels) > 1 else "")
            tables.append(Table(title, ["model", "config", "valid NDCG@10", "test NDCG@10",
                                        "shuffle-infer Δ NDCG@10 [95 % CI]", "p (Holm)", "vs pop (change, Holm p)",
                                        "verdict", "verdict changed by tuning", "tuned settings", "runs"],
                                rows, notes))
    return tables
