"""The paper's pattern as a verdict: are the LLM4Rec baselines order-blind while SASRec and LLM-SRec are not?

Per dataset, every model's shuffle-infer run (a study fixes one window for all, e.g. ``probe_set: {window: 10}``,
so every shuffle moves the same items) and its original per-user NDCG@10 tested against ``pop``'s on the same
users (paired Wilcoxon). Both families of p-values are Holm-adjusted over the rows of the dataset. A row is

* **order-sensitive** when shuffling gives a significant drop;
* **order-blind** when it does not, and the model beats pop (it learned something, and ignores order);
* **undecided** when it does neither: a model that does not beat pop has learned too little to show that it
  ignores order.

The pattern *holds* when every baseline row is order-blind and every SASRec / LLM-SRec row order-sensitive; it
*fails* when a decided row contradicts it; otherwise (an undecided row, a model missing) it is undecided. Rows
trained with a non-official recipe (proxies) are shown and classified, but stay out of the verdict unless the
study sets ``proxies_in_verdict: true``; the notes say which.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass

from seqbench.compare import compare_series
from seqbench.stats import ALPHA
from seqbench.stats.multiple import holm

from .aggregate import ProbeEffect, base_probe, datasets_of, effect
from .collect import RunRecord, RunSource
from .document import MISSING, Table

BLIND = ("tallrec", "llara", "collm", "a-llmrec")  # the paper: LLM4Rec baselines barely react to a shuffle
SENSITIVE = ("sasrec", "llmsrec")  # the paper: these do
POP = "pop"


def classify(drop_p: float, change: float, beats_pop: bool | None) -> str:
    if drop_p < ALPHA and change < 0:
        return "order-sensitive"
    return "order-blind" if beats_pop else "undecided"


def pattern_verdict(rows: dict[str, tuple[str, str]]) -> str:
    """``rows``: variant -> (model, class) of the rows in the verdict. Returns holds / fails / undecided (why)."""
    expected = {m: ("order-blind" if m in BLIND else "order-sensitive") for m in (*BLIND, *SENSITIVE)}
    calls = [(v, cls, expected[m]) for v, (m, cls) in rows.items() if m in expected]
    wrong = [v for v, cls, want in calls if cls not in (want, "undecided")]
    if wrong:
        return "fails (" + ", ".join(f"{v} is {rows[v][1]}" for v in wrong) + ")"
    missing = [m for m in expected if m not in {m for m, _ in rows.values()}]
    open_ = [v for v, cls, _ in calls if cls == "undecided"]
    if missing or open_:
        why = ([f"no row of {', '.join(missing)}"] if missing else []) + \
              ([f"{', '.join(open_)} undecided"] if open_ else [])
        return "undecided (" + "; ".join(why) + ")"
    return "holds"


@dataclass
class Reading:
    """One row's shuffle-infer reading: its effect, the Holm-adjusted drop p, the test against pop (relative change,
    Holm-adjusted p; None without a pop row) and the class."""

    effect: ProbeEffect
    drop_p: float
    vs_pop: tuple[float, float] | None
    cls: str


def readings(rows: dict[str, list[RunRecord]], pop: RunRecord | None, source: RunSource) -> dict[str, Reading]:
    """Classify each row (``rows``: label -> its shuffle-infer runs, one per seed, of one dataset): the drop p and
    the per-user test against ``pop``'s original NDCG@10 (paired Wilcoxon), each Holm-adjusted over the rows."""
    names = list(rows)
    effects = {v: effect(sorted(rows[v], key=lambda r: r.seed)) for v in names}
    drop_holm = dict(zip(names, holm([effects[v].p for v in names]), strict=True))
    vs_pop: dict[str, tuple[float, float]] = {}
    if pop is not None:
        ref = source.per_user_metric(pop.run_id, "original")
        others = [source.per_user_metric(rows[v][0].run_id, "original").reindex(ref.index) for v in names]
        tests = compare_series(ref, others)
        vs_pop = {v: (t.relative_change, t.p_holm if t.p_holm is not None else t.p_value)
                  for v, t in zip(names, tests, strict=True)}
    out = {}
    for v in names:
        beats = None if v not in vs_pop else bool(vs_pop[v][1] < ALPHA and vs_pop[v][0] > 0)
        out[v] = Reading(effects[v], float(drop_holm[v]), vs_pop.get(v),
                         classify(float(drop_holm[v]), effects[v].relative_change, beats))
    return out


