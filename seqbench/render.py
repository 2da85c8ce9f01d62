"""Terminal rendering of run results: rich tables and one-line verdicts."""

from __future__ import annotations

from rich.table import Table

from seqbench.eval.metrics import METRIC_KEYS
from seqbench.probes import compares_trained_models
from seqbench.stats import ALPHA

SEED_ADVICE = ("the verdict comes from the paired t-test over several seeds (--seeds 0,1,2), which treats the "
               "training run as the unit (docs/statistics.md#calibration)")


def verdict(result: dict, alpha: float = ALPHA) -> str:
    t = result["test"]
    rel, (lo, hi) = t["relative_change"], t["ci95"]
    p = t["p_holm"] if t.get("p_holm") is not None else t["p_value"]
    p_name = "Holm-adjusted p" if t.get("p_holm") is not None else "p"
    a, b = t["compare"]
    test_name = "Wilcoxon" if t["kind"] == "paired" else "Mann-Whitney"
    what = (f"{t['metric'].upper()} {b} vs {a}: {rel:+.1%} (95% CI {lo:+.1%} to {hi:+.1%}, "
            f"{test_name} {p_name} = {p:.2g})")
    if t["kind"] != "paired":
        sig = "significant" if p < alpha else "not significant"
        return f"{result['probe']}: {what}; {sig} at alpha = {alpha}."
    if p < alpha and compares_trained_models(result["probe"]):
        return (f"Undecided on one training run ({result['probe']}): {what}. The two conditions are two trained "
                f"models and the per-user test ignores how much a model changes between training runs; {SEED_ADVICE}.")
    if p < alpha and rel < 0:
        return f"Order matters to {result['model']} ({result['probe']}): {what}."
    if p < alpha and rel > 0:
        return f"{result['model']} did better on the probed input ({result['probe']}): {what}."
    return f"No significant effect of {result['probe']} at alpha = {alpha}: {what}."


def result_table(result: dict) -> Table:
    task = "" if result.get("task", "retrieval") == "retrieval" else f", task {result['task']}"
    protocol = f", --eval {result['eval']}" if result.get("eval", "sampled") != "sampled" else ""
    table = Table(title=f"{result['model']} on {result['dataset']} — probe {result['probe']} "
                        f"(seed {result['seed']}{task}{protocol})")
    table.add_column("metric")
    conds = list(result["metrics"])
    for c in conds:
        table.add_column(c, justify="right")
    a, b = result["test"]["compare"]
    table.add_column(f"{b} vs {a}", justify="right")
    keys = [k for k in METRIC_KEYS if k in result["metrics"][a]] or list(result["metrics"][a])
    for k in keys:
        va, vb = result["metrics"][a][k], result["metrics"][b][k]
        change = f"{(vb - va) / va:+.1%}" if va else "n/a"
        table.add_row(k, *(f"{result['metrics'][c][k]:.4f}" for c in conds), change)
    return table


def extra_lines(result: dict) -> list[str]:
    """Headline probe-specific figures (scalars only)."""
    keep = ("cosine_mean", "cosine_median", "cosine_raw_mean", "jaccard_at_10", "gap_ndcg_at_10",
            "t_score_mean", "share_target_items_known", "n_warm_users", "n_cold_users")
    s = result.get("probe_stats", {})
    lines = [f"{k} = {s[k]:.4g}" for k in keep if isinstance(s.get(k), int | float)]
    if s.get("horizon"):  # order-horizon: the curve, one K per line
        lines += [f"K = {c['k']:>3}: {c['relative_change']:+.1%} (95% CI {c['ci95'][0]:+.1%} to "
                  f"{c['ci95'][1]:+.1%}), p = {c['p_value']:.2g}, Holm p = {c['p_holm']:.2g}" for c in s["horizon"]]
        lines.append(f"smallest K with a significant drop: {s['smallest_significant_k'] or 'none'}; the verdict is "
                     f"K = {s['best_k']} with its Holm-adjusted p over the grid")
    return lines


def seed_verdict(key: str, s: dict, alpha: float = ALPHA) -> str | None:
    """The verdict of a probe that compares trained models, from the t-test over seeds (None for other probes,
    whose per-seed lines already carry a verdict)."""
    if not compares_trained_models(s.get("probe", key)) or s["n_seeds"] < 2:
        return None
    what = (f"{s['relative_change_mean']:+.1%} over {s['n_seeds']} seeds (95% t-CI "
            f"{s['relative_change_ci95'][0]:+.1%} to {s['relative_change_ci95'][1]:+.1%}), paired t-test p = "
            f"{s['t_p_value']:.2g}")
    if s["t_p_value"] < alpha:
        worse = s["probed_mean"] < s["original_mean"]
        return (f"Order matters ({key}): {what}." if worse
                else f"The probed models did better ({key}): {what}.")
    return f"No significant effect of {key} over seeds at alpha = {alpha}: {what}."


def seed_table(summary: dict) -> Table:
    table = Table(title="over seeds: primary metric (NDCG@10; HR@1 in generation) mean (95% t-CI), "
                        "paired t-test over seeds")
    for col in ("probe", "seeds", "original", "probed", "relative change", "t-test p", "significant seeds"):
        table.add_column(col, justify="right" if col != "probe" else "left")
    for probe, s in summary.items():
        table.add_row(probe, str(s["n_seeds"]),
                      f"{s['original_mean']:.4f} ({s['original_ci95'][0]:.4f}, {s['original_ci95'][1]:.4f})",
                      f"{s['probed_mean']:.4f} ({s['probed_ci95'][0]:.4f}, {s['probed_ci95'][1]:.4f})",
                      f"{s['relative_change_mean']:+.1%} ({s['relative_change_ci95'][0]:+.1%}, "
                      f"{s['relative_change_ci95'][1]:+.1%})",
                      f"{s['t_p_value']:.2g}", f"{s['significant_seeds']}/{s['n_seeds']}")
    return table


def comparison_table(result: dict) -> Table:
    ref = result["reference"]
    table = Table(title=f"{result['metric']} ({result['condition']}) against {ref['label']} "
                        f"= {ref['mean']:.4f}, {result['n_users']} users, paired Wilcoxon")
    for col in ("run", "mean", "change", "95% CI", "p", "Holm p" if result["holm"] else None):
        if col:
            table.add_column(col, justify="left" if col == "run" else "right")
    for row in result["comparisons"]:
        t = row["test"]
        lo, hi = t["ci95"]
        cells = [row["label"], f"{t['mean_challenger']:.4f}", f"{t['relative_change']:+.1%}",
                 f"{lo:+.1%} to {hi:+.1%}", f"{t['p_value']:.2g}"]
        if result["holm"]:
            cells.append(f"{t['p_holm']:.2g}")
        table.add_row(*cells)
    return table
