"""Where an LLM recommender's training step spends its time on an accelerator (the open question of the
docs/gpu.md: on an H200 the 3B model trained about as fast as the 135M one, so something other than
arithmetic set the pace).

Builds the random-weight LLM of ``--size`` (``gpu_check``'s builder, no download) and a synthetic dataset,
then for each model and batch size times training steps (the fit loop's code path: ``batch_loss``, backward,
Adam) under each variant of ``--variants``. ``defaults``: the CPU's settings (length groups with a 48-token
overhead, deterministic kernels, any SDPA kernel: what every device ran before the first profile); one forward
per prompt kind without deterministic mode; the same without cuDNN's attention kernels (seqbench's accelerator
defaults since). ``grid``: the first profile's 2 x 2 of grouping and deterministic mode. Each variant reports
seconds per step, LLM forwards per step and padded / useful tokens; one profiled step of the accelerator
defaults (``grid``: of the CPU's) gives the operators with the most self time (device and host). Stores the run
in ``benchmarks/results/gpu_step_profile.json`` after every variant (the envelope of ``seqbench.benchinfo``;
options that differ from the defaults are the run's ``variant``); each result's ``variants`` block states its
settings.

Usage on a CUDA machine (a few minutes): ``python scripts/gpu_step_profile.py --size 135m --device cuda
--tokenizer DIR``; CPU smoke (the test suite): ``--size tiny --device cpu --dtype fp32 --steps 1``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn.attention import SDPBackend

from seqbench.benchinfo import begin, device_name, record, result_file, variant_of
from seqbench.llm.prompts import ACCELERATOR_GROUP_OVERHEAD, CPU_GROUP_OVERHEAD

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_llm import Counter  # noqa: E402  (sibling scripts: the same token counter,
from gpu_check import build_folder, sync, synthetic_data  # noqa: E402  same builder, same random LLM)

# name: (group_overhead, deterministic kernels, cuDNN attention allowed)
VARIANT_SETS = {
    "defaults": {
        "cpu_defaults": (CPU_GROUP_OVERHEAD, True, True),  # what every device ran before the first profile
        "one_group_nondeterministic": (ACCELERATOR_GROUP_OVERHEAD, False, True),
        # seqbench's accelerator defaults
        "one_group_nondeterministic_no_cudnn": (ACCELERATOR_GROUP_OVERHEAD, False, False),
    },
    "grid": {  # the first profile's 2 x 2 (its report calls cpu_defaults "default")
        "cpu_defaults": (CPU_GROUP_OVERHEAD, True, True),
        "one_group": (ACCELERATOR_GROUP_OVERHEAD, True, True),
        "nondeterministic": (CPU_GROUP_OVERHEAD, False, True),
        "one_group_nondeterministic": (ACCELERATOR_GROUP_OVERHEAD, False, True),
    },
}
ACCELERATOR_DEFAULTS = "one_group_nondeterministic_no_cudnn"
ALL_SDPA = [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


def make_model(name: str, data, llm: Path, device: torch.device, dtype: str, batch: int, overhead: int):
    from seqbench.context import RunContext
    from seqbench.models import create_model, get_spec

    settings = {"llm": str(llm), "dtype": dtype, "device": device.type, "batch_size": batch,
                "autoregressive": True, "in_batch_negatives": True, "group_overhead": overhead}
    fields = get_spec(name).load_class().config_cls.__dataclass_fields__
    if "teacher_epochs" in fields:
        settings.update(teacher_epochs=1, teacher_cache=False)
    if "text_encoder" in fields:
        settings.update(text_encoder="tiny-random", stage1_epochs=1)
    model = create_model(name, data.n_items, settings)
    model.setup(data, data.histories("train"), RunContext(seed=0, device=device))
    return model


def time_steps(model, data, steps: int, device: torch.device, profile: bool = False) -> dict:
    """``steps`` timed training steps after two warm-ups; with ``profile`` one more step under torch.profiler."""
    from seqbench.models.llm.data import TEACHER_MAXLEN, training_examples

    cfg = model.config
    hist, targets = training_examples(data.histories("train"), cfg.autoregressive)
    hist = hist.tail(TEACHER_MAXLEN)
    o_all = model.teacher_user(hist) if model.teacher is not None else None
    rng = np.random.default_rng(0)
    order = rng.permutation(len(targets))
    opt = torch.optim.Adam(model.trainable_parameters(), lr=cfg.lr, betas=(0.9, cfg.beta2))
    counter = Counter(model)
    model.set_training(True)

    def step(s: int) -> None:
        rows = order[(s * cfg.batch_size) % len(order):][:cfg.batch_size]
        o_u = o_all[torch.from_numpy(rows).to(o_all.device)] if o_all is not None else None
        loss, _ = model.batch_loss(hist.take(rows), targets[rows], o_u, rng)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for s in range(2):
        step(s)
    sync(device)
    counter.take()
    t = time.perf_counter()
    for s in range(2, 2 + steps):
        step(s)
    sync(device)
    real, padded, forwards = counter.take()
    out = {"step_seconds": (time.perf_counter() - t) / steps, "forwards_per_step": forwards / steps,
           "useful_tokens_per_step": real / steps, "padded_tokens_per_step": padded / steps}
    out["useful_tok_s"] = out["useful_tokens_per_step"] / out["step_seconds"]
    if profile:
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as torch_profile

        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        with torch_profile(activities=acts) as prof:
            step(2 + steps)
            sync(device)
        avg = prof.key_averages()
        sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
        out["profile_top_device"] = avg.table(sort_by=sort, row_limit=15, max_name_column_width=60)
        out["profile_top_host"] = avg.table(sort_by="self_cpu_time_total", row_limit=15, max_name_column_width=60)
    del model._forward  # the counter's wrapper was an instance attribute over the class method
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="135m", choices=("3b", "135m", "tiny"))
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="bf16")
    ap.add_argument("--models", default="tallrec,collm")
    ap.add_argument("--batch-sizes", default="4,20")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--users", type=int, default=320)
    ap.add_argument("--items", type=int, default=400)
    ap.add_argument("--tokenizer", type=Path, default=None)
    ap.add_argument("--variants", choices=sorted(VARIANT_SETS), default="defaults")
    ap.add_argument("--output", type=Path,
                    default=result_file("gpu_step_profile", Path(__file__).resolve().parents[1]))
    args = ap.parse_args(argv)

    from seqbench.context import resolve_device, seed_everything
    from seqbench.llm import backbone
    from seqbench.llm.backbone import resolve_dtype

    run = begin("gpu_step_profile", __file__, argv, variant_of(ap, args, skip=("output", "tokenizer")))
    device = resolve_device(args.device)
    variants = VARIANT_SETS[args.variants]
    profiled = ACCELERATOR_DEFAULTS if ACCELERATOR_DEFAULTS in variants else "cpu_defaults"
    seqbench_backends = backbone.cuda_sdpa_backends
    work = Path(tempfile.mkdtemp(prefix="gpu_step_profile-"))
    try:
        n_body, tok = build_folder(args.size, resolve_dtype(args.dtype, device), device, work / "llm",
                                   args.tokenizer)
        data = synthetic_data(work, args.users, args.items)
        results: dict = {}
        report = {"llm": {"size": args.size, "random_weights": True, "body_params_without_embeddings": n_body,
                          "tokenizer": tok, "dtype": args.dtype},
                  "device": torch.cuda.get_device_name(device) if device.type == "cuda" else device.type,
                  "steps": args.steps,
                  "variants": {k: {"group_overhead": v[0], "deterministic": v[1], "cudnn_attention": v[2]}
                               for k, v in variants.items()},
                  "results": results}
        for name in [m for m in args.models.split(",") if m]:
            for batch in [int(b) for b in args.batch_sizes.split(",")]:
                for variant, (overhead, deterministic, cudnn) in variants.items():
                    seed_everything(0)
                    torch.use_deterministic_algorithms(deterministic, warn_only=True)
                    backbone.cuda_sdpa_backends = (lambda: ALL_SDPA) if cudnn else seqbench_backends
                    model = make_model(name, data, work / "llm", device, args.dtype, batch, overhead)
                    r = time_steps(model, data, args.steps, device, profile=variant == profiled)
                    backbone.cuda_sdpa_backends = seqbench_backends
                    results.setdefault(name, {}).setdefault(f"batch_{batch}", {})[variant] = r
                    print(f"{name} batch {batch} {variant}: {r['step_seconds']:.3f} s/step, "
                          f"{r['forwards_per_step']:.1f} forwards, {r['useful_tok_s']:.0f} tok/s", flush=True)
                    # after every variant: a cut-off run keeps its part
                    env = record(run, report, args.output, device=device_name(device))
                    del model
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return env


if __name__ == "__main__":
    main()
