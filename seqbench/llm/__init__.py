"""LLM backbone and prompt building shared by every LLM-based recommender (docs/models.md#llm-backbone-and-llm-srec)."""

from .backbone import DEFAULT_LLM, SOFT_TOKENS, TINY_LLM, TokenIds, cache_root, decoder_of, load_llm

__all__ = ["DEFAULT_LLM", "SOFT_TOKENS", "TINY_LLM", "TokenIds", "cache_root", "decoder_of", "load_llm"]
