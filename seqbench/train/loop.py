"""One training loop for every CF model: epochs over users, validation NDCG@10, early stopping."""

from __future__ import annotations

import copy
import random
import time
from dataclasses import dataclass

import numpy as np
import torch

from seqbench.context import RunContext
from seqbench.progress import TrainProgress


@dataclass
class LoopConfig:
    lr: float
    batch_size: int
    max_epochs: int
    patience: int  # validation checks without improvement before stopping
    eval_every: int  # epochs between validation checks
    weight_decay: float = 0.0
    beta2: float = 0.98


def train_loop(
    net: torch.nn.Module,
    train_seqs: torch.Tensor,
    valid_ndcg,
    cfg: LoopConfig,
    ctx: RunContext,
    label: str,
):
    """Train ``net`` on rows of ``train_seqs`` (one padded sequence per user) with ``net.loss(batch, gen)``.

    ``valid_ndcg()`` returns the validation NDCG@10 (under the model's validation protocol). The state with
    the best one is restored at the end. Returns (best_epoch, best_ndcg, epochs_run,
    seconds, seconds_to_best, curve).
    """
    gen = torch.Generator().manual_seed(ctx.seed)
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr, betas=(0.9, cfg.beta2), weight_decay=cfg.weight_decay)
    n = len(train_seqs)
    best, best_epoch, best_state, bad, t_best = -1.0, 0, None, 0, 0.0
    curve: list[tuple[int, float, float | None]] = []
    start = time.perf_counter()
    bar = TrainProgress(ctx.progress, label, cfg.max_epochs, "epoch", cfg.patience, cfg.eval_every)
    first = 1
    state = ctx.checkpoint.load() if ctx.checkpoint is not None else None
    if state is not None:  # resume after the last validation check of a killed run
        net.load_state_dict(state["net"])
        opt.load_state_dict(state["opt"])
        gen.set_state(state["gen"])
        restore_rng_states(state["rng"])
        best, best_epoch, best_state, bad = state["best"], state["best_epoch"], state["best_state"], state["bad"]
        t_best, curve, first = state["t_best"], state["curve"], state["epoch"] + 1
        start -= state["elapsed"]
        bar.resume(state["epoch"], state["elapsed"])
    epoch = first - 1
    for epoch in range(first, cfg.max_epochs + 1):
        net.train()
        order = torch.randperm(n, generator=gen)
        total, steps = 0.0, 0
        for b in range(0, n, cfg.batch_size):
            batch = train_seqs[order[b : b + cfg.batch_size]].to(ctx.device)
            loss = net.loss(batch, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach())
            steps += 1
        train_loss = total / max(steps, 1)
        ctx.metric("train_loss", train_loss, epoch)
        ndcg = None
        if epoch % cfg.eval_every == 0 or epoch == cfg.max_epochs:
            net.eval()
            with torch.no_grad():
                ndcg = float(valid_ndcg())
            ctx.metric("valid_ndcg@10", ndcg, epoch)
            if ndcg > best:
                best, best_epoch, bad = ndcg, epoch, 0
                best_state = copy.deepcopy(net.state_dict())
                t_best = time.perf_counter() - start
            else:
                bad += 1
        curve.append((epoch, train_loss, ndcg))
        if ndcg is not None and ctx.checkpoint is not None:
            ctx.checkpoint.save({"net": net.state_dict(), "opt": opt.state_dict(), "gen": gen.get_state(),
                                 "rng": rng_states(), "best": best, "best_epoch": best_epoch, "best_state": best_state,
                                 "bad": bad, "t_best": t_best, "curve": list(curve), "epoch": epoch,
                                 "elapsed": time.perf_counter() - start})
        bar.update(epoch, train_loss, best, best_epoch, cfg.patience - bad)
        if bad >= cfg.patience:
            break
    bar.close(epoch, "early stop: no improvement" if bad >= cfg.patience else "max_epochs reached")
    if best_state is not None:
        net.load_state_dict(best_state)
    net.eval()
    return best_epoch, best, epoch, time.perf_counter() - start, t_best, curve


def rng_states() -> dict:
    """Global RNG states (dropout draws from torch's default generator), so a resumed run is bit-identical."""
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def restore_rng_states(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
