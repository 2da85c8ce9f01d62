"""Shuffled training (docs/probes.md): permute every train sequence once, before training, with a
fixed seed; train a fresh model with the same config and seed; evaluate both models on the original test
inputs. Validation (early stopping) also uses the original inputs. Models that own a pre-trained CF teacher
re-train the teacher on the shuffled data too (the paper leaves it open; docs/models.md#llm-backbone-and-llm-srec).

`--probe-set window=K` shuffles only the last K items of every train sequence (default: whole sequences);
the keys depend on the fixed seed and the row layout only, so every model trains on the same shuffled data."""

from __future__ import annotations

from seqbench.data.permutation import PERMUTATION_SEED, permute_all, permute_tail

from .base import ProbeContext, ProbeResult, paired_result
from .options import get_option


class ShuffleTrain:
    name = "shuffle-train"
    summary = "a second model trained on once-shuffled train sequences, both evaluated on original inputs"
    option_help = {"window": "shuffle only the last K items of every train sequence (default, or 'all': all of them)"}
    tasks = ("retrieval", "generation")
    # two trained models: the per-user test ignores training variance, so a verdict needs several seeds
    compares_trained_models = True

    def run(self, pc: ProbeContext) -> ProbeResult:
        train = pc.data.histories("train")
        window = get_option(pc.options, "window")
        whole = window is None or window == "all"
        shuffled = permute_all(train, PERMUTATION_SEED) if whole else permute_tail(train, window, PERMUTATION_SEED)
        model = pc.fit(pc.data, shuffled)
        original = pc.evaluate()
        probed = pc.evaluate(model)
        return paired_result(self.name, original, probed, pc.run.seed,
                             window="all" if whole else window,
                             share_train_items_moved=float((shuffled.items != train.items).mean()))
