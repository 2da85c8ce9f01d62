"""RECFORMER's input layout (spec MODELS.md §4.2): an item is a key-value sentence, a history is one flat token
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
    ``<s>`` + its item sentences newest first; pads get type 3 and item position 0."""
    seqs = []
    for row in rows:
        rev = np.asarray(row, dtype=np.int64)[::-1]
        lens = sent.lengths[rev]
        parts_ids = [np.asarray([bos], dtype=np.int64)] + [sent.sentence(int(i))[0] for i in rev]
        parts_types = [np.asarray([TYPE_BOS], dtype=np.int64)] + [sent.sentence(int(i))[1] for i in rev]
        item_pos = np.concatenate([[0], np.repeat(np.arange(1, len(rev) + 1), lens)]).astype(np.int64)
        seqs.append((np.concatenate(parts_ids), np.concatenate(parts_types), item_pos))
    width = max((len(s[0]) for s in seqs), default=1)
    b = len(seqs)
    ids = np.full((b, width), pad, dtype=np.int64)
    types = np.full((b, width), TYPE_PAD, dtype=np.int64)
    ipos = np.zeros((b, width), dtype=np.int64)
    mask = np.zeros((b, width), dtype=np.int64)
    for r, (i, t, p) in enumerate(seqs):
        n = len(i)
        ids[r, :n], types[r, :n], ipos[r, :n], mask[r, :n] = i, t, p, 1
    tpos = np.broadcast_to(np.arange(width, dtype=np.int64), (b, width)).copy()
    return Layout(*(torch.from_numpy(a) for a in (ids, types, ipos, tpos, mask)))
