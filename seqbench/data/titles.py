"""Item titles as the prompts show them and as title matching compares them
(docs/protocols.md#persisted-candidates-and-metrics).

The data layer draws title-generation candidates whose normalised titles all differ (:func:`title_keys`,
``seqbench.data.negatives``); the LLM prompts show :func:`clean_title`; ``seqbench.eval.generation`` matches a
generated text with :func:`normalise`. No torch here, so the data layer can use it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

import numpy as np

_NON_ALNUM = re.compile(r"[\W_]+", re.UNICODE)
EMPTY_TITLE = "Empty title"
# The LLM prompts' soft-token strings (seqbench.llm.backbone.SOFT_TOKENS, kept equal by a test): a title never
# carries one into a prompt. Spelled out here so that the data layer needs no torch.
SOFT_TOKEN_STRINGS = ("[UserRep]", "[HistoryEmb]", "[UserOut]", "[ItemOut]")


def clean_title(title: str | None) -> str:
    """A title as the prompts show it: 'Empty title' when missing; literal soft-token strings removed so a
    title can never inject one."""
    title = "" if title is None else str(title)
    for tok in SOFT_TOKEN_STRINGS:
        title = title.replace(tok, "")
    return title if title.strip() else EMPTY_TITLE


def normalise(text: str) -> str:
    return _NON_ALNUM.sub(" ", unicodedata.normalize("NFKC", str(text)).casefold()).strip()


def title_key(title: str | None) -> str:
    """What matching compares for an item: its normalised prompt title."""
    return normalise(clean_title(title))


def title_keys(titles: Sequence[str | None]) -> np.ndarray:
    """One integer per title, equal exactly when the normalised prompt titles are equal (ids in sorted order of
    the normalised strings, so the ids depend only on the set of titles)."""
    keys = [title_key(t) for t in titles]
    if not keys:
        return np.zeros(0, dtype=np.int64)
    _, inv = np.unique(np.asarray(keys, dtype=object).astype(str), return_inverse=True)
    return inv.astype(np.int64).reshape(-1)
