"""Fake seqbench runs logged straight into a temporary MLflow store, with known per-user values, so report tests
can check the tables' numbers against statistics computed here (and run in well under a second per run)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.entities import Metric

from seqbench.stats.paired import independent_test, paired_test

N_USERS = 60


def base_values(seed: int, scale: float = 1.0) -> np.ndarray:
    """Per-user NDCG@10-like values in [0, 1], fixed per seed."""
    return np.clip(np.random.default_rng(seed).random(N_USERS) * 0.6 * scale, 0, 1)


def log_fake_run(client, experiment_id: str, conditions: dict[str, np.ndarray], *, dataset: str = "d",
                 dataset_hash: str = "hash-d", model: str = "sasrec", family: str = "CF-SRec",
                 probe: str = "shuffle-infer", seed: int = 0, kind: str = "paired", p_holm: float | None = None,
                 config: dict | None = None, probe_stats: dict | None = None,
                 curves: dict[str, list[float]] | None = None, ids_as_tags: bool = False,
                 protocol: str | None = None, recipe: str | None = None,
                 probe_options: dict[str, str] | None = None, config_layer: str | None = None,
                 fit: dict | None = None, model_identity: str | None = None) -> str:
    """One finished run laid out like runner.log_result: params (or, with ``ids_as_tags``, tags) dataset/model/probe/
    seed, tags dataset_hash/code_version/family, model_config.* params, result.json, per_user_metrics.parquet,
    resolved_config.json, optional metric curves, an LLM model's ``recipe`` (tag and result field), the probe's
    options (``probe_options.*`` params); a ``config_layer`` tag (default / tuned), the fit report and the
    trained-model identity when given."""
    run_id = client.create_run(experiment_id, run_name=f"{dataset}/{model}/{probe}/seed{seed}").info.run_id
    ids = {"dataset": dataset, "model": model, "probe": probe, "seed": str(seed)}
    for k, v in ids.items():
        (client.set_tag if ids_as_tags else client.log_param)(run_id, k, v)
    client.set_tag(run_id, "family", family)
    client.set_tag(run_id, "dataset_hash", dataset_hash)
    client.set_tag(run_id, "code_version", "0.1.0+test")
    if protocol is not None:  # runs logged before protocols existed have no such tag (and read as sampled)
        client.set_tag(run_id, "eval_protocol", protocol)
    if recipe is not None:  # runs logged before recipes existed have none (an LLM model's reads as unrecorded)
        client.set_tag(run_id, "recipe", recipe)
    if config_layer is not None:  # runs logged before config layers existed have none (and read as default)
        client.set_tag(run_id, "config_layer", config_layer)
    for k, v in (config or {}).items():
        client.log_param(run_id, f"model_config.{k}", v)
    for k, v in (probe_options or {}).items():
        client.log_param(run_id, f"probe_options.{k}", v)
    (a_name, a), (b_name, b) = conditions.items()
    test = (paired_test if kind == "paired" else independent_test)(a, b)
    test.p_holm = p_holm
    result = {"dataset": dataset, "model": model, "probe": probe, "seed": seed,
              "metrics": {c: {"ndcg@10": float(v.mean()), "hr@10": float((v > 0.2).mean())}
                          for c, v in conditions.items()},
              "test": {"compare": [a_name, b_name], **{k: v for k, v in test.as_dict().items()
                                                       if k not in ("mean_original", "mean_probed")}},
              "probe_stats": probe_stats or {}, "fit": fit or {}, "mlflow_run_id": run_id, "recipe": recipe,
              "model_identity": model_identity}
    client.log_dict(run_id, result, "result.json")
    client.log_dict(run_id, {"dataset_meta": {"name": dataset, "counts": {"users": N_USERS, "items": 50,
                                                                          "interactions": 600}}},
                    "resolved_config.json")
    frame = pd.concat([pd.DataFrame({"condition": c, "user": np.arange(1, len(v) + 1), "ndcg@10": v,
                                     "hr@10": (v > 0.2).astype(float)}) for c, v in conditions.items()])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "per_user_metrics.parquet"
        frame.to_parquet(path, index=False)
        client.log_artifact(run_id, str(path))
    now = int(time.time() * 1000)
    points = [Metric(k, float(v), now, step) for k, vs in (curves or {}).items() for step, v in enumerate(vs)]
    if points:
        client.log_batch(run_id, metrics=points)
    client.set_terminated(run_id)
    return run_id


def paired(seed: int, factor: float, scale: float = 1.0) -> dict[str, np.ndarray]:
    base = base_values(seed, scale)
    return {"original": base, "probed": base * factor}


def full_experiment(client, experiment_id: str) -> dict[str, list[str]]:
    """Every table and figure type: CF models (sasrec over two seeds), pop, an LLM model in two variants with
    training curves, transition / warm-cold groups, cosine histograms and an order-horizon curve."""
    runs: dict[str, list[str]] = {}

    def log(key: str, conditions, **kw) -> None:
        runs.setdefault(key, []).append(log_fake_run(client, experiment_id, conditions, **kw))

    hist = {"counts": [0] * 15 + [5, 10, 20, 15, 10], "edges": list(np.linspace(-1, 1, 21).round(3))}
    for seed in (0, 1):
        log("sasrec/shuffle-infer", paired(seed, 0.7), seed=seed, p_holm=0.001 if seed == 0 else 0.2,
            probe_stats={"window": 128, "smallest_significant_k": 2 * seed or None,
                         "horizon": [{"k": k, "relative_change": -0.05 * k, "ci95": [-0.06 * k, -0.04 * k],
                                      "p_holm": 0.3 / k ** (seed + 1)} for k in (1, 2, 4)]})
        log("sasrec/shuffle-train", paired(seed, 0.8), seed=seed, probe="shuffle-train", p_holm=0.004)
        log("sasrec/cosine", paired(seed, 0.7), seed=seed, probe="cosine", p_holm=0.001,
            probe_stats={"window": 128, "cosine_mean": 0.5, "cosine_histogram": hist})
    log("gru4rec/shuffle-infer", paired(0, 0.9, 0.9), model="gru4rec", p_holm=0.003, probe_stats={"window": 128})
    log("pop/shuffle-infer", paired(0, 1.0, 0.5), model="pop", family="baseline", probe_stats={"window": 0})
    for probe, names in (("transition", ("transition", "non_transition")), ("warm-cold", ("warm", "cold"))):
        groups = {names[0]: base_values(5), names[1]: base_values(6, 0.5)}
        log(f"sasrec/{probe}", groups, probe=probe, kind="independent", p_holm=0.01)
    curves = {"train_loss": [3.0, 2.5, 2.0, 1.8], "train_retrieval": [1.4, 1.2, 1.0, 0.9],
              "train_distill": [0.5, 0.4, 0.3, 0.3], "valid_hr_at_10": [0.2, 0.3, 0.35, 0.4]}
    for distill, recipe in (("true", "custom"), ("false", None)):  # None: logged before runs recorded recipes
        log(f"llmsrec-{distill}/shuffle-infer", paired(3, 0.98, 0.8), model="llmsrec", family="LLM4Rec",
            config={"distill": distill, "lr": "0.0001", "llm": "tiny-random"}, curves=curves,
            probe_stats={"window": 10}, recipe=recipe)
    return runs
