"""Can the retrieval heads learn from a frozen LLM's [UserOut] / [ItemOut] states at all? (issue 9's CPU rows)

The LLM recommenders read a user as the LLM's last-layer state h_U at [UserOut] and score it against items'
h_I through f_user / f_item. For each dataset and model, on freshly initialised trainable parts (seed 0):

* spread: how much h_U / h_I (and f_user / f_item of them) differ between rows: mean pairwise cosine, the
  share of the mean squared norm that varies between rows (1 - ||mean||^2 / mean ||h||^2), the largest
  |mean| feature; and whether the varying part carries the user (cosine of the centred h_U of a history and
  of its shuffled last 10 items, against another user's);
* heads-only fit (``--head-steps``): h_U of every training example (one per user, as training builds them) and
  h_I of every item are computed once; then only fresh f_user / f_item train on them, with the model's loss
  (target + 3 uniform negatives), batch and learning rate, and score the persisted validation candidates. It
  leaves out what a real fit also trains (f_I, e_U, e_I, LoRA), so it bounds nothing; it asks whether the
  states the first step sees already say enough to learn from. Reference: a bigram count (last history item
  -> target) over the same training examples, scored the same way.
* ``--head-variants``: the heads-only fit once per variant, all on the same cached states and the same draws:
  ``official`` (the code's initialisation and 1 + 3 loss), ``centred`` (the model's ``head_init=centred``),
  ``in-batch`` (``in_batch_negatives``), or both joined by ``+``. The spread always describes the official
  initialisation (``head_init`` in ``--set`` is ignored; the states themselves do not depend on it).

    python scripts/llm_state_spread.py --datasets syn-order0.9-u400-i200 --models llmsrec,tallrec

Writes ``reports/llm_state_spread.json`` (machine, one block per dataset and model).
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from seqbench.atomic import write_json_atomic
from seqbench.benchinfo import finish, machine_info
from seqbench.config import parse_sets
from seqbench.context import RunContext, seed_everything
from seqbench.data.permutation import permute_tail
from seqbench.data.store import data_home, load_dataset
from seqbench.errors import SeqbenchError
from seqbench.eval.metrics import metrics_from_ranks, ranks_from_scores
from seqbench.models import create_model, settings_per_model
from seqbench.models.llm.data import (
    TEACHER_MAXLEN,
    centre_sample,
    in_batch_exclusions,
    training_candidates,
    training_examples,
)
from seqbench.models.llm.heads import centre_mlp, in_batch_retrieval_loss, retrieval_loss

ROOT = Path(__file__).resolve().parents[1]


def spread(h: torch.Tensor) -> dict:
    """Mean pairwise cosine, varying share of the squared norm, and the largest |mean| feature of rows ``h``."""
    h = h.float()
    mu = h.mean(0)
    hn = F.normalize(h, dim=1)
    off = ~torch.eye(len(h), dtype=torch.bool, device=h.device)
    sq = h.pow(2).sum(1).mean()
    top = int(mu.abs().argmax())
    return {"mean_pair_cosine": float((hn @ hn.T)[off].mean()), "varying_share": float(1 - mu.pow(2).sum() / sq),
            "max_abs_mean_feature": top, "max_abs_mean": float(mu[top].abs()), "mean_sq_norm": float(sq)}


def valid_metrics(scores: np.ndarray) -> dict:
    m = metrics_from_ranks(ranks_from_scores(scores))
    return {k: float(np.mean(m[k])) for k in ("hr@10", "ndcg@10")}


def bigram(data, ex_hist, ex_target, v_hist, v_cands) -> dict:
    """Validation HR/NDCG@10 of counts (last history item -> target) over the training examples."""
    counts = np.zeros((data.n_items + 1, data.n_items + 1))
    np.add.at(counts, (ex_hist.items[ex_hist.offsets[1:] - 1], ex_target), 1)
    last = v_hist.items[v_hist.offsets[1:] - 1]
    ties = np.random.default_rng(0).random(v_cands.shape) * 1e-6  # random order among equal counts
    return valid_metrics(counts[last[:, None], v_cands] + ties)


VARIANT_PARTS = ("centred", "in-batch")


def parse_variants(text: str) -> list[str]:
    """``official,centred+in-batch`` -> the variant names, each checked."""
    out = [v.strip() for v in text.split(",") if v.strip()]
    for v in out:
        if v != "official" and not set(v.split("+")) <= set(VARIANT_PARTS):
            raise SeqbenchError(f"--head-variants: unknown variant '{v}' (official, or {' / '.join(VARIANT_PARTS)} "
                                "joined by +)")
    return out


def measure(dataset: str, model_name: str, home: Path, users: int, head_steps: int, sets: dict[str, str],
            variants: list[str] = ("official",)) -> dict:
    seed_everything(0)
    data = load_dataset(dataset, home)
    settings = {**settings_per_model([model_name], sets).get(model_name, {}), "head_init": "official"}
    model = create_model(model_name, data.n_items, settings)
    if model.config.task != "retrieval":
        raise SeqbenchError("llm_state_spread measures the retrieval heads: leave --set task out")
    valid = data.histories("valid")
    n = min(users, len(valid) // 2)
    if n < 2:
        raise SeqbenchError(f"{dataset}: needs at least 4 validation users, has {len(valid)}")
    model.setup(data, data.histories("train"), RunContext(seed=0))  # trains (or loads) the teacher
    cfg, heads = model.config, model.heads
    with torch.no_grad():
        # each state is computed once: the heads-only fit needs every validation user and item, the spread
        # the first 2n users (n measured, n as "other users") and n items
        h_valid = model.user_states_all(valid if head_steps > 0 else valid.take(np.arange(2 * n)))
        model.set_training(False)
        item_ids = np.arange(data.n_items + 1) if head_steps > 0 else np.arange(min(data.n_items, n) + 1)
        h_items = model.item_states(item_ids, cfg.item_batch_size, cfg.max_batch_tokens)  # row k = item k
        h_u, h_i = h_valid[:n], h_items[1:min(data.n_items, n) + 1]
        mu = h_u.mean(0)
        centred = h_u - mu
        shuffled = model.user_states_all(permute_tail(valid.take(np.arange(n)), 10)) - mu
        other = h_valid[n:2 * n] - mu
        row = {"users": n, "items": int(len(h_i)), "llm": cfg.llm, "dtype": str(model.llm_dtype),
               "h_U": spread(h_u), "f_user(h_U)": spread(heads.f_user(h_u)),
               "h_I": spread(h_i), "f_item(h_I)": spread(heads.f_item(h_i)),
               "centred_cosine_shuffled_last10": float(F.cosine_similarity(centred, shuffled).mean()),
               "centred_cosine_other_user": float(F.cosine_similarity(centred, other).mean())}
    if head_steps > 0:
        fits = heads_only(model, data, head_steps, h_valid, h_items, variants)
        row["heads_only"] = fits[variants[0]]  # the first variant keeps the report's earlier layout
        row["heads_only_variants"] = fits
    return row


def heads_only(model, data, steps: int, h_valid: torch.Tensor, h_items: torch.Tensor,
               variants: list[str] = ("official",)) -> dict[str, dict]:
    """Fresh f_user / f_item trained on cached states (see the module doc), once per variant; ``h_valid`` /
    ``h_items``: every validation user's h_U and every item's h_I (row = item id)."""
    cfg = model.config
    ex_hist, ex_target = training_examples(data.histories("train"), cfg.autoregressive)
    ex_hist = ex_hist.tail(TEACHER_MAXLEN)
    with torch.no_grad():
        o_u = model.teacher_user(ex_hist) if model.user_rep else None
        h_ex = model.user_states(model.builder.users(ex_hist), o_u, cfg.user_batch_size, cfg.max_batch_tokens)
    rows, items = centre_sample(len(ex_target), data.n_items, 0)  # the model's own sample, from the cached states
    means = h_ex[rows].mean(0), h_items[torch.from_numpy(items)].mean(0)
    bigram_valid = bigram(data, ex_hist, ex_target, data.histories("valid"), data.candidates["valid"])
    out = {}
    for v in variants:
        parts = set(v.split("+"))
        out[v] = {"variant": v, **fit_heads(model, data, steps, h_ex, ex_hist, ex_target, h_valid, h_items,
                                            means if "centred" in parts else None, "in-batch" in parts),
                  "bigram_valid": bigram_valid}
    return out


def fit_heads(model, data, steps: int, h_ex: torch.Tensor, ex_hist, ex_target: np.ndarray, h_valid: torch.Tensor,
              h_items: torch.Tensor, means: tuple[torch.Tensor, torch.Tensor] | None, in_batch: bool) -> dict:
    """One heads-only fit from a copy of the model's (official) heads; ``means``: centre them first."""
    cfg = model.config
    v_cands = data.candidates["valid"]
    heads = copy.deepcopy(model.heads)
    if means is not None:
        centre_mlp(heads.f_user, means[0])
        centre_mlp(heads.f_item, means[1])
    heads.train()
    opt = torch.optim.Adam([*heads.f_user.parameters(), *heads.f_item.parameters()], lr=cfg.lr,
                           betas=(0.9, cfg.beta2))
    rng = np.random.default_rng(0)
    avoid = ex_hist.padded(TEACHER_MAXLEN)
    losses = []
    bs = min(cfg.batch_size, len(ex_target))
    curve = []

    def validate() -> dict:
        heads.eval()
        with torch.no_grad():
            iv = heads.f_item(h_items[torch.from_numpy(v_cands)])
            scores = torch.einsum("bd,bcd->bc", heads.f_user(h_valid), iv)
        heads.train()
        return valid_metrics(scores.float().numpy())

    for step in range(1, steps + 1):
        rows = rng.choice(len(ex_target), bs, replace=False)
        cands = training_candidates(avoid[rows], ex_target[rows], data.n_items, cfg.n_negatives, rng)
        u, iv = heads.f_user(h_ex[rows]), heads.f_item(h_items[torch.from_numpy(cands)])
        if in_batch:
            loss = in_batch_retrieval_loss(u, iv, torch.from_numpy(in_batch_exclusions(avoid[rows], cands)))
        else:
            loss = retrieval_loss(u, iv)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if step % max(1, steps // 4) == 0 and step < steps:
            curve.append({"step": step, **validate()})
    tail = max(1, min(50, steps // 4))
    columns = (1 + cfg.n_negatives) * (bs if in_batch else 1)  # in-batch: before exclusions
    return {"steps": steps, "batch_size": bs, "lr": cfg.lr, "train_examples": int(len(ex_target)),
            "loss_first10": float(np.mean(losses[:10])), f"loss_last{tail}": float(np.mean(losses[-tail:])),
            "chance_loss": float(np.log(columns)), "valid_curve": curve, "valid": validate()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default="syn-order0.9-u400-i200")
    ap.add_argument("--models", default="llmsrec,tallrec")
    ap.add_argument("--users", type=int, default=64, help="validation users (and as many items) for the spread")
    ap.add_argument("--head-steps", type=int, default=2000, help="heads-only fit steps (0: skip it)")
    ap.add_argument("--head-variants", default="official",
                    help="heads-only fits: official, centred, in-batch or centred+in-batch, comma-separated")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="LLM settings, k=v,...")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data-home", default=None)
    ap.add_argument("--out", type=Path, default=ROOT / "reports" / "llm_state_spread.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    info = machine_info()
    home = data_home(args.data_home)
    try:
        variants = parse_variants(args.head_variants)
    except SeqbenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out: dict = {"machine": info, "settings": parse_sets(args.sets), "head_variants": variants, "results": {}}
    for dataset in [d for d in args.datasets.split(",") if d]:
        for model in [m for m in args.models.split(",") if m]:
            t = time.perf_counter()
            try:
                row = measure(dataset, model, home, args.users, args.head_steps, out["settings"], variants)
            except SeqbenchError as e:
                print(f"error: {e}", file=sys.stderr)
                return 2
            row["seconds"] = round(time.perf_counter() - t, 1)
            out["results"].setdefault(dataset, {})[model] = row
            line = (f"{dataset} {model}: h_U pair cosine {row['h_U']['mean_pair_cosine']:.4f}, varying "
                    f"{row['h_U']['varying_share']:.4f}; f_user {row['f_user(h_U)']['mean_pair_cosine']:.4f}; "
                    f"centred cosine shuffled {row['centred_cosine_shuffled_last10']:.3f} vs other user "
                    f"{row['centred_cosine_other_user']:.3f}")
            for v, ho in row.get("heads_only_variants", {}).items():
                line += (f"; heads only ({v}): valid hr@10 {ho['valid']['hr@10']:.3f} (bigram "
                         f"{ho['bigram_valid']['hr@10']:.3f})")
            print(line, flush=True)
    out["machine"] = finish(info)
    write_json_atomic(out, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
