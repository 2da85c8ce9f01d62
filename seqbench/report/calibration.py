"""Is a verdict to be trusted? False-positive rates on data without order, and power against order strength.

Both views read runs on the synthetic ``syn-order<o>-u<n>-i<m>-s<seed>`` datasets (studies/calibration.yaml,
studies/calibration-power.yaml), whose order strength is known by construction:

* **false positives**: on order-0 data (every order of a history equally likely) a probe should find a
  significant effect on 5 % of datasets. Per model and probe: the share of datasets with p < alpha (the probe's
  own p, before any Holm correction over the probes of a run; order-horizon's after its own Holm over K) with an
  exact binomial 95 % interval, the share of "order matters" verdicts (a significant *drop*, 2.5 % expected),
  and a Kolmogorov-Smirnov test of the p-values against the uniform distribution.
* **power**: the share of tests that find a significant drop, by order strength and number of test users. Each
  trained model's per-user results are cut into disjoint subsets of ``n`` users (seeded), and every subset gets
  the probe's paired test (Wilcoxon), so one training gives several tests at small ``n``.
"""

from __future__ import annotations

from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from seqbench.data.embedded import synthetic_options  # noqa: E402
from seqbench.probes import compares_trained_models  # noqa: E402
from seqbench.stats import ALPHA  # noqa: E402
from seqbench.stats.multiple import aggregate_seeds  # noqa: E402
from seqbench.stats.paired import wilcoxon_p  # noqa: E402

from .aggregate import base_probe  # noqa: E402
from .collect import RunRecord, RunSource  # noqa: E402
from .document import Figure, Table  # noqa: E402
from .figures import png_bytes  # noqa: E402
from .protocols import verdict  # noqa: E402

POWER_USERS = (200, 1000, 5000)
POWER_TARGET = 0.8
SUBSET_SEED = 0


def order_of(record: RunRecord) -> float | None:
    """The order strength of a synthetic dataset (None for any other dataset)."""
    opts = synthetic_options(record.dataset)
    return None if opts is None else opts.order


def _rate(k: int, n: int) -> str:
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    return f"{k}/{n} = {k / n:.1%} [{ci.low:.1%}, {ci.high:.1%}]"


def _seed_level(runs: list[RunRecord]) -> tuple[float, float]:
    """(p, mean relative change) of the paired t-test over seeds of one model on one dataset."""
    a_name, b_name = runs[0].result["test"]["compare"]
    metric = runs[0].result["test"]["metric"]
    agg = aggregate_seeds([r.result["metrics"][a_name][metric] for r in runs],
                          [r.result["metrics"][b_name][metric] for r in runs],
                          [r.result["test"]["relative_change"] for r in runs],
                          [r.result["test"]["p_value"] for r in runs], ALPHA)
    return agg.t_p_value, agg.relative_change_mean


def _fp_row(variant: str, probe: str, test: str, p: np.ndarray, rel: np.ndarray, verdicts: bool) -> tuple[list, bool]:
    """One row of the false-positive table and whether 5 % lies outside its interval."""
    n, k = len(p), int((p < ALPHA).sum())
    drops = sum(verdict(c, q) == "drop" for c, q in zip(rel, p, strict=True))
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    ks = stats.kstest(p, "uniform")
    return ([variant, probe, test, str(n), _rate(k, n), _rate(drops, n) if verdicts else "none (one training run)",
             f"{np.median(rel):+.1%}", f"D = {ks.statistic:.2f}, p = {ks.pvalue:.2g}"],
            not ci.low <= ALPHA <= ci.high)


