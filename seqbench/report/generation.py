"""The title-generation table (`seqbench run --task generation`, paper Table 4 and Fig. 1a): per dataset and model,
HR@1 under the three readings of ``seqbench.eval.generation`` and the order probes' effect on strict HR@1.

* strict: hits / all users (seqbench's primary metric; what the probes test);
* valid-only: hits / users whose answer names exactly one candidate (LLaRA's ``calculate_hr1``);
* lenient: the target's normalised title occurs in the answer, over all users (A-LLMRec's ``eval.py``).

A ranking model (the SASRec reference row) always names one candidate: its three readings are equal. Runs
logged before the readings existed carry strict HR@1 and the invalid share only: valid-only is then computed
from those two, and lenient (which needs the answers) shows as –.
"""

from __future__ import annotations

import numpy as np

from .aggregate import REARRANGE, base_probe, datasets_of, effect, family_of, group, original_runs, overall, variants_of
from .collect import RunRecord, RunSource
from .document import MISSING, Table
from .tables import SIG_NOTE, est, num, pval, rel, short

METRIC = "hr@1"


def readings(metrics: dict) -> dict[str, float | None]:
    """strict, valid-only and lenient HR@1 and the invalid share of one condition's summary (None: not
    recorded)."""
    strict = metrics[METRIC]
    invalid = metrics.get("invalid")
    valid = metrics.get("hr@1_valid")
    lenient = metrics.get("hr@1_lenient")
    if invalid is None:  # a ranking run logged before the readings existed: one candidate named, always
        invalid, valid, lenient = 0.0, strict, strict
    if valid is None:
        valid = strict / (1.0 - invalid) if invalid < 1.0 else 0.0
    return {"strict": strict, "valid": valid, "lenient": lenient, "invalid": invalid}


def _mean(values: list[float | None]) -> float | None:
    return None if not values or any(v is None for v in values) else float(np.mean(values))


def generation_tables(records: list[RunRecord], source: RunSource) -> list[Table]:
    """One table per dataset with generation runs: each model's three HR@1 readings (mean over seeds; strict
    with its 95 % CI) and invalid share on the original test input, and each order probe's relative change of
    strict HR@1 with its p."""
    tables = []
    by_probe = {k: runs for k, runs in group(records).items()
                if base_probe(k[2]) in REARRANGE and runs[0].result.get("test", {}).get("kind") == "paired"}
    order = {p: i for i, p in enumerate(REARRANGE)}
    for ds in datasets_of(records):
        probes = sorted({k[2] for k in by_probe if k[0] == ds}, key=lambda p: (order.get(base_probe(p), 99), p))
        cols = ["model", "family", "seeds", "HR@1 strict", "HR@1 valid-only", "HR@1 lenient", "invalid"]
        for p in probes:
            cols += [f"{p} Δ strict [95 % CI]", f"{p} p"]
        cols.append("runs")
        rows = []
        for v in variants_of(records, ds):
            runs = original_runs(records, ds, v)
            strict = overall(records, source, ds, v, METRIC)
            read = [readings(r.result["metrics"]["original"]) for r in runs]
            row = [v, family_of(records, v), str(len(runs)), est(strict),
                   num(_mean([x["valid"] for x in read])), num(_mean([x["lenient"] for x in read])),
                   num(_mean([x["invalid"] for x in read]))]
            ids = {r.run_id for r in runs}
            for p in probes:
                probe_runs = by_probe.get((ds, v, p))
                if probe_runs is None:
                    row += [MISSING, MISSING]
                    continue
                e = effect(probe_runs, METRIC)
                row += [rel(e.relative_change, e.ci), pval(e.p)]
                ids |= set(e.run_ids)
            rows.append(row + [short(sorted(ids))])
        notes = ["HR@1 on the original test input, mean over seeds (strict: ± half-width of the 95 % CI, as in "
                 "Overall performance). strict = hits ÷ all users (an answer naming no single candidate is a miss); "
                 "valid-only = hits ÷ users whose answer names exactly one candidate (LLaRA's reading); lenient = "
                 "the target's normalised title occurs anywhere in the answer, over all users (A-LLMRec's "
                 "reading); invalid = share of answers naming no single candidate. A ranking model (e.g. SASRec, "
                 "the paper's reference row) always names one candidate, so its three readings are equal.",
                 "Δ: relative change of strict HR@1, probed vs original (paired Wilcoxon on per-user HR@1).",
                 SIG_NOTE]
        if any(row[5] == MISSING for row in rows):
            notes.append("Lenient shows – for runs logged before it was recorded (it needs the answers).")
        tables.append(Table(f"Title generation on {ds}", cols, rows, notes))
    return tables
