"""Time the README quickstart as a new user meets it: a fresh clone, an empty home, no prepared data.

Clones this repository's HEAD into a temporary folder, points HOME there (so the data home
``~/.seqbench/data`` and the MLflow store start empty) and runs the README's two quickstart commands in the
clone, timing each one's wall clock. The package is the one installed in the current environment (install it
from this checkout; the clone's code is the same commit). Writes ``reports/bench_quickstart.json``.

    python scripts/bench_quickstart.py [--output reports/bench_quickstart.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from seqbench.benchinfo import finish, machine_info

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = [["seqbench", "run"], ["seqbench", "run", "--dataset", "quickstart-control"]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--output", type=Path, default=ROOT / "reports" / "bench_quickstart.json")
    args = ap.parse_args()
    info = machine_info()
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    tmp = Path(tempfile.mkdtemp(prefix="seqbench-quickstart-"))
    try:
        clone = tmp / "seqbench"
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SEQBENCH_")}
        env["HOME"] = str(tmp / "home")
        steps = []
        for cmd in COMMANDS:
            start = time.perf_counter()
            proc = subprocess.run(cmd, cwd=clone, env=env, capture_output=True, text=True)
            wall = time.perf_counter() - start
            steps.append({"command": " ".join(cmd), "wall_s": round(wall, 2), "exit_code": proc.returncode,
                          "stdout": proc.stdout, "stderr": proc.stderr})
            print(f"$ {' '.join(cmd)}   # {wall:.1f} s wall, exit {proc.returncode}", flush=True)
            print(proc.stderr + proc.stdout, flush=True)
        left = sorted(p.name for p in clone.iterdir() if p.name not in {".git"}
                      and subprocess.run(["git", "ls-files", "--error-unmatch", p.name], cwd=clone,
                                         capture_output=True).returncode != 0)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result = {"commit": commit, "python": sys.executable, "steps": steps,
              "total_wall_s": round(sum(s["wall_s"] for s in steps), 2),
              "untracked_in_clone_after": left, "machine": finish(info)}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2))
    print(f"total {result['total_wall_s']} s; wrote {args.output}")


if __name__ == "__main__":
    main()
