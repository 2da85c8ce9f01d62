"""Several comparisons at once: Holm's step-down correction, and aggregation over seeds."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats


def holm(pvalues: list[float] | np.ndarray) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (controls the family-wise error rate), in the input order.

    p_(i) is multiplied by (m - i) for the i-th smallest (0-based), then made monotone and capped at 1.
    scipy has Benjamini-Hochberg (false_discovery_control) but no FWER correction, hence these lines.
    """
    p = np.asarray(pvalues, dtype=np.float64)
    m = len(p)
    if m == 0:
        return p
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate(p[order] * (m - np.arange(m))))
    out = np.empty(m)
    out[order] = adjusted
    return out


@dataclass
class SeedAggregate:
    n_seeds: int
    original_mean: float
    original_ci95: tuple[float, float]
    probed_mean: float
    probed_ci95: tuple[float, float]
    relative_change_mean: float
    relative_change_ci95: tuple[float, float]
    t_p_value: float  # paired t-test over seeds, original vs probed
    significant_seeds: int  # seeds whose own per-user test had p < alpha

    def as_dict(self) -> dict:
        return asdict(self)


def mean_ci(x: np.ndarray) -> tuple[float, tuple[float, float]]:
    """Mean and 95 % t-interval over replicates (seeds); one value or identical values give a zero-width CI."""
    m = float(np.mean(x))
    if len(x) < 2 or np.all(x == x[0]):
        return m, (m, m)
    lo, hi = stats.t.interval(0.95, len(x) - 1, loc=m, scale=stats.sem(x))
    return m, (float(lo), float(hi))


def aggregate_seeds(original: list[float], probed: list[float], relative: list[float], pvalues: list[float],
                    alpha: float = 0.05) -> SeedAggregate:
    """Mean ± t-CI over seeds of each condition and of the relative change; paired t-test over seeds."""
    o, p, r = (np.asarray(x, dtype=np.float64) for x in (original, probed, relative))
    om, oci = mean_ci(o)
    pm, pci = mean_ci(p)
    rm, rci = mean_ci(r)
    tp = float(stats.ttest_rel(p, o).pvalue) if len(o) >= 2 and not np.all(o == p) else 1.0
    return SeedAggregate(len(o), om, oci, pm, pci, rm, rci, tp, int(np.sum(np.asarray(pvalues) < alpha)))
