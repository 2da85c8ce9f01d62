"""The Gaudi form of the GPU check, on a machine without Gaudi: its peak table, its execution-mode guard, and that
it fails early and clearly (naming what is missing, installing nothing) where there is no Gaudi."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from seqbench.errors import SeqbenchError

from .conftest import load_script

ROOT = Path(__file__).resolve().parents[1]


def test_peak_lookup_knows_gaudi_names_and_keeps_the_cuda_ones():
    mod = load_script("gpu_check")
    assert mod.PEAK_BF16[mod.peak_for_name("GAUDI2")] == 432.0
    assert mod.PEAK_BF16[mod.peak_for_name("GAUDI3")] == 1835.0
    assert mod.peak_for_name("NVIDIA H200") == "H200" and mod.peak_for_name("NVIDIA H100 PCIe") == "H100 PCIe"
    assert mod.peak_for_name("GAUDI") is None  # first-generation Gaudi: not in the table (--peak-tflops)
    assert mod.peak_tflops(torch.device("cpu"), None)[0] is None
    assert mod.peak_tflops(torch.device("cpu"), 7.0) == (7.0, "--peak-tflops")


@pytest.mark.parametrize(("mode", "env", "expected"), [
    ("lazy", {"PT_HPU_LAZY_MODE": "1"}, "lazy"),
    ("eager", {"PT_HPU_LAZY_MODE": "0"}, "eager"),
    ("compile", {"PT_HPU_LAZY_MODE": "0"}, "compile"),
    (None, {"PT_HPU_LAZY_MODE": "1"}, "lazy"),
    (None, {"PT_HPU_LAZY_MODE": "0"}, "eager"),
])
def test_hpu_mode_follows_the_environment(mode, env, expected):
    mod = load_script("gpu_check")
    assert mod.hpu_mode_for(mode, torch.device("hpu"), env) == expected


@pytest.mark.parametrize(("mode", "env", "message"), [
    ("lazy", {"PT_HPU_LAZY_MODE": "0"}, "needs PT_HPU_LAZY_MODE=1"),
    ("compile", {}, "needs PT_HPU_LAZY_MODE=0"),
    (None, {}, "set PT_HPU_LAZY_MODE=1 (lazy) or 0"),
])
def test_hpu_mode_that_the_environment_does_not_give_is_an_error(mode, env, message):
    mod = load_script("gpu_check")
    with pytest.raises(SeqbenchError, match=message.replace("(", r"\(").replace(")", r"\)")):
        mod.hpu_mode_for(mode, torch.device("hpu"), env)


def test_hpu_mode_off_hpu_is_an_error_and_absent_mode_is_none():
    mod = load_script("gpu_check")
    assert mod.hpu_mode_for(None, torch.device("cpu"), {}) is None
    with pytest.raises(SeqbenchError, match="applies to --device hpu only"):
        mod.hpu_mode_for("eager", torch.device("cpu"), {"PT_HPU_LAZY_MODE": "0"})


def test_device_hpu_without_habana_frameworks_exits_naming_it(tmp_path):
    try:
        import habana_frameworks  # noqa: F401
        pytest.skip("habana_frameworks is installed here")
    except ImportError:
        pass
    out = tmp_path / "never.json"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--size", "tiny", "--device", "hpu",
                           "--hpu-mode", "eager", "--output", str(out)],
                          capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "PT_HPU_LAZY_MODE": "0"},
                          timeout=120)
    assert proc.returncode != 0
    assert "habana_frameworks" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()


def test_hpu_check_sh_without_hl_smi_exits_before_installing_anything(tmp_path):
    marker = tmp_path / "python-was-called"
    fake_python = tmp_path / "bin" / "fake-python"
    fake_python.parent.mkdir()
    fake_python.write_text(f"#!/bin/sh\ntouch {marker}\nexit 0\n")  # pip goes through $PYTHON -m pip
    fake_python.chmod(0o755)
    tools = tmp_path / "tools"  # what the script needs from PATH, without hl-smi
    tools.mkdir()
    for tool in ("dirname", "mkdir", "timeout", "mktemp", "rm"):
        found = subprocess.run(["bash", "-c", f"command -v {tool}"], capture_output=True, text=True).stdout.strip()
        if found:
            (tools / tool).symlink_to(found)
    proc = subprocess.run(["/bin/bash", str(ROOT / "scripts" / "hpu_check.sh")], capture_output=True, text=True,
                          env={"PATH": str(tools), "PYTHON": str(fake_python), "HOME": str(tmp_path)}, timeout=30)
    assert proc.returncode != 0
    assert "hl-smi not found" in proc.stderr and "nothing installed" in proc.stderr
    assert not marker.exists()  # neither pip nor anything else ran through Python


def test_body_compiled_in_place_still_counts_tokens_and_shapes():
    """``--hpu-mode compile`` compiles the LLM body in place (``nn.Module.compile``, here with dynamo's ``eager``
    backend instead of Intel's ``hpu_backend``): the model keeps calling the same module and the token counter's
    hook still sees every forward."""
    from transformers import LlamaConfig, LlamaModel

    mod = load_script("gpu_check")
    torch.manual_seed(0)
    body = LlamaModel(LlamaConfig(**{**mod.ARCH["tiny"], "num_hidden_layers": 1})).eval()
    body.compile(backend="eager")
    counter = mod.TokenCounter(body)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    with torch.no_grad():
        out = body(inputs_embeds=torch.randn(2, 4, 64), attention_mask=mask, use_cache=False).last_hidden_state
    assert out.shape == (2, 4, 64) and body._compiled_call_impl is not None
    assert counter.infer == 5 and counter.train == 0 and counter.shapes == {(False, 2, 4)}
