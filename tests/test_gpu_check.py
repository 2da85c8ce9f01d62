"""The GPU check's tiny CPU form: same code path as scripts/gpu_check.sh on a toy Llama, so it cannot rot."""

from seqbench.benchinfo import ENVELOPE, load_runs

from .conftest import load_script


def test_gpu_check_tiny_cpu_form_writes_its_report(tmp_path):
    mod = load_script("gpu_check")
    out = tmp_path / "gpu_check.json"
    mod.main(["--size", "tiny", "--device", "cpu", "--dtype", "fp32", "--users", "150", "--items", "160",
              "--batch-size", "16", "--valid-users", "16", "--peak-tflops", "1", "--output", str(out),
              "--models", "llmsrec,tallrec"])
    (run,) = load_runs(out)
    assert set(ENVELOPE) <= set(run) and run["variant"]["size"] == "tiny" and run["machine"]["device"] == "cpu"
    rep = run["result"]
    assert list(rep["models"]) == ["llmsrec", "tallrec"]
    for m in rep["models"].values():
        assert m["train"]["useful_tokens"] > 0 and m["train"]["steps"] == -(-m["train"]["examples"] // 16)
        assert m["eval"]["users"] == rep["dataset"]["users"] and m["eval"]["useful_tokens_per_s"] > 0
        assert 0 < m["mfu"]["train"] < 1 and 0 < m["mfu"]["eval"] < 1
        assert m["epoch_estimate_seconds"]["ml-100k (943 users)"] > 0
    assert rep["llm"]["random_weights"] and "load_avg_after" in run["machine"]


def test_gpu_check_135m_is_smollm2_135m_shape():
    """``--size 135m`` must be the default LLM's architecture (134.5 M parameters with tied embeddings)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    mod = load_script("gpu_check")
    with torch.device("meta"):
        model = LlamaForCausalLM(LlamaConfig(**mod.ARCH["135m"]))
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert mod.ARCH_NAMES["135m"] == "SmolLM2-135M"


def test_gpu_step_profile_tiny_cpu_form_times_every_variant(tmp_path):
    mod = load_script("gpu_step_profile")
    out = tmp_path / "profile.json"
    mod.main(["--size", "tiny", "--device", "cpu", "--dtype", "fp32", "--steps", "1", "--users", "150",
              "--items", "160", "--models", "tallrec", "--batch-sizes", "4", "--output", str(out)])
    rep = load_runs(out)[-1]["result"]
    runs = rep["results"]["tallrec"]["batch_4"]
    assert list(runs) == list(mod.VARIANT_SETS["defaults"]) == list(rep["variants"])
    assert rep["variants"]["cpu_defaults"] == {"group_overhead": 48, "deterministic": True, "cudnn_attention": True}
    for r in runs.values():
        assert r["step_seconds"] > 0 and r["useful_tokens_per_step"] <= r["padded_tokens_per_step"]
    # one forward per prompt kind (users, candidate items) against the CPU's length groups
    assert runs["one_group_nondeterministic"]["forwards_per_step"] == 2
    assert runs["cpu_defaults"]["forwards_per_step"] > 2
    assert "aten::" in runs[mod.ACCELERATOR_DEFAULTS]["profile_top_host"]


def test_gpu_probe_check_tiny_cpu_form_runs_every_case(tmp_path):
    mod = load_script("gpu_probe_check")
    out = tmp_path / "probes.json"
    mod.main(["--size", "tiny", "--device", "cpu", "--dtype", "fp32", "--users", "150", "--items", "160",
              "--steps", "1", "--output", str(out)])
    rep = load_runs(out)[-1]["result"]
    assert [(c["model"], c["task"], c["options"]) for c in rep["cases"]] == [(m, t, o) for m, t, _, o in mod.CASES]
    assert [c["reused"] for c in rep["cases"]] == [False, True, False, False]  # CoLLM's second case: the store
    for case, (_, task, probes, options) in zip(rep["cases"], mod.CASES, strict=True):
        assert list(case["probes"]) == probes
        for p in case["probes"].values():
            assert p["n_users"] == rep["dataset"]["users"] and p["metric"] == ("hr@1" if task == "generation"
                                                                               else "ndcg@10")
            assert p["probe_stats"]["window"] == 10
            assert p["probe_stats"]["user_rep"] == options.get("user_rep", "probed")
    cosine = rep["cases"][0]["probes"]["cosine"]["probe_stats"]
    assert sum(cosine["cosine_histogram"]["counts"]) == rep["dataset"]["users"]  # every user in a bin
