"""Inference-time rearrangements of the test history (docs/probes.md): the same trained
model, the same targets and candidates, only the order of the most recent items changes.

`--probe-set window=K` rearranges exactly the last K items of every history, whatever the model (default:
the model's own window). With the same K the permutation keys depend only on the fixed seed and the row
layout, so every model sees the identical permutation. A K larger than the model's window is capped at the
window (items the model never reads cannot be reordered for it, and pulling older items into its window
would change *which* items it sees, not only their order); `probe_stats` records both.

`--probe-set window=all` rearranges the whole input history instead (Klenitskiy et al.'s shuffle scope): the
model still reads at most its own window, now of the rearranged history, so older items may enter it.
"""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager

import numpy as np

from seqbench.data.histories import Histories
from seqbench.data.permutation import (
    PERMUTATION_SEED,
    permute_tail,
    permute_ties,
    reverse_tail,
    swap_last_two,
    tied_positions,
)
from seqbench.errors import OptionError
from seqbench.models import MODELS
from seqbench.models.base import UserRepPinning

from .base import ProbeContext, ProbeResult, paired_result
from .options import get_option

WINDOW_HELP = ("rearrange exactly the last K items of every history, or 'all' for the whole history "
               "(default: the model's own window)")
USER_REP_HELP = ("original: a model with a CF user representation in its prompt ([UserRep]: CoLLM, A-LLMRec) "
                 "keeps the one of the unrearranged history, so only the history tokens move (default: probed)")


def effective_window(pc: ProbeContext, hist: Histories) -> tuple[int, dict]:
    """The window to rearrange in ``hist`` and what to report about it (requested K, the model's own window)."""
    own = int(pc.model.window)
    requested = get_option(pc.options, "window")
    if requested == "all":
        longest = int(hist.lengths.max(initial=1))
        return longest, {"window": "all", "model_window": own, "window_requested": "all",
                         "window_source": "option: the whole history", "longest_history": longest}
    if requested is None:
        return own, {"window": own, "model_window": own, "window_source": "model"}
    used = min(requested, own)
    return used, {"window": used, "model_window": own, "window_requested": requested,
                  "window_source": "option" if used == requested else "option, capped at the model's window"}


def pinned_user_rep(pc: ProbeContext, hist: Histories, user_rep: str) -> AbstractContextManager:
    """With ``user_rep == "original"``, a context in which the model's [UserRep] comes from ``hist`` (checked
    before any evaluation: a model without one is an error, not a silent no-op); otherwise a no-op context."""
    if user_rep != "original":
        return contextlib.nullcontext()
    model = pc.model
    if not (isinstance(model, UserRepPinning) and model.user_rep):
        able = ", ".join(name for name, spec in MODELS.items() if spec.cf_user_rep)
        raise OptionError(f"--probe-set user_rep=original: {getattr(model, 'name', type(model).__name__)} has no "
                          f"CF user representation in its prompt ([UserRep]; models that can have one: {able}, "
                          "llmsrec with user_rep_in_prompt=true)")
    return model.pinned_user_rep(hist)


class _Rearrangement:
    name = ""
    summary = ""
    option_help = {"window": WINDOW_HELP, "user_rep": USER_REP_HELP}
    tasks = ("retrieval", "generation")

    def rearrange(self, hist: Histories, window: int) -> Histories:
        raise NotImplementedError

    def extra(self, pc: ProbeContext, hist: Histories, moved: Histories, original, probed) -> dict:
        return {}

    def run(self, pc: ProbeContext) -> ProbeResult:
        hist = pc.data.histories("test")
        window, stats = effective_window(pc, hist)
        moved = self.rearrange(hist, window)
        stats["user_rep"] = get_option(pc.options, "user_rep", "probed")
        stats["share_items_moved"] = float((moved.items != hist.items).mean())
        pin = pinned_user_rep(pc, hist, stats["user_rep"])
        original = pc.evaluate(hist=hist)
        with pin:  # the rearranged condition, and the extra figures that read it (cosine), see the same O_u
            probed = pc.evaluate(hist=moved)
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
    option_help = {"user_rep": USER_REP_HELP}  # always the last two: no window

    def rearrange(self, hist: Histories, window: int) -> Histories:
        return swap_last_two(hist)


class TieShuffle(_Rearrangement):
    """A model that reacts to this reads an order the data does not have: on day-resolution data (Amazon)
    many adjacent events share a timestamp, and their order is whatever the prepared file's tie-break was."""

    name = "tie-shuffle"
    summary = "test histories' items permuted only among events with the same timestamp (within `window`)"

    def rearrange(self, hist: Histories, window: int) -> Histories:
        return permute_ties(hist, window, PERMUTATION_SEED)

    def extra(self, pc: ProbeContext, hist: Histories, moved: Histories, original, probed) -> dict:
        window, _ = effective_window(pc, hist)
        tied = tied_positions(hist, window)
        per_user = np.add.reduceat(tied, hist.offsets[:-1]) > 0 if len(tied) else np.zeros(0, dtype=bool)
        return {"share_positions_tied": float(tied.mean()) if len(tied) else 0.0,
                "share_users_with_ties": float(per_user.mean()) if len(per_user) else 0.0}
