"""Warm vs cold items (following A-LLMRec; docs/probes.md): items ranked by training interaction
count (ties by item id); the top 35 % are warm, the bottom 35 % cold, the middle 30 % unused. Each group is
evaluated on the test users whose *test item* falls in it (original inputs); groups hold different users,
so they are compared with Mann-Whitney U."""

from __future__ import annotations

import numpy as np

from .base import ProbeContext, ProbeResult, group_result, subset

SHARE = 0.35


def warm_cold_items(train_counts: np.ndarray, share: float = SHARE) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks over item ids 0..n (index 0 = padding, never in a group)."""
    counts = np.asarray(train_counts)[1:]
    n = len(counts)
    order = np.lexsort((np.arange(n), -counts))  # most popular first
    k = int(round(share * n))
    warm = np.zeros(n + 1, dtype=bool)
    cold = np.zeros(n + 1, dtype=bool)
    warm[order[:k] + 1] = True
    cold[order[n - k:] + 1] = True
    return warm, cold


class WarmCold:
    name = "warm-cold"
    summary = "metrics on users whose test item is warm (top 35% by train count) vs cold (bottom 35%)"
    option_help: dict[str, str] = {}

    def run(self, pc: ProbeContext) -> ProbeResult:
        warm, cold = warm_cold_items(pc.data.train_item_counts)
        target = pc.data.targets("test")
        full = pc.evaluate()
        in_warm, in_cold = warm[target], cold[target]
        if in_warm.sum() < 2 or in_cold.sum() < 2:
            from seqbench.errors import SeqbenchError

            raise SeqbenchError(f"warm-cold: too few test users in a group (warm {in_warm.sum()}, "
                                f"cold {in_cold.sum()}) on dataset '{pc.data.name}'")
        groups = {"warm": subset(full, in_warm), "cold": subset(full, in_cold)}
        return group_result(self.name, groups, ("warm", "cold"), pc.run.seed,
                            n_warm_users=int(in_warm.sum()), n_cold_users=int(in_cold.sum()),
                            n_warm_items=int(warm.sum()), n_cold_items=int(cold.sum()))
