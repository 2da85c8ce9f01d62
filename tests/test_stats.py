import numpy as np
import pytest
from scipy import stats

from seqbench.stats.paired import paired_test


def test_clear_drop_is_significant_with_ci_below_zero():
    rng = np.random.default_rng(0)
    a = rng.random(400)
    b = a * 0.6
    t = paired_test(a, b)
    assert t.relative_change == pytest.approx(-0.4)
    assert t.ci95[0] < -0.4 + 1e-9 < t.ci95[1] + 1e-9
    assert t.ci95[1] < 0
    assert t.p_value < 1e-10
    assert t.effect_size == pytest.approx(-1.0)
    assert t.p_value == pytest.approx(stats.wilcoxon(b, a).pvalue)


def test_identical_conditions_give_p_one_and_zero_change():
    a = np.r_[np.zeros(50), np.linspace(0.1, 1, 50)]
    t = paired_test(a, a.copy())
    assert t.p_value == 1.0 and t.relative_change == 0.0 and t.n_nonzero == 0
    assert t.ci95 == (0.0, 0.0)


def test_noise_is_usually_not_significant():
    rng = np.random.default_rng(1)
    a = rng.random(300)
    b = a + rng.normal(0, 0.05, 300)
    t = paired_test(a, b)
    assert t.p_value > 0.05
    assert t.ci95[0] < 0 < t.ci95[1]


def test_zero_in_both_conditions_is_kept_in_the_bootstrap_but_not_ranked():
    a = np.r_[np.zeros(90), np.ones(10)]
    b = np.r_[np.zeros(90), np.full(10, 0.5)]
    t = paired_test(a, b)
    assert t.n_users == 100 and t.n_nonzero == 10
    assert t.relative_change == pytest.approx(-0.5)
