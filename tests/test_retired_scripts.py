"""The retired table scripts print the studies that replaced them, with the commands from each study's header, and
run nothing: exit 2 for any call that used to run something, 0 for ``--help``."""

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


@pytest.mark.parametrize(("script", "study"), [("paper_pattern", "paper-pattern"), ("window_check", "window-check"),
                                               ("bench_lm_based", "lm-based")])
def test_a_retired_script_prints_its_study_commands_and_runs_nothing(script, study, tmp_path):
    def call(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(SCRIPTS / f"{script}.py"), *args], capture_output=True, text=True,
                              cwd=tmp_path, timeout=60)

    ran = call("--resume", "--out", str(tmp_path / "t.json"))
    assert ran.returncode == 2, ran.stderr
    assert f"scripts/{script}.py is retired and ran nothing" in ran.stdout
    assert f"seqbench sweep studies/{study}.yaml --cpus-per-task 2 --max-parallel 1" in ran.stdout
    assert f"seqbench report --study {study}" in ran.stdout and "seqbench data prepare" in ran.stdout
    assert not list(tmp_path.iterdir())  # wrote nothing
    assert call().returncode == 2 and call("--help").returncode == 0
