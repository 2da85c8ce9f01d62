"""Time the README quickstart as a new user meets it: a fresh clone, an empty home, no prepared data.

Clones this repository's HEAD into a temporary folder, points HOME there (so the data home
``~/.seqbench/data`` and the MLflow store start empty) and runs the README's two quickstart commands in the
clone, timing each one's wall clock. The package is the one installed in the current environment (install it
from this checkout; the clone's code is the same commit). Stores the run in ``benchmarks/results/quickstart.json``
(the envelope of ``seqbench.benchinfo``: command, commit, machine; ``--threads N`` is the run's ``variant``).

    python scripts/bench_quickstart.py [--threads N] [--output FILE]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from seqbench.benchinfo import begin, record, result_file, variant_of

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = [["seqbench", "run"], ["seqbench", "run", "--dataset", "quickstart-control"]]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads of the quickstart commands (OMP_NUM_THREADS; default: torch's own)")
    ap.add_argument("--output", type=Path, default=result_file("quickstart", ROOT))
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)  # so the machine block records the threads the commands get
    run = begin("quickstart", __file__, argv, variant_of(ap, args, skip=("output",)))
    tmp = Path(tempfile.mkdtemp(prefix="seqbench-quickstart-"))
    try:
        clone = tmp / "seqbench"
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SEQBENCH_")}
        env["HOME"] = str(tmp / "home")
        if args.threads:
            env["OMP_NUM_THREADS"] = str(args.threads)
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
    result = {"python": sys.executable, "steps": steps, "total_wall_s": round(sum(s["wall_s"] for s in steps), 2),
              "untracked_in_clone_after": left}
    record(run, result, args.output)
    print(f"total {result['total_wall_s']} s; wrote {args.output}")


if __name__ == "__main__":
    main()