def false_positive_tables(records: list[RunRecord]) -> list[Table]:
    """Per model and probe over the order-0 datasets: rate of p < alpha, of drops, and a KS test of the p's.

    Each dataset counts once: its first seed's run for the per-user test; for a probe comparing two trained
    models (shuffle-train) also the paired t-test over its seeds where it has several, which is where that
    probe's verdict comes from."""
    runs: dict[tuple[str, str], dict[str, list[RunRecord]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        if order_of(r) == 0.0 and r.result.get("test", {}).get("kind") == "paired":
            runs[(r.variant, r.probe)][r.dataset].append(r)
    rows, bold = [], set()
    for (variant, probe), by_dataset in sorted(runs.items()):
        seeded = [sorted(rs, key=lambda r: r.seed) for _, rs in sorted(by_dataset.items())]
        first = [rs[0] for rs in seeded]
        trained = compares_trained_models(base_probe(probe))
        row, off = _fp_row(variant, probe, "Wilcoxon over users, one seed",
                           np.array([r.result["test"]["p_value"] for r in first]),
                           np.array([r.result["test"]["relative_change"] for r in first]), not trained)
        if off:
            bold.add((len(rows), 4))
        rows.append(row)
        several = [rs for rs in seeded if len(rs) >= 2]
        if trained and several:
            tests = np.array([_seed_level(rs) for rs in several])
            n_seeds = sorted({len(rs) for rs in several})
            row, off = _fp_row(variant, probe, f"t-test over {'/'.join(map(str, n_seeds))} seeds", tests[:, 0],
                               tests[:, 1], True)
            if off:
                bold.add((len(rows), 4))
            rows.append(row)
    if not rows:
        return []
    return [Table("False-positive rate on data without order (order 0)",
                  ["model", "probe", "test", "datasets", f"p < {ALPHA} [exact 95 % CI]", "order-matters verdicts",
                   "median change", "KS vs uniform"], rows,
                  [f"One test per order-0 dataset (dataset seeds); a correct test has p < {ALPHA} on {ALPHA:.0%} of "
                   f"them, so {ALPHA:.0%} should lie in the interval (bold where it does not), and its p-values "
                   "are uniform (Kolmogorov-Smirnov against U(0, 1); a small KS p says they are not). An "
                   "order-matters verdict is a significant drop: half the false positives of a two-sided test, "
                   f"{ALPHA / 2:.1%} expected. The p is each probe's own, before the Holm correction over the "
                   "probes of a run; order-horizon's is already Holm-adjusted over its K grid (a conservative "
                   "test, so fewer than 5 % are expected there).",
                   "shuffle-train compares two trained models: its per-user test sees the test users' noise but not "
                   "the training run's, so it gives no verdict on one seed; its verdict is the paired t-test of the "
                   "mean metric over seeds (the training run as the unit)."], bold)]


def _subset_tests(source: RunSource, record: RunRecord, sizes: tuple[int, ...]) -> dict[int, list[bool]]:
    """Per subset size: for each disjoint subset of that many test users, whether the probe finds a drop."""
    a_name, b_name = record.result["test"]["compare"]
    metric = record.result["test"]["metric"]
    a = source.per_user_metric(record.run_id, a_name, metric)
    b = source.per_user_metric(record.run_id, b_name, metric).reindex(a.index)
    order = np.random.default_rng(SUBSET_SEED).permutation(len(a))
    out: dict[int, list[bool]] = {}
    for n in sizes:
        found = []
        for start in range(0, len(order) - n + 1, n):
            rows = order[start:start + n]
            x, y = a.to_numpy()[rows], b.to_numpy()[rows]
            rel = (y.mean() - x.mean()) / x.mean() if x.mean() else 0.0
            found.append(verdict(rel, wilcoxon_p(x, y)) == "drop")
        if found:
            out[n] = found
    return out


def power(records: list[RunRecord], source: RunSource, sizes: tuple[int, ...] = POWER_USERS) -> list[Table | Figure]:
    """Detection rate by order strength and number of test users (table, figure, smallest effect at 80 %)."""
    runs = [r for r in records if order_of(r) is not None and base_probe(r.probe) == "shuffle-infer"
            and r.result.get("test", {}).get("kind") == "paired"]
    if not runs or len({order_of(r) for r in runs}) < 2:
        return []
    out: list[Table | Figure] = []
    for variant in sorted({r.variant for r in runs}):
        mine = [r for r in runs if r.variant == variant]
        found: dict[float, dict[int, list[bool]]] = defaultdict(lambda: defaultdict(list))
        change: dict[float, list[float]] = defaultdict(list)
        users: dict[float, set[int]] = defaultdict(set)
        for r in mine:
            o = order_of(r)
            change[o].append(r.result["test"]["relative_change"])
            users[o].add(int(r.result["test"]["n_users"]))
            for n, hits in _subset_tests(source, r, sizes).items():
                found[o][n] += hits
        orders = sorted(found)
        used = [n for n in sizes if any(found[o].get(n) for o in orders)]
        if not used:  # every size exceeds the test users
            continue
        rows = []
        for o in orders:
            cells = [_rate(sum(found[o][n]), len(found[o][n])) if found[o].get(n) else "–" for n in used]
            rows.append([f"{o:g}", str(len(change[o])), f"{np.mean(change[o]):+.1%}", *cells])
        smallest = []
        for n in used:
            ok = [o for o in orders if found[o].get(n) and np.mean(found[o][n]) >= POWER_TARGET]
            smallest.append(f"{n:,} test users: " + (f"order {ok[0]:g}, a mean change of {np.mean(change[ok[0]]):+.1%}"
                                                      if ok else "none of the tested strengths"))
        out.append(Table(f"Power of shuffle-infer ({variant}): share of tests with a significant drop",
                         ["order strength", "trained models", "mean change (all users)",
                          *[f"{n:,} users" for n in used]], rows,
                         [f"Detection = an order-matters verdict (Wilcoxon p < {ALPHA} and a drop) on a disjoint "
                          "subset of that many test users of one trained model [exact 95 % CI]; 'mean change' is "
                          "the probe's relative NDCG@10 change on all test users, averaged over the trained models. "
                          f"Smallest tested effect detected with at least {POWER_TARGET:.0%} power: "
                          + "; ".join(smallest) + "."]))
        out.append(_power_figure(variant, orders, used, found))
    return out


def _power_figure(variant: str, orders: list[float], sizes: list[int],
                  found: dict[float, dict[int, list[bool]]]) -> Figure:
    fig, ax = plt.subplots(figsize=(6, 3.6))
    position = {o: i for i, o in enumerate(orders)}  # evenly spaced: the grid is dense where power rises
    for n in sizes:
        xs = [o for o in orders if found[o].get(n)]
        ax.plot([position[o] for o in xs], [np.mean(found[o][n]) for o in xs], marker="o", label=f"{n:,} test users")
    ax.axhline(POWER_TARGET, color="grey", ls="--", lw=0.8)
    ax.axhline(ALPHA / 2, color="grey", ls=":", lw=0.8)
    ax.set_xticks(range(len(orders)))
    ax.set_xticklabels([f"{o:g}" for o in orders])
    ax.set_xlabel("order strength (share of steps that follow a successor; evenly spaced)")
    ax.set_ylabel("detection rate")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=8)
    ax.set_title(f"shuffle-infer power, {variant}")
    return Figure(f"power_{variant}", f"Detection rate of shuffle-infer against order strength ({variant}); dashed: "
                  f"{POWER_TARGET:.0%}, dotted: the {ALPHA / 2:.1%} expected at order 0.", png_bytes(fig))