def _same_measurement(runs: dict[str, list[RunRecord]]) -> list[str]:
    """Rows that repeat another row of the same model: the same shuffled window (its own window equals the common
    one, e.g. an LLM's 10-item prompt) with the same NDCG@10 before and after for every seed. Kept: the first label
    (the explicit window sorts before the model's own), so the Holm family counts each measurement once."""
    def key(v: str) -> tuple:
        rs = sorted(runs[v], key=lambda r: r.seed)
        return (rs[0].model, rs[0].variant, tuple((r.seed, r.result.get("probe_stats", {}).get("window"),
                                                   json.dumps(r.result.get("metrics"), sort_keys=True)) for r in rs))
    seen: set[tuple] = set()
    repeated = []
    for v in sorted(runs, key=lambda v: (runs[v][0].variant, "window=" not in v, v)):
        k = key(v)
        if k in seen:
            repeated.append(v)
        seen.add(k)
    return repeated


def pattern_tables(records: list[RunRecord], source: RunSource, proxies_in_verdict: bool = False) -> list[Table]:
    out = []
    for ds in datasets_of(records):
        runs: dict[str, list[RunRecord]] = defaultdict(list)
        labels = sorted({r.probe for r in records if r.dataset == ds and base_probe(r.probe) == "shuffle-infer"})
        for r in records:  # a study with several windows gets a row per window: "sasrec, shuffle-infer (window=10)"
            if r.dataset == ds and r.probe in labels:
                runs[r.variant if len(labels) == 1 else f"{r.variant}, {r.probe}"].append(r)
        same = _same_measurement(runs)
        for v in same:
            del runs[v]
        pop = [v for v in runs if runs[v][0].model == POP]
        rows_in = sorted(v for v in runs if runs[v][0].model != POP)
        if not rows_in:
            continue
        read = readings({v: runs[v] for v in rows_in}, runs[pop[0]][0] if pop else None, source)
        rows, in_verdict, proxies = [], {}, []
        for v in rows_in:
            e, first, cls, vs_pop = read[v].effect, runs[v][0], read[v].cls, read[v].vs_pop
            if first.proxy and not proxies_in_verdict:
                proxies.append(v)
            elif first.model in (*BLIND, *SENSITIVE):
                in_verdict[v] = (first.model, cls)
            window = e.stats.get("window", MISSING)
            rows.append([v, f"{e.a:.4f}",
                         f"{e.relative_change:+.1%} [{e.ci[0]:+.1%}, {e.ci[1]:+.1%}]", f"{read[v].drop_p:.2g}",
                         MISSING if vs_pop is None else f"{vs_pop[0]:+.1%}, p {vs_pop[1]:.2g}",
                         str(window), cls])
        verdict = pattern_verdict(in_verdict)
        notes = [f"Shuffle-infer change of NDCG@10 [95 % CI]; both p columns Holm-adjusted over the {len(rows_in)} "
                 f"rows of {ds}. Order-sensitive: a significant drop (alpha {ALPHA}); order-blind: no drop from a "
                 "model that beats pop; undecided: neither.",
                 f"The paper's pattern ({', '.join(BLIND)} order-blind; {', '.join(SENSITIVE)} order-sensitive) "
                 f"on {ds}: **{verdict}**."]
        if same:
            notes.append(f"A model whose own window is the common one has one row: {', '.join(same)} measured the "
                         "same permutation of the same trained model as the row kept, so it is not counted twice.")
        if proxies:
            notes.append(f"Proxy rows (trained with a non-official recipe) stay out of the verdict: "
                         f"{', '.join(proxies)} (a study with `proxies_in_verdict: true` counts them).")
        elif proxies_in_verdict and any(runs[v][0].proxy for v in rows_in):
            counted = sorted({runs[v][0].recipe or "unrecorded" for v in rows_in if runs[v][0].proxy})
            notes.append(f"The verdict counts proxy rows (the study sets `proxies_in_verdict: true`): it reads the "
                         f"{', '.join(f'`{c}`' for c in counted)} recipe, not the official one on the paper's LLM.")
        out.append(Table(f"Paper pattern on {ds}", ["model", "NDCG@10", "shuffle-infer change", "p (Holm)",
                                                     "vs pop (change, Holm p)", "window", "reading"], rows, notes))
    return out
