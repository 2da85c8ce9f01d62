"""Terminal rendering of run results: a rich table and a one-line verdict."""

from __future__ import annotations

from rich.table import Table

from seqbench.eval.metrics import METRIC_KEYS

ALPHA = 0.05


def verdict(result: dict, alpha: float = ALPHA) -> str:
    t = result["test"]
    rel, (lo, hi), p = t["relative_change"], t["ci95"], t["p_value"]
    what = f"{result['probe']} changed {t['metric'].upper()} by {rel:+.1%} (95% CI {lo:+.1%} to {hi:+.1%}, " \
           f"Wilcoxon p = {p:.2g}, {t['n_users']} users)"
    if p < alpha and rel < 0:
        return f"Order matters to {result['model']}: {what}."
    if p < alpha and rel > 0:
        return f"{result['model']} did better on the probed input: {what}."
    return f"No significant effect at alpha = {alpha}: {what}."


def result_table(result: dict) -> Table:
    table = Table(title=f"{result['model']} on {result['dataset']} — probe {result['probe']} "
                        f"(seed {result['seed']})")
    table.add_column("metric")
    table.add_column("original", justify="right")
    table.add_column("probed", justify="right")
    table.add_column("change", justify="right")
    orig, probed = result["metrics"]["original"], result["metrics"]["probed"]
    for k in METRIC_KEYS:
        a, b = orig[k], probed[k]
        change = f"{(b - a) / a:+.1%}" if a else "n/a"
        table.add_row(k, f"{a:.4f}", f"{b:.4f}", change)
    return table
