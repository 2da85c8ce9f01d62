"""RECFORMER's input layout (docs/models/recformer.md): an item is a key-value sentence, a history is one flat token
sequence ``<s> item_1 item_2 ... item_n`` with the **most recent item first**, and every token carries four ids.

* input id: ``<s>`` (the tokenizer's CLS, else its BOS), then per item the key tokens and the value tokens;
* token type: 0 ``<s>``, 1 key, 2 value, 3 pad;
* item position: 0 for ``<s>`` (and pads), k for every token of the k-th most recent item;
* token position: 0..L-1 along the flattened sequence.

Kept apart from the model so the layout can be tested (golden ids) and reused without an encoder. A probe that
permutes a history (``Histories.with_items``) moves item sentences between slots; the item-position and
token-type streams depend only on the slot lengths, so they stay in place where the moved sentences have the
same lengths (and always keep their per-slot pattern: item position k marks the k-th slot).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

TYPE_BOS, TYPE_KEY, TYPE_VALUE, TYPE_PAD = 0, 1, 2, 3
N_TOKEN_TYPES = 4


@dataclass(frozen=True)
class ItemSentences:
    """Every item's sentence, ragged: item i's token ids are ``ids[offsets[i]:offsets[i+1]]`` (row 0, the
    padding item, is empty), ``types`` the matching token types (1 key, 2 value)."""

    ids: np.ndarray
    types: np.ndarray
    offsets: np.ndarray

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def sentence(self, item: int) -> tuple[np.ndarray, np.ndarray]:
        s, e = self.offsets[item], self.offsets[item + 1]
        return self.ids[s:e], self.types[s:e]


def item_sentences(titles: Sequence[str], tok, max_item_tokens: int, key: str = "title") -> ItemSentences:
    """Tokenise ``key`` + each title (``titles[0]`` is the padding item) without special tokens; cut each
    sentence to ``max_item_tokens`` (key included), as the original cuts each attribute."""
    key_ids = list(tok(key, add_special_tokens=False)["input_ids"])
    values = tok([str(t) for t in titles[1:]], add_special_tokens=False)["input_ids"] if len(titles) > 1 else []
    ids: list[int] = []
    types: list[int] = []
    offsets = [0, 0]
    for val in values:
        row = (key_ids + list(val))[:max_item_tokens]
        ids.extend(row)
        types.extend(([TYPE_KEY] * len(key_ids) + [TYPE_VALUE] * len(val))[:max_item_tokens])
        offsets.append(len(ids))
    return ItemSentences(np.asarray(ids, dtype=np.int64), np.asarray(types, dtype=np.int64),
                         np.asarray(offsets, dtype=np.int64))


@dataclass
class Layout:
    """A right-padded batch of flattened sequences, (B, L) each; ``mask`` is 1 on real tokens."""

    input_ids: torch.Tensor
    token_type: torch.Tensor
    item_pos: torch.Tensor
    token_pos: torch.Tensor
    mask: torch.Tensor

    def to(self, device: torch.device) -> Layout:
        return Layout(*(t.to(device) for t in (self.input_ids, self.token_type, self.item_pos, self.token_pos,
                                               self.mask)))


def layout(rows: Sequence[np.ndarray], sent: ItemSentences, bos: int, pad: int) -> Layout:
    """Flatten each row (a user's consumed items, **oldest first**, as histories store them) into
    ``<s>`` + its item sentences newest first; pads get type 3 and item position 0. Vectorised over all rows'
    tokens at once: it runs on every training step and on every item re-encoding."""
    b = len(rows)
    n_items = np.fromiter((len(r) for r in rows), dtype=np.int64, count=b)
    items = np.concatenate([np.asarray(r, dtype=np.int64)[::-1] for r in rows]) if b else np.zeros(0, np.int64)
    lens = sent.lengths[items]  # tokens per item slot, slots in row order, newest item first
    row_of_slot = np.repeat(np.arange(b), n_items)
    slot_in_row = np.arange(len(items)) - np.repeat(np.cumsum(n_items) - n_items, n_items)
    row_tokens = np.bincount(row_of_slot, weights=lens, minlength=b).astype(np.int64) + 1  # + <s>
    width = int(row_tokens.max()) if b else 1
    # every item token: its source in the flat sentence arrays, its row and its column (after <s>)
    tok_row = np.repeat(row_of_slot, lens)
    slot_start = np.cumsum(lens) - lens
    within = np.arange(int(lens.sum())) - np.repeat(slot_start, lens)
    row_start = np.repeat(np.cumsum(row_tokens - 1) - (row_tokens - 1), row_tokens - 1)  # first item token of row
    col = 1 + np.arange(len(tok_row)) - row_start
    src = np.repeat(sent.offsets[items], lens) + within
    ids = np.full((b, width), pad, dtype=np.int64)
    types = np.full((b, width), TYPE_PAD, dtype=np.int64)
    ipos = np.zeros((b, width), dtype=np.int64)
    mask = np.zeros((b, width), dtype=np.int64)
    ids[:, 0], types[:, 0], mask[:, 0] = bos, TYPE_BOS, 1
    ids[tok_row, col], types[tok_row, col] = sent.ids[src], sent.types[src]
    ipos[tok_row, col], mask[tok_row, col] = np.repeat(slot_in_row + 1, lens), 1
    tpos = np.broadcast_to(np.arange(width, dtype=np.int64), (b, width)).copy()
    return Layout(*(torch.from_numpy(a) for a in (ids, types, ipos, tpos, mask)))
