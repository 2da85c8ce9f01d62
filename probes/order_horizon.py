"""How far back does a model use order? One trained model, inference only: for each K of a grid, shuffle
only the last K items of every test history and compare with the original (paired Wilcoxon, bootstrap CI),
then Holm-adjust over the grid.

- Grid: `DEFAULT_GRID` (2, 3, 5, 10, 20, 50) plus the model's own window; `--probe-set grid=2/5/10`
  replaces it. K = 2 is the swap of the two most recent items (a seeded shuffle of two would leave half
  the users unchanged); every larger K is the seeded shuffle `permute_tail` (the same keys as
  shuffle-infer, so K = window reproduces shuffle-infer exactly). A K beyond the model's window is dropped:
  the model never reads those items, so the point would repeat K = window; so is any K beyond the first
  one that covers the longest test history (identical permutations). Windows below 2 leave no grid.
- `probe_stats["horizon"]`: one row per K; `smallest_significant_k`: the smallest K whose change is a
  significant *drop* after Holm (None when none is).
- The result's `test` is the comparison at the most significant K after Holm (smallest Holm p; ties go to
  the smaller K), with `p_value` set to that Holm-adjusted p: it answers "does order matter at any horizon"
  at the family level. The per-K raw p-values stay in the curve.
"""

from __future__ import annotations

import dataclasses

from seqbench.data.histories import Histories
from seqbench.data.permutation import PERMUTATION_SEED, permute_tail, swap_last_two
from seqbench.stats import ALPHA
from seqbench.stats.multiple import holm

from .base import ProbeContext, ProbeResult, paired_result
from .options import get_option

DEFAULT_GRID = (2, 3, 5, 10, 20, 50)


def horizon_grid(window: int, requested: list[int] | None = None, longest: int | None = None) -> list[int]:
    """The K values evaluated for a model with this window: the grid (plus the window itself when the
    default grid is used), capped at the window, K >= 2 (shuffling one item moves nothing). Once a K covers
    the longest history (``longest``), larger Ks would repeat it exactly and are dropped."""
    grid = sorted(k for k in (set(requested) if requested else {*DEFAULT_GRID, window}) if 2 <= k <= window)
    if longest is not None:
        covering = [k for k in grid if k >= longest]
        grid = [k for k in grid if k < longest] + covering[:1]
    return grid


def shuffle_last(hist: Histories, k: int) -> Histories:
    return swap_last_two(hist) if k == 2 else permute_tail(hist, k, PERMUTATION_SEED)


class OrderHorizon:
    name = "order-horizon"
    summary = "last K items shuffled for K in a grid (2 = swap … the model's window): where order stops mattering"
    option_help = {"grid": "K values separated by '/', e.g. 2/5/10 (default 2/3/5/10/20/50 + the model's window)"}

    def run(self, pc: ProbeContext) -> ProbeResult:
        hist = pc.data.histories("test")
        window = int(pc.model.window)
        ks = horizon_grid(window, get_option(pc.options, "grid"), int(hist.lengths.max(initial=0)))
        original = pc.evaluate(hist=hist)
        if not ks:  # nothing to shuffle (pop, or a window of one item): report the identity comparison
            return paired_result(self.name, original, original, pc.run.seed, window=window, horizon=[],
                                 grid=[], smallest_significant_k=None, best_k=None)
        results = []
        for k in ks:
            moved = shuffle_last(hist, k)
            res = paired_result(self.name, original, pc.evaluate(hist=moved), pc.run.seed)
            results.append((k, res, float((moved.items != hist.items).mean())))
        p_holm = holm([r.test.p_value for _, r, _ in results])
        curve = []
        for (k, res, moved_share), ph in zip(results, p_holm, strict=True):
            t = res.test
            curve.append({"k": k, "relative_change": t.relative_change, "ci95": list(t.ci95),
                          "p_value": t.p_value, "p_holm": float(ph), "n_nonzero": t.n_nonzero,
                          "share_items_moved": moved_share, "ndcg@10": res.probed.summary["ndcg@10"]})
        drops = [c["k"] for c in curve if c["p_holm"] < ALPHA and c["relative_change"] < 0]
        best = min(range(len(curve)), key=lambda i: (curve[i]["p_holm"], curve[i]["p_value"], curve[i]["k"]))
        _, best_res, _ = results[best]
        best_res.test = dataclasses.replace(best_res.test, p_value=float(curve[best]["p_holm"]))
        best_res.probe_stats = {
            "window": window, "grid": ks, "horizon": curve, "best_k": curve[best]["k"],
            "smallest_significant_k": min(drops) if drops else None, "alpha": ALPHA,
            "test_p_value_is": "Holm-adjusted over the grid, at best_k",
            "share_items_moved": curve[best]["share_items_moved"],
        }
        best_res.steps = [(f"horizon_{name}", float(c[key]), c["k"]) for c in curve
                          for name, key in (("relative_change", "relative_change"), ("p_value", "p_value"),
                                            ("p_holm", "p_holm"), ("ndcg_at_10", "ndcg@10"))]
        best_res.steps += [(f"horizon_ci95_{side}", float(c["ci95"][i]), c["k"]) for c in curve
                           for i, side in enumerate(("low", "high"))]
        return best_res

