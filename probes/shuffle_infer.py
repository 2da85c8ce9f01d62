"""Inference-time rearrangements of the test history (docs/MODELS.md §8.2 and beyond): the same trained
model, the same targets and candidates, only the order of the items in the model's window changes."""

from __future__ import annotations

from seqbench.data.histories import Histories
from seqbench.data.permutation import PERMUTATION_SEED, permute_tail, reverse_tail, swap_last_two

from .base import ProbeContext, ProbeResult, evaluate_test, paired_result


class _Rearrangement:
    name = ""
    summary = ""

    def rearrange(self, hist: Histories, window: int) -> Histories:
        raise NotImplementedError

    def extra(self, pc: ProbeContext, hist: Histories, moved: Histories, original, probed) -> dict:
        return {}

    def run(self, pc: ProbeContext) -> ProbeResult:
        hist = pc.data.histories("test")
        window = int(pc.model.window)
        moved = self.rearrange(hist, window)
        original = evaluate_test(pc.model, pc.data, hist)
        probed = evaluate_test(pc.model, pc.data, moved)
        stats = {"window": window, "share_items_moved": float((moved.items != hist.items).mean())}
        stats.update(self.extra(pc, hist, moved, original, probed))
        return paired_result(self.name, original, probed, pc.run.seed, **stats)


class ShuffleInfer(_Rearrangement):
    name = "shuffle-infer"
    summary = "test histories' last `window` items shuffled (fixed seed, same for every model)"

    def rearrange(self, hist: Histories, window: int) -> Histories:
        return permute_tail(hist, window, PERMUTATION_SEED)


class Reverse(_Rearrangement):
    name = "reverse"
    summary = "test histories' last `window` items reversed"

    def rearrange(self, hist: Histories, window: int) -> Histories:
        return reverse_tail(hist, window)


class Recency(_Rearrangement):
    name = "recency"
    summary = "only the two most recent items swapped (separates recency from order)"

    def rearrange(self, hist: Histories, window: int) -> Histories:
        return swap_last_two(hist)
