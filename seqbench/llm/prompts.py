"""The paper's prompts as token ids, built fast and exactly (docs/models.md#llm-backbone-and-llm-srec).

* Text: the official strings, verbatim (``USER_*`` / ``ITEM_PROMPT`` / ``HISTORY_LINE``); the last ``window``
  (10) items; "Item No.k" and "Time" come from *positions* (``Histories.times``), titles and [HistoryEmb] from
  ``Histories.items``, so a shuffled history keeps "Item No."/"Time" in place while titles move
  (docs/probes.md#options-windows-and-what-was-measured).
* Tokens: a prompt is text pieces separated by special tokens. HF tokenizers split added tokens out *before*
  normalising/pre-tokenising, so each piece is tokenised independently; a piece tokenised right after a
  special token (``[HistoryEmb]`` + piece, that id then dropped) gets exactly the ids it has inside the whole
  prompt. Each distinct piece is tokenised once and cached, so titles repeated across users, epochs and
  evaluation rounds cost nothing; tests check equality with tokenising the whole string.
* Batches: right padding, attention mask always returned (the official code passes none); rows grouped by
  length (:func:`plan_groups`) so that padding stays a small share of the tokens.
* Soft tokens: positions found with ``input_ids == token_id`` and their embeddings replaced by index (no
  per-token Python loop); the [UserOut]/[ItemOut] state is read from the final-norm output.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from seqbench.data.histories import Histories
from seqbench.data.titles import clean_title

from .backbone import SOFT_TOKENS, TokenIds

PROMPT_WINDOW = 10  # the last 10 items are shown
MAX_PROMPT_TOKENS = 1024  # longer prompts drop their oldest history lines

# Exact strings from the official code (docs/models.md#llm-backbone-and-llm-srec).
USER_PREFIX = "This user has made a series of purchases in the following order: "
USER_SUFFIX = ". Based on this sequence of purchases, generate user representation token:[UserOut]"
# App. E.1 variant: CoLLM's prompt with [UserRep] (docs/models/llm4rec.md).
USER_PREFIX_REP = ("This is user representation from recommendation models:[UserRep], and this user has made a "
                   "series of purchases in the following order: ")
USER_SUFFIX_REP = (". Based on this sequence of purchases and user representation, generate user representation "
                   "token:[UserOut]")
HISTORY_LINE = 'Item No.{k}, Time: {date}, "{title}"[HistoryEmb]'
HISTORY_SEP = ","
ITEM_PROMPT = ('The item title and item embedding are as follows: "{title}"[HistoryEmb], then generate item '
               "representation token:[ItemOut]")
# TALLRec's text-only strings (docs/models/llm4rec.md): no [HistoryEmb] anywhere.
TEXT_HISTORY_LINE = 'Item No.{k}, Time: {date}, "{title}"'
TEXT_ITEM_PROMPT = 'The item title is as follows: "{title}", then generate item representation token:[ItemOut]'


@dataclass(frozen=True)
class PromptTemplate:
    """The strings one LLM recommender's prompts are made of; ``{k}``, ``{date}``, ``{title}`` are filled in."""

    user_prefix: str
    user_suffix: str
    history_line: str
    item: str


LLMSREC_PROMPT = PromptTemplate(USER_PREFIX, USER_SUFFIX, HISTORY_LINE, ITEM_PROMPT)  # LLM-SRec, LLaRA
USER_REP_PROMPT = PromptTemplate(USER_PREFIX_REP, USER_SUFFIX_REP, HISTORY_LINE, ITEM_PROMPT)  # CoLLM, A-LLMRec
TEXT_PROMPT = PromptTemplate(USER_PREFIX, USER_SUFFIX, TEXT_HISTORY_LINE, TEXT_ITEM_PROMPT)  # TALLRec


def format_dates(ms: np.ndarray) -> np.ndarray:
    """Millisecond timestamps -> 'YYYY-MM-DD' strings in UTC (docs/models.md#llm-backbone-and-llm-srec), vectorised."""
    return np.datetime_as_string(np.asarray(ms, dtype=np.int64).astype("datetime64[ms]"), unit="D")


