"""Shuffled inference (docs/MODELS.md §8.2): same trained model, test histories permuted, same targets
and candidates; a model that uses order should lose accuracy."""

from __future__ import annotations

from seqbench.context import RunContext
from seqbench.data.dataset import SeqDataset
from seqbench.eval.evaluator import evaluate
from seqbench.stats.paired import paired_test

from .base import ProbeResult
from .permutation import permute_tail

PERMUTATION_SEED = 20250213  # fixed across models and runs: one permutation per dataset and window


class ShuffleInfer:
    name = "shuffle-infer"
    summary = "evaluate the trained model on test histories whose last `window` items are shuffled"

    def __init__(self, permutation_seed: int = PERMUTATION_SEED):
        self.permutation_seed = permutation_seed

    def run(self, model, data: SeqDataset, ctx: RunContext) -> ProbeResult:
        hist = data.histories("test")
        cands = data.candidates["test"]
        original = evaluate(model, hist, cands)
        shuffled = permute_tail(hist, model.window, self.permutation_seed)
        probed = evaluate(model, shuffled, cands)
        test = paired_test(original.per_user["ndcg@10"], probed.per_user["ndcg@10"], "ndcg@10", seed=ctx.seed)
        changed = float((shuffled.items != hist.items).mean())
        return ProbeResult(self.name, original, probed, test,
                           probe_stats={"window": int(model.window), "share_items_moved": changed})
