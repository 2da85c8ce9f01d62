"""Throughput of the LLM recommenders' training and evaluation next to the bare LLM (issues 5 and 9).

Stores the run in ``benchmarks/results/llm.json`` (the envelope of ``seqbench.benchinfo``: command, commit,
machine with CPU flags, native bf16, load average before and after; options that differ from the defaults are
the run's ``variant``); its ``result`` holds, per model under ``models`` (``--models llmsrec,tallrec,llara,collm,
a-llmrec``; default ``llmsrec``):
* ``train_useful_tok_s``: real (non-pad) prompt tokens per second through training steps (user and
  candidate-item prompts, forward + backward into the soft tokens and LoRA adapters, optimizer step, negative
  sampling and prompt building included).
* ``eval_useful_tok_s``: real tokens per second of the evaluation passes (item cache + user vectors).
* ``padding_share``: padded share of all tokens the LLM computed in the measured training + evaluation passes.
* ``epoch_seconds``: one epoch (training steps + its ~11 validation checks over all validation users and
  items), *estimated* from the measured steps and evaluation throughput (``epoch_estimated`` says so).
* ``matching_train_ceiling``: which ceiling its training compares with: LoRA models compute weight gradients,
  frozen-LLM models only activation gradients.
and, once for the LLM, in the same run: ``ceiling_fwd_tok_s`` (plain forward), ``ceiling_fwdbwd_tok_s``
(forward + backward, ``labels`` loss, every weight trainable) and ``ceiling_fwdbwd_frozen_tok_s`` (forward +
backward into the input embeddings, weights frozen), on random 16 x 256 batches.

Usage: ``python scripts/bench_llm.py`` (SmolLM2-135M, ml-100k prepared with ``seqbench data prepare recbole
--source ../shared/data/ml-100k --name ml-100k``); smoke: ``python scripts/bench_llm.py --llm tiny-random
--dataset synthetic --models llmsrec,tallrec --train-steps 2 --eval-users 8 --eval-items 16 --ceiling-reps 1
--out /tmp/b.json``. The teacher's quality does not change throughput, so it trains for ``--teacher-epochs``
(default 5) unless a cached one exists (A-LLMRec's stage 1 likewise).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from seqbench.benchinfo import begin, record, result_file, variant_of
from seqbench.config import parse_sets
from seqbench.context import RunContext
from seqbench.data.store import data_home, load_dataset
from seqbench.errors import SeqbenchError
from seqbench.llm import load_llm
from seqbench.models import create_model, settings_per_model
from seqbench.models.llm.base import LLMRecommender
from seqbench.models.llm.data import TEACHER_MAXLEN, training_examples
from seqbench.models.llm.fit import validation_set


def dataset(name: str, home: str | None):
    if name == "synthetic":  # smoke runs: a small synthetic dataset in a temporary home
        from seqbench.data.pipeline import prepare_source
        from seqbench.data.preprocess import PrepareParams
        from seqbench.data.sources.options import SourceOptions

        tmp = Path(tempfile.mkdtemp())
        prepare_source("synthetic", None, "bench", tmp, PrepareParams(),
                       SourceOptions(users=200, items=300, order=0.9, seed=3, min_len=5, max_len=30))
        return load_dataset("bench", tmp)
    return load_dataset(name, data_home(home))


class Counter:
    """Wraps the model's ``_forward`` (the shared LLM core's single LLM pass) to count real and padded tokens."""

    def __init__(self, model: LLMRecommender):
        self.real = self.padded = self.forwards = 0
        inner = model._forward

        def counted(ids, mask, soft, out_id):
            self.forwards += 1
            self.real += int(mask.sum())
            self.padded += int(mask.numel())
            return inner(ids, mask, soft, out_id)

        model._forward = counted

    def take(self) -> tuple[int, int, int]:
        """(real tokens, padded tokens, forwards) since the last take, and reset."""
        out = (self.real, self.padded, self.forwards)
        self.real = self.padded = self.forwards = 0
        return out


def ceiling(name: str, dtype: str, reps: int, batch: int = 16, length: int = 256) -> dict[str, float]:
    """Bare-model tokens/s on random ids: forward; forward + backward with every weight trainable (plain
    training: weight gradients, the matching ceiling for LoRA models); forward + backward into the input
    embeddings with frozen weights (activation gradients only, the matching ceiling for frozen-LLM models)."""
    model, _ = load_llm(name, dtype=dtype, device="cpu")
    vocab = model.config.vocab_size
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (batch, length), generator=gen)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    n = batch * length * reps
    with torch.no_grad():
        model(input_ids=ids[:2, :16], attention_mask=inputs["attention_mask"][:2, :16])  # warm-up
        t = time.perf_counter()
        for _ in range(reps):
            model(**inputs)
        fwd = n / (time.perf_counter() - t)
    t = time.perf_counter()
    for _ in range(reps):  # frozen weights (load_llm freezes them), gradient into the embeddings only
        x = model.get_input_embeddings()(ids).detach().requires_grad_(True)
        model(inputs_embeds=x, attention_mask=inputs["attention_mask"]).logits.float().mean().backward()
    fwdbwd_inputs = n / (time.perf_counter() - t)
    for p in model.parameters():
        p.requires_grad_(True)
    model.train()
    t = time.perf_counter()
    for _ in range(reps):
        model.zero_grad(set_to_none=True)
        model(**inputs, labels=ids).loss.backward()
    fwdbwd = n / (time.perf_counter() - t)
    return {"ceiling_fwd_tok_s": fwd, "ceiling_fwdbwd_tok_s": fwdbwd, "ceiling_fwdbwd_frozen_tok_s": fwdbwd_inputs}


def bench_model(name: str, data, args) -> dict:
    """Training steps (the fit loop's code path) and evaluation passes of one LLM recommender, timed."""
    settings = {"llm": args.llm, "dtype": args.dtype, "device": "cpu", "teacher_epochs": args.teacher_epochs}
    if name == "a-llmrec":
        settings["stage1_epochs"] = args.teacher_epochs
    settings.update(args.per_model[name])
    model = create_model(name, data.n_items, settings)
    cfg = model.config
    train = data.histories("train")
    t0 = time.perf_counter()
    model.setup(data, train, RunContext(seed=0))
    setup_s = time.perf_counter() - t0
    counter = Counter(model)

    # -- training steps (same code path as fit) --
    hist, targets = training_examples(train, cfg.autoregressive)
    hist = hist.tail(TEACHER_MAXLEN)
    o_all = model.teacher_user(hist) if model.teacher is not None else None
    rng = np.random.default_rng(0)
    opt = torch.optim.Adam(model.trainable_parameters(), lr=cfg.lr, betas=(0.9, cfg.beta2))
    order = rng.permutation(len(targets))
    times = []
    for s in range(args.train_steps + 1):
        rows = order[(s * cfg.batch_size) % len(order):][:cfg.batch_size]
        t = time.perf_counter()
        model.set_training(True)
        o_u = o_all[torch.from_numpy(rows)] if o_all is not None else None
        loss, _ = model.batch_loss(hist.take(rows), targets[rows], o_u, rng)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
        if s == 0:
            counter.take()  # warm-up step excluded
    train_real, train_padded, _ = counter.take()
    train_s = float(sum(times[1:]))
    step_s = train_s / max(args.train_steps, 1)

    # -- evaluation passes --
    v_hist = data.histories("valid")
    n_users = min(args.eval_users, len(v_hist))
    items = np.arange(1, data.n_items + 1)[: args.eval_items]
    model.weights_updated()
    t = time.perf_counter()
    model.item_vectors(items)
    model.user_representation(v_hist.take(np.arange(n_users)))
    eval_s = time.perf_counter() - t
    eval_real, eval_padded, _ = counter.take()
    eval_tok_s = eval_real / eval_s

    # -- one epoch, estimated --
    steps_per_epoch = -(-len(targets) // cfg.batch_size)
    every = max(1, int(steps_per_epoch * cfg.val_every_frac))
    checks = steps_per_epoch // every + (steps_per_epoch % every != 0)
    e_hist, e_cands = validation_set(data, cfg.max_valid_users, 0)  # what one check of fit_llm encodes
    valid_tokens = (float(model.builder.users(e_hist).lengths.sum())
                    + float(sum(len(x) for x in model.builder.items(np.unique(e_cands)))))
    epoch_train_s = steps_per_epoch * step_s
    epoch_valid_s = checks * valid_tokens / eval_tok_s
    lora = model.peft is not None
    return {
        "train_useful_tok_s": train_real / train_s,
        "eval_useful_tok_s": eval_tok_s,
        "padding_share": 1 - (train_real + eval_real) / max(train_padded + eval_padded, 1),
        "epoch_seconds": epoch_train_s + epoch_valid_s,
        "epoch_estimated": True,
        "matching_train_ceiling": "ceiling_fwdbwd_tok_s" if lora else "ceiling_fwdbwd_frozen_tok_s",
        "epoch_note": (f"estimated: {steps_per_epoch} steps x {step_s:.2f} s measured over {args.train_steps} "
                       f"steps + {checks} validation checks x {valid_tokens:.0f} tokens at the measured eval "
                       f"throughput"),
        "details": {
            "dtype": str(model.llm_dtype), "lora": lora, "train_steps": args.train_steps,
            "batch_size": cfg.batch_size, "step_seconds": step_s,
            "train_padding_share": 1 - train_real / max(train_padded, 1),
            "eval_padding_share": 1 - eval_real / max(eval_padded, 1),
            "eval_users": n_users, "eval_items": len(items), "epoch_train_seconds": epoch_train_s,
            "epoch_valid_seconds": epoch_valid_s, "steps_per_epoch": steps_per_epoch,
            "validation_checks_per_epoch": checks, "validation_users": len(e_hist), "setup_seconds": setup_s,
            "settings": args.per_model[name],
        },
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="llmsrec", help="comma-separated LLM recommenders, e.g. "
                    "llmsrec,tallrec,llara,collm,a-llmrec")
    ap.add_argument("--llm", default="smollm2-135m")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--data-home", default=None)
    ap.add_argument("--train-steps", type=int, default=12, help="measured training steps (after 1 warm-up)")
    ap.add_argument("--eval-users", type=int, default=256)
    ap.add_argument("--eval-items", type=int, default=512)
    ap.add_argument("--teacher-epochs", type=int, default=5)
    ap.add_argument("--ceiling-reps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--set", dest="sets", action="append", default=[],
                    help="model settings k=v,... (each model takes the keys it has), e.g. the CPU recipe "
                         "batch_size=4,val_every_frac=0.5,max_valid_users=100")
    ap.add_argument("--out", type=Path, default=result_file("llm", Path(__file__).resolve().parents[1]))
    args = ap.parse_args(argv)
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    try:
        args.per_model = settings_per_model(names, parse_sets(args.sets))
    except SeqbenchError as e:
        raise SystemExit(str(e)) from None
    torch.set_num_threads(args.threads)
    run = begin("llm", __file__, argv, variant_of(ap, args, skip=("out", "data_home")))

    data = dataset(args.dataset, args.data_home)
    models = {m: bench_model(m, data, args) for m in names}
    out = {"models": models, **ceiling(args.llm, args.dtype, args.ceiling_reps),
           "details": {"llm": args.llm, "dataset": data.name, "threads": args.threads, "ceiling_batch": [16, 256],
                       "machine": platform.processor() or platform.machine()}}
    record(run, out, args.out, device="cpu")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