def user_prompt_text(titles: Sequence[str], times_ms: Sequence[int], user_rep: bool = False,
                     template: PromptTemplate | None = None) -> str:
    """The whole user prompt for one history (already cut to the shown window), oldest first."""
    t = template or (USER_REP_PROMPT if user_rep else LLMSREC_PROMPT)
    dates = format_dates(np.asarray(times_ms, dtype=np.int64)) if len(times_ms) else []
    lines = HISTORY_SEP.join(t.history_line.format(k=k + 1, date=d, title=clean_title(x))
                             for k, (x, d) in enumerate(zip(titles, dates, strict=True)))
    return t.user_prefix + lines + t.user_suffix


def item_prompt_text(title: str, template: PromptTemplate | None = None) -> str:
    return (template or LLMSREC_PROMPT).item.format(title=clean_title(title))


def last_k(hist: Histories, k: np.ndarray) -> Histories:
    """Keep the last ``k[b]`` items of row b (per-row window), vectorised like ``Histories.tail``."""
    keep = np.minimum(hist.lengths, np.asarray(k, dtype=np.int64))
    new_off = np.concatenate([[0], np.cumsum(keep)]).astype(np.int64)
    within = np.arange(new_off[-1]) - np.repeat(new_off[:-1], keep)
    src = np.repeat(hist.offsets[1:] - keep, keep) + within
    return Histories(hist.users, hist.items[src], hist.times[src], new_off)


@dataclass
class UserPrompts:
    """Token ids of a batch of user prompts and the history actually shown (the items whose [HistoryEmb]
    slots appear, in order)."""

    ids: list[np.ndarray]
    shown: Histories

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(x) for x in self.ids), dtype=np.int64, count=len(self.ids))


