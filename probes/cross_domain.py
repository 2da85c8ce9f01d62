"""Cross-domain (docs/probes.md): a model trained on the run's dataset is evaluated on another
prepared dataset's test users (their histories, candidates and titles): `--probe-set target=NAME`.

Unseen items, resolved on purpose: a target item whose raw id also exists in the source dataset maps to
that source item; any other target item id t is hashed into the source table as ((t - 1) mod n_source) + 1.
An ID-only model therefore sees arbitrary but distinct, uninformative embeddings and scores near chance
(HR@10 ~ 0.10 with 100 candidates) instead of crashing; hash collisions can tie candidates, and ties count
against the target, so it may land slightly below chance. Text-based models use the target's own titles.
"""

from __future__ import annotations

import numpy as np

from seqbench.data.dataset import SeqDataset
from seqbench.data.histories import Histories
from seqbench.errors import SeqbenchError

from .base import ProbeContext, ProbeResult, group_result


def map_items(source: SeqDataset, target: SeqDataset) -> tuple[np.ndarray, float]:
    """Lookup table target item id -> source item id (index 0 stays 0), and the share found by raw id."""
    src_index = {raw: i + 1 for i, raw in enumerate(source.item_ids[1:])}
    ids = np.arange(target.n_items + 1)
    table = ((ids - 1) % source.n_items) + 1
    table[0] = 0
    known = 0
    for t, raw in enumerate(target.item_ids[1:], start=1):  # once per item of the catalogue, not per row
        s = src_index.get(raw)
        if s is not None:
            table[t] = s
            known += 1
    return table, known / max(target.n_items, 1)


class CrossDomain:
    name = "cross-domain"
    summary = "evaluate on another prepared dataset's test users (--probe-set target=NAME)"
    option_help = {"target": "the prepared dataset whose test users, histories and candidates are used"}

    def run(self, pc: ProbeContext) -> ProbeResult:
        name = pc.options.get("target")
        if not name:
            raise SeqbenchError("cross-domain needs a target dataset: --probe-set target=NAME")
        target = pc.load_dataset(name)
        table, known = map_items(pc.data, target)
        hist = target.histories("test")
        mapped = Histories(hist.users, table[hist.items], hist.times, hist.offsets)
        from seqbench.eval.evaluator import evaluate

        evaluate_on = getattr(pc.model, "for_dataset", None)  # text models swap titles in
        model = evaluate_on(target, table) if evaluate_on else pc.model
        cross = evaluate(model, mapped, table[target.candidates["test"]], protocol=pc.protocol)
        home = pc.evaluate()
        return group_result(self.name, {"in_domain": home, "cross_domain": cross},
                            ("in_domain", "cross_domain"), pc.run.seed, target=name,
                            share_target_items_known=float(known), chance_hr_at_10=0.1)
