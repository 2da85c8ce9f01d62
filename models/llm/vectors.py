"""The evaluation side of the LLM recommenders' core (``models/llm/base.py``): item and user vectors, the
caches that make one evaluation round cost one LLM pass per item and per distinct history, scoring, and
pinning the CF user representation.

Kept apart from training (RecBole's trainer/evaluator split). ``LLMVectors`` is a mixin of
``LLMRecommender``: it reads the recommender's public parts (``heads``, ``builder``, ``config``, ``device``,
``progress``, the LLM passes ``item_states`` / ``user_states``, ``teacher_user``, ``trainable_parameters``,
``require_ready``, ``set_training``) and owns its own state: the weights version (bumped through
:meth:`LLMVectors.weights_updated` by training and loading), the item and user caches and the pinned O_u.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from seqbench.data.histories import Histories
from seqbench.errors import SeqbenchError
from seqbench.eval.metrics import metrics_from_ranks, ranks_from_scores
from seqbench.llm.prompts import UserPrompts

from .generation import evaluate_generation

USER_CACHE_SIZE = 4  # distinct test histories whose h_U is kept (original + a few rearrangements)
CHUNK_ROWS = 4096  # histories (and their states) handled at once, to bound the memory held


def histories_key(hist: Histories) -> tuple:
    """Content fingerprint of a batch of histories (users, items, times, row layout)."""
    digest = hashlib.blake2b(digest_size=16)
    for a in (hist.users, hist.items, hist.times, hist.offsets):
        a = np.ascontiguousarray(a)
        digest.update(str(a.dtype).encode() + str(a.shape).encode())
        digest.update(a.tobytes())
    return (len(hist), digest.hexdigest())


@dataclass(frozen=True)
class PinnedUserRep:
    """CF user representations (O_u) computed once from one set of histories, looked up by user id while
    other histories of the same users are scored (``LLMRecommender.pinned_user_rep``)."""

    rows: dict[int, int]  # user id -> row of ``o_u``
    o_u: torch.Tensor
    key: tuple  # ``histories_key`` of the histories they came from

    @classmethod
    def of(cls, hist: Histories, o_u: torch.Tensor) -> PinnedUserRep:
        rows = {int(u): i for i, u in enumerate(hist.users)}
        if len(rows) != len(hist):
            raise SeqbenchError("pinned user representations need one history per user; "
                                f"{len(hist) - len(rows)} user id(s) repeat")
        return cls(rows, o_u, histories_key(hist))

    def lookup(self, users: np.ndarray, model: str) -> torch.Tensor:
        idx = [self.rows.get(int(u), -1) for u in users]
        if -1 in idx:
            missing = [int(u) for u, i in zip(users, idx, strict=True) if i < 0]
            raise SeqbenchError(f"{model}: no pinned user representation for user id(s) {missing[:5]}")
        return self.o_u[torch.as_tensor(idx, dtype=torch.long)]


class LLMVectors:
    """Evaluation-time vectors of an ``LLMRecommender`` (see the module doc): f_item(h_I), f_user(h_U), h_U,
    scores and validation metrics, each LLM pass cached until the trainable weights change."""

    def __init__(self) -> None:
        self._version = 0  # bumped whenever trainable weights change; keys the item-vector cache
        self._item_cache: tuple[tuple[int, int], torch.Tensor, torch.Tensor] | None = None
        self._user_cache: dict[tuple, torch.Tensor] = {}  # h_U per (history content, weights version, pin)
        self._pin: PinnedUserRep | None = None  # O_u from other histories, inside ``pinned_user_rep``

    def weights_updated(self) -> None:
        """Call after changing trainable weights (an optimizer step, a loaded state): the caches are stale."""
        self._version += 1

    @contextlib.contextmanager
    def pinned_user_rep(self, hist: Histories) -> Iterator[None]:
        """Inside the block, [UserRep] = f_U(O_u) takes O_u from ``hist``'s row of the same user, whatever
        history is scored. A rearrangement probe then reaches the model only through its history tokens: it
        separates the LLM reading the order from SASRec's O_u carrying it (CoLLM, A-LLMRec)."""
        if not self.user_rep:
            raise SeqbenchError(f"{self.name}'s prompt has no [UserRep] token: no CF user representation to pin")
        self._pin = PinnedUserRep.of(hist, self.teacher_user(hist))
        try:
            yield
        finally:
            self._pin = None

    def pinned_o_u(self, hist: Histories) -> torch.Tensor | None:
        """Inside ``pinned_user_rep``: the pinned O_u of ``hist``'s users (in its row order); else None."""
        return None if self._pin is None else self._pin.lookup(hist.users, self.name)

    def _weights_version(self) -> tuple[int, int]:
        """Changes whenever a trainable tensor changes: our own counter plus torch's in-place version counters
        (an optimizer step or ``load_state_dict`` outside ``fit`` invalidates the item cache too)."""
        return self._version, sum(p._version for p in self.trainable_parameters())

    @torch.no_grad()
    def item_vectors(self, items: np.ndarray) -> torch.Tensor:
        """f_item(h_I) for the given ids, from a cache valid until the weights change: computed once per
        evaluation round for every item any candidate set needs, in large no-grad batches."""
        self.require_ready()
        items = np.asarray(items, dtype=np.int64)
        version = self._weights_version()
        if self._item_cache is None or self._item_cache[0] != version:
            self._item_cache = (version, torch.zeros(self.n_items + 1, self.config.d_proj, device=self.device),
                                torch.zeros(self.n_items + 1, dtype=torch.bool, device=self.device))
        _, table, have = self._item_cache
        need = np.unique(items)
        need = need[~have[torch.from_numpy(need).to(self.device)].cpu().numpy()]
        if len(need):
            self.set_training(False)
            task = self.progress.add_task(f"{self.name} items", total=len(need)) if self.progress else None
            h = self.item_states(need, self.config.item_batch_size, self.config.max_batch_tokens, task)
            idx = torch.from_numpy(need).to(self.device)
            table[idx] = self.heads.f_item(h)
            have[idx] = True
            if task is not None:
                self.progress.remove_task(task)
        return table[torch.from_numpy(items).to(self.device)]

    @torch.no_grad()
    def _user_vectors(self, hist: Histories, raw: bool = False) -> torch.Tensor:
        """f_user(h_U) (or h_U with ``raw``) per history row. The LLM pass is the cost, so h_U is kept for the
        last few distinct histories while the weights stay the same: a probe that scores a history and then
        asks for its representation (cosine: f_user and raw, original and shuffled) pays one pass per history."""
        self.require_ready(retrieval=True)
        content = histories_key(hist)
        pin = self._pin.key if self._pin is not None and self._pin.key != content else None  # own O_u: no pin
        key = (content, self._weights_version(), pin)
        h = self._user_cache.get(key)
        if h is None:
            h = self.user_states_all(hist)
            self._user_cache = {k: v for k, v in self._user_cache.items() if k[1] == key[1]}
            while len(self._user_cache) >= USER_CACHE_SIZE:
                self._user_cache.pop(next(iter(self._user_cache)))
            self._user_cache[key] = h
        if raw:
            return h
        self.set_training(False)
        if not len(h):
            return torch.zeros(0, self.config.d_proj, device=self.device)
        return torch.cat([self.heads.f_user(h[b:b + CHUNK_ROWS]) for b in range(0, len(h), CHUNK_ROWS)])

    def user_states_all(self, hist: Histories) -> torch.Tensor:
        """h_U for every row of ``hist`` (eval mode, no grad), in chunks that bound the memory held at once."""
        self.set_training(False)
        prompts = self.builder.users(hist)
        o_u = self.teacher_user(hist) if self.user_rep else None
        task = self.progress.add_task(f"{self.name} users", total=len(hist)) if self.progress else None
        out = []
        for b in range(0, len(hist), CHUNK_ROWS):
            rows = np.arange(b, min(b + CHUNK_ROWS, len(hist)))
            sub = UserPrompts([prompts.ids[i] for i in rows], prompts.shown.take(rows))
            o_sub = None if o_u is None else o_u[b:b + CHUNK_ROWS]
            out.append(self.user_states(sub, o_sub, self.config.user_batch_size, self.config.max_batch_tokens, task))
        if task is not None:
            self.progress.remove_task(task)
        return torch.cat(out) if out else torch.zeros(0, int(self.embed.weight.shape[1]), device=self.device)

    def score(self, hist: Histories, candidates: np.ndarray) -> np.ndarray:
        """<f_item(h_I), f_user(h_U)> for each candidate (raw dot product), target in column 0."""
        cands = np.asarray(candidates, dtype=np.int64)
        if len(cands) != len(hist):
            raise ValueError(f"{len(hist)} histories but {len(cands)} candidate rows")
        self.item_vectors(np.unique(cands))  # one pass for the union of every candidate set
        items = self.item_vectors(cands.reshape(-1)).view(*cands.shape, -1)
        users = self._user_vectors(hist)
        return torch.einsum("bd,bcd->bc", users, items).float().cpu().numpy()

    def score_all(self, hist: Histories, rows: np.ndarray | None = None) -> np.ndarray:
        """<f_item(h_I), f_user(h_U)> for every item (full ranking; column 0 is padding) for ``rows`` of ``hist``:
        each item's prompt and each history pass the LLM once per weight state (the item and user caches, keyed
        by the whole ``hist``, so the evaluator's chunks and a later cosine reuse them), then one matmul."""
        items = self.item_vectors(np.arange(1, self.n_items + 1))
        users = self._user_vectors(hist)
        users = users if rows is None else users[torch.from_numpy(np.asarray(rows, dtype=np.int64)).to(users.device)]
        scores = (users @ items.T).float().cpu().numpy()
        return np.concatenate([np.zeros((len(scores), 1), dtype=scores.dtype), scores], axis=1)

    def user_representation(self, hist: Histories) -> np.ndarray:
        """f_user(h_U): the scoring vector (the cosine probe's default)."""
        return self._user_vectors(hist).float().cpu().numpy()

    def raw_user_representation(self, hist: Histories) -> np.ndarray:
        """h_U, the LLM's [UserOut] state before f_user (the cosine probe reports it too)."""
        return self._user_vectors(hist, raw=True).float().cpu().numpy()

    def validate(self, hist: Histories, cands: np.ndarray) -> dict[str, float]:
        if self.generation:
            out = self.evaluate_generation(hist, cands)
            return {"hr@1": float(np.mean(out["hr@1"])), "invalid": float(np.mean(out["invalid"]))}
        ranks = ranks_from_scores(self.score(hist, cands))
        return {k: float(np.mean(v)) for k, v in metrics_from_ranks(ranks).items()}

    def evaluate_generation(self, hist: Histories, candidates: np.ndarray) -> dict:
        """Generation task: decode a title per user from the 20 listed candidates (target first in
        ``candidates``); per-user ``hr@1`` / ``invalid`` plus the outputs (``models/llm/generation.py``)."""
        self.require_ready()
        if not self.generation:
            raise SeqbenchError(f"{self.name} was trained for retrieval; train it with --task generation")
        return evaluate_generation(self, hist, candidates)