class PromptBuilder:
    """Token ids for user and item prompts, with every distinct text piece tokenised once."""

    def __init__(self, tokenizer, titles: Sequence[str], ids: TokenIds, window: int = PROMPT_WINDOW,
                 user_rep: bool = False, max_tokens: int = MAX_PROMPT_TOKENS, cache_limit: int = 2_000_000,
                 template: PromptTemplate | None = None):
        self.tok = tokenizer
        self.titles = [clean_title(t) for t in titles]
        self.ids = ids
        self.window = window
        self.template = template or (USER_REP_PROMPT if user_rep else LLMSREC_PROMPT)
        self.max_tokens = max_tokens
        self.cache_limit = cache_limit
        self._pieces: dict[tuple[str, bool], np.ndarray] = {}
        self._items: dict[int, np.ndarray] = {}
        probe = "a b"
        full = list(tokenizer(probe).input_ids)
        plain = list(tokenizer(probe, add_special_tokens=False).input_ids)
        at = next(i for i in range(len(full) - len(plain) + 1) if full[i:i + len(plain)] == plain)
        self._pre = np.asarray(full[:at], dtype=np.int64)  # e.g. BOS, if the tokenizer adds one
        self._post = np.asarray(full[at + len(plain):], dtype=np.int64)
        self._anchor = SOFT_TOKENS[1]  # any added token works as a left context
        self._anchor_id = tokenizer.convert_tokens_to_ids(self._anchor)

    # -- tokenising pieces ----------------------------------------------------------------------------
    def _encode_pieces(self, pieces: list[tuple[str, bool]]) -> None:
        """Fill the cache for ``(text, at_start)`` pieces, one batched tokenizer call per kind."""
        if len(self._pieces) > self.cache_limit:
            self._pieces.clear()
        todo = list(dict.fromkeys(p for p in pieces if p not in self._pieces))
        if not todo:
            return
        first = [t for t, s in todo if s]
        rest = [t for t, s in todo if not s]
        if first:
            for t, ids in zip(first, self.tok(first, add_special_tokens=False).input_ids, strict=True):
                self._pieces[(t, True)] = np.asarray(ids, dtype=np.int64)
        if rest:
            enc = self.tok([self._anchor + t for t in rest], add_special_tokens=False).input_ids
            for t, ids in zip(rest, enc, strict=True):
                if not ids or ids[0] != self._anchor_id:
                    raise RuntimeError(f"tokenizer does not split added tokens out of text: {t!r}")
                self._pieces[(t, False)] = np.asarray(ids[1:], dtype=np.int64)

    def _split(self, text: str) -> tuple[list[tuple[str, bool]], list[int]]:
        """Text -> pieces between special tokens (flagged when at the very start) and the special ids."""
        pieces: list[tuple[str, bool]] = []
        specials: list[int] = []
        rest, start = text, True
        while True:
            hits = [(rest.find(t), t) for t in SOFT_TOKENS if t in rest]
            if not hits:
                pieces.append((rest, start))
                return pieces, specials
            at, tok = min(hits)
            pieces.append((rest[:at], start))
            specials.append(self.tok.convert_tokens_to_ids(tok))
            rest, start = rest[at + len(tok):], False

    def piece(self, text: str) -> np.ndarray:
        """Token ids of ``text`` as it tokenises inside a prompt (after a special token or a pre-token
        boundary), cached: e.g. a generation answer after the prompt's final colon."""
        self._encode_pieces([(text, False)])
        return self._pieces[(text, False)]

    def assemble(self, texts: list[str]) -> list[np.ndarray]:
        """Token ids of whole prompt strings (special tokens split out, pieces cached)."""
        return self._assemble(texts)

    def _assemble(self, texts: list[str]) -> list[np.ndarray]:
        split = [self._split(t) for t in texts]
        self._encode_pieces([p for pieces, _ in split for p in pieces if p[0]])
        empty = np.zeros(0, dtype=np.int64)
        out = []
        for pieces, specials in split:
            parts = [self._pre]
            for i, p in enumerate(pieces):
                parts.append(self._pieces[p] if p[0] else empty)
                if i < len(specials):
                    parts.append(np.asarray([specials[i]], dtype=np.int64))
            parts.append(self._post)
            out.append(np.concatenate(parts))
        return out

    # -- prompts --------------------------------------------------------------------------------------
    def user_texts(self, hist: Histories) -> list[str]:
        """Prompt strings for ``hist`` cut to the last ``window`` items (kept for tests and debugging)."""
        shown = hist.tail(self.window)
        return self._texts(shown)

    def _texts(self, shown: Histories) -> list[str]:
        return [head + self.template.user_suffix for head in self.history_texts(shown)]

    def history_texts(self, shown: Histories) -> list[str]:
        """The user prompt up to the end of the history lines (no suffix) for already-cut histories."""
        dates = format_dates(shown.times)
        titles, t = self.titles, self.template
        lines = [t.history_line.format(k=k, date=d, title=titles[i])
                 for k, d, i in zip(_position_in_row(shown.offsets) + 1, dates, shown.items.tolist(), strict=True)]
        off = shown.offsets
        return [t.user_prefix + HISTORY_SEP.join(lines[off[b]:off[b + 1]]) for b in range(len(shown))]

    def users(self, hist: Histories) -> UserPrompts:
        """Token ids of every row's prompt. Prompts over ``max_tokens`` drop their oldest lines until they fit
        (rare: only very long titles), renumbering "Item No." from the oldest line shown."""
        k = np.minimum(hist.lengths, self.window)
        shown = last_k(hist, k)
        ids = self._assemble(self._texts(shown))
        lens = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
        while (lens > self.max_tokens).any():
            over = np.flatnonzero(lens > self.max_tokens)
            if (k[over] == 0).any():
                raise ValueError("a prompt without history exceeds max_tokens")
            k[over] -= 1
            shown = last_k(hist, k)
            sub = shown.take(over)
            for b, x in zip(over, self._assemble(self._texts(sub)), strict=True):
                ids[b] = x
                lens[b] = len(x)
        return UserPrompts(ids, shown)

    def items(self, items: np.ndarray) -> list[np.ndarray]:
        """Token ids of the item prompt of each id (cached per item: the same for every round)."""
        items = np.asarray(items, dtype=np.int64)
        todo = [int(i) for i in np.unique(items) if int(i) not in self._items]
        if todo:
            for i, x in zip(todo, self._assemble([self.template.item.format(title=self.titles[i]) for i in todo]),
                            strict=True):
                self._items[i] = x
        return [self._items[int(i)] for i in items]


def _position_in_row(offsets: np.ndarray) -> np.ndarray:
    lens = np.diff(offsets)
    return np.arange(offsets[-1]) - np.repeat(offsets[:-1], lens)


