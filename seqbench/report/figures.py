"""The paper's figures as PNG bytes (matplotlib, Agg backend: no display needed, same output everywhere)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from seqbench.models.llm.recipes import has_recipe  # noqa: E402

from .aggregate import (  # noqa: E402
    REARRANGE,
    base_probe,
    datasets_of,
    effects,
    horizon_curves,
    overall,
    variants_of,
)
from .collect import RunRecord, RunSource  # noqa: E402
from .document import Figure  # noqa: E402

LOSS_KEYS = ("train_loss", "train_retrieval", "train_distill", "train_uniform")
VALID_KEYS = ("valid_hr_at_10", "valid_ndcg_at_10")


def png_bytes(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def _errors(center: float, ci: tuple[float, float]) -> list[float]:
    return [max(center - ci[0], 0.0), max(ci[1] - center, 0.0)]


def order_figures(records: list[RunRecord], source: RunSource) -> list[Figure]:
    """Paper Fig. 1 style: NDCG@10 on the original input and after each rearrangement, per model, with CIs."""
    found = effects(records, "paired")
    figs = []
    for ds in datasets_of(records):
        probes = sorted({k[2] for k in found if k[0] == ds and base_probe(k[2]) in REARRANGE},
                        key=lambda p: (REARRANGE.index(base_probe(p)), p))
        variants = [v for v in variants_of(records, ds) if overall(records, None, ds, v) is not None]
        if not probes or not variants:
            continue
        fig, ax = plt.subplots(figsize=(max(5.0, 1.3 * len(variants) + 2), 3.6))
        width = 0.8 / (len(probes) + 1)
        x = np.arange(len(variants))
        for j, label in enumerate(["original", *probes]):
            heights, errs = [], [[], []]
            for v in variants:
                if label == "original":
                    e = overall(records, source, ds, v)
                    h, ci = e.mean, e.ci
                else:
                    eff = found.get((ds, v, label))
                    h, ci = (eff.b, _probed_ci(records, source, eff)) if eff else (np.nan, (np.nan, np.nan))
                heights.append(h)
                lo, hi = _errors(h, ci) if not np.isnan(h) else (0.0, 0.0)
                errs[0].append(lo)
                errs[1].append(hi)
            ax.bar(x + (j - len(probes) / 2) * width, heights, width, yerr=errs, capsize=3, label=label)
        ax.set_xticks(x, variants, rotation=20, ha="right", fontsize=8)
        ax.set_ylabel("NDCG@10")
        ax.set_title(f"{ds}: original vs rearranged input")
        ax.legend(fontsize=7)
        figs.append(Figure(f"order_{ds}", f"NDCG@10 on {ds}, original vs rearranged histories (bars: mean over "
                                          "seeds; error bars: 95 % CI over seeds, or over users with one seed).",
                           png_bytes(fig)))
    return figs


def _probed_ci(records: list[RunRecord], source: RunSource, eff) -> tuple[float, float]:
    from .aggregate import estimate

    runs = [r for r in records if r.run_id in eff.run_ids]
    values = [r.result["metrics"][eff.compare[1]]["ndcg@10"] for r in runs]
    per_user = source.per_user_metric(runs[0].run_id, eff.compare[1]) if len(runs) == 1 else None
    return estimate(values, eff.run_ids, per_user).ci


def cosine_figures(records: list[RunRecord]) -> list[Figure]:
    """Histogram of per-user cosine(original, shuffled) user representations, one panel per model."""
    found = {k: e for k, e in effects(records, "paired").items() if base_probe(k[2]) == "cosine"}
    figs = []
    for ds in datasets_of(records):
        keys = [k for k in found if k[0] == ds]
        hists = []
        for k in sorted(keys, key=lambda k: variants_of(records, ds).index(k[1])):
            runs = [r for r in records if r.run_id in found[k].run_ids]
            hs = [r.result["probe_stats"].get("cosine_histogram") for r in runs]
            if all(hs):
                hists.append((k[1], np.sum([h["counts"] for h in hs], axis=0), np.asarray(hs[0]["edges"])))
        if not hists:
            continue
        cols = min(3, len(hists))
        rows = -(-len(hists) // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
        for ax, (v, counts, edges) in zip(axes.flat, hists, strict=False):
            ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color="tab:blue")
            ax.set_title(v, fontsize=9)
            ax.set_xlabel("cosine", fontsize=8)
        for ax in list(axes.flat)[len(hists):]:
            ax.axis("off")
        caption = (f"Per-user cosine between the user representations of the original and the shuffled test "
                   f"history on {ds} (users summed over seeds).")
        figs.append(Figure(f"cosine_{ds}", caption, png_bytes(fig)))
    return figs


def group_figures(records: list[RunRecord]) -> list[Figure]:
    """NDCG@10 of the two user groups of each group probe (transition, warm-cold, cross-domain), per model."""
    found = effects(records, "independent")
    figs = []
    for ds in datasets_of(records):
        probes = sorted({k[2] for k in found if k[0] == ds})
        if not probes:
            continue
        fig, axes = plt.subplots(1, len(probes), figsize=(4.2 * len(probes), 3.4), squeeze=False)
        for ax, p in zip(axes[0], probes, strict=True):
            keys = [k for k in found if k[0] == ds and k[2] == p]
            variants = [v for v in variants_of(records, ds) if (ds, v, p) in found]
            x = np.arange(len(variants))
            names = found[keys[0]].compare
            for j, name in enumerate(names):
                ax.bar(x + (j - 0.5) * 0.4, [(found[(ds, v, p)].a, found[(ds, v, p)].b)[j] for v in variants], 0.4,
                       label=name)
            ax.set_xticks(x, variants, rotation=20, ha="right", fontsize=8)
            ax.set_title(p, fontsize=9)
            ax.set_ylabel("NDCG@10")
            ax.legend(fontsize=7)
        figs.append(Figure(f"groups_{ds}", f"NDCG@10 per user group on {ds} (mean over seeds).", png_bytes(fig)))
    return figs


def training_figures(records: list[RunRecord], source: RunSource) -> list[Figure]:
    """Training curves of the models the LLM schedule trains (those with a recipe table) as logged per optimizer
    step: loss parts, and validation at each check."""
    figs = []
    seen = set()
    for r in sorted(records, key=lambda r: (r.dataset, r.variant, r.seed, base_probe(r.probe) != "shuffle-infer")):
        if not has_recipe(r.model) or (r.dataset, r.variant) in seen:
            continue
        curves = {k: source.curve(r.run_id, k) for k in (*LOSS_KEYS, *VALID_KEYS)}
        curves = {k: c for k, c in curves.items() if c}
        if not curves:
            continue
        seen.add((r.dataset, r.variant))
        fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
        for k in LOSS_KEYS:
            if k in curves:
                steps, values = zip(*curves[k], strict=True)
                left.plot(steps, values, label=k, linewidth=0.8)
        left.set_xlabel("optimizer step")
        left.set_title("training loss", fontsize=9)
        left.legend(fontsize=7)
        for k in VALID_KEYS:
            if k in curves:
                steps, values = zip(*curves[k], strict=True)
                right.plot(steps, values, marker="o", label=k.replace("_at_", "@"))
        right.set_xlabel("optimizer step")
        right.set_title("validation", fontsize=9)
        right.legend(fontsize=7)
        safe = r.variant.replace(" ", "").replace("/", "_").replace(",", "_").replace("(", "_").replace(")", "")
        figs.append(Figure(f"training_{r.dataset}_{safe}", f"Training of {r.variant} on {r.dataset}, seed {r.seed} "
                                                           f"(run {r.run_id[:8]}).", png_bytes(fig)))
    return figs


def horizon_figures(records: list[RunRecord]) -> list[Figure]:
    """The order-horizon curve (relative change of NDCG@10 when the last k items are shuffled), where it ran."""
    figs = []
    for ds in datasets_of(records):
        curves = horizon_curves(records, ds)
        if not curves:
            continue
        fig, ax = plt.subplots(figsize=(5.5, 3.4))
        for r, pts in curves:
            k = [p["k"] for p in pts]
            y = [p["relative_change"] for p in pts]
            ax.plot(k, y, marker="o", label=f"{r.variant} seed {r.seed} ({r.run_id[:8]})")
            if all(p.get("ci95") for p in pts):
                ax.fill_between(k, [p["ci95"][0] for p in pts], [p["ci95"][1] for p in pts], alpha=0.2)
        ax.axhline(0, color="grey", linewidth=0.6)
        ax.set_xlabel("k (most recent items shuffled)")
        ax.set_ylabel("relative change of NDCG@10")
        ax.legend(fontsize=7)
        figs.append(Figure(f"horizon_{ds}", f"Order horizon on {ds}: shuffling only the last k items (band: 95 % CI).",
                           png_bytes(fig)))
    return figs
