"""Scores each user's test or validation case with a model and turns ranks into per-user metrics.

Two tasks share the protocol (docs/protocols.md): ``retrieval`` ranks the target (primary metric NDCG@10);
``generation`` lists 1 target + 19 negatives (the persisted ``*_title`` sets) and scores HR@1. A model
trained for generation (``model.generation``) decodes a title that is matched to a candidate; any other model
ranks the same 20 candidates, which gives the paper's SASRec HR@1 reference row. Both report the three HR@1
readings of ``seqbench.eval.generation``: per user ``hr@1`` (strict), ``hr@1_lenient`` and ``invalid``, and in the
summary also ``hr@1_valid`` (hits over valid answers). A ranking always names exactly one candidate, so for a
ranking model the three are equal and ``invalid`` is 0.

Retrieval ranks under one of three protocols (``--eval``): ``sampled``, the target among its persisted 99 sampled
negatives (the paper's); ``full``, the target among all items with the user's seen items kept (Klenitskiy et
al.); ``full-unseen``, all items except those of the user's input history other than the target (RecBole's
default). Ties count against the target under all three.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from seqbench.data.histories import Histories
from seqbench.errors import OptionError
from seqbench.eval.generation import valid_only_hr
from seqbench.eval.metrics import metrics_from_ranks, ranks_from_scores, summarize

TASKS = ("retrieval", "generation")
PROTOCOLS = ("sampled", "full", "full-unseen")
CANDIDATE_SETS = {"retrieval": {"valid": "valid", "test": "test"},
                  "generation": {"valid": "valid_title", "test": "test_title"}}
PRIMARY_METRIC = {"retrieval": "ndcg@10", "generation": "hr@1"}
TOP_K = 10  # length of the top list kept per user (ranking-overlap probes)
FULL_CHUNK_SCORES = 1 << 22  # user x item scores held at once while ranking all items


def candidate_set(stage: str, task: str = "retrieval") -> str:
    """Name of the persisted candidate matrix for ``stage`` (valid | test) in ``task``."""
    return CANDIDATE_SETS[task][stage]


@dataclass
class EvalResult:
    users: np.ndarray  # 1-based user ids, aligned with every per-user array
    ranks: np.ndarray  # generated answers: 0 = hit, 1 = another candidate or invalid
    per_user: dict[str, np.ndarray]
    scores: np.ndarray | None = None  # sampled: (users, candidates), target first
    metric: str = "ndcg@10"  # the per-user metric probes test on (hr@1 in the generation task)
    outputs: list[str] | None = None  # generated texts (generation task, generating models)
    protocol: str = "sampled"  # how the target was ranked (PROTOCOLS)
    top_items: np.ndarray | None = None  # retrieval: (users, TOP_K) item ids ranked first, best first

    @property
    def summary(self) -> dict[str, float]:
        out = summarize(self.per_user)
        if self.metric == "hr@1" and "invalid" in self.per_user:  # the generation task: LLaRA's valid-only HR@1
            out["hr@1_valid"] = valid_only_hr(self.per_user["hr@1"], self.per_user["invalid"])
        return out


def check_protocol(protocol: str, task: str = "retrieval") -> None:
    """``protocol`` must be known, and full ranking belongs to the retrieval task."""
    if protocol not in PROTOCOLS:
        raise OptionError(f"unknown evaluation protocol '{protocol}'; use one of {', '.join(PROTOCOLS)}")
    if protocol != "sampled" and task != "retrieval":
        raise OptionError(f"--eval {protocol} ranks all items, which only the retrieval task does "
                          f"(--task {task} lists 20 title candidates): use --eval sampled")


def evaluate(model, hist: Histories, candidates: np.ndarray, task: str = "retrieval",
             protocol: str = "sampled") -> EvalResult:
    """``candidates`` rows align with ``hist`` rows; the target is column 0 (full ranking reads only the
    target). The model batches itself."""
    if len(candidates) != len(hist):
        raise ValueError(f"{len(hist)} histories but {len(candidates)} candidate rows")
    if task not in TASKS:
        raise ValueError(f"unknown task '{task}'; use {' or '.join(TASKS)}")
    check_protocol(protocol, task)
    if task == "generation" and getattr(model, "generation", False):
        out = model.evaluate_generation(hist, candidates)
        hit = np.asarray(out["hr@1"], dtype=np.float64)
        per_user = {k: np.asarray(out[k], dtype=np.float64) for k in ("hr@1", "hr@1_lenient", "invalid")}
        return EvalResult(users=hist.users, ranks=(hit == 0).astype(np.int64), per_user=per_user,
                          metric="hr@1", outputs=list(out["outputs"]))
    if protocol != "sampled":
        ranks, top = rank_all_items(model, hist, np.asarray(candidates)[:, 0], exclude_seen=protocol == "full-unseen")
        return EvalResult(users=hist.users, ranks=ranks, per_user=metrics_from_ranks(ranks),
                          metric=PRIMARY_METRIC[task], protocol=protocol, top_items=top)
    scores = model.score(hist, candidates)
    ranks = ranks_from_scores(scores)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), axis=1, kind="stable")[:, :TOP_K]
    per_user = metrics_from_ranks(ranks)
    if task == "generation":  # a ranking names exactly one candidate: always valid, lenient = strict
        per_user |= {"hr@1_lenient": per_user["hr@1"].copy(), "invalid": np.zeros(len(ranks))}
    return EvalResult(users=hist.users, ranks=ranks, per_user=per_user, scores=scores,
                      metric=PRIMARY_METRIC[task], top_items=np.take_along_axis(np.asarray(candidates), order, 1))


def rank_all_items(model, hist: Histories, targets: np.ndarray, exclude_seen: bool = False,
                   top_k: int = TOP_K) -> tuple[np.ndarray, np.ndarray]:
    """0-based rank of each target among all items (ties and NaN count against it) and each user's top
    ``top_k`` items, in chunks of users so that about ``FULL_CHUNK_SCORES`` scores are held at once.

    With ``exclude_seen`` the items of the user's input history other than the target are neither counted nor
    listed. The model provides ``score_all(hist, rows) -> (len(rows), n_items + 1)`` (column 0 is padding); it gets
    the whole ``hist`` with each chunk's rows, so per-history state it caches is computed once.
    """
    if not callable(getattr(model, "score_all", None)):
        raise OptionError(f"{getattr(model, 'name', type(model).__name__)} cannot rank all items (no score_all): "
                          "use --eval sampled")
    targets = np.asarray(targets, dtype=np.int64)
    ranks = np.zeros(len(hist), dtype=np.int64)
    top = np.zeros((len(hist), top_k), dtype=np.int64)
    step, start = 64, 0  # the first chunk tells the catalogue size; later ones hold FULL_CHUNK_SCORES scores
    while start < len(hist):
        rows = np.arange(start, min(start + step, len(hist)))
        part = hist.take(rows)
        scores = np.asarray(model.score_all(hist, rows), dtype=np.float32)
        step = max(1, FULL_CHUNK_SCORES // scores.shape[1])
        ranks[rows], top[rows] = _rank_chunk(scores, part, targets[rows], exclude_seen, top_k)
        start = int(rows[-1]) + 1
    return ranks, top


def _rank_chunk(scores: np.ndarray, part: Histories, tgt: np.ndarray, exclude_seen: bool,
                top_k: int) -> tuple[np.ndarray, np.ndarray]:
    b = np.arange(len(tgt))
    listed = np.ones(scores.shape, dtype=bool)  # items that may be ranked: not padding, not a removed seen item
    listed[:, 0] = False
    if exclude_seen:
        listed[np.repeat(b, part.lengths), part.items] = False
    listed[b, tgt] = True
    target_score = scores[b, tgt][:, None]
    above = (scores >= target_score) | np.isnan(scores) | np.isnan(target_score)
    ranks = (above & listed).sum(axis=1) - 1  # the target itself is counted once
    masked = np.where(listed & ~np.isnan(scores), scores, -np.inf)
    k = min(top_k, masked.shape[1] - 1)
    top = np.zeros((len(tgt), top_k), dtype=np.int64)
    cand = np.argpartition(-masked, k - 1, axis=1)[:, :k]
    order = np.lexsort((cand, -np.take_along_axis(masked, cand, 1)), axis=1)  # best first, ties by item id
    top[:, :k] = np.take_along_axis(cand, order, 1)
    return ranks, top