# -- batching ------------------------------------------------------------------------------------------
def collate(seqs: Sequence[np.ndarray], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded (B, L) input ids and attention mask (1 = real token), built without per-token loops."""
    lens = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    width = int(lens.max(initial=1))
    ids = np.full((len(seqs), width), pad_id, dtype=np.int64)
    rows = np.repeat(np.arange(len(seqs)), lens)
    cols = np.arange(lens.sum()) - np.repeat(np.concatenate([[0], np.cumsum(lens)[:-1]]), lens)
    ids[rows, cols] = np.concatenate(seqs) if len(seqs) else np.zeros(0, dtype=np.int64)
    mask = np.zeros_like(ids)
    mask[rows, cols] = 1
    return torch.from_numpy(ids), torch.from_numpy(mask)


CPU_GROUP_OVERHEAD = 48  # an extra forward on a CPU costs about as much as this many padded tokens
ACCELERATOR_GROUP_OVERHEAD = 10**9  # on a GPU a forward costs its kernel launches: never split to save padding


def group_overhead(setting: int | None, device: torch.device) -> int:
    """``plan_groups``'s per-forward cost: the setting, or by device. On an H200 splitting a training batch
    into length groups (4.7 forwards a step at batch 4, 8.3 at 20) made steps 1.2-4.1x slower than one forward
    per prompt kind: the GPU waits while the host launches kernels (``benchmarks/results/gpu_step_profile.json``,
    run ``variants=grid``)."""
    if setting is not None:
        return setting
    return CPU_GROUP_OVERHEAD if device.type == "cpu" else ACCELERATOR_GROUP_OVERHEAD


def plan_groups(lengths: np.ndarray, max_rows: int, max_tokens: int | None = None,
                overhead: int = 48) -> list[np.ndarray]:
    """Split rows into forward passes of similar length: sort by length, then cut the sorted order where
    it minimises padded tokens + ``overhead`` per pass (exact dynamic programme for small sets, e.g. one
    training batch; greedy fill for large sets, where sorting alone leaves little padding). Each group holds
    at most ``max_rows`` rows and ``max_tokens`` padded tokens (a single longer row still forms a group)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    n = len(lengths)
    if n == 0:
        return []
    order = np.argsort(lengths, kind="stable")
    s = lengths[order]
    cap = max_tokens or np.iinfo(np.int64).max

    def fits(i: int, j: int) -> bool:  # rows i..j-1 of the sorted order
        return j - i <= max_rows and ((j - i) * s[j - 1] <= cap or j - i == 1)

    if n <= 512:
        best = np.full(n + 1, np.inf)
        cut = np.zeros(n + 1, dtype=np.int64)
        best[0] = 0.0
        for j in range(1, n + 1):
            for i in range(j - 1, max(-1, j - max_rows - 1), -1):
                if not fits(i, j):
                    break
                c = best[i] + (j - i) * s[j - 1] + overhead
                if c < best[j]:
                    best[j], cut[j] = c, i
        bounds, j = [], n
        while j > 0:
            bounds.append((cut[j], j))
            j = cut[j]
        return [order[i:j] for i, j in reversed(bounds)]
    groups, i = [], 0
    while i < n:
        j = i + 1
        while j < n and fits(i, j + 1):
            j += 1
        groups.append(order[i:j])
        i = j
    return groups


def padding_share(lengths: np.ndarray, groups: list[np.ndarray]) -> float:
    """Share of computed tokens that are padding for the given grouping."""
    lengths = np.asarray(lengths, dtype=np.int64)
    padded = sum(len(g) * int(lengths[g].max()) for g in groups)
    return 1.0 - float(lengths.sum()) / max(padded, 1)


def inject(embeds: torch.Tensor, input_ids: torch.Tensor, token_id: int, values: torch.Tensor) -> torch.Tensor:
    """Replace the embeddings at every ``token_id`` position (row-major order) by ``values`` ((n, d), or (d,) to
    broadcast); out of place, so gradients reach ``values``."""
    where = (input_ids == token_id).nonzero(as_tuple=True)
    n = len(where[0])
    if values.dim() == 1:
        values = values.expand(n, -1)
    if values.shape[0] != n:
        raise ValueError(f"{n} positions of token {token_id} but {values.shape[0]} vectors to inject")
    return embeds.index_put(where, values.to(embeds.dtype))


def read_at(hidden: torch.Tensor, input_ids: torch.Tensor, token_id: int) -> torch.Tensor:
    """(B, d) hidden states at the single ``token_id`` position of each row."""
    rows, cols = (input_ids == token_id).nonzero(as_tuple=True)
    if len(rows) != len(input_ids) or not torch.equal(rows, torch.arange(len(input_ids), device=rows.device)):
        raise ValueError(f"every row needs exactly one token {token_id}")
    return hidden[rows, cols]
