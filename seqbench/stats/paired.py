"""Paired per-user comparison of two conditions (e.g. original vs shuffled input) with scipy.stats.

Ties and zeros, explicitly: users whose metric is equal in both conditions (including the common case of 0
in both, i.e. the target is outside the top-K either way) contribute a zero difference. The Wilcoxon test
drops zero differences (``zero_method="wilcox"``, the classical rule) and reports how many pairs remained;
with no non-zero difference at all the p-value is 1. The bootstrap resamples *all* users, zeros
included, so the confidence intervals describe the metric as reported.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats


@dataclass
class PairedTest:
    """A comparison of two conditions on one metric. ``kind`` is "paired" (same users, Wilcoxon) or
    "independent" (different users, e.g. transition vs non-transition sets: Mann-Whitney U)."""

    metric: str
    n_users: int
    n_nonzero: int  # pairs with a non-zero difference (the ones Wilcoxon ranks)
    mean_original: float
    mean_probed: float
    mean_diff: float
    diff_ci95: tuple[float, float]
    relative_change: float  # (probed - original) / original, on the means
    ci95: tuple[float, float]  # paired bootstrap CI of relative_change
    p_value: float  # two-sided Wilcoxon signed-rank
    effect_size: float  # rank-biserial correlation in [-1, 1] (negative = probed lower)
    kind: str = "paired"
    p_holm: float | None = None  # Holm-adjusted p-value when reported with other comparisons

    def as_dict(self) -> dict:
        return asdict(self)


def _relative_change(x, y, axis=-1):
    mx = np.mean(x, axis=axis)
    return (np.mean(y, axis=axis) - mx) / np.where(mx == 0, np.nan, mx)


def _mean_difference(x, y, axis=-1):
    return np.mean(y, axis=axis) - np.mean(x, axis=axis)


def _bootstrap_cis(a: np.ndarray, b: np.ndarray, paired: bool, degenerate: bool, seed: int,
                   n_resamples: int) -> list[tuple[float, float]]:
    """Percentile 95 % CIs of the relative change and of the mean difference (scipy.stats.bootstrap);
    with nothing to resample (``degenerate``) the CI collapses onto the point estimate."""
    rng = np.random.default_rng(seed)
    cis = []
    for stat in (_relative_change, _mean_difference):
        if degenerate:
            value = float(stat(a, b))
            cis.append((value, value))
            continue
        res = stats.bootstrap((a, b), stat, paired=paired, vectorized=True, n_resamples=n_resamples,
                              method="percentile", confidence_level=0.95, rng=rng, batch=200)
        cis.append((float(res.confidence_interval.low), float(res.confidence_interval.high)))
    return cis


def _rank_biserial(diff: np.ndarray) -> float:
    d = diff[diff != 0]
    if len(d) == 0:
        return 0.0
    r = stats.rankdata(np.abs(d))
    total = r.sum()
    return float((r[d > 0].sum() - r[d < 0].sum()) / total)


def wilcoxon_p(original: np.ndarray, probed: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p of a paired comparison; 1 when no pair differs (zeros dropped)."""
    a, b = np.asarray(original, dtype=np.float64), np.asarray(probed, dtype=np.float64)
    if not (b - a).any():
        return 1.0
    return float(stats.wilcoxon(b, a, zero_method="wilcox").pvalue)


def paired_test(
    original: np.ndarray, probed: np.ndarray, metric: str = "ndcg@10", seed: int = 0, n_resamples: int = 2000
) -> PairedTest:
    a = np.asarray(original, dtype=np.float64)
    b = np.asarray(probed, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise ValueError("paired_test needs two 1-D arrays of the same length (>= 2)")
    diff = b - a
    n_nonzero = int((diff != 0).sum())
    p = wilcoxon_p(a, b)
    ma, mb = float(a.mean()), float(b.mean())
    rel = (mb - ma) / ma if ma != 0 else float("nan")
    cis = _bootstrap_cis(a, b, paired=True, degenerate=n_nonzero == 0, seed=seed, n_resamples=n_resamples)
    return PairedTest(
        metric=metric, n_users=len(a), n_nonzero=n_nonzero, mean_original=ma, mean_probed=mb,
        mean_diff=mb - ma, diff_ci95=cis[1], relative_change=rel, ci95=cis[0], p_value=p,
        effect_size=_rank_biserial(diff),
    )


def independent_test(
    a: np.ndarray, b: np.ndarray, metric: str = "ndcg@10", seed: int = 0, n_resamples: int = 2000
) -> PairedTest:
    """Two groups of different users: Mann-Whitney U (two-sided) and bootstrap CIs resampling each group.

    ``relative_change`` is (mean_b - mean_a) / mean_a; the effect size is the rank-biserial correlation
    2U/(n_a n_b) - 1, positive when b tends to be higher.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if len(a) < 2 or len(b) < 2:
        raise ValueError("independent_test needs at least 2 values per group")
    ma, mb = float(a.mean()), float(b.mean())
    same = np.all(a == a[0]) and np.all(b == b[0]) and a[0] == b[0]
    u = stats.mannwhitneyu(b, a, alternative="two-sided")
    p = 1.0 if same else float(u.pvalue)
    cis = _bootstrap_cis(a, b, paired=False, degenerate=bool(same), seed=seed, n_resamples=n_resamples)
    return PairedTest(
        metric=metric, n_users=len(a) + len(b), n_nonzero=len(a) + len(b), mean_original=ma, mean_probed=mb,
        mean_diff=mb - ma, diff_ci95=cis[1], relative_change=(mb - ma) / ma if ma else float("nan"),
        ci95=cis[0], p_value=p, effect_size=float(2 * u.statistic / (len(a) * len(b)) - 1), kind="independent",
    )
